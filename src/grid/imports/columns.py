"""Columns of an ``import_rows`` op: integers packed (narrowest integer type, deltas when narrower, zstd), and
every column decoded on the shard (:func:`ints`, :func:`text`, :func:`take_rows`, :func:`column_length`).

# Design: an import batch travels to its shards (Ray) and into their WAL as columns, and every WAL byte is
# written and fsynced before the batch is acknowledged. As int64 a usage row costs 28 bytes (row offset, start,
# Wh, service point code): a 10M-row meter file wrote 280 MB of WAL, longer on this machine's disk (~140 MB/s
# with fsync) than parsing the file. A packed column is held in the narrowest integer type its values (or its
# deltas, when those are narrower: row offsets ascend, starts repeat within an hour) fit, then compressed with
# zstd level 1 (pyarrow's codec: no new dependency). Readings of random 0..4999 Wh pack to ~2 bytes a row, the
# offsets, starts and codes to a fraction of a byte. Packing a 125k-row column takes about a millisecond.
# Decoding is exact and deterministic (a WAL replay decodes the same bytes to the same int64 values).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from grid.errors import InvalidInput

CODEC = "zstd"
MIN_COMPRESS = 4096  # bytes: below this a column goes as it is (compression would not pay for its header)
_TYPES = (np.int8, np.int16, np.int32, np.int64)
_codec = pa.Codec(CODEC, compression_level=1)


def _narrow(lo: int, hi: int) -> type:
    for t in _TYPES:
        info = np.iinfo(t)
        if info.min <= lo and hi <= info.max:
            return t
    return np.int64


def pack_ints(values) -> dict:
    """An integer column packed for an op: ``{"packed": 1, "n", "dtype", "first", "delta", "zstd", "data"}``.

    ``values`` is any 1-d integer array (int64 range). See the module's design note.
    """
    a = np.ascontiguousarray(values, dtype=np.int64)
    n = int(a.size)
    out = {"packed": 1, "n": n, "dtype": "i1", "first": 0, "delta": False, "zstd": False, "data": b""}
    if n == 0:
        return out
    lo, hi = int(a.min()), int(a.max())
    t = _narrow(lo, hi)
    body = a
    if n > 1 and hi - lo < (1 << 62):  # deltas cannot overflow int64
        d = np.diff(a)
        td = _narrow(int(d.min()), int(d.max()))
        if np.dtype(td).itemsize < np.dtype(t).itemsize:
            t, body, out["delta"], out["first"] = td, d, True, int(a[0])
    raw = body.astype(np.dtype(t).newbyteorder("<"), copy=False).tobytes()
    out["dtype"] = np.dtype(t).str[1:]
    if len(raw) >= MIN_COMPRESS:
        out["data"], out["zstd"] = _codec.compress(raw, asbytes=True), True
    else:
        out["data"] = raw
    return out


def is_packed(values) -> bool:
    return isinstance(values, dict) and values.get("packed") == 1


def unpack_ints(p: dict) -> np.ndarray:
    """The int64 values of a packed column (:func:`pack_ints`); raises ``InvalidInput`` if it is damaged."""
    n = int(p["n"])
    if n == 0:
        return np.zeros(0, np.int64)
    dtype = np.dtype("<" + str(p["dtype"]))
    size = (n - 1 if p["delta"] else n) * dtype.itemsize
    try:
        raw = _codec.decompress(p["data"], decompressed_size=size, asbytes=True) if p["zstd"] else p["data"]
    except (pa.ArrowException, ValueError) as exc:
        raise InvalidInput(f"packed column does not decompress: {exc}", field="body.columns") from exc
    if len(raw) != size:
        raise InvalidInput(f"packed column holds {len(raw)} bytes, expected {size}", field="body.columns")
    body = np.frombuffer(raw, dtype=dtype)
    if not p["delta"]:
        return body.astype(np.int64)
    out = np.empty(n, np.int64)
    out[0] = int(p["first"])
    np.cumsum(body, dtype=np.int64, out=out[1:])
    out[1:] += out[0]
    return out


# -- decoding on the shard (grid.imports.apply) ------------------------------------------------------------
def ints(values) -> np.ndarray:
    """A column of integers as the importer sends it: packed (:func:`pack_ints`), little-endian int64 bytes,
    or a list."""
    if isinstance(values, (bytes, bytearray, memoryview)):
        return np.frombuffer(values, dtype="<i8")
    if is_packed(values):
        return unpack_ints(values)
    return np.asarray(values, dtype=np.int64)


def text(values) -> tuple[list, np.ndarray]:
    """A column of text as (distinct values, int64 codes into them).

    The importer sends busy text columns (service point, customer of 50k readings of a few hundred meters)
    dictionary-encoded, ``{"values": [...], "codes": <int32 bytes>}``: Ray and the WAL then carry a few hundred
    strings, not 50k, and the shard checks each distinct value once. A plain list is encoded here.
    """
    if isinstance(values, dict):
        codes = values["codes"]
        if isinstance(codes, (bytes, bytearray, memoryview)):
            codes = np.frombuffer(codes, dtype="<i4")
        elif is_packed(codes):
            codes = unpack_ints(codes)
        return list(values["values"]), np.asarray(codes, dtype=np.int64)
    index: dict = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), np.int64, len(values))
    return list(index), codes


def take_rows(values, rows: np.ndarray):
    """Rows ``rows`` of a column in any of its encodings."""
    if isinstance(values, (bytes, bytearray, memoryview)) or is_packed(values):
        return ints(values)[rows]
    if isinstance(values, dict):
        vals, codes = text(values)
        return {"values": vals, "codes": codes[rows]}
    return [values[i] for i in rows]


def column_length(values) -> int:
    if isinstance(values, (bytes, bytearray, memoryview)):
        return len(values) // 8
    if is_packed(values):
        return int(values["n"])
    if isinstance(values, dict):
        codes = values.get("codes")
        return int(codes["n"]) if is_packed(codes) else len(text(values)[1])
    return len(values)
