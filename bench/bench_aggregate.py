"""Group-by sum / max / count and distinct count on 10M rows: the Cython kernel beside its peers.

Peers, all fed the same int64 columns in the same process: numpy (``np.bincount`` / ``np.maximum.at``),
pandas ``groupby``, polars ``group_by``, duckdb SQL, and a plain Python dict loop. Every output is checked equal
to the kernel's after timing. polars and duckdb use every core they are given; the kernel uses one.

Run: ``.venv/bin/python -m pytest bench/bench_aggregate.py -s`` (pytest-benchmark table, then ratios), or
``.venv/bin/python bench/bench_aggregate.py`` for a quick one-round table. Sizes: BENCH_AGG_ROWS (10M),
BENCH_AGG_GROUPS (1M keys, e.g. accounts), BENCH_AGG_DISTINCT (values per key drawn from 0..49, e.g. sites).
"""
from __future__ import annotations

import os
import time
from collections import defaultdict

import numpy as np
import pytest

from kernels.aggregate import group_partials

ROWS = int(os.environ.get("BENCH_AGG_ROWS", "10000000"))
GROUPS = int(os.environ.get("BENCH_AGG_GROUPS", "1000000"))
DISTINCT = int(os.environ.get("BENCH_AGG_DISTINCT", "50"))


def make_data(rows=ROWS, groups=GROUPS, seed=0):
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, groups, rows, dtype=np.int64)         # account index, rows in no particular order
    values = rng.integers(-5_000, 1_000_000, rows, dtype=np.int64)  # cents, credits included
    distinct = rng.integers(0, DISTINCT, rows, dtype=np.int64)
    return keys, values, distinct


# Each peer returns int64 arrays aligned on ascending keys: (keys, sum, max, count) or (keys, distinct_count).

def cython_smc(keys, values, distinct):
    p = group_partials(keys, values)
    return p.keys, p.sum, p.max, p.count


def cython_distinct(keys, values, distinct):
    p = group_partials(keys, distinct=distinct)
    return p.keys, p.distinct_count()


def numpy_smc(keys, values, distinct):
    count = np.bincount(keys)
    # bincount sums in float64: exact here because every group's sum stays far below 2**53 (checked by the
    # equality test after timing); np.add.at would be exact in int64 but is several times slower.
    total = np.bincount(keys, weights=values).astype(np.int64)
    peak = np.full(count.size, np.iinfo(np.int64).min)
    np.maximum.at(peak, keys, values)
    used = np.flatnonzero(count)
    return used, total[used], peak[used], count[used]


