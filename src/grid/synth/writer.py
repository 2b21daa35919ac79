"""Parquet layout of a generated base: schemas, one part per chunk per folder, truth files streamed.

Part ``N`` of every folder holds chunk ``N``'s customers, so a loader can read chunk by chunk (and a shard keep
only its partitions) without a join across files. A chunk's tables are written as soon as the chunk is done and
then dropped; the two truth files are written a row group per chunk through an open ``ParquetWriter``, so no
table of the whole base is ever built. ``manifest.json`` is written last: a base without one is incomplete.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from grid.errors import InvalidInput
from grid.synth import churn as churn_truth

LINE = pa.struct([("code", pa.string()), ("quantity", pa.int64()), ("unit", pa.string()),
                  ("amount_cents", pa.int64())])
UTC_US = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "customers": pa.schema([("customer_id", pa.string()), ("name", pa.string()), ("kind", pa.string()),
                            ("segment", pa.string()), ("created_at", UTC_US), ("entity_id", pa.string()),
                            ("attributes", pa.string()), ("contacts", pa.string()), ("events", pa.string())]),
    "accounts": pa.schema([("account_id", pa.string()), ("customer_id", pa.string()), ("status", pa.string()),
                           ("rate_plan_id", pa.string()), ("bill_cycle_day", pa.int32()),
                           ("billing_address", pa.string()), ("programs", pa.string())]),
    "service_points": pa.schema([("service_point_id", pa.string()), ("account_id", pa.string()),
                                 ("customer_id", pa.string()), ("premise_address", pa.string()),
                                 ("meter_id", pa.string()), ("interval_minutes", pa.int32()),
                                 ("has_solar", pa.bool_()), ("load_priority", pa.string())]),
    "usage": pa.schema([("service_point_id", pa.string()), ("customer_id", pa.string()),
                        ("import_wh", pa.list_(pa.int32())), ("export_wh", pa.list_(pa.int32()))]),
    "entities": pa.schema([("entity_id", pa.string()), ("legal_name", pa.string()), ("tax_id", pa.string()),
                           ("mailing_address", pa.string()), ("parent_entity_id", pa.string())]),
    "bills": pa.schema([("bill_id", pa.string()), ("account_id", pa.string()), ("customer_id", pa.string()),
                        ("period_start", pa.date32()), ("period_end", pa.date32()), ("lines", pa.list_(LINE)),
                        ("total_cents", pa.int64())]),
    "payments": pa.schema([("payment_id", pa.string()), ("customer_id", pa.string()), ("account_id", pa.string()),
                           ("date", pa.date32()), ("amount_cents", pa.int64()), ("method", pa.string())]),
    "bill_errors": pa.schema([("bill_id", pa.string()), ("account_id", pa.string()), ("period_start", pa.date32()),
                              ("error_kind", pa.string())]),
    "portfolios": pa.schema([("entity_id", pa.string()), ("portfolio_key", pa.string()),
                             ("link_kind", pa.string())]),
}
SCHEMAS["churn"] = churn_truth.SCHEMA  # churn: planted churners (grid.synth.churn)
FOLDERS = ("customers", "accounts", "service_points", "entities", "bills", "payments")
JSON_COLUMNS = {"customers": ("attributes", "contacts", "events"), "accounts": ("programs",)}
MAX_LIST_VALUES = 2**31 - 1  # list<int32> offsets are int32


def dumps(obj) -> str:
    """Compact JSON; dicts keep insertion order, which the generator fixes, so output is byte-stable."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def table(name: str, columns: dict[str, list]) -> pa.Table:
    """A table of ``SCHEMAS[name]`` from column lists; JSON-text columns are serialized here."""
    schema = SCHEMAS[name]
    arrays = []
    for f in schema:
        values = columns[f.name]
        if f.name in JSON_COLUMNS.get(name, ()):
            values = [dumps(v) for v in values]
        arrays.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def usage_table(sp_ids: list[str], customer_ids: list[str], import_wh: np.ndarray, export_wh: np.ndarray,
                has_solar: np.ndarray) -> pa.Table:
    """One month: a list<int32> per service point; export null where the service point has no solar.

    Built from flat numpy buffers and offsets, not from Python lists (a chunk-month is millions of values).
    """
    n, t = import_wh.shape
    if n * t > MAX_LIST_VALUES:
        raise InvalidInput(f"a chunk-month of {n} service points x {t} intervals overflows Parquet list offsets; "
                           "use a smaller chunk_customers", field="chunk_customers")
    offsets = pa.array(np.arange(0, (n + 1) * t, t, dtype=np.int32) if t else np.zeros(n + 1, np.int32))
    imp = pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(import_wh, dtype=np.int32).ravel()))
    solar = np.asarray(has_solar, dtype=bool)
    exp_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.where(solar, t, 0), out=exp_offsets[1:])
    values = np.ascontiguousarray(export_wh[solar], dtype=np.int32).ravel()
    exp = pa.ListArray.from_arrays(pa.array(exp_offsets), pa.array(values), mask=pa.array(~solar))
    schema = SCHEMAS["usage"]
    return pa.Table.from_arrays([pa.array(sp_ids, pa.string()), pa.array(customer_ids, pa.string()), imp, exp],
                                schema=schema)


class BaseWriter:
    """Writes the parts of one base under ``root``; see the module docstring for the layout."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._truth: dict[str, pq.ParquetWriter] = {}
        self.parts_written: list[tuple[str, int]] = []  # (folder, chunk), in write order: tests check streaming

    def clear(self) -> None:
        """Remove what an earlier run left in the layout's own folders (never anything else)."""
        (self.root / "manifest.json").unlink(missing_ok=True)  # first: a half-overwritten base is incomplete
        for folder in FOLDERS:
            for p in (self.root / folder).glob("part-*.parquet"):
                p.unlink()
        for p in (self.root / "usage").glob("*/part-*.parquet"):
            p.unlink()
        for p in (self.root / "truth").glob("*.parquet"):
            p.unlink()
        for p in (self.root / "tariffs").glob("*.json"):
            p.unlink()

    def _options(self, name: str) -> dict:
        if name == "usage":  # noisy integers: dictionary pages only cost time
            return {"compression": "zstd", "use_dictionary": ["customer_id"], "write_statistics": False}
        return {"compression": "zstd"}

    def write_part(self, folder: str, chunk: int, tbl: pa.Table) -> Path:
        path = self.root / folder / f"part-{chunk:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        name = "usage" if folder.startswith("usage/") else folder
        pq.write_table(tbl, path, **self._options(name))
        self.parts_written.append((folder, chunk))
        return path

    def write_truth(self, name: str, tbl: pa.Table) -> None:
        w = self._truth.get(name)
        if w is None:
            path = self.root / "truth" / f"{name}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            w = self._truth[name] = pq.ParquetWriter(path, SCHEMAS[name], compression="zstd")
        if tbl.num_rows:
            w.write_table(tbl)

    def write_json(self, relative: str, obj) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        tmp.replace(path)

    def close(self) -> None:
        for name in ("bill_errors", "portfolios"):
            if name not in self._truth:  # an empty truth file still has its schema
                self.write_truth(name, SCHEMAS[name].empty_table())
        for w in self._truth.values():
            w.close()
        self._truth.clear()
