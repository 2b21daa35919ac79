"""Reading a generated (or exported) customer base from its Parquet layout.

Layout (written by grid.synth): ``manifest.json`` and folders ``customers``, ``accounts``, ``service_points``,
``entities``, ``bills``, ``payments`` and ``usage/<YYYY-MM>``, each with ``part-<chunk>.parquet``; part N of every
folder holds the same customers. A shard reads each chunk itself and keeps only the customers of its own
partitions, so loading runs on every shard at once and nothing passes through the driver.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from grid.errors import InvalidInput, NotFound
from grid.partitions import partitions_of


def read_manifest(base_dir: str | Path) -> dict:
    path = Path(base_dir) / "manifest.json"
    if not path.exists():
        raise NotFound(f"no customer base at {base_dir} (manifest.json missing)", field="base_dir")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise InvalidInput(f"{path} is not valid JSON", field="manifest.json") from exc


def _part(base: Path, folder: str, chunk: int) -> Path:
    return base / folder / f"part-{chunk:05d}.parquet"


def _read(base: Path, folder: str, chunk: int) -> pa.Table | None:
    path = _part(base, folder, chunk)
    return pq.read_table(path) if path.exists() else None


def _keep(table: pa.Table | None, partitions: np.ndarray) -> pa.Table | None:
    """Rows of ``table`` whose customer falls in ``partitions`` (bool mask over all partitions)."""
    if table is None or table.num_rows == 0:
        return table
    parts = partitions_of(table.column("customer_id").to_pylist())
    return table.filter(pa.array(partitions[parts]))


def read_entities(base_dir: str | Path) -> dict[str, dict]:
    """Every ownership entity of the base by id (small: about one per customer)."""
    out: dict[str, dict] = {}
    folder = Path(base_dir) / "entities"
    for path in sorted(folder.glob("part-*.parquet")):
        for e in pq.read_table(path).to_pylist():
            out[e["entity_id"]] = e
    return out


def ownership_chain(entity_id: str | None, entities: dict[str, dict]) -> list[dict]:
    """The owning entity followed by its parents up to the root (cycles cut)."""
    chain, seen = [], set()
    while entity_id and entity_id not in seen and entity_id in entities:
        seen.add(entity_id)
        e = entities[entity_id]
        chain.append({k: e.get(k) for k in ("entity_id", "legal_name", "tax_id", "mailing_address",
                                            "parent_entity_id")})
        entity_id = e.get("parent_entity_id")
    return chain


@dataclass
class Chunk:
    """The part of one chunk that belongs to one shard."""

    records: list[dict] = field(default_factory=list)
    sp_ids: list[str] = field(default_factory=list)
    sp_interval: list[int] = field(default_factory=list)
    sp_solar: list[bool] = field(default_factory=list)
    usage: dict[str, tuple[list[str], np.ndarray, np.ndarray | None, np.ndarray]] = field(default_factory=dict)
    bills: pa.Table | None = None


def read_chunk(base_dir: str | Path, chunk: int, partitions: np.ndarray, entities: dict[str, dict],
               months: list[str]) -> Chunk:
    """Read chunk ``chunk`` keeping customers whose partition is set in ``partitions`` (bool, per partition)."""
    base = Path(base_dir)
    out = Chunk()
    customers = _keep(_read(base, "customers", chunk), partitions)
    if customers is None or customers.num_rows == 0:
        return out
    accounts = _keep(_read(base, "accounts", chunk), partitions)
    sps = _keep(_read(base, "service_points", chunk), partitions)
    payments = _keep(_read(base, "payments", chunk), partitions)

    sp_by_account = defaultdict(list)
    for sp in sps.to_pylist():
        sp_by_account[sp.pop("account_id")].append(
            {k: sp[k] for k in ("service_point_id", "premise_address", "meter_id", "interval_minutes",
                                "has_solar", "load_priority")})
        out.sp_ids.append(sp["service_point_id"])
        out.sp_interval.append(int(sp["interval_minutes"]))
        out.sp_solar.append(bool(sp["has_solar"]))
    accounts_by_customer = defaultdict(list)
    for a in accounts.to_pylist():
        cid = a.pop("customer_id")
        a["programs"] = json.loads(a["programs"]) if a.get("programs") else []
        a["service_points"] = sp_by_account.get(a["account_id"], [])
        accounts_by_customer[cid].append(a)
    payments_by_customer = defaultdict(list)
    if payments is not None:
        for p in payments.to_pylist():
            cid = p.pop("customer_id")
            p["date"] = p["date"].isoformat()
            payments_by_customer[cid].append(p)
    for c in customers.to_pylist():
        cid = c["customer_id"]
        out.records.append({
            "customer_id": cid, "name": c["name"], "kind": c["kind"], "segment": c["segment"],
            "created_at": c["created_at"].isoformat() if hasattr(c["created_at"], "isoformat") else c["created_at"],
            "version": 1,
            "attributes": json.loads(c["attributes"]) if c.get("attributes") else {},
            "ownership": ownership_chain(c.get("entity_id"), entities),
            "accounts": accounts_by_customer.get(cid, []),
            "contacts": json.loads(c["contacts"]) if c.get("contacts") else [],
            "payments": payments_by_customer.get(cid, []),
            "events": json.loads(c["events"]) if c.get("events") else [],
            "notes": [],
            "supplemental": {"projects": []},
            "classification": {},
        })
    for month in months:
        t = _keep(_read(base, f"usage/{month}", chunk), partitions)
        if t is None or t.num_rows == 0:
            continue
        imp = _list_matrix(t.column("import_wh"))
        exp_col = t.column("export_wh")
        has_exp = pc.invert(pc.is_null(exp_col)).to_numpy(zero_copy_only=False)
        exp = None
        if has_exp.any():
            exp = np.zeros_like(imp)
            exp[has_exp] = _list_matrix(exp_col.filter(pa.array(has_exp)))
        out.usage[month] = (t.column("service_point_id").to_pylist(), imp, exp, has_exp)
    out.bills = _keep(_read(base, "bills", chunk), partitions)
    return out


def _list_matrix(col) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if arr.null_count:
        raise InvalidInput("usage list has nulls", field="import_wh")
    flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
    n = len(arr)
    if n == 0:
        return np.zeros((0, 0), np.int32)
    return flat.astype(np.int32, copy=False).reshape(n, -1)
