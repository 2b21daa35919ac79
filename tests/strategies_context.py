"""Contexts and patches generated from api/openapi.yaml's schemas (hypothesis-jsonschema), ids drawn from small
pools so that they collide sometimes (another customer's service point, a repeated account id)."""
from __future__ import annotations

import copy

import yaml
from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as cu
from hypothesis_jsonschema import _from_schema, from_schema

from grid.gateway.validation import OPENAPI_PATH


class _Many:
    """``many(...).more()`` as hypothesis-jsonschema 0.23.1 calls it (hypothesis 6.1xx replaced it with an
    iterator); draws the same kind of continue/stop booleans. TODO: drop once hypothesis-jsonschema follows."""

    def __init__(self, data, min_size: int, max_size: float, average_size: float):
        self.data, self.min_size, self.max_size, self.count = data, min_size, max_size, 0
        self.p_continue = cu._calc_p_continue(average_size - min_size, max_size - min_size)

    def more(self) -> bool:
        if self.count < self.min_size:
            go = True
        elif self.count >= self.max_size:
            go = False
        else:
            go = self.data.draw_boolean(self.p_continue)
        self.count += go
        return go

    def reject(self) -> None:
        self.count = max(0, self.count - 1)


class _Utils:
    many = _Many

    def __getattr__(self, name):
        return getattr(cu, name)


if not hasattr(cu.many, "more"):
    _from_schema.cu = _Utils()

SPEC = yaml.safe_load(OPENAPI_PATH.read_text())


def schema(name: str) -> dict:
    """A component schema with every ``$ref`` inlined (hypothesis-jsonschema wants one self-contained document)."""
    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(SPEC["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]])
            return {k: inline(v) for k, v in node.items() if k != "description"}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node
    return inline(copy.deepcopy(SPEC["components"]["schemas"][name]))


CONTEXT_IN = from_schema(schema("ContextIn"))  # built once: canonicalising the schema costs ~0.4 s
CUSTOMER_PATCH = from_schema(schema("CustomerPatch"))


def _small(value: dict, key: str, n: int) -> None:
    if isinstance(value.get(key), list):
        del value[key][n:]


@st.composite
def contexts(draw, plans: list[str], sp_pool: list[str], account_pool: list[str]) -> dict:
    """A ``ContextIn`` valid under the contract, its references drawn from pools (plans may name no tariff)."""
    body = draw(CONTEXT_IN)
    for key in ("ownership", "contacts", "payments", "events", "notes"):
        _small(body, key, 3)
    _small(body, "accounts", 3)
    for a in body.get("accounts", []):
        a["account_id"] = draw(st.sampled_from(account_pool))
        a["rate_plan_id"] = draw(st.sampled_from(plans))
        _small(a, "service_points", 3)
        _small(a, "programs", 3)
        for sp in a.get("service_points", []):
            sp["service_point_id"] = draw(st.sampled_from(sp_pool))
    body.pop("customer_id", None)
    body.pop("classification", None)  # computed by the grid; a client's copy would be overwritten
    return body


@st.composite
def patches(draw) -> tuple[dict, list[int]]:
    """A ``CustomerPatch`` valid under the contract, and picks (one per id in it) the caller maps onto the
    customer's own ids: ``pick % (len(own) + 1)`` chooses one of them, or keeps the drawn id. The draws never
    depend on the grid's state, so hypothesis can replay them."""
    body = draw(CUSTOMER_PATCH)
    picks = draw(st.lists(st.integers(0, 1000), min_size=8, max_size=8))
    return body, picks


def apply_picks(body: dict, picks: list[int], accounts: list[str], contacts: list[str], projects: list[str]) -> dict:
    """Put the customer's own ids into a drawn patch where its picks say so (see :func:`patches`)."""
    def choose(pick: int, own: list[str], drawn: str) -> str:
        k = pick % (len(own) + 1)
        return own[k] if k < len(own) else drawn

    it = iter(picks)
    for group in ("add", "remove"):
        for item in (body.get("programs") or {}).get(group, [])[:2]:
            item["account_id"] = choose(next(it), accounts, item["account_id"])
    contacts_patch = body.get("contacts") or {}
    if contacts_patch.get("remove"):
        contacts_patch["remove"][0] = choose(next(it), contacts, contacts_patch["remove"][0])
    projects_patch = (body.get("supplemental") or {}).get("projects") or {}
    if projects_patch.get("remove"):
        projects_patch["remove"][0] = choose(next(it), projects, projects_patch["remove"][0])
    return body
