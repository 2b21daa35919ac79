"""The base-wide skeleton drawn before any chunk: kinds, segments, account counts, owners and every id range.

Chunks are generated independently (each from its own random stream), yet ids must be dense and unique across
the base and portfolios must span chunks. Both need a little global knowledge, fixed here from the seed alone:
per customer a kind, a segment and an account count (prefix sums give account and service point numbers), and
the ownership plan (see :mod:`grid.synth.entities`), whose entities are numbered chunk by chunk in the order
they are written. The plan holds a few integers per customer and a record per non-residential entity
(measured: a million-customer base plans in about 20 s and 160 MB; 100k customers in 3 s).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grid.synth import names as nm
from grid.synth.entities import OwnershipPlan, plan_ownership

KINDS = ("residential", "commercial", "industrial", "public")
KIND_SHARES = (0.85, 0.11, 0.03, 0.01)
SEGMENTS: dict[str, tuple[tuple[str, float], ...]] = {
    "residential": (("single_family", 0.62), ("multi_family", 0.33), ("mobile_home", 0.05)),
    "commercial": (("office", 0.18), ("retail", 0.2), ("restaurant", 0.15), ("grocery", 0.06), ("hotel", 0.05),
                   ("warehouse", 0.1), ("medical_office", 0.13), ("auto_service", 0.13)),
    "industrial": (("manufacturing", 0.4), ("food_processing", 0.25), ("cold_storage", 0.15),
                   ("data_center", 0.08), ("chemical", 0.12)),
    "public": (("hospital", 0.2), ("water_treatment", 0.15), ("school", 0.4), ("fire_police", 0.15),
               ("government", 0.1)),
}

# Random streams: one per purpose, so changing how (say) events are drawn leaves load curves unchanged.
STREAM_PLAN, STREAM_WEATHER, STREAM_CHUNK = 0, 1, 2
CHUNK_RECORDS, CHUNK_LOAD_PARAMS, CHUNK_EVENTS, CHUNK_USAGE, CHUNK_BILLS = 0, 1, 2, 3, 4


def stream(seed: int, *key: int) -> np.random.Generator:
    """An independent generator for ``key`` (numpy SeedSequence spawn keys: reproducible, non-overlapping)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _draw(rng: np.random.Generator, table: tuple[tuple[str, float], ...], size: int) -> np.ndarray:
    w = np.array([p for _, p in table])
    return rng.choice(len(table), size=size, p=w / w.sum()).astype(np.int8)


def _account_counts(rng: np.random.Generator, kinds: np.ndarray, segments: list[str]) -> np.ndarray:
    n = kinds.shape[0]
    out = np.ones(n, dtype=np.int64)
    res = kinds == 0
    out[res] += rng.random(int(res.sum())) < 0.04  # a closed account at a previous premise
    com = np.flatnonzero(kinds == 1)
    counts = np.minimum(rng.geometric(0.4, size=com.size), 20)
    big = rng.random(com.size) < 0.05  # chains and property managers: many sites
    counts[big] = rng.integers(8, 21, size=int(big.sum()))
    out[com] = counts
    ind = np.flatnonzero(kinds == 2)
    out[ind] = np.minimum(rng.geometric(0.6, size=ind.size), 4)
    top = {"hospital": 3, "water_treatment": 4, "school": 2, "fire_police": 1, "government": 3}
    for i in np.flatnonzero(kinds == 3):
        out[i] = 1 + int(rng.integers(0, top[segments[i]]))
    return out


