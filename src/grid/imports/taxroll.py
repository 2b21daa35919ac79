"""Public records: the county tax roll matched to premises, and the ownership evidence it adds.

A secured roll lists each parcel's owner, the owner's mailing address (for special-purpose vehicles often
*care of* a registered agent, shared with unrelated SPVs) and the parcel's situs address. Matching:

1. the situs (street, city, the source's state, ZIP) is normalized by :func:`grid.normalize.normalize_address`
   and looked up among every service point's normalized premise address; a situs without a ZIP matches on
   street and city when that is unambiguous; a parcel matching nobody (vacant land, a typo) is reported, not
   guessed;
2. each matched customer gets, in ``attributes``, the parcels on its premises: ``parcel_apns``,
   ``parcel_owners`` (as the roll spells them), ``parcel_owner_keys`` (:func:`grid.normalize.owner_key` of the
   owner's name and mailing address) and ``parcel_agents`` (registered agents the owners are mailed care of).

``rules/portfolios.yaml``'s ``parcel_owner`` link joins non-residential accounts whose parcels share an owner
key: the same owner by name *and* mailing address. A shared registered agent alone never links (the key
carries the SPV's own name), nor does a landlord's name link the homes of its tenants (residential accounts are
excluded). The evidence is one PATCH per customer with a write id derived from the roll's content, so
importing the same roll again changes nothing.
"""
from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from grid.cluster import make_op
from grid.errors import ContextGridError
from grid.imports.readers import file_digest, open_file
from grid.normalize import normalize_address, owner_key

COLUMNS = {"apn": "APN", "owner": "OWNER_NAME", "care_of": "CARE_OF", "mail": "MAIL_ADDRESS",
           "mail_city": "MAIL_CITY_STATE_ZIP", "situs": "SITUS_ADDRESS", "situs_city": "SITUS_CITY",
           "situs_zip": "SITUS_ZIP", "use_code": "USE_CODE", "value": "ASSESSED_VALUE"}
PAGE = 500


@dataclass
class Parcel:
    row: int
    apn: str
    owner: str
    care_of: str | None
    mailing_address: str
    situs: str  # normalized, with ZIP when the roll has one
    situs_no_zip: str
    use_code: str
    assessed_value_dollars: int | None


def _s(v) -> str:
    return "" if v is None else str(v).strip()


def read_roll(path: str | Path, state: str = "CA", columns: dict | None = None) -> list[Parcel]:
    """Every parcel of a roll CSV (columns named as :data:`COLUMNS`, or as ``columns`` maps them)."""
    cols = {**COLUMNS, **(columns or {})}
    out = []
    for batch in open_file(path, "csv").batches():
        rows = batch.rows.to_pylist() if hasattr(batch.rows, "to_pylist") else batch.rows
        for off, r in zip(batch.row_offsets(), rows):
            street, city, zip_code = _s(r.get(cols["situs"])), _s(r.get(cols["situs_city"])), _s(r.get(cols["situs_zip"]))
            mailing = ", ".join(p for p in (_s(r.get(cols["mail"])), _s(r.get(cols["mail_city"]))) if p)
            value = _s(r.get(cols["value"]))
            out.append(Parcel(off, _s(r.get(cols["apn"])), _s(r.get(cols["owner"])), _s(r.get(cols["care_of"])) or None,
                              mailing, normalize_address(f"{street}, {city}, {state} {zip_code}".strip()),
                              normalize_address(f"{street}, {city}, {state}"), _s(r.get(cols["use_code"])),
                              int(value) if value.isdigit() else None))
    return out


def _drop_zip(normalized: str) -> str:
    words = normalized.split(" ")
    return " ".join(words[:-1]) if words and len(words[-1]) == 5 and words[-1].isdigit() else normalized


@dataclass
class PremiseIndex:
    """Normalized premise address -> {(customer_id, kind)}, with and without the ZIP."""

    full: dict[str, set] = field(default_factory=dict)
    no_zip: dict[str, set] = field(default_factory=dict)

    def add(self, customer_id: str, kind: str, premise_address: str | None) -> None:
        if not premise_address:
            return
        n = normalize_address(premise_address)
        self.full.setdefault(n, set()).add((customer_id, kind))
        self.no_zip.setdefault(_drop_zip(n), set()).add((customer_id, kind))

    def add_context(self, ctx: dict) -> None:
        for a in ctx.get("accounts") or []:
            for sp in a.get("service_points") or []:
                self.add(ctx["customer_id"], ctx.get("kind", ""), sp.get("premise_address"))

    def find(self, p: Parcel) -> set:
        hit = self.full.get(p.situs)
        if hit:
            return hit
        hit = self.no_zip.get(p.situs_no_zip) or set()
        return hit if len(hit) == 1 else set()


def match(parcels: list[Parcel], index: PremiseIndex) -> tuple[dict[str, dict], list[Parcel]]:
    """Evidence per customer (the ``attributes`` to merge) and the parcels that matched no premise."""
    evidence: dict[str, dict] = {}
    unmatched = []
    for p in parcels:
        hits = index.find(p)
        if not hits:
            unmatched.append(p)
            continue
        key = owner_key(p.owner, p.mailing_address) if p.owner and p.mailing_address else None
        for cid, _kind in sorted(hits):
            ev = evidence.setdefault(cid, {"parcel_apns": [], "parcel_owners": [], "parcel_owner_keys": [],
                                           "parcel_agents": []})
            for k, v in (("parcel_apns", p.apn), ("parcel_owners", p.owner), ("parcel_owner_keys", key),
                         ("parcel_agents", p.care_of)):
                if v and v not in ev[k]:
                    ev[k].append(v)
    return evidence, unmatched


async def premise_index(grid) -> PremiseIndex:
    """The premises of every customer in the grid, read shard by shard, a page at a time."""
    index = PremiseIndex()
    after = None
    while True:
        page = await grid.alist({}, after, PAGE)
        if not page:
            return index
        by_shard: dict[int, list[str]] = {}
        for s in page:
            by_shard.setdefault(grid.shard_index(s["customer_id"]), []).append(s["customer_id"])
        got = await asyncio.gather(*(grid.aget_many(i, ids) for i, ids in by_shard.items()))
        for ctxs in got:
            for ctx in ctxs:
                if ctx is not None:
                    index.add_context(ctx)
        after = page[-1]["customer_id"]


async def import_roll(grid, path: str | Path, *, state: str = "CA", columns: dict | None = None) -> dict:
    """Match a roll to the grid's premises and write the evidence; a report of what matched."""
    parcels = await asyncio.to_thread(read_roll, path, state, columns)
    evidence, unmatched = match(parcels, await premise_index(grid))
    digest = file_digest(Path(path))
    written, failed = 0, []
    for cid, ev in sorted(evidence.items()):
        write_id = "taxroll-" + hashlib.sha256(f"{digest}:{cid}".encode()).hexdigest()[:24]
        try:
            await grid.awrite(make_op("patch", cid, {"attributes": ev}, write_id))
            written += 1
        except ContextGridError as exc:  # a customer merged or removed meanwhile: reported, the rest go on
            failed.append({"customer_id": cid, "reason": exc.detail})
    return {"parcels": len(parcels), "matched": len(parcels) - len(unmatched), "customers": written,
            "unmatched": [{"row": p.row, "apn": p.apn} for p in unmatched], "failed": failed}
