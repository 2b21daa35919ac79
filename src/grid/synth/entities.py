"""Ownership entities of the non-residential customers: portfolios, SPV chains, shared tax ids, look-alikes.

Portfolios span the whole base, so they are planned once per base (from the seed alone) before any chunk is
generated: the plan is small (a few records per non-residential customer) and fixes who owns what, so chunks
can then be generated independently. Every entity is written in the chunk of the first customer that reaches
it (through ``parent_entity_id`` too), hence a parent always lives in the same or an earlier chunk.

Group shapes (``link_kind`` is how an entity joins its portfolio):
- ``none``: a standalone business (own tax id, or none) - and every look-alike, which copies a name from
  another group but differs in address and tax id, or shares an address but differs in a meaningful name or
  suite token, and so must stay apart.
- ``parent``: root -> holding(s) -> [fund] -> SPV per property, each with its own tax id (or none), SPVs
  often mailed care of a registered agent shared with unrelated SPVs.
- ``tax_id``: differently named, differently addressed operators filing under one EIN; members are placed in
  different chunks on purpose, so the portfolio spans shards.
- ``name_address``: one owner keyed by different clerks: the same name and mailing address up to case,
  punctuation and abbreviations, no tax id on file.
- mixed: a chain plus an operator sharing the root's EIN plus a record matching the root by name + address.
Public customers belong to their city (departments share the city's EIN and point at it), school district or
health system.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from grid.synth import names as nm

_LEGAL_SUFFIXES = {"llc", "inc", "incorporated", "corp", "corporation", "co", "company", "lp", "llp", "ltd",
                   "limited", "plc", "the"}
_ADDRESS_WORDS = {"street": "st", "avenue": "ave", "road": "rd", "drive": "dr", "lane": "ln", "court": "ct",
                  "boulevard": "blvd", "place": "pl", "circle": "cir", "suite": "ste", "north": "n", "south": "s",
                  "east": "e", "west": "w"}
_NOT_ALNUM = re.compile(r"[^a-z0-9 ]")


def guard_key(name: str, address: str) -> str:
    """A deliberately coarse owner key used to keep unrelated groups from matching by accident.

    Coarser than any sensible normalizer (legal suffixes dropped, ZIP dropped), so two unrelated entities that
    differ here differ under the project's matching rules too.
    """
    n = _NOT_ALNUM.sub("", name.lower().replace("&", " and "))
    n = " ".join(t for t in n.split() if t not in _LEGAL_SUFFIXES)
    a = _NOT_ALNUM.sub("", address.lower())
    tokens = [_ADDRESS_WORDS.get(t, t) for t in a.split()]
    if tokens and tokens[-1].isdigit() and len(tokens[-1]) == 5:
        tokens = tokens[:-1]  # ZIP
    return n + "|" + " ".join(tokens)


@dataclass(slots=True)
class PlanEntity:
    legal_name: str
    tax_id: str | None
    mailing_address: str
    parent: int  # index into OwnershipPlan.entities, -1 for a root
    group: int
    link_kind: str
    depth: int = 0


@dataclass
class OwnershipPlan:
    entities: list[PlanEntity] = field(default_factory=list)
    owner: dict[int, int] = field(default_factory=dict)  # customer index -> entity index (non-residential)
    customer_name: dict[int, str] = field(default_factory=dict)
    n_groups: int = 0


class _Planner:
    def __init__(self, rng: np.random.Generator, chunk_of):
        self.rng = rng
        self.chunk_of = chunk_of
        self.plan = OwnershipPlan()
        self.keys: dict[str, int] = {}  # guard key -> group
        self.tax_ids: set[str] = set()
        self.addresses: set[str] = set()
        self.named_groups: list[int] = []  # root entities a look-alike may imitate
        self.city_roots: dict[int, int] = {}
        self.districts: dict[int, int] = {}
        self.departments: dict[tuple[int, str], int] = {}
        self.health_systems: list[int] = []

    # --- primitives ----------------------------------------------------------------------------------------
    def new_group(self) -> int:
        self.plan.n_groups += 1
        return self.plan.n_groups - 1

    def ein(self) -> str:
        while True:
            t = f"{int(self.rng.integers(10, 99)):02d}-{int(self.rng.integers(0, 10**7)):07d}"
            if t not in self.tax_ids:
                self.tax_ids.add(t)
                return t

    def address(self, *, suite: bool = True) -> str:
        while True:
            a = nm.random_street_address(self.rng, suite=suite)
            if a not in self.addresses:
                self.addresses.add(a)
                return a

    def free(self, name: str, address: str, group: int) -> bool:
        owner = self.keys.get(guard_key(name, address))
        return owner is None or owner == group

    def entity(self, name: str, tax_id: str | None, address: str, parent: int, group: int, link: str) -> int:
        self.keys.setdefault(guard_key(name, address), group)
        depth = 0 if parent < 0 else self.plan.entities[parent].depth + 1
        self.plan.entities.append(PlanEntity(name, tax_id, address, parent, group, link, depth))
        return len(self.plan.entities) - 1

    def unique_name(self, make, address: str, group: int) -> str:
        for _ in range(50):
            name = make()
            if self.free(name, address, group):
                return name
        raise RuntimeError("could not find a free entity name")  # pragma: no cover - pools are large

    def own(self, customer: int, entity: int, name: str) -> None:
        self.plan.owner[customer] = entity
        self.plan.customer_name[customer] = name

    # --- customer names ------------------------------------------------------------------------------------
    def trade_name(self, base: str, segment: str) -> str:
        return f"{base} {nm.pick(self.rng, nm.TRADE_WORDS[segment])}"

    def property_name(self, segment: str) -> tuple[str, str]:
        st = nm.street(int(self.rng.integers(nm.ADDRESS_STREETS)))
        word = nm.pick(self.rng, nm.TRADE_WORDS[segment])
        return f"{st.split(' ')[0]} {word}", st

    # --- group shapes --------------------------------------------------------------------------------------
    def standalone(self, customer: int, segment: str) -> None:
        g = self.new_group()
        addr = self.address(suite=self.rng.random() < 0.5)
        base = nm.company_base(self.rng)
        cname = self.trade_name(base, segment)
        legal = self.unique_name(lambda: f"{cname} {nm.suffix(self.rng)}", addr, g)
        tax = self.ein() if self.rng.random() < 0.9 else None
        self.own(customer, self.entity(legal, tax, addr, -1, g, "none"), cname)
        self.named_groups.append(len(self.plan.entities) - 1)

    def chain(self, members: list[int], segments: list[str]) -> tuple[int, int]:
        """SPV -> holding -> [fund] -> root; returns (group, root entity)."""
        g = self.new_group()
        base = nm.company_base(self.rng)
        hq = self.address(suite=True)
        root = self.entity(self.unique_name(lambda: f"{base} {nm.pick(self.rng, nm.HOLDING_WORDS)} "
                                                    f"{nm.suffix(self.rng)}", hq, g), self.ein(), hq, -1, g, "parent")
        self.named_groups.append(root)
        n_hold = 1 + int(self.rng.integers(0, min(3, len(members))))
        holdings = []
        for k in range(n_hold):
            tag = ("", " II", " III")[k]
            word = nm.pick(self.rng, nm.REALTY_WORDS)
            name = self.unique_name(lambda: f"{base} {word}{tag} {nm.pick(self.rng, ('LLC', 'LP'))}", hq, g)
            h = self.entity(name, self.ein() if self.rng.random() < 0.8 else None, hq, root, g, "parent")
            if self.rng.random() < 0.4:  # a fund level in between: four levels deep
                fund = self.unique_name(lambda: f"{base} Fund {k + 1} LP", hq, g)
                h = self.entity(fund, self.ein(), hq, h, g, "parent")
            holdings.append(h)
        for i, (customer, segment) in enumerate(zip(members, segments)):
            holding = holdings[i % n_hold]
            pname, st = self.property_name(segment)
            if self.rng.random() < 0.15:  # owned directly by the holding, no SPV
                self.own(customer, holding, f"{pname}")
                continue
            agent, agent_addr = nm.REGISTERED_AGENTS[int(self.rng.integers(len(nm.REGISTERED_AGENTS)))]
            addr = f"c/o {agent}, {agent_addr}" if self.rng.random() < 0.5 else hq
            number = int(self.rng.integers(100, 9999))
            spv_name = self.unique_name(
                lambda: nm.pick(self.rng, (f"{number} {st} Owner LLC", f"{base} {st.split(' ')[0]} SPV LLC",
                                           f"{pname} Property LLC")), addr, g)
            spv = self.entity(spv_name, self.ein() if self.rng.random() < 0.7 else None, addr, holding, g, "parent")
            self.own(customer, spv, pname)
        return g, root

    def tax_group(self, members: list[int], segments: list[str], tax: str | None = None, g: int | None = None):
        g = self.new_group() if g is None else g
        tax = tax or self.ein()
        for customer, segment in zip(members, segments):
            addr = self.address(suite=self.rng.random() < 0.5)
            base = nm.company_base(self.rng)
            cname = self.trade_name(base, segment)
            legal = self.unique_name(lambda: f"{cname} {nm.suffix(self.rng)}", addr, g)
            self.own(customer, self.entity(legal, tax, addr, -1, g, "tax_id"), cname)

    def name_address_group(self, members: list[int], segments: list[str], name: str | None = None,
                           address: str | None = None, g: int | None = None) -> None:
        fresh = g is None
        g = self.new_group() if g is None else g
        if name is None:
            address = self.address(suite=True)
            base = nm.company_base(self.rng)
            word = nm.pick(self.rng, nm.TRADE_WORDS[segments[0]])
            name = self.unique_name(lambda: f"{base} {word} {nm.suffix(self.rng)}", address, g)
        for k, (customer, segment) in enumerate(zip(members, segments)):
            legal = name if (fresh and k == 0) else nm.name_variant(name, self.rng)
            addr = address if (fresh and k == 0) else nm.address_variant(address, self.rng)
            tax = self.ein() if (fresh and k == 0 and self.rng.random() < 0.3) else None
            city = nm.CITIES[int(self.rng.integers(len(nm.CITIES)))][0]
            e = self.entity(legal, tax, addr, -1, g, "name_address")
            self.own(customer, e, f"{name.rsplit(' ', 1)[0]} - {city}")
            if fresh and k == 0:
                self.named_groups.append(e)

    def lookalike(self, customer: int, segment: str) -> None:
        """Looks like an earlier group's owner but must not join it."""
        g = self.new_group()
        target = self.plan.entities[self.named_groups[int(self.rng.integers(len(self.named_groups)))]]
        tname, taddr = target.legal_name, target.mailing_address
        words = tname.split(" ")
        for _ in range(50):
            style = int(self.rng.integers(3))
            if style == 0:  # same name, an unrelated company elsewhere
                name, addr = nm.name_variant(tname, self.rng), self.address(suite=self.rng.random() < 0.5)
            elif style == 1:  # same building, a meaningfully different name
                extra = nm.pick(self.rng, ("II", "West", "Partners", "Group", "Services", "2"))
                name, addr = " ".join(words[:-1] + [extra, words[-1]]), taddr
            else:  # same name, a different suite (or street number) at the same street
                m = re.search(r"(Suite )(\d+)", taddr)
                if m:
                    addr = taddr[:m.start(2)] + m.group(2) + "0" + taddr[m.end(2):]
                else:
                    num, rest = taddr.split(" ", 1)
                    addr = f"{num}0 {rest}" if num.isdigit() else self.address()
                name = tname
            if self.free(name, addr, g):
                break
        else:  # pragma: no cover - 50 collisions in a row is practically impossible
            name, addr = self.unique_name(lambda: f"{nm.company_base(self.rng)} Ltd", taddr, g), self.address()
        cname = self.trade_name(name.split(" ")[0] + " " + name.split(" ")[1], segment)
        self.own(customer, self.entity(name, self.ein(), addr, -1, g, "none"), cname)

    # --- public customers ----------------------------------------------------------------------------------
    def public(self, customer: int, segment: str) -> None:
        city_i = int(self.rng.integers(len(nm.CITIES)))
        city = nm.CITIES[city_i][0]
        fmt = nm.pick(self.rng, nm.PUBLIC_NAMES[segment])
        cname = fmt.format(city=city, street=nm.STREET_NAMES[int(self.rng.integers(len(nm.STREET_NAMES)))],
                           saint=nm.pick(self.rng, nm.SAINTS), n=int(self.rng.integers(1, 12)))
        if segment == "hospital":
            if self.health_systems and self.rng.random() < 0.5:
                root = self.health_systems[int(self.rng.integers(len(self.health_systems)))]
                g = self.plan.entities[root].group
                addr = self.address(suite=False)
                e = self.entity(f"{cname} Inc.", self.ein(), addr, root, g, "parent")
            elif self.rng.random() < 0.5:
                g = self.new_group()
                hq = self.address(suite=True)
                root = self.entity(f"{nm.company_base(self.rng)} Health", self.ein(), hq, -1, g, "parent")
                self.health_systems.append(root)
                e = self.entity(f"{cname} Inc.", self.ein(), self.address(suite=False), root, g, "parent")
            else:
                g = self.new_group()
                e = self.entity(f"{cname} Inc.", self.ein(), self.address(suite=False), -1, g, "none")
        elif segment == "school":
            if city_i not in self.districts:
                g = self.new_group()
                self.districts[city_i] = self.entity(f"{city} Unified School District", self.ein(),
                                                     self.address(suite=False), -1, g, "none")
            e = self.districts[city_i]
        else:
            if city_i not in self.city_roots:
                g = self.new_group()
                self.city_roots[city_i] = self.entity(f"City of {city}", self.ein(),
                                                      f"City Hall, {self.address(suite=False)}", -1, g, "none")
            root = self.city_roots[city_i]
            root_e = self.plan.entities[root]
            if self.rng.random() < 0.5:
                e = root
            else:
                dept = {"water_treatment": "Department of Public Utilities", "fire_police": "Public Safety",
                        "government": "Department of Public Works"}[segment]
                if (city_i, dept) not in self.departments:  # departments file under the city's EIN, point at it
                    self.departments[city_i, dept] = self.entity(f"City of {city} {dept}", root_e.tax_id,
                                                                 self.address(suite=True), root, root_e.group,
                                                                 "parent")
                    root_e.link_kind = "parent"
                e = self.departments[city_i, dept]
        self.own(customer, e, cname)

    # --- member selection ----------------------------------------------------------------------------------
    def take_spread(self, pool: list[int], k: int) -> list[int]:
        """Pop ``k`` customers from ``pool``, preferring customers of chunks not yet used by the group."""
        out = [pool.pop()]
        chunks = {self.chunk_of(out[0])}
        while len(out) < k and pool:
            pick = len(pool) - 1
            for j in range(len(pool) - 1, max(-1, len(pool) - 200), -1):
                if self.chunk_of(pool[j]) not in chunks:
                    pick = j
                    break
            c = pool.pop(pick)
            out.append(c)
            chunks.add(self.chunk_of(c))
        return out


