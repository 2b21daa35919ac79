"""A shard's identity state (:class:`IdentityIndex`): who its customers are, by key, kept current on every write.

Design: the index lives in the shard that owns the customers (one attribute of ``grid.shard.Shard``), not in
separate index actors partitioned by blocking key. A record's keys then change in the same event-loop step as
the record (the shard's apply path), so the index is never behind the data, a WAL replay rebuilds it exactly,
and a partition move carries it; the price is that a lookup asks every shard (one parallel round trip, ~1 ms,
which the per-record budget of 5 ms allows). Index actors would have needed a second durable write per record
change and a protocol to keep the two in step.

Two kinds of state:

- derived (rebuilt from the shard's records, never logged): the member built from each context, and the
  key -> customers maps of every member;
- durable (changed only by logged ops, held in snapshots through :meth:`to_blob`): source records linked to a
  customer with the evidence of each link, reviewers' decisions, open and decided review items, merge
  tombstones (``merged_into``) and the merge steps in progress.

The derived part is built after a load or a recovery, in slices between the shard's requests (the shard actor
starts it; a plain shard builds on its first lookup); once built, every write keeps it current.
"""
from __future__ import annotations

from collections import Counter

import msgspec

from grid.identity.members import Member, keys_of, member_of_context

__all__ = ["IdentityIndex"]


class _Durable(msgspec.Struct):
    links: dict[str, list[dict]] = {}  # customer -> [{record_key, member, resolution, at, write_id}]
    decisions: dict[str, dict[str, str]] = {}  # record_key -> {customer: same|different}
    reviews: dict[str, dict] = {}  # review id -> item (customer_id = the proposed customer)
    open_reviews: dict[str, str] = {}  # record_key -> open review id (never proposed twice)
    merged: dict[str, dict] = {}  # merged customer -> {merged_into, record, links, merge_id}
    merges: dict[str, dict] = {}  # merge id -> step state on this shard


def _identifying(rec: dict) -> tuple:
    return (rec["name"], rec.get("kind"), rec.get("ownership"), rec.get("accounts"), rec.get("contacts"),
            rec.get("attributes"))


