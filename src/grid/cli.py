"""``contextgrid``: generate a base, load it, serve the gateway."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from grid.errors import ContextGridError


def _progress(total: int, desc: str, unit: str = "customers"):
    bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True, file=sys.stderr)
    return bar, bar.update


def cmd_generate(args) -> int:
    from grid.synth import generate_base

    bar, tick = _progress(args.customers, "generating")
    with bar:
        manifest = generate_base(args.out, args.customers, args.seed, first_month=args.first_month,
                                 months=args.months, chunk_customers=args.chunk, progress=tick,
                                 churn_rate=args.churn_rate)
    print(f"wrote {manifest['customers']} customers, {len(manifest['months'])} months to {args.out}")
    if args.sources:  # sources: the messy world beside the base (grid.synth.sources)
        from grid.synth.sources import generate_sources

        feeds = generate_sources(args.out, meter_days=args.meter_days)
        print(f"wrote {len(feeds['sources'])} messy sources with their truth to {args.out}/feeds")
    return 0


def cmd_train_churn(args) -> int:
    """decisions: train the churn model on a generated base, write it versioned under the data dir."""
    import json

    from grid.decisions.churn import train_on_base

    path, metrics = train_on_base(args.base, args.data_dir, seed=args.seed)
    print(f"wrote {path}")
    print(json.dumps(metrics, indent=2))
    return 0


def settings_of(args) -> "Settings":
    """The one Settings object of a command, from its flags (grid.settings)."""
    from grid.settings import Settings

    s = Settings(data_dir=args.data_dir, shards=args.shards, address=args.address,
                 fsync=getattr(args, "fsync", "batch"))
    if getattr(args, "timezone", None):
        s.timezone = args.timezone
    if getattr(args, "port", None) is not None:  # serve
        s.host, s.port = args.host, args.port
        s.max_body_bytes, s.near_cache_ttl_s = args.max_body_bytes, args.near_cache_ttl
        s.classify_on_start = True
        s.keys_file = str(Path(args.keys).resolve()) if args.keys else str(Path(args.data_dir) / "keys.yaml")
        if args.green_factors:
            s.green_factors_file = str(Path(args.green_factors).resolve())
        if args.rules:
            s.rules_dir = str(Path(args.rules).resolve())
        if args.tariffs:
            s.tariff_dir = str(Path(args.tariffs).resolve())
    return s


def _grid(args, settings=None):
    from grid.cluster import Grid

    import ray

    settings = settings or settings_of(args)
    if settings.address is None and not ray.is_initialized():  # a new local Ray: new shard actors, not its own
        _refuse_busy_data_dir(Path(settings.data_dir))
    return Grid(settings)


def _refuse_busy_data_dir(data_dir: Path) -> None:
    """A local grid on a data directory a running one owns (``serve`` left running, then ``import``) would
    only get its shard actors refused by the WAL locks, after pages of Ray tracebacks: say so in one line."""
    import time

    from grid.errors import Conflict
    from grid.wal import locked_by_another

    wals = sorted(data_dir.glob("shards/shard-*/wal"))
    deadline = time.monotonic() + 3.0  # a grid killed a moment ago: its dying actors' locks clear in a blink
    while any(locked_by_another(wal) for wal in wals):
        if time.monotonic() < deadline:
            time.sleep(0.1)
            continue
        raise Conflict(f"{data_dir} is in use by a running contextgrid (its shards' write-ahead logs are "
                       f"locked): stop it first, or push the file to its gateway (POST /v1/imports/{{source}})",
                       field="data_dir")


def _load(grid, base_dir: str) -> int:
    from grid.base import read_manifest

    manifest = read_manifest(base_dir)
    bar, tick = _progress(int(manifest["customers"]), "loading")
    with bar:
        return grid.load(base_dir, progress=tick)


def cmd_load(args) -> int:
    grid = _grid(args)
    n = _load(grid, args.base)
    print(f"loaded {n} customers into {len(grid.shards)} shards")
    for s in grid.stats():
        print(f"  shard {s['shard']}: {s['customers']} customers, {s['service_points']} service points")
    return 0


def cmd_import(args) -> int:
    """imports: one file through a source's mapping into the shards, with a progress bar (grid.imports)."""
    from grid.imports.importer import Importer

    grid = _grid(args)
    importer = Importer(grid, args.data_dir)
    src = importer.registry.get(args.source)
    path = Path(args.file)
    size = path.stat().st_size
    bar = tqdm(total=size, desc=f"import {path.name}", unit="B", unit_scale=True, dynamic_ncols=True,
               file=sys.stderr)
    rows = 0

    def tick(n: int, byte: int) -> None:
        nonlocal rows
        rows += n
        bar.set_postfix(rows=rows, refresh=False)
        bar.update((byte or bar.n + 1) - bar.n if byte else 0)

    try:
        with bar:
            rcpt = asyncio.run(importer.import_file(src, path, progress=tick))
            bar.update(size - bar.n)
    finally:
        # the shards are this process's actors: stop them and wait until their names are free, so a grid
        # started next in the same process (a script's import then a read) never attaches to dying actors
        grid.shutdown()
    print(f"{path.name} -> {src.name}: {rcpt.applied} applied, {rcpt.unchanged} unchanged, "
          f"{rcpt.skipped} already there, {rcpt.quarantined} quarantined; position {rcpt.position}")
    return 0


