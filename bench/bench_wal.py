"""Cost of durability: WAL throughput and p99 acknowledgement latency per fsync policy; snapshot and replay times.

WAL: BENCH_WAL_WRITERS (64) asyncio tasks on one event loop, each appending ~300-byte records and awaiting
its acknowledgement, as the shard actor's handlers do; every policy runs BENCH_WAL_ROUNDS (2) rounds of
BENCH_WAL_SECONDS (3 s), interleaved so that a noisy neighbour hurts all policies alike, and the best
round counts. Each run's log is replayed afterwards and checked to hold exactly the acknowledged records.
The ratio ``batch / off`` is the cost of durability (goal >= 0.5); ``always`` shows what group commit saves.
With every writer in each batch, ``batch`` cannot beat WRITERS / fsync latency, so the disk's own fsync
latency is probed and printed beside the table: on a shared disk it moves the ratio more than the code does.

Snapshots: write (hash + fsync + atomic rename) and verified load of BENCH_SNAPSHOT_MB (10,100) MB of Arrow
data; recovery is one snapshot load plus one WAL replay, both printed.

Run: ``.venv/bin/python bench/bench_wal.py`` or ``.venv/bin/python -m pytest bench/bench_wal.py -s``. Files go
to BENCH_WAL_DIR (default: the system temp dir; use a real disk, fsync on tmpfs is free). About 35 s.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grid.snapshots import SnapshotStore
from grid.wal import WriteAheadLog

WRITERS = int(os.environ.get("BENCH_WAL_WRITERS", "64"))
SECONDS = float(os.environ.get("BENCH_WAL_SECONDS", "3"))
ROUNDS = int(os.environ.get("BENCH_WAL_ROUNDS", "2"))
SNAPSHOT_MB = [int(x) for x in os.environ.get("BENCH_SNAPSHOT_MB", "10,100").split(",") if x]
POLICIES = ("off", "batch", "always")


def record(writer: int, i: int) -> dict:
    """A customer patch as the shard logs it: about 300 bytes of msgpack."""
    return {"op": "patch_customer", "customer_id": f"C{writer:03d}{i:07d}", "key": f"idem-{writer}-{i:012d}",
            "body": {"attributes": {"note": "x" * 180, "segment": "SMB"}, "kind": "commercial"},
            "at": 1_735_689_600_000 + i}


async def load(wal: WriteAheadLog, seconds: float) -> tuple[int, float, np.ndarray, dict]:
    """Closed-loop load: each writer appends, waits for its ack, appends again, until time is up."""
    latencies: list[float] = []
    acked: dict[int, tuple[int, int]] = {}
    stop = time.perf_counter() + seconds

    async def writer(w: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            seq = await wal.append_async(record(w, i))
            latencies.append(time.perf_counter() - t0)
            acked[seq] = (w, i)
            i += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    elapsed = time.perf_counter() - t0
    return len(acked), elapsed, np.array(latencies), acked


def run_policy(base: Path, policy: str, seconds: float) -> dict:
    directory = Path(tempfile.mkdtemp(prefix=f"wal-{policy}-", dir=base))
    fsyncs = 0
    real = os.fsync

    def counting(fd):
        nonlocal fsyncs
        fsyncs += 1
        return real(fd)

    os.fsync = counting
    try:
        wal = WriteAheadLog(directory, fsync=policy)
        n, elapsed, lat, acked = asyncio.run(load(wal, seconds))
        wal.close()
    finally:
        os.fsync = real
    log_bytes = sum(p.stat().st_size for p in directory.glob("*.wal"))
    t0 = time.perf_counter()
    with WriteAheadLog(directory) as reopened:
        replayed = {seq: (rec["customer_id"], rec["key"]) for seq, rec in reopened.replay()}
    replay_s = time.perf_counter() - t0
    expected = {seq: (record(w, i)["customer_id"], record(w, i)["key"]) for seq, (w, i) in acked.items()}
    assert replayed == expected, f"{policy}: replay differs from the acknowledged writes"
    shutil.rmtree(directory)
    return {"policy": policy, "writes": n, "rate": n / elapsed, "p50_ms": np.percentile(lat, 50) * 1e3,
            "p99_ms": np.percentile(lat, 99) * 1e3, "fsyncs": fsyncs, "bytes": log_bytes,
            "replay_s": replay_s}


def fsync_p50_ms(base: Path, size: int = 64 * 312, n: int = 50) -> float:
    """The disk's own fsync latency for one batch-sized append: what the batch/off ratio hinges on."""
    path = base / "probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    times = []
    for _ in range(n):
        os.write(fd, b"x" * size)
        t0 = time.perf_counter()
        os.fsync(fd)
        times.append(time.perf_counter() - t0)
    os.close(fd)
    path.unlink()
    return float(np.median(times)) * 1e3


