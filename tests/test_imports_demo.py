"""The demo's sources: what ``serve --demo`` writes validates, and without PostgreSQL the billing dump's CSV
tables are imported from watched folders with the same mappings."""
from __future__ import annotations

import yaml

from grid.imports import demo
from grid.imports.sources import SourceRegistry
from grid.synth import generate_base


def test_demo_sources_validate_and_fall_back_to_the_dump_csv_without_postgres(tmp_path, monkeypatch):
    import grid.imports.pg_instance as pgi

    base = tmp_path / "base"
    generate_base(base, 30, seed=2, first_month="2026-11", months=1, chunk_customers=30)
    monkeypatch.setattr(pgi, "find_bin", lambda: None)
    monkeypatch.delenv(demo.DSN_ENV, raising=False)
    lines = demo.prepare(tmp_path / "data", base, meter_days=1)
    reg = SourceRegistry(tmp_path / "data" / "sources")
    reg.reload(strict=True)
    assert set(reg.sources) == {"billing-db-customers", "billing-db-accounts", "billing-db-bills", "billing-db-payments",
                                "greenbutton", "key-accounts", "meter-reads", "web-contacts"}
    assert {s.kind for n, s in reg.sources.items() if n.startswith("billing-db")} == {"folder"}
    inbox = tmp_path / "data" / "inbox"
    assert (inbox / "billing-db-accounts" / "accounts.csv").exists()
    assert (inbox / "web-contacts" / "web_contacts.csv").exists()
    assert (inbox / "meter-reads" / "meter_reads.csv").exists() and list((inbox / "greenbutton").glob("*.xml"))
    gb = yaml.safe_load((tmp_path / "data" / "sources" / "greenbutton.yaml").read_text())
    assert gb["options"]["usage_points"] and all(v.startswith("S") for v in gb["options"]["usage_points"].values())
    assert not any("PostgreSQL at" in line for line in lines)
    assert demo.prepare(tmp_path / "data", base, meter_days=1)  # a second start reuses the feeds and inbox