def cmd_keys(args) -> int:
    from grid.gateway.auth import add_key

    print(add_key(args.file, args.id, args.role, args.customer or []))
    return 0


def _demo_keys(grid, keys_file: Path) -> list[str]:
    """Keys for a demo grid: minted once, on the first start (an operator, one residential and one commercial
    customer), kept across restarts; returns what to print."""
    from grid.gateway.auth import add_key

    if keys_file.exists():
        return [f"keys: kept {keys_file} (printed at its first start; `contextgrid keys --file {keys_file}` adds one)"]
    lines = [f"operator key: {add_key(keys_file, 'demo-operator', 'operator')}"]
    for kind in ("residential", "commercial"):
        first = grid.list_customers({"kind": kind}, limit=1)
        if first:
            cid = first[0]["customer_id"]
            lines.append(f"{kind} customer key: {add_key(keys_file, f'demo-customer-{cid}', 'customer', [cid])} "
                         f"({cid})")
    return lines


def cmd_serve(args) -> int:
    from grid.gateway.auth import KeyStore
    from grid.gateway.server import run_server

    settings = settings_of(args)
    data_dir = Path(settings.data_dir)
    grid = _grid(args, settings)
    announce = []
    if args.demo:
        base = data_dir / "base"
        if not (base / "manifest.json").exists():
            from grid.synth import generate_base

            bar, tick = _progress(args.demo, "generating demo base")
            with bar:
                generate_base(base, args.demo, seed=args.seed, progress=tick)
        if sum(s["customers"] for s in grid.stats()) == 0:
            _load(grid, str(base))
        # imports: the messy sources beside the base (billing database, meter export, Green Button files,
        # key-accounts workbook) flow in through the gateway's importers; the tax roll before classification
        from grid.imports import demo as demo_sources

        announce += demo_sources.prepare(data_dir, base)
        announce.append(asyncio.run(demo_sources.import_public_records(grid, base)))
    keys_file = Path(settings.keys_file)
    if args.keys is None:  # no keys file given: the data dir's, with demo keys minted on the first start
        announce += _demo_keys(grid, keys_file)
    keys = KeyStore.load(keys_file)
    asyncio.run(run_server(grid, settings, keys, announce))
    return 0