def bench_wal(base: Path) -> dict[str, dict]:
    probe_before = fsync_p50_ms(base)
    best: dict[str, dict] = {}
    for _ in range(ROUNDS):
        for policy in POLICIES:
            seconds = SECONDS / 2 if policy == "always" else SECONDS  # ~1/20 the rate: its shape shows fast
            r = run_policy(base, policy, seconds)
            if policy not in best or r["rate"] > best[policy]["rate"]:
                best[policy] = r
    print(f"\nWAL: {WRITERS} asyncio writers, ~{len(_packed(record(0, 0)))}-byte records, best of {ROUNDS} "
          f"rounds, files in {base} ({_fs_type(base)})")
    print(f"disk: fsync of a {64 * 312 // 1024} KB append, p50 {probe_before:.2f} ms before the runs, "
          f"{fsync_p50_ms(base):.2f} ms after")
    print(f"{'policy':>8} {'writes/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'fsyncs':>8} {'writes/fsync':>13} "
          f"{'replay frames/s':>16}")
    for policy in POLICIES:
        r = best[policy]
        per_fsync = f"{r['writes'] / r['fsyncs']:.1f}" if policy != "off" else "-"  # off: close's one
        print(f"{policy:>8} {r['rate']:>10,.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['fsyncs']:>8} "
              f"{per_fsync:>13} {r['writes'] / r['replay_s']:>16,.0f}")
    off, batch, always = (best[p]["rate"] for p in POLICIES)
    print(f"ratio batch/off = {batch / off:.2f} (goal >= 0.5); batch/always = {batch / always:.1f}x")
    return best


def table_of(megabytes: int) -> pa.Table:
    """Usage-like rows (customer id, interval start, import and export Wh): about ``megabytes`` MB."""
    rows = megabytes * (1 << 20) // 34  # 8 + 8 + 8 bytes of int64 and ~10 of string data per row
    rng = np.random.default_rng(megabytes)
    ids = pc.binary_join_element_wise("C", pc.cast(pa.array(rng.integers(0, 10**8, rows)), pa.string()), "")
    return pa.table({"customer_id": ids,
                     "interval_start": pa.array(np.arange(rows, dtype=np.int64) * 900),
                     "import_wh": pa.array(rng.integers(0, 5_000, rows, dtype=np.int64)),
                     "export_wh": pa.array(rng.integers(0, 2_000, rows, dtype=np.int64))})


def bench_snapshots(base: Path) -> None:
    print(f"\nSnapshots (write = Arrow IPC + sha256 + fsync + rename; load = verify + map)")
    print(f"{'MB':>6} {'write s':>8} {'write MB/s':>11} {'load s':>8} {'load MB/s':>10}")
    for mb in SNAPSHOT_MB:
        table = table_of(mb)
        size = table.nbytes / (1 << 20)
        store = SnapshotStore(Path(tempfile.mkdtemp(prefix="snap-", dir=base)))
        t0 = time.perf_counter()
        store.write(1, {"usage": table}, {"keys": b"k" * 1024})
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        snap = store.latest()
        load_s = time.perf_counter() - t0
        assert snap is not None and snap.tables["usage"].equals(table)
        shutil.rmtree(store.directory)
        print(f"{size:>6.0f} {write_s:>8.3f} {size / write_s:>11.0f} {load_s:>8.3f} {size / load_s:>10.0f}")


def _packed(rec: dict) -> bytes:
    import msgpack
    return msgpack.packb(rec, use_bin_type=True)


def _fs_type(path: Path) -> str:
    best, kind = "", "unknown fs"
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _, point, fstype = line.split()[:3]
            if str(path.resolve()).startswith(point) and len(point) > len(best):
                best, kind = point, fstype
    return kind


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-wal-", dir=os.environ.get("BENCH_WAL_DIR")))
    try:
        bench_wal(base)
        bench_snapshots(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_bench_wal():
    main()


if __name__ == "__main__":
    main()
