"""linking.resolve: each distinct evidence record of a batch is resolved once, every row gets its own answer."""
from __future__ import annotations

import asyncio

from hypothesis import given, settings, strategies as st

from grid.imports import linking

EVIDENCE = st.fixed_dictionaries({"source": st.just("billing-db")}, optional={
    "customer_id": st.sampled_from(["C1", "C2", "C3"]), "account_id": st.sampled_from(["A1", "A2"]),
    "name": st.sampled_from(["Ada Lovelace", "ada lovelace", "Grace Hopper"])})


def fake_resolver(calls):
    async def resolve(grid, records):
        calls.append(list(records))
        return [{"outcome": "link" if r.get("customer_id") else "new", "customer_id": r.get("customer_id"),
                 "service_point_id": None, "interval_minutes": None, "evidence": {"seen": dict(r)}}
                for r in records]
    return resolve


@settings(max_examples=60, deadline=None)
@given(st.lists(EVIDENCE, max_size=40), st.booleans())
def test_a_batch_is_resolved_once_per_distinct_record_and_answers_every_row_as_alone(records, creates):
    calls: list = []
    orig = linking._identity_resolver
    linking._identity_resolver = lambda: fake_resolver(calls)
    try:
        together = asyncio.run(linking.resolve(None, records, creates=creates))
        per_row = [asyncio.run(linking.resolve(None, [r], creates=creates))[0] for r in records]
    finally:
        linking._identity_resolver = orig
    assert together == per_row  # the same answer as resolving each row on its own, in row order
    distinct = {tuple(sorted(r.items())) for r in records}
    assert len(calls[0]) == len(distinct) if records else True  # one resolution per distinct record
    assert len({id(x) for x in together}) == len(together)  # each row's answer is its own (the importer edits them)
