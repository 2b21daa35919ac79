"""Bill outcomes held on a shard: the latest outcome of every account a bill run billed, per period.

The state of the ``bill_outcomes`` write kind (see ``grid.shard.OPS``): changed only through the shard's log,
held by its snapshots (:meth:`BillOutcomes.to_blob`) and its checksum (:meth:`BillOutcomes.digest`).
"""
from __future__ import annotations

import hashlib

import msgpack
import pyarrow as pa
import pyarrow.compute as pc

from kernels.reconcile import OUTCOMES

# Outcomes of a run, by code: the reconciliation kernel's, then the accounts a run could not bill.
RUN_OUTCOMES = OUTCOMES + ("no_tariff", "no_usage")
NO_TARIFF, NO_USAGE = len(OUTCOMES), len(OUTCOMES) + 1


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


class BillOutcomes:
    """The shard's bill outcomes: per period, the latest outcome of every account a run billed.

    One entry per (period, chunk of the run): a re-run of the same chunk replaces its entry. Each
    entry is a table (account_id, outcome int8 into :data:`RUN_OUTCOMES`, diff_cents). Changed only by
    ``bill_outcomes`` writes (logged, snapshotted through :meth:`to_blob`).
    """

    def __init__(self):
        self.runs: dict[str, dict[str, pa.Table]] = {}
        self._positions: dict[int, dict[str, int]] = {}  # id(table) -> account -> row (built on first read)

    def apply(self, body: dict) -> dict:
        key = "all" if body.get("chunk") is None else "{}/{}".format(*body["chunk"])
        table = from_ipc(body["table"])
        per = self.runs.setdefault(body["period"], {})
        old = per.pop(key, None)
        if old is not None:
            self._positions.pop(id(old), None)
        per[key] = table
        return {"period": body["period"], "accounts": table.num_rows}

    def status(self, period: str, account_id: str) -> str | None:
        """The latest run's outcome for an account's bill; None if no run billed it."""
        for table in reversed(list(self.runs.get(period, {}).values())):
            pos = self._positions.get(id(table))
            if pos is None:
                pos = self._positions[id(table)] = {a: i for i, a in enumerate(table.column(0).to_pylist())}
            i = pos.get(account_id)
            if i is not None:
                return RUN_OUTCOMES[table.column("outcome")[i].as_py()]
        return None

    # -- moving partitions: the outcomes of the moved customers' accounts go with them ----------------------
    def export(self, account_ids: set[str]) -> dict:
        """Per period, per run entry, the rows of ``account_ids`` (IPC bytes: the payload crosses Ray)."""
        keep = pa.array(sorted(account_ids), pa.string())
        out: dict[str, list] = {}
        for period, per in self.runs.items():
            for key, t in per.items():
                part = t.filter(pc.is_in(t.column(0), value_set=keep))
                if part.num_rows:
                    out.setdefault(period, []).append([key, to_ipc(part)])
        return out

    def absorb(self, part: dict | None) -> None:
        """Take exported rows. They go under ``moved/<key>`` entries placed after this shard's own, so a
        moved account reads its source's outcome, and a later run here (which re-inserts its entry last)
        overrides it."""
        for period, entries in (part or {}).items():
            per = self.runs.setdefault(period, {})
            for key, data in entries:
                table = from_ipc(data)
                old = per.pop(f"moved/{key}", None)
                if old is not None:
                    self._positions.pop(id(old), None)
                    table = pa.concat_tables([old, table]).combine_chunks()
                per[f"moved/{key}"] = table

    def drop(self, account_ids: set[str]) -> None:
        """Forget the outcomes of ``account_ids`` (their customers moved to another shard)."""
        gone = pa.array(sorted(account_ids), pa.string())
        for period in list(self.runs):
            per = self.runs[period]
            for key, t in list(per.items()):
                self._positions.pop(id(t), None)
                kept = t.filter(pc.invert(pc.is_in(t.column(0), value_set=gone)))
                if kept.num_rows:
                    per[key] = kept
                else:
                    del per[key]
            if not per:
                del self.runs[period]

    def to_blob(self) -> bytes:
        return msgpack.packb({p: [[k, to_ipc(t)] for k, t in per.items()] for p, per in self.runs.items()},
                             use_bin_type=True)

    @classmethod
    def from_blob(cls, blob: bytes) -> "BillOutcomes":
        out = cls()
        for period, per in msgpack.unpackb(blob, raw=False).items():
            out.runs[period] = {k: from_ipc(t) for k, t in per}
        return out

    def digest(self) -> bytes:
        """A stable digest of every outcome held (for the shard's restart checksum)."""
        h = hashlib.sha256()
        for period in sorted(self.runs):
            for key in sorted(self.runs[period]):
                t = self.runs[period][key]
                h.update(f"{period}/{key}".encode())
                for col in t.columns:
                    h.update(repr(col.to_pylist()).encode())
        return h.digest()