def plan_ownership(rng: np.random.Generator, kinds: np.ndarray, segments: list[str | None],
                   chunk_customers: int) -> OwnershipPlan:
    """Owners of every non-residential customer (``kinds`` codes: 0 residential, 1 commercial, 2 industrial,
    3 public; ``segments[i]`` the segment name of customer ``i``)."""
    p = _Planner(rng, lambda i: i // chunk_customers)
    private = [int(i) for i in np.flatnonzero((kinds == 1) | (kinds == 2))]
    rng.shuffle(private)
    # the first groups take every shape once, so even a small demo base has each; then shapes are drawn
    forced = [0.0, 0.6, 0.7, 0.85, 0.93, 0.99]  # standalone, chain, tax_id, name_address, look-alike, mixed
    while private:
        r = forced.pop(0) if forced else rng.random()
        if r < 0.50 or len(private) == 1 or not p.named_groups:
            c = private.pop()
            p.standalone(c, segments[c])
        elif r < 0.68:
            members = [private.pop() for _ in range(min(len(private), int(rng.integers(2, 11))))]
            p.chain(members, [segments[c] for c in members])
        elif r < 0.80:
            members = p.take_spread(private, int(rng.integers(2, 6)))
            p.tax_group(members, [segments[c] for c in members])
        elif r < 0.90:
            members = [private.pop() for _ in range(min(len(private), int(rng.integers(2, 5))))]
            p.name_address_group(members, [segments[c] for c in members])
        elif r < 0.96:
            c = private.pop()
            p.lookalike(c, segments[c])
        else:  # mixed: a chain, an operator on the root's EIN, a re-keyed copy of the root
            members = p.take_spread(private, int(rng.integers(3, 8)))
            if len(members) < 3:
                p.chain(members, [segments[c] for c in members])
                continue
            g, root = p.chain(members[:-2], [segments[c] for c in members[:-2]])
            root_e = p.plan.entities[root]
            p.tax_group(members[-2:-1], [segments[members[-2]]], tax=root_e.tax_id, g=g)
            p.name_address_group(members[-1:], [segments[members[-1]]], name=root_e.legal_name,
                                 address=root_e.mailing_address, g=g)
    for c in np.flatnonzero(kinds == 3):
        p.public(int(c), segments[int(c)])
    return p.plan
