"""Usage batches: rows linked by service point (or meter) and routed to their shards as packed columns.

# Design: a meter file is a few hundred or thousand service points read over and over, so a batch of 250k
# readings is handled as codes into its distinct points: the point column is dictionary-encoded once
# (pyarrow), each distinct point is looked up once (and remembered for the rest of the file: a point that
# changes customer meanwhile is refused by its old customer's shard and quarantined, replayable), and
# customer, shard and service point of every row are numpy gathers over those codes. Each shard's rows then
# go as one ``import_rows`` op with its integer columns packed (``grid.imports.columns``). Measured on a
# 250k-row batch: ~10 ms here, where linking and routing by the rows' strings (polars ``replace_strict``,
# ``unique``, per-shard ``filter``) took ~60 ms.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow.compute as pc

from grid.imports.columns import pack_ints
from grid.partitions import partitions_of

KEY_COLUMNS = (("id.service_point_id", "service_point_id"), ("usage.service_point_id", "service_point_id"),
               ("id.meter_id", "meter_id"))
NUMBERS = ("usage.start", "usage.import_wh", "usage.export_wh", "usage.duration")


@dataclass
class Points:
    """A usage batch's rows as codes into its distinct point keys, and what each key resolved to."""

    key: str  # "service_point_id" | "meter_id"
    codes: np.ndarray  # int64 per row: index into ``values``
    values: list  # distinct key values (None: rows that name no point)
    customers: list  # per value: customer id or None (unresolved)
    service_points: list  # per value: the service point (a meter's point) or None

    def customer_codes(self) -> tuple[list[str], np.ndarray]:
        """(distinct customers, per row: index into them or -1 when unresolved)."""
        names: dict[str, int] = {}
        of_value = np.array([-1 if c is None else names.setdefault(c, len(names)) for c in self.customers],
                            np.int64)
        return list(names), of_value[self.codes]


def point_codes(frame: pl.DataFrame) -> tuple[str, list, np.ndarray]:
    """(key kind, distinct values, per-row codes) of the column usage rows are linked by."""
    kind = next(((col, key) for col, key in KEY_COLUMNS if col in frame.columns), None)
    if kind is None:
        return "service_point_id", [None], np.zeros(frame.height, np.int64)
    # nulls encoded as a value of their own (None): the codes then have no nulls and come out zero-copy
    enc = pc.dictionary_encode(frame.get_column(kind[0]).cast(pl.String).to_arrow(), null_encoding="encode")
    idx = enc.indices  # read from its buffer: Array.to_numpy imports pandas (0.3 s, once per process)
    width = idx.type.bit_width // 8
    codes = np.frombuffer(idx.buffers()[1], dtype=f"<i{width}", count=len(idx), offset=idx.offset * width)
    return kind[1], enc.dictionary.to_pylist(), codes.astype(np.int64)


async def link(grid, frame: pl.DataFrame, known: dict | None = None) -> Points:
    """Resolve each distinct point of a batch: ``known`` (key, value) -> (customer, service point) first, then
    one key lookup over the shards for the rest; what is found is added to ``known``."""
    known = {} if known is None else known
    key, values, codes = point_codes(frame)
    missing = [v for v in values if v is not None and (key, v) not in known]
    if missing:
        found = (await grid.aimport_keys({key: missing})).get(key, {})
        for v, hit in found.items():
            known[(key, v)] = (hit[0], hit[1])
    hits = [known.get((key, v)) for v in values]
    return Points(key, codes, values, [h[0] if h else None for h in hits], [h[1] if h else None for h in hits])


def _recode(codes: np.ndarray, values: list) -> dict:
    """A text column of ``values[codes]`` as the op's dictionary, only the values these rows use."""
    used = np.flatnonzero(np.bincount(codes, minlength=len(values))) if codes.size else np.zeros(0, np.int64)
    remap = np.full(len(values), -1, np.int64)
    remap[used] = np.arange(used.size)
    return {"values": [values[u] for u in used], "codes": pack_ints(remap[codes])}


def usage_ops(grid, source: str, position: dict, first: int, frame: pl.DataFrame, offsets: np.ndarray,
              good: np.ndarray, points: Points, cids: list[str], row_cid: np.ndarray,
              raw: list[str] | None = None) -> list[tuple[int, dict]]:
    """One ``import_rows`` op per shard for the rows ``good`` (indices into ``frame``; ``offsets`` per frame
    row, ``first`` the batch's first offset), routed by the grid's current table (a push skips shards with no
    rows: it is never resumed by position). ``raw``: the good rows' text, carried for a batch that cannot be
    read again at its source (see grid.imports.apply)."""
    table = grid.table
    owner = np.asarray(table.owner, dtype=np.int64)
    shard_of = owner[partitions_of(cids)] if cids else np.zeros(0, np.int64)
    row_shard = shard_of[row_cid[good]] if good.size else np.zeros(0, np.int64)
    numbers = {c: frame.get_column(c).fill_null(0).cast(pl.Int64).to_numpy() for c in NUMBERS if c in frame.columns}
    last = int(position["offset"])
    pushed = str(position["stream"]).startswith("push")
    ops = []
    for s in range(len(grid.shards)):
        mine = np.flatnonzero(row_shard == s)
        rows = good[mine]
        if pushed and rows.size == 0:
            continue
        wid = hashlib.sha1(f"{source}|{position['stream']}|{first}|{last}|{s}|{table.version}".encode()).hexdigest()
        columns = {c: pack_ints(v[rows]) for c, v in numbers.items()}
        columns["service_point_id"] = _recode(points.codes[rows], points.service_points)
        body = {"source": source, "position": position, "action": "usage", "offsets": pack_ints(offsets[rows]),
                "customer_id": _recode(row_cid[rows], cids), "digest": [], "columns": columns}
        if raw is not None:
            body["raw"] = [raw[j] for j in mine.tolist()]
        ops.append((s, {"kind": "import_rows", "customer_id": None, "write_id": wid, "body": body}))
    return ops
