"""The demo's messy world, flowing in: what ``contextgrid serve --demo`` sets up beside its base.

On the first start the generator writes the sources a utility has next to the demo base (``base/feeds``,
:mod:`grid.synth.sources`); every start then:

- starts the billing database: a local PostgreSQL under the data dir (when the binaries are installed),
  loaded once with the billing dump, followed by the ``billing-db-*`` sources (snapshot, then logical
  decoding; payments by polling). Its DSN is handed over in ``CONTEXTGRID_BILLING_DSN``. Without PostgreSQL
  the dump's CSV tables are dropped into watched folders instead;
- drops the meter-data export, the Green Button files (with their usage point registrations), the
  key-accounts workbook and the web form's contact submissions into watched folders, whose sources it writes
  under ``<data dir>/sources``. The workbook and the web form carry no customer id: identity resolution
  decides whose each row is (:func:`feed_web_contacts`);
- matches the county tax roll to the premises (:mod:`grid.imports.taxroll`) once the base is loaded.

Everything is imported by the running gateway's watchers and followers, so ``GET /v1/imports`` shows the rows
arriving while the portal is already up.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from grid.synth.sources import generate_sources

EXAMPLES = Path(__file__).resolve().parents[3] / "sources"
DSN_ENV = "CONTEXTGRID_BILLING_DSN"
DB_SOURCES = ("billing-db-customers", "billing-db-accounts", "billing-db-bills", "billing-db-payments")
METER_SOURCE = {
    "name": "meter-reads", "kind": "folder", "location": "inbox/meter-reads", "format": "csv",
    "pattern": "*.csv", "does": "usage", "identity": {"meter_id": "meter_id"},
    "description": "The meter-data system's interval export (kWh, local time with offset).",
    "fields": {"usage.start": "read_start", "usage.import_wh": {"column": "kwh_delivered", "unit": "kWh"},
               "usage.export_wh": {"column": "kwh_received", "unit": "kWh", "default": 0}}}
KEY_ACCOUNTS_SOURCE = {
    "name": "key-accounts", "kind": "folder", "location": "inbox/key-accounts", "format": "spreadsheet",
    "pattern": "*.xlsx", "options": {"header_row": 4}, "does": "upsert",
    "description": "The key-accounts team's workbook: hand-typed names and addresses, matched by identity.",
    "identity": {"account_id": "Account #", "name": "Customer", "address": "Site Address"},
    "fields": {"customer.attributes.key_account_manager": "Acct Mgr",
               "customer.attributes.key_account_notes": "Notes"}}


def feed_web_contacts(data_dir: Path, feeds: Path) -> None:
    """The web form's submissions (``web_contacts.csv``) into the ``web-contacts`` source's watched folder.

    The source (``sources/web-contacts.yaml``) joins the two name boxes into one name and hands every row's
    evidence (name, e-mail, mobile, service address, account number as typed) to ``grid.identity``: a row lands
    as a contact on the customer it belongs to, an undecided one becomes a review item and waits in quarantine,
    a stranger's is quarantined as unresolved.
    """
    spec = yaml.safe_load((EXAMPLES / "web-contacts.yaml").read_text())
    _write_source(data_dir / "sources", spec)
    _drop(feeds / "web_contacts.csv", data_dir / spec["location"])


def _write_source(folder: Path, spec: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def _drop(src: Path, inbox: Path) -> None:
    """Copy ``src`` into a watched folder the way an export lands: written aside, then renamed in."""
    inbox.mkdir(parents=True, exist_ok=True)
    dest = inbox / src.name
    if dest.exists():
        return
    tmp = inbox / f".{src.name}.part"
    shutil.copyfile(src, tmp)
    tmp.replace(dest)


def _start_postgres(data_dir: Path, feeds: Path) -> str | None:
    """A local PostgreSQL holding the billing dump; its DSN, or None when PostgreSQL is not installed."""
    from grid.imports.pg_instance import LocalPostgres, find_bin

    if find_bin() is None:
        return None
    import psycopg

    from grid.synth.sources.billing import load_dump

    root = data_dir / "postgres"
    if os.geteuid() == 0:  # the cluster runs as the postgres user, who must reach its directory
        key = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:10]
        root = Path(tempfile.gettempdir()) / f"contextgrid-demo-pg-{key}"
    pg = LocalPostgres(root).start()
    atexit.register(pg.stop)
    marker = root / "billing-loaded"
    if not marker.exists():
        with psycopg.connect(pg.dsn, autocommit=True) as c:
            load_dump(c, feeds)
        marker.write_text("loaded\n")
    return pg.dsn


def prepare(data_dir: str | Path, base_dir: str | Path, *, meter_days: int = 2) -> list[str]:
    """Set up the demo's sources (see the module docstring); lines to announce."""
    data_dir, base_dir = Path(data_dir), Path(base_dir)
    feeds = base_dir / "feeds"
    if not (feeds / "manifest.json").exists():
        generate_sources(base_dir, meter_days=meter_days)
    manifest = yaml.safe_load((feeds / "manifest.json").read_text())  # JSON is YAML
    sources, inbox = data_dir / "sources", data_dir / "inbox"
    lines = []
    dsn = None
    try:
        dsn = _start_postgres(data_dir, feeds)
    except Exception as exc:  # noqa: BLE001 - the demo goes on with the dump's CSVs
        lines.append(f"billing database: PostgreSQL did not start ({exc}); importing the dump's CSV instead")
    for name in DB_SOURCES:
        spec = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
        if dsn is None:  # the same mapping over the dump's CSV file
            table = spec["options"]["table"]
            spec.update(kind="folder", location=f"inbox/{name}", format="csv", pattern=f"{table}.csv", options={})
            _drop(feeds / "billing" / f"{table}.csv", inbox / name)
        _write_source(sources, spec)
    if dsn is not None:
        os.environ[DSN_ENV] = dsn
        lines.append(f"billing database: PostgreSQL at {dsn} (followed by logical decoding)")
    _write_source(sources, METER_SOURCE)
    _drop(feeds / "meter_reads.csv", inbox / "meter-reads")
    gb = yaml.safe_load((EXAMPLES / "greenbutton.yaml").read_text())
    gb["options"] = {"usage_points": manifest["sources"]["greenbutton"]["usage_points"]}
    _write_source(sources, gb)
    for f in sorted((feeds / "greenbutton").glob("*.xml")):
        _drop(f, inbox / "greenbutton")
    _write_source(sources, KEY_ACCOUNTS_SOURCE)
    _drop(feeds / "key_accounts.xlsx", inbox / "key-accounts")
    feed_web_contacts(data_dir, feeds)
    lines.append(f"sources: {', '.join(sorted(p.stem for p in sources.glob('*.yaml')))} "
                 f"(progress: GET /v1/imports)")
    return lines


async def import_public_records(grid, base_dir: str | Path) -> str:
    from grid.imports.taxroll import import_roll

    report = await import_roll(grid, Path(base_dir) / "feeds" / "tax_roll.csv")
    return (f"tax roll: {report['matched']} of {report['parcels']} parcels matched to premises, "
            f"ownership evidence on {report['customers']} customers")
