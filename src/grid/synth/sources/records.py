"""The clean base, read back chunk by chunk, and the truth files every messy source writes beside itself.

A source writer sees one chunk of the generated base at a time (:class:`BaseChunk`: its customers, accounts,
service points, bills and payments as row dicts, joined the way a writer needs them), so the messy world of a
large base is written with the memory of one chunk, as the base itself was.

Truth files (``truth/<source>.csv``) all have the columns of :data:`TRUTH_COLUMNS`: the source file, the
1-based data row in it (empty for a truth row about a key, such as a meter), a key naming the record in the
source's own terms, the customer the row truly belongs to (empty: nobody, e.g. a web form from a stranger or a
vacant parcel), the owning entity where the row carries ownership, and the defects applied (``;``-separated).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from grid.base import ownership_chain

TRUTH_COLUMNS = ("file", "row", "key", "customer_id", "entity_id", "defects")


@dataclass
class BaseChunk:
    """One chunk of the clean base as rows, with the joins the source writers need."""

    index: int
    customers: list[dict]
    accounts: list[dict]
    service_points: list[dict]
    bills: list[dict]
    payments: list[dict]
    entities: dict[str, dict]  # every entity of the base (owners span chunks)
    base_dir: Path
    accounts_of: dict[str, list[dict]] = field(default_factory=dict)
    sp_of_account: dict[str, dict] = field(default_factory=dict)
    customer: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        for c in self.customers:
            self.customer[c["customer_id"]] = c
            for k in ("attributes", "contacts"):
                if isinstance(c.get(k), str):
                    c[k] = json.loads(c[k])
        for a in self.accounts:
            self.accounts_of.setdefault(a["customer_id"], []).append(a)
        for sp in self.service_points:
            self.sp_of_account[sp["account_id"]] = sp

    @classmethod
    def read(cls, base_dir: Path, chunk: int, entities: dict[str, dict]) -> "BaseChunk":
        def rows(folder: str) -> list[dict]:
            path = base_dir / folder / f"part-{chunk:05d}.parquet"
            return pq.read_table(path).to_pylist() if path.exists() else []

        return cls(chunk, rows("customers"), rows("accounts"), rows("service_points"), rows("bills"),
                   rows("payments"), entities, base_dir)

    def owner_chain(self, customer: dict) -> list[dict]:
        """The customer's owning entity followed by its parents up to the root."""
        return ownership_chain(customer.get("entity_id"), self.entities)

    def usage(self, month: str) -> list[dict]:
        """The month's usage rows of this chunk (``service_point_id``, ``import_wh``, ``export_wh`` lists)."""
        path = self.base_dir / "usage" / month / f"part-{self.index:05d}.parquet"
        return pq.read_table(path).to_pylist() if path.exists() else []


class CsvFile:
    """A CSV file written row by row (``\\n`` line ends, minimal quoting: byte-stable for one seed)."""

    def __init__(self, path: Path, columns: tuple[str, ...] | list[str], *, encoding: str = "utf-8"):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = open(path, "w", newline="", encoding=encoding)
        self._w = csv.writer(self._fh, lineterminator="\n")
        self._w.writerow(columns)
        self.rows = 0

    def write(self, row) -> int:
        """Write one row; return its 1-based data row number."""
        self._w.writerow(["" if v is None else v for v in row])
        self.rows += 1
        return self.rows

    def close(self) -> None:
        self._fh.close()


class Truth(CsvFile):
    """``truth/<source>.csv``: which customer (and owner) every row of a source truly belongs to."""

    def __init__(self, root: Path, source: str):
        super().__init__(root / "truth" / f"{source}.csv", TRUTH_COLUMNS)

    def record(self, file: str, row: int | None, key: str, customer_id: str | None, defects=(),
               entity_id: str | None = None) -> None:
        self.write((file, row, key, customer_id, entity_id, ";".join(defects)))


def read_truth(feeds_dir: str | Path, source: str) -> list[dict]:
    """The truth rows of ``source`` as dicts (``row`` an int or None, ``defects`` a list)."""
    text = (Path(feeds_dir) / "truth" / f"{source}.csv").read_text(encoding="utf-8")
    out = []
    for r in csv.DictReader(io.StringIO(text)):
        r["row"] = int(r["row"]) if r["row"] else None
        r["defects"] = r["defects"].split(";") if r["defects"] else []
        for k in ("customer_id", "entity_id"):
            r[k] = r[k] or None
        out.append(r)
    return out
