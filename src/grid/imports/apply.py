"""The ``import_rows`` op: one batch's rows for one shard, and the source position they reach, applied as one.

Op body (built by ``grid.imports.batch_writer`` and ``grid.imports.routing``; columnar, so a WAL record of 50k
usage rows stays compact)::

    {"source": str, "position": {"stream", "offset", ...}, "action": "usage" | "upsert" | "bill" | ...,
     "offsets": [int], "customer_id": [str], "digest": [str], "columns": {field: [value]}}

Integer columns (offsets, usage numbers, text codes) may come as int64 bytes or packed
(``grid.imports.columns``: narrow, delta, zstd: a usage row costs ~2 WAL bytes instead of 28).

:func:`prepare` checks the op's shape and that every customer is on this shard (else ``WrongShard``: the
importer re-routes) and changes nothing. :func:`apply` is deterministic in ``(state, op)``, so a WAL replay
rebuilds the same state: rows at or below the stream's stored offset are skipped (already applied), each
remaining row is checked against the state and then either applied whole or refused whole (kept with its
field and reason for the quarantine); the position moves in the same step. Each touched customer's version
goes up once and its change is logged (the gateway's near cache and the key index follow the change log).

This module is the op's shape and driver; what the new rows do is in ``grid.imports.usage_rows`` (usage) and
``grid.imports.record_actions`` (the other actions); the columns' encodings are ``grid.imports.columns``.
"""
from __future__ import annotations

import datetime as dt

import numpy as np

from grid.errors import InvalidInput, WrongShard
from grid.imports import record_actions, usage_rows
from grid.imports.columns import column_length, ints, take_rows, text

KIND = "import_rows"


def prepare(shard, op: dict) -> dict:
    body = op.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("position"), dict):
        raise InvalidInput("import_rows needs a body with a position", field="body.position")
    n = column_length(body["offsets"])
    if column_length(body["customer_id"]) != n or any(column_length(v) != n for v in body["columns"].values()) or \
            len(body.get("raw") or ()) not in (0, n):
        raise InvalidInput("import_rows columns differ in length", field="body.columns")
    for cid in text(body["customer_id"])[0]:
        if not shard.owns(cid):
            raise WrongShard(f"customer {cid} is not on shard {shard.shard_id}", retry_after=1)
    op.setdefault("at", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    return op


def apply(shard, op: dict) -> tuple[dict, list[str]]:
    body = op["body"]
    st = shard.imports
    source, position = body["source"], body["position"]
    done = st.offset(source, str(position["stream"]))
    offsets = ints(body["offsets"])
    fresh = np.flatnonzero(offsets > done)
    refused: list[dict] = []
    touched: dict[str, int] = {}
    unchanged = 0
    if fresh.size:
        cols, cids = body["columns"], body["customer_id"]
        if fresh.size < offsets.size:  # part of the batch was applied before (a resumed stream)
            cols = {k: take_rows(v, fresh) for k, v in cols.items()}
            cids = take_rows(cids, fresh)
        offs = offsets[fresh]
        digests = [body["digest"][i] for i in fresh] if body.get("digest") else [""] * int(fresh.size)
        if body["action"] == "usage":
            refused, unchanged = usage_rows.apply_usage(shard, cids, offs, cols, touched)
        else:
            vals, codes = text(cids)
            cids = [vals[c] for c in codes]
            cols = {k: (lambda v, c: [v[i] for i in c])(*text(v)) if isinstance(v, dict) else v
                    for k, v in cols.items()}
            unchanged = record_actions.apply_records(shard, body["action"], cids, offs, digests, cols, op["at"], refused, touched)
    raw = body.get("raw")
    at = {int(o): k for k, o in enumerate(offsets.tolist())} if raw and refused else {}
    for r in refused:
        r["stream"] = position["stream"]
        # a batch that cannot be read again at its source carries its raw rows: the refusal keeps its row, so
        # the quarantine entry can be rebuilt if the importer's own write is lost (grid.imports.quarantine)
        r["row"] = raw[at[r["offset"]]] if at else None
    st.reject(source, refused)
    st.advance(source, position)
    applied = int(fresh.size) - len(refused) - unchanged
    st.applied_rows[source] = st.applied_rows.get(source, 0) + applied
    # the shard's apply path re-classifies each touched customer, bumps its version once and logs the change
    result = {"applied": applied, "unchanged": unchanged, "skipped": int(offsets.size - fresh.size),
              "refused": refused, "customers": len(touched)}
    if str(position["stream"]).startswith("push"):
        # a push's few customers with the version this op gives them (the one bump that follows): the gateway
        # raises its near cache's floor to it before it answers, so a read after the receipt sees the rows
        result["versions"] = {c: shard.records[c]["version"] + 1 for c in touched if c in shard.records}
    if op.get("audit") and fresh.size:  # audit (an HTTP push): each customer's rows, for its entry (grid.audit)
        result["audit_rows"] = rows_per_customer(body, fresh, refused)
    return result, list(touched)


def rows_per_customer(body: dict, fresh: np.ndarray, refused: list[dict]) -> dict[str, dict]:
    """customer -> {"accepted", "quarantined"}: the op's new rows of each customer, and those refused."""
    vals, codes = text(body["customer_id"])
    codes = codes[fresh]
    bad = np.isin(ints(body["offsets"])[fresh], np.fromiter((r["offset"] for r in refused), np.int64, len(refused)))
    n, q = np.bincount(codes, minlength=len(vals)), np.bincount(codes[bad], minlength=len(vals))
    return {vals[c]: {"accepted": int(n[c] - q[c]), "quarantined": int(q[c])} for c in np.flatnonzero(n)}