class IdentityIndex:
    """See the module docstring."""

    def __init__(self, ignore_tax_ids: frozenset[str] = frozenset(), region: str = "US"):
        self.ignore_tax_ids = ignore_tax_ids
        self.region = region
        self.durable = _Durable()
        self.built = False
        self._pending: list[str] | None = None  # customers still to index while a build is under way
        self.members: dict[str, list[Member]] = {}  # customer -> [context member, linked members...]
        self.keys: dict[tuple[str, str], Counter] = {}  # key -> Counter(customer -> how many members have it)
        self._seen: dict[str, tuple] = {}  # customer -> the identifying parts its members were built from

    # -- derived part -------------------------------------------------------------------------------------
    def invalidate(self) -> None:
        """Forget the derived part (after a bulk load): the next lookup rebuilds it."""
        self.built = False
        self._pending = None
        self.members = {}
        self.keys = {}
        self._seen = {}

    def ensure_built(self, records: dict[str, dict]) -> None:
        """Build (or finish building) the derived part now."""
        while not self.build_step(records, 1 << 62):
            pass

    def build_step(self, records: dict[str, dict], budget: int) -> bool:
        """Build up to ``budget`` customers of the derived part; True once it is complete.

        A shard builds in slices between requests (a 100k-customer index takes about a minute), so it keeps
        serving meanwhile. Writes during the build update what is built and add what is new (:meth:`on_changed`);
        the slices skip whoever a write already indexed, so the order of the two does not matter.
        """
        if self.built:
            return True
        if self._pending is None:
            self.members, self.keys, self._seen = {}, {}, {}
            self._pending = list(records)
        for _ in range(min(budget, len(self._pending))):
            cid = self._pending.pop()
            rec = records.get(cid)
            if rec is not None and cid not in self._seen:
                self._seen[cid] = _identifying(rec)
                self._set_members(cid, self._members_of(rec))
        if not self._pending:
            self._pending = None
            self.built = True
        return self.built

    def _members_of(self, rec: dict) -> list[Member]:
        cid = rec["customer_id"]
        out = [member_of_context(rec, self.region, self.ignore_tax_ids)]
        for link in self.durable.links.get(cid, ()):
            m = msgspec.convert(link["member"], Member)
            m.customer_id = cid
            out.append(m)
        return out

    def _set_members(self, cid: str, members: list[Member]) -> None:
        for m in self.members.get(cid, ()):
            for k in keys_of(m):
                c = self.keys.get(k)
                if c is not None:
                    c[cid] -= 1
                    if c[cid] <= 0:
                        del c[cid]
                    if not c:
                        del self.keys[k]
        if members:
            self.members[cid] = members
            for m in members:
                for k in keys_of(m):
                    self.keys.setdefault(k, Counter())[cid] += 1
        else:
            self.members.pop(cid, None)

    def on_record(self, rec: dict) -> None:
        """The customer's links changed: rebuild its members and keys."""
        if self.built or self._pending is not None:
            self._seen[rec["customer_id"]] = _identifying(rec)
            self._set_members(rec["customer_id"], self._members_of(rec))

    def on_changed(self, customer_id: str, rec: dict | None) -> None:
        """A context changed (the shard's change hook, called on every write, import and move).

        Writes share unchanged parts of a record (``grid.context``), so comparing the identifying parts by
        object identity tells a usage append or a version bump (nothing to do) from a new name or account
        (rebuild this customer's members) without normalizing anything; the references are held, so an id is
        never reused by another object while compared.
        """
        if not self.built and self._pending is None:
            return  # nothing built yet: the build will read the record as it is then
        if rec is None:
            self._seen.pop(customer_id, None)
            self._set_members(customer_id, [])
            return
        cur = _identifying(rec)
        prev = self._seen.get(customer_id)
        if prev is not None and all(a is b for a, b in zip(prev, cur)):
            return
        self._seen[customer_id] = cur
        self._set_members(customer_id, self._members_of(rec))

    def on_removed(self, customer_id: str) -> None:
        if self.built or self._pending is not None:
            self._seen.pop(customer_id, None)
            self._set_members(customer_id, [])

    # -- lookups ------------------------------------------------------------------------------------------
    def lookup(self, records: dict[str, dict], record_key: str, keys: list[tuple[str, str]],
               deterministic: tuple[str, ...], max_block: int) -> dict:
        """Candidates of one record: customers per deterministic key, every blocked customer's members,
        reviewers' decisions about this record, and where merged customers went."""
        self.ensure_built(records)
        hits: dict[str, list[str]] = {}
        found: set[str] = set()
        merged = {}
        for kind, value in keys:
            c = self.keys.get((kind, value))
            if kind in deterministic or kind in ("record", "customer_id"):
                if c:
                    hits.setdefault(kind, []).extend(sorted(c))
                    found.update(c)
                if kind == "customer_id" and value in self.durable.merged:
                    merged[value] = self.durable.merged[value]["merged_into"]
                if kind != "tax_id":
                    continue
            if c and len(c) <= max_block:
                found.update(c)
        points = {}  # which service point a meter or service point id named (importers route usage by it)
        for kind in ("service_point_id", "meter_id"):
            for value in (v for k, v in keys if k == kind):
                for cid in self.keys.get((kind, value), ()):
                    for a in records[cid].get("accounts") or ():
                        for sp in a.get("service_points") or ():
                            if sp.get(kind) == value:
                                points[f"{kind}:{value}"] = [sp["service_point_id"], int(sp.get("interval_minutes", 60))]
        decisions = dict(self.durable.decisions.get(record_key, {}))
        found.update(cid for cid in decisions if cid in self.members)
        return {"hits": hits, "members": {cid: self.members[cid] for cid in sorted(found) if cid in self.members},
                "decisions": decisions, "merged": merged, "points": points,
                "open_review": self.durable.open_reviews.get(record_key)}

    # -- durable part -------------------------------------------------------------------------------------
    def to_blob(self) -> bytes:
        return msgspec.msgpack.encode(self.durable)

    @classmethod
    def from_blob(cls, blob: bytes | None, **kw) -> "IdentityIndex":
        idx = cls(**kw)
        if blob:
            idx.durable = msgspec.msgpack.decode(blob, type=_Durable)
        return idx

    def export(self, customer_ids: set[str]) -> dict:
        """The durable state of these customers (a partition move carries it)."""
        d = self.durable
        reviews = {r: v for r, v in d.reviews.items() if v["customer_id"] in customer_ids}
        return {"links": {c: v for c, v in d.links.items() if c in customer_ids},
                "decisions": {k: {c: s for c, s in v.items() if c in customer_ids} for k, v in d.decisions.items()
                              if any(c in customer_ids for c in v)},
                "reviews": reviews,
                "merged": {c: v for c, v in d.merged.items() if c in customer_ids}}

    def take(self, part: dict | None) -> None:
        if not part:
            return
        d = self.durable
        d.links.update(part["links"])
        for k, v in part["decisions"].items():
            d.decisions.setdefault(k, {}).update(v)
        d.reviews.update(part["reviews"])
        for rid, r in part["reviews"].items():
            if r["state"] == "open":
                d.open_reviews[r["record_key"]] = rid
        d.merged.update(part["merged"])
        self.invalidate()

    def drop(self, customer_ids: set[str]) -> None:
        d = self.durable
        for c in customer_ids:
            d.links.pop(c, None)
            d.merged.pop(c, None)
            self.on_removed(c)
        for k in list(d.decisions):
            d.decisions[k] = {c: s for c, s in d.decisions[k].items() if c not in customer_ids}
            if not d.decisions[k]:
                del d.decisions[k]
        for rid in [r for r, v in d.reviews.items() if v["customer_id"] in customer_ids]:
            r = d.reviews.pop(rid)
            if d.open_reviews.get(r["record_key"]) == rid:
                del d.open_reviews[r["record_key"]]