def _http(args, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """A call to a running gateway (operations go through it: it is the router that must see every move)."""
    import json
    import os
    import urllib.error
    import urllib.request

    key = args.key or os.environ.get("CONTEXTGRID_KEY")
    if not key:
        raise SystemExit("error: an operator key is needed (--key or CONTEXTGRID_KEY)")
    req = urllib.request.Request(args.url.rstrip("/") + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as exc:
        problem = json.loads(exc.read() or b"{}")
        raise SystemExit(f"error: {exc.code} {problem.get('detail', '')} ({problem.get('field', '')})") from None
    except urllib.error.URLError as exc:
        raise SystemExit(f"error: cannot reach {args.url}: {exc.reason}") from None


def _follow_job(args, job: dict, desc: str) -> dict:
    import time

    bar = tqdm(total=job["progress"]["total"] or None, desc=desc, unit="partitions", file=sys.stderr)
    with bar:
        while job["state"] == "running":
            time.sleep(0.2)
            _, job = _http(args, "GET", f"/v1/admin/jobs/{job['job_id']}")
            if job["progress"]["total"]:
                bar.total = job["progress"]["total"]
                bar.n = job["progress"]["done"]
                bar.refresh()
    if job["state"] != "done":
        raise SystemExit(f"error: {desc} failed: {job.get('error')}")
    return job


def cmd_scale(args) -> int:
    _, job = _http(args, "POST", "/v1/admin/shards", {"count": args.count})
    job = _follow_job(args, job, f"scaling to {args.count} shards")
    print(f"now {job['result']['shards']} shards; moved {job['result']['moved_partitions']} partitions "
          f"(table version {job['result']['version']})")
    return 0


def cmd_bill_run(args) -> int:
    import json
    import time

    _, run = _http(args, "POST", "/v1/bill-runs", {"period": args.period, "tolerance_cents": args.tolerance})
    bar = tqdm(total=None, desc=f"bill run {args.period}", unit="batches", file=sys.stderr)
    with bar:
        while run["state"] == "running":
            time.sleep(0.2)
            _, run = _http(args, "GET", f"/v1/bill-runs/{run['run_id']}")
            bar.total = run["progress"]["total"] or None
            bar.n = run["progress"]["done"]
            bar.refresh()
    if run["state"] != "done":
        raise SystemExit(f"error: bill run failed: {run.get('error')}")
    rep = run["report"]
    print(f"{rep['bills']} bills for {rep['period']}: " + ", ".join(f"{k} {v}" for k, v in rep["counts"].items()))
    print(f"released {rep['released']}, held {rep['held']}; sum of differences {rep['diff_cents'] / 100:.2f}")
    print(f"report: {args.url.rstrip('/')}/v1/bill-runs/{run['run_id']} (?format=csv, /report.parquet)")
    if args.json:
        print(json.dumps(rep, indent=1))
    return 0


def cmd_snapshot(args) -> int:
    _, out = _http(args, "POST", "/v1/admin/snapshots", {})
    for s in out["items"]:
        print(f"shard {s['shard']}: snapshot through seq {s['seq']} in {s['seconds']} s at {s['path']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="contextgrid", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write a synthetic customer base as Parquet")
    g.add_argument("--customers", type=int, required=True)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", required=True)
    g.add_argument("--first-month", default="2025-11")
    g.add_argument("--months", type=int, default=12)
    g.add_argument("--chunk", type=int, default=2000, help="customers per Parquet part")
    g.add_argument("--sources", action="store_true",
                   help="also write the messy sources (billing dump, meter export, spreadsheet, tax roll, web "
                        "forms) with their truth to OUT/feeds")
    g.add_argument("--meter-days", type=int, default=7, help="days of interval reads in the meter export")
    g.add_argument("--churn-rate", type=float, default=0.0,
                   help="share of customers planted as churners, truth in OUT/truth/churn.parquet (0: none)")
    g.set_defaults(func=cmd_generate)

    tc = sub.add_parser("train-churn", help="train the churn model on a generated base with planted churners")
    tc.add_argument("--base", required=True)
    tc.add_argument("--data-dir", default="data/grid", help="the model is written to DATA_DIR/models")
    tc.add_argument("--seed", type=int, default=0)
    tc.set_defaults(func=cmd_train_churn)

    def grid_args(q):
        q.add_argument("--data-dir", default="data/grid", help="partition table, shard snapshots and logs")
        q.add_argument("--shards", type=int, default=2)
        q.add_argument("--address", default=None, help="join this Ray cluster (default: start a local one)")
        q.add_argument("--fsync", choices=["always", "batch", "off"], default="batch",
                       help="WAL policy: fsync each write, share fsyncs between concurrent writes, or none")
        q.add_argument("--timezone", default=None,
                       help="the utility's IANA zone (schedules; tariffs that name none); default America/Los_Angeles")

    ld = sub.add_parser("load", help="load a generated base into the grid's shards")
    ld.add_argument("--base", required=True)
    grid_args(ld)
    ld.set_defaults(func=cmd_load)

    s = sub.add_parser("serve", help="serve the HTTP gateway and portal")
    grid_args(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--keys", default=None,
                   help="keys file (YAML, hashed keys); default DATA_DIR/keys.yaml, demo keys minted when missing")
    s.add_argument("--demo", type=int, default=0, metavar="N",
                   help="generate a base of N customers into DATA_DIR/base if missing and load it")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-body-bytes", type=int, default=1 << 20)
    s.add_argument("--green-factors", default=None,
                   help="YAML/JSON emissions factors for green metrics (grid_co2_g_per_kwh, ...)")
    s.add_argument("--rules", default=None, help="rule files directory (default: rules)")
    s.add_argument("--tariffs", default=None,
                   help="tariff catalogue directory (default DATA_DIR/tariffs, seeded from rules/tariffs once)")
    s.add_argument("--near-cache-ttl", type=float, default=30.0,
                   help="seconds; bounds staleness if a shard's change log is unreachable; 0 disables the cache")
    s.set_defaults(func=cmd_serve)

    def http_args(q):
        q.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway")
        q.add_argument("--key", default=None, help="operator key (or CONTEXTGRID_KEY)")

    sc = sub.add_parser("scale", help="move partitions so that N shards share them (through the gateway)")
    sc.add_argument("count", type=int)
    http_args(sc)
    sc.set_defaults(func=cmd_scale)

    br = sub.add_parser("bill-run", help="bill and reconcile every account for a month (through the gateway)")
    br.add_argument("--period", required=True, help="YYYY-MM")
    br.add_argument("--tolerance", type=int, default=0, help="cents a line may differ and still match")
    br.add_argument("--json", action="store_true", help="also print the whole report")
    http_args(br)
    br.set_defaults(func=cmd_bill_run)

    sn = sub.add_parser("snapshot", help="snapshot every shard now (through the gateway)")
    http_args(sn)
    sn.set_defaults(func=cmd_snapshot)

    im = sub.add_parser("import", help="import a file through a source (DATA_DIR/sources/NAME.yaml) into the shards")
    im.add_argument("file")
    im.add_argument("--source", required=True)
    grid_args(im)
    im.set_defaults(func=cmd_import)

    k = sub.add_parser("keys", help="add an API key to a keys file and print it (shown once)")
    k.add_argument("--file", required=True)
    k.add_argument("--id", required=True)
    k.add_argument("--role", choices=["operator", "agent", "customer"], required=True)
    k.add_argument("--customer", action="append", help="customer id bound to a customer key (repeatable)")
    k.set_defaults(func=cmd_keys)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ContextGridError as exc:
        print(f"error: {exc.detail}" + (f" ({exc.extra.get('field')})" if exc.extra.get("field") else ""),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