@dataclass
class Plan:
    """What every chunk needs to know about the whole base."""

    seed: int
    customers: int
    chunk_customers: int
    kind: np.ndarray  # int8 (N,), index into KINDS
    segment: list[str]  # (N,)
    account_offset: np.ndarray  # int64 (N + 1,): customer i has accounts offset[i] + 1 .. offset[i + 1]
    ownership: OwnershipPlan
    entity_number: np.ndarray  # int64 per plan entity: the number in its id ``E%07d``
    entity_depth: np.ndarray  # int64 per plan entity
    chunk_plan_entities: list[np.ndarray]  # per chunk: plan entity indices written there, parents first
    chunk_entity_offset: np.ndarray  # int64 (K + 1,): entities written before chunk k
    group_key: np.ndarray  # int64 per ownership group: smallest entity number in the group
    slots: nm.ResidentialSlots

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_plan_entities)

    def chunk_range(self, chunk: int) -> tuple[int, int]:
        lo = chunk * self.chunk_customers
        return lo, min(self.customers, lo + self.chunk_customers)


def build_plan(seed: int, customers: int, chunk_customers: int) -> Plan:
    rng = stream(seed, STREAM_PLAN)
    kind = rng.choice(len(KINDS), size=customers, p=KIND_SHARES).astype(np.int8)
    seg_code = np.zeros(customers, dtype=np.int8)
    for k, name in enumerate(KINDS):
        idx = np.flatnonzero(kind == k)
        seg_code[idx] = _draw(rng, SEGMENTS[name], idx.size)
    segment = [SEGMENTS[KINDS[k]][s][0] for k, s in zip(kind.tolist(), seg_code.tolist())]
    counts = _account_counts(rng, kind, segment)
    account_offset = np.zeros(customers + 1, dtype=np.int64)
    np.cumsum(counts, out=account_offset[1:])
    slots = nm.ResidentialSlots(rng)
    ownership = plan_ownership(rng, kind, segment, chunk_customers)

    n_chunks = max(1, -(-customers // chunk_customers))
    ents = ownership.entities
    first_chunk = np.full(len(ents), n_chunks, dtype=np.int64)
    for customer, e in ownership.owner.items():
        c = customer // chunk_customers
        while e >= 0 and first_chunk[e] > c:  # a parent is written no later than any descendant's customer
            first_chunk[e] = c
            e = ents[e].parent
    depth = np.array([e.depth for e in ents], dtype=np.int64)
    if (first_chunk == n_chunks).any():  # pragma: no cover - every planned entity owns or parents a customer
        raise AssertionError("ownership plan has an entity no customer reaches")
    order = np.lexsort((np.arange(len(ents)), depth, first_chunk))
    per_chunk_plan = np.bincount(first_chunk, minlength=n_chunks)
    residential = np.bincount(np.arange(customers) // chunk_customers, weights=(kind == 0), minlength=n_chunks)
    per_chunk = per_chunk_plan + residential.astype(np.int64)
    chunk_entity_offset = np.zeros(n_chunks + 1, dtype=np.int64)
    np.cumsum(per_chunk, out=chunk_entity_offset[1:])
    entity_number = np.empty(len(ents), dtype=np.int64)
    bounds = np.zeros(n_chunks + 1, dtype=np.int64)
    np.cumsum(per_chunk_plan, out=bounds[1:])
    chunk_plan_entities = []
    for c in range(n_chunks):
        idx = order[bounds[c]:bounds[c + 1]]
        entity_number[idx] = chunk_entity_offset[c] + 1 + np.arange(idx.size)
        chunk_plan_entities.append(idx)
    group = np.array([e.group for e in ents], dtype=np.int64)
    group_key = np.full(ownership.n_groups, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(group_key, group, entity_number)
    return Plan(seed, customers, chunk_customers, kind, segment, account_offset, ownership, entity_number, depth,
                chunk_plan_entities, chunk_entity_offset, group_key, slots)


def entity_id(number: int) -> str:
    return f"E{number:07d}"


def customer_id(index: int) -> str:
    return f"C{index + 1:07d}"


def account_id(number: int) -> str:
    return f"A{number:08d}"


def service_point_id(number: int) -> str:
    return f"S{number:08d}"


def meter_id(number: int, seed: int) -> str:
    """A meter number that looks unrelated to the service point's but is unique (7919 is coprime to 10**9)."""
    return f"M{(number * 7919 + 104729 * (seed % 1000) + 3) % 10**9:09d}"
