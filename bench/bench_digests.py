"""Changed-file row digests: what the version-stable digest costs against polars' own (unstable) one.

Input: BENCH_DIGEST_ROWS (50,000: one import batch) rows of a meter export as Arrow text columns (service
point, UTC time, Wh), and the same rows as dicts (the form pushes and spreadsheets take).
Peers, fed the same rows in the same process:
- ``row_hashes``: grid.imports.files, XXH64 (polars-hash) of each row's canonical text, Arrow and dict forms;
- ``hash_rows``: polars' ``DataFrame.hash_rows`` (what was used before; stable only within a polars version);
- ``blake2b``: hashlib blake2b-64 of the same canonical text, one call per row (the obvious stable alternative).
Outputs are checked: the two row_hashes forms agree; blake2b and hash_rows are not comparable (other functions).
No timing assertion.

Run: ``.venv/bin/python -m pytest bench/bench_digests.py -s`` (or ``.venv/bin/python bench/bench_digests.py``).
"""
from __future__ import annotations

import hashlib
import os
import time

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from grid.imports.files import row_hashes

ROWS = int(os.environ.get("BENCH_DIGEST_ROWS", "50000"))


def make_rows(n: int) -> pa.Table:
    return pa.table({"sp": [f"S{i % 1000:08d}" for i in range(n)],
                     "ts": [f"2026-01-{1 + i % 28:02d}T{i % 24:02d}:00:00Z" for i in range(n)],
                     "wh": [str(i % 5000) for i in range(n)]})


def blake2b(table: pa.Table) -> np.ndarray:
    names = sorted(table.column_names)
    cols = [table.column(c).to_pylist() for c in names]
    out = np.empty(table.num_rows, np.uint64)
    for i, values in enumerate(zip(*cols)):
        text = "".join(f"{c}\x1f{v}\x1e" for c, v in zip(names, values) if v is not None).encode()
        out[i] = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")
    return out


PEERS = {
    "row_hashes (arrow)": lambda t, d: row_hashes(t),
    "row_hashes (dicts)": lambda t, d: row_hashes(d),
    "hash_rows": lambda t, d: pl.from_arrow(t).hash_rows(seed=11).to_numpy(),
    "blake2b": lambda t, d: blake2b(t),
}
_times: dict[str, float] = {}


@pytest.fixture(scope="module")
def data():
    t = make_rows(ROWS)
    return t, t.to_pylist()


@pytest.mark.parametrize("peer", list(PEERS))
def test_digests(benchmark, data, peer):
    benchmark.group = f"row digests, {ROWS} rows"
    out = benchmark.pedantic(PEERS[peer], args=data, rounds=5, iterations=1)
    _times[peer] = benchmark.stats.stats.min
    assert out.shape == (ROWS,)
    if peer == "row_hashes (dicts)":
        assert out.tolist() == row_hashes(data[0]).tolist()


def test_report():
    if "hash_rows" in _times:
        for peer, t in _times.items():
            print(f"{peer:20s} {t * 1e3:8.1f} ms  {t / _times['hash_rows']:5.1f}x hash_rows")


if __name__ == "__main__":
    t = make_rows(ROWS)
    d = t.to_pylist()
    for name, fn in PEERS.items():
        best = min((lambda s: (fn(t, d), time.perf_counter() - s)[1])(time.perf_counter()) for _ in range(5))
        print(f"{name:20s} {best * 1e3:8.1f} ms")
