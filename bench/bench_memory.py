"""Memory of a shard: bytes per customer outside usage, bytes per service-point-year of usage.

A generated base (``BENCH_CUSTOMERS``, default 20,000; ``BENCH_MONTHS`` of usage, default 1) is loaded into one
plain ``grid.shard.Shard`` (no Ray: the figures are the shard's own state). Each part is measured where it lives:

* context records: Python heap traced by ``tracemalloc`` while the records are rebuilt from their msgpack form
  (every dict, list, str and int they hold; what ``sys.getsizeof`` misses);
* the same records in three peer representations, side by side: plain dicts (today), ``grid.model`` msgspec
  structs, and one msgpack blob per customer (decoded on read); with the cost of reading one record and of
  walking the whole shard (what a bill run or classification does) in each;
* indexes (service point -> owner), the bills table (Arrow buffers), usage arrays (``nbytes``).

Run: ``BENCH_CUSTOMERS=20000 .venv/bin/python -m pytest bench/bench_memory.py -s``. No assertion on the figures.
"""
from __future__ import annotations

import gc
import os
import time
import tracemalloc

import msgpack
import msgspec
import pytest

from grid import model
from grid.partitions import PARTITIONS
from grid.shard import Shard
from grid.synth import generate_base

CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "20000"))
MONTHS = int(os.environ.get("BENCH_MONTHS", "1"))
BASE_CUSTOMERS = 50_000_000  # a retail bank's size, for the projection
NODE_RAM = 64 * 2**30  # usable per node for shard state (a 128 GiB machine, half kept for headroom)


def rss() -> int:
    """Resident set size of this process (bytes), from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def traced(build):
    """(result, bytes of Python heap it holds) for ``build()``."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    out = build()
    gc.collect()
    size = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return out, size


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    base = tmp_path_factory.mktemp("membase")
    manifest = generate_base(base, CUSTOMERS, seed=11, months=MONTHS, chunk_customers=5000)
    gc.collect()
    before = rss()
    s = Shard(0, list(range(PARTITIONS)))
    for chunk in range(int(manifest["chunks"])):
        s.load_chunk(str(base), chunk)
    s.finish_load()
    gc.collect()
    s.rss_growth = rss() - before  # what the process grew by holding the shard (heap, arenas, Arrow pools)
    return s


def _walk(records) -> int:
    """What a whole-shard computation does with each record: read every account's service points."""
    n = 0
    for rec in records:
        for a in rec["accounts"]:
            n += len(a["service_points"])
    return n


def test_bytes_per_customer_and_per_service_point_year(shard, benchmark):
    recs = shard.records
    n = len(recs)
    blob = msgpack.packb(recs, use_bin_type=True)
    dicts, dict_bytes = traced(lambda: msgpack.unpackb(blob, raw=False, strict_map_key=False))
    structs, struct_bytes = traced(lambda: {c: msgspec.convert(r, model.CustomerContext) for c, r in dicts.items()})
    encoder = msgspec.msgpack.Encoder()
    packed, packed_bytes = traced(lambda: {c: encoder.encode(r) for c, r in dicts.items()})
    by_field = {}
    for f in model.CustomerContext.__struct_fields__:  # where a record's bytes go
        part = msgpack.packb([r[f] for r in recs.values()], use_bin_type=True)
        _, by_field[f] = traced(lambda: msgpack.unpackb(part, raw=False, strict_map_key=False))
    sp_index, sp_bytes = traced(lambda: dict(shard.sp_owner))
    bills = shard.bills.table.nbytes
    n_sp = len(shard.sp_owner)
    usage = sum(b.imp.nbytes + b.exp.nbytes for st in shard.usage.values() for b in st.months.values())
    usage_index = sum(st.export_row.nbytes + st.filled_through.nbytes for st in shard.usage.values())
    sp_years = n_sp * MONTHS / 12

    # reading: one record (a GET), and the whole shard (a bill run's or classification's walk)
    decoder = msgspec.msgpack.Decoder()
    ids = list(recs)[:2000]
    timing = {}
    for name, get in (("dict", lambda c: dicts[c]), ("struct", lambda c: msgspec.to_builtins(structs[c])),
                      ("msgpack", lambda c: decoder.decode(packed[c]))):
        t0 = time.perf_counter()
        for c in ids:
            get(c)
        one = (time.perf_counter() - t0) / len(ids)
        t0 = time.perf_counter()
        walked = _walk(get(c) for c in dicts)
        timing[name] = (one, time.perf_counter() - t0, walked)

    outside = {name: (size + sp_bytes + bills) / n
               for name, size in (("dict", dict_bytes), ("struct", struct_bytes), ("msgpack", packed_bytes))}
    out = {"customers": n, "service_points": n_sp, "months": MONTHS,
           "record_bytes_per_customer": {"dict": dict_bytes / n, "struct": struct_bytes / n,
                                         "msgpack": packed_bytes / n},
           "record_bytes_per_customer_by_field": {f: b / n for f, b in by_field.items()},
           "sp_index_bytes_per_customer": sp_bytes / n,
           "rss_outside_usage_bytes_per_customer": (shard.rss_growth - usage - usage_index) / n, "bills_bytes_per_customer": bills / n,
           "outside_usage_bytes_per_customer": outside,
           "usage_bytes_per_sp_year": (usage + usage_index * 12 / max(MONTHS, 1)) / sp_years,
           "read_one_us": {k: v[0] * 1e6 for k, v in timing.items()},
           "walk_shard_s": {k: v[1] for k, v in timing.items()}}
    sp_per_customer = n_sp / n
    for name, per_customer in outside.items():
        total = BASE_CUSTOMERS * (per_customer + sp_per_customer * out["usage_bytes_per_sp_year"])
        out.setdefault("base_50m", {})[name] = {"bytes": total, "nodes_64GiB": -(-total // NODE_RAM)}
    print()
    print(f"{n} customers, {n_sp} service points, {MONTHS} month(s) of usage")
    print(f"{'':28}{'dict':>12}{'struct':>12}{'msgpack':>12}")
    for label, key in (("record B/customer", "record_bytes_per_customer"),
                       ("outside usage B/customer", "outside_usage_bytes_per_customer"),
                       ("read one record (us)", "read_one_us"), ("walk the shard (s)", "walk_shard_s")):
        print(f"{label:28}" + "".join(f"{out[key][k]:12.1f}" if key != "walk_shard_s" else f"{out[key][k]:12.3f}"
                                      for k in ("dict", "struct", "msgpack")))
    print("dict record B/customer by field: " + ", ".join(
        f"{f} {b:.0f}" for f, b in sorted(out["record_bytes_per_customer_by_field"].items(), key=lambda x: -x[1])))
    print(f"RSS growth of the loaded shard outside usage: {out['rss_outside_usage_bytes_per_customer']:.0f} "
          "B/customer (dict records; includes allocator slack and Arrow pools)")
    print(f"sp index B/customer {out['sp_index_bytes_per_customer']:.0f}, bills B/customer "
          f"{out['bills_bytes_per_customer']:.0f}, usage B/sp-year {out['usage_bytes_per_sp_year']:.0f}")
    for name, v in out["base_50m"].items():
        print(f"50M customers as {name}: {v['bytes'] / 2**40:.2f} TiB, {int(v['nodes_64GiB'])} nodes of 64 GiB")
    assert timing["dict"][2] == timing["struct"][2] == timing["msgpack"][2] == n_sp  # peers hold the same data
    benchmark.extra_info.update(out)
    benchmark.pedantic(lambda: None, rounds=1)