def numpy_distinct(keys, values, distinct):
    # Sort the packed (key, value) codes and keep the first of each run: several times faster than np.unique
    # on this input in the numpy measured here, so the peer is not a straw man.
    code = np.sort(keys * DISTINCT + distinct)
    first = np.empty(code.size, dtype=bool)
    first[:1] = True
    np.not_equal(code[1:], code[:-1], out=first[1:])
    count = np.bincount(code[first] // DISTINCT)
    used = np.flatnonzero(count)
    return used, count[used]


def pandas_smc(keys, values, distinct):
    import pandas as pd

    out = pd.DataFrame({"k": keys, "v": values}).groupby("k", sort=True)["v"].agg(["sum", "max", "count"])
    return out.index.to_numpy(), out["sum"].to_numpy(), out["max"].to_numpy(), out["count"].to_numpy()


def pandas_distinct(keys, values, distinct):
    import pandas as pd

    out = pd.DataFrame({"k": keys, "d": distinct}).groupby("k", sort=True)["d"].nunique()
    return out.index.to_numpy(), out.to_numpy()


def polars_smc(keys, values, distinct):
    import polars as pl

    out = (pl.DataFrame({"k": keys, "v": values}).group_by("k")
           .agg(pl.col("v").sum().alias("s"), pl.col("v").max().alias("m"), pl.len().alias("n")).sort("k"))
    return out["k"].to_numpy(), out["s"].to_numpy(), out["m"].to_numpy(), out["n"].to_numpy()


def polars_distinct(keys, values, distinct):
    import polars as pl

    out = pl.DataFrame({"k": keys, "d": distinct}).group_by("k").agg(pl.col("d").n_unique().alias("u")).sort("k")
    return out["k"].to_numpy(), out["u"].to_numpy()


def duckdb_smc(keys, values, distinct):
    import duckdb
    import pyarrow as pa

    t = pa.table({"k": keys, "v": values})  # zero-copy view of the numpy columns
    out = duckdb.sql("SELECT k, sum(v)::BIGINT AS s, max(v) AS m, count(*) AS n FROM t GROUP BY k ORDER BY k")
    r = out.fetchnumpy()
    return r["k"], r["s"], r["m"], r["n"]


def duckdb_distinct(keys, values, distinct):
    import duckdb
    import pyarrow as pa

    t = pa.table({"k": keys, "d": distinct})
    r = duckdb.sql("SELECT k, count(DISTINCT d) AS u FROM t GROUP BY k ORDER BY k").fetchnumpy()
    return r["k"], r["u"]


def python_smc(keys, values, distinct):
    total: dict[int, int] = defaultdict(int)
    peak: dict[int, int] = {}
    count: dict[int, int] = defaultdict(int)
    for k, v in zip(keys.tolist(), values.tolist()):
        total[k] += v
        count[k] += 1
        if k not in peak or v > peak[k]:
            peak[k] = v
    ks = sorted(count)
    return (np.array(ks), np.array([total[k] for k in ks]), np.array([peak[k] for k in ks]),
            np.array([count[k] for k in ks]))


def python_distinct(keys, values, distinct):
    seen: dict[int, set[int]] = defaultdict(set)
    for k, d in zip(keys.tolist(), distinct.tolist()):
        seen[k].add(d)
    ks = sorted(seen)
    return np.array(ks), np.array([len(seen[k]) for k in ks])


PEERS = {
    "sum_max_count": {"cython": cython_smc, "numpy": numpy_smc, "pandas": pandas_smc, "polars": polars_smc,
                      "duckdb": duckdb_smc, "python": python_smc},
    "distinct_count": {"cython": cython_distinct, "numpy": numpy_distinct, "pandas": pandas_distinct,
                       "polars": polars_distinct, "duckdb": duckdb_distinct, "python": python_distinct},
}
ROUNDS = {"cython": 5, "numpy": 2, "pandas": 2, "polars": 3, "duckdb": 3, "python": 1}


def check_equal(result, expected, label):
    assert len(result) == len(expected), label
    for got, want in zip(result, expected):
        np.testing.assert_array_equal(np.asarray(got).astype(np.int64), want, err_msg=label)


# ---- pytest-benchmark ----------------------------------------------------------------------------------------

_times: dict[tuple[str, str], float] = {}


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def expected(data):
    return {workload: PEERS[workload]["cython"](*data) for workload in PEERS}


@pytest.fixture(scope="module", autouse=True)
def ratio_table():
    yield
    if _times:
        print(f"\n{ROWS:,} rows, {GROUPS:,} keys: best seconds and slowdown against the Cython kernel")
        for workload in PEERS:
            base = _times.get((workload, "cython"))
            for peer in PEERS[workload]:
                t = _times.get((workload, peer))
                if t is not None and base:
                    print(f"  {workload:15s} {peer:8s} {t:8.3f} s  {t / base:7.1f}x  {ROWS / t / 1e6:8.1f} Mrows/s")


@pytest.mark.parametrize("peer", list(PEERS["sum_max_count"]))
@pytest.mark.parametrize("workload", list(PEERS))
def test_group_by(benchmark, data, expected, workload, peer):
    benchmark.group = f"aggregate {workload}"
    fn = PEERS[workload][peer]
    result = benchmark.pedantic(fn, args=data, rounds=ROUNDS[peer], iterations=1)
    _times[(workload, peer)] = benchmark.stats.stats.min
    check_equal(result, expected[workload], f"{workload}/{peer}")


# ---- script ------------------------------------------------------------------------------------------------

def main() -> None:
    data = make_data()
    print(f"{ROWS:,} rows, {GROUPS:,} keys (best of rounds, seconds; slowdown against the Cython kernel)")
    for workload, peers in PEERS.items():
        want = peers["cython"](*data)
        base = None
        for name, fn in peers.items():
            best = float("inf")
            for _ in range(ROUNDS[name]):
                t0 = time.perf_counter()
                got = fn(*data)
                best = min(best, time.perf_counter() - t0)
            check_equal(got, want, f"{workload}/{name}")
            base = base or best
            print(f"  {workload:15s} {name:8s} {best:8.3f} s  {best / base:7.1f}x  {ROWS / best / 1e6:8.1f} Mrows/s")


if __name__ == "__main__":
    main()
