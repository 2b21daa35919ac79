"""Portfolio resolution: hand-built ownership graphs across two shards, the reference, and a generated base."""
from __future__ import annotations

import itertools
from collections import defaultdict

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid.errors import InvalidInput
from grid.rules import account_features, load_ruleset, portfolio_links, resolve_portfolios
from reference_rules import portfolios as reference_portfolios
from rules_fixtures import RULES_DIR, account, chain, customer, entity, load_base, shard_of

AGENT = "c/o Corporate Agents Inc, 2710 Gateway Oaks Dr, Suite 150N, Sacramento, CA 95833"
ENTITIES = {e["entity_id"]: e for e in [
    # Harbor: root -> holding -> fund -> SPVs, four levels; SPVs with and without tax ids, one mailed c/o agent
    entity("E-R1", "Harbor Point Holdings LLC", "500 Capitol Mall, Suite 2100, Sacramento, CA 95814", "94-1000001"),
    entity("E-H1", "Harbor Point Realty LP", "500 Capitol Mall, Suite 2100, Sacramento, CA 95814", None, "E-R1"),
    entity("E-F1", "Harbor Point Fund 1 LP", "500 Capitol Mall, Suite 2100, Sacramento, CA 95814", "94-1000002",
           "E-H1"),
    entity("E-S1", "1200 Oak Street Owner LLC", "500 Capitol Mall, Suite 2100, Sacramento, CA 95814", None, "E-F1"),
    entity("E-S2", "Harbor Point Elm SPV LLC", AGENT, "94-1000003", "E-F1"),
    entity("E-S3", "Pine Plaza Property LLC", AGENT, None, "E-H1"),
    # an operator filing under Harbor's EIN, and a re-keyed copy of Harbor's root (no tax id, cosmetic variants)
    entity("E-M1", "Bayside Kitchen Inc", "19 Wharf Rd, Monterey, CA 93940", "94-1000001"),
    entity("E-M2", "HARBOR POINT HOLDINGS, L.L.C.", "500 capitol mall ste 2100 sacramento ca 95814-1234"),
    # two operators under one EIN, different names and addresses, on different shards
    entity("E-T1", "Blue Fin Grill LLC", "12 Harbor Blvd, Oxnard, CA 93035", "95-2000001"),
    entity("E-T2", "Seaside Eatery Inc", "880 Ocean Ave, Ventura, CA 93001", "95-2000001"),
    # one owner keyed by two clerks: name + mailing address equal after normalization, no tax id
    entity("E-N1", "Acme Widgets, L.L.C.", "100 North Main Street, Suite 5, Springfield, IL 62701"),
    entity("E-N2", "ACME WIDGETS LLC", "100 N. Main St. Ste 5, Springfield, Illinois 62701-1234"),
    # look-alikes that must stay apart
    entity("E-L1", "Acme Widgets LLC", "200 Oak Avenue, Fresno, CA 93701", "96-3000001"),       # other address
    entity("E-L2", "Acme Widgets West LLC", "100 North Main Street, Suite 5, Springfield, IL 62701"),  # other name
    entity("E-L3", "Acme Widgets LLC", "100 North Main Street, Suite 50, Springfield, IL 62701"),  # other suite
    entity("E-X1", "77 Pine Street Owner LLC", AGENT, None, "E-XR"),  # same registered agent as Harbor's SPVs
    entity("E-XR", "Pine Street Partners LLC", "1 Market St, San Francisco, CA 94105", "96-3000002"),
    entity("E-Z1", "Quiet Storage LLC", "4 Dock Rd, Stockton, CA 95203", "00-0000000"),  # placeholder EIN
    entity("E-Z2", "Loud Logistics Inc", "9 Rail Way, Modesto, CA 95354", "00-0000000"),
    entity("E-P1", "Maria Lopez", "14 Elm St, Fresno, CA 93701"),
    entity("E-P2", "Maria Lopez", "16 Elm St, Fresno, CA 93701"),
]}


def _customers():
    def c(cid, eid, accounts, **kw):
        return customer(cid, [account(a) for a in accounts], chain(ENTITIES, eid) if eid else [], **kw)
    shard_a = [c("C01", "E-S1", ["A011", "A012"]), c("C04", "E-H1", ["A041"]), c("C05", "E-M1", ["A051"]),
               c("C07", "E-T1", ["A071"]), c("C09", "E-N1", ["A091"]), c("C11", "E-L1", ["A111"]),
               c("C13", "E-L3", ["A131"]), c("C15", "E-Z1", ["A151"]),
               c("C17", "E-P1", ["A171"], kind="residential", segment="single_family"),
               c("C19", None, ["A191", "A192"])]
    shard_b = [c("C02", "E-S2", ["A021"]), c("C03", "E-S3", ["A031"]), c("C06", "E-M2", ["A061"]),
               c("C08", "E-T2", ["A081"]), c("C10", "E-N2", ["A101"]), c("C12", "E-L2", ["A121"]),
               c("C14", "E-X1", ["A141"]), c("C16", "E-Z2", ["A161"]),
               c("C18", "E-P2", ["A181"], kind="residential", segment="single_family")]
    return shard_a, shard_b


EXPECTED = [
    {"A011", "A012", "A021", "A031", "A041", "A051", "A061"},  # Harbor: chain + shared EIN + re-keyed root
    {"A071", "A081"},                                          # one EIN across shards
    {"A091", "A101"},                                          # one owner keyed twice
    {"A111"}, {"A121"}, {"A131"}, {"A141"}, {"A151"}, {"A161"}, {"A171"}, {"A181"},
    {"A191", "A192"},                                          # a customer's accounts, no ownership on file
]


@pytest.fixture(scope="module")
def rules():
    return load_ruleset(RULES_DIR)


@pytest.fixture(scope="module")
def hand_features():
    a, b = _customers()
    return [account_features(shard_of(a, 0)), account_features(shard_of(b, 1))]


def _groups(portfolio_of: dict[str, str]) -> list[set[str]]:
    out = defaultdict(set)
    for a, p in portfolio_of.items():
        out[p].add(a)
    return sorted(out.values(), key=min)


def test_hand_built_portfolios_across_two_shards(rules, hand_features):
    links = [portfolio_links(f, rules) for f in hand_features]
    accounts = [a for f in hand_features for a in f.column("account_id").to_pylist()]
    got = resolve_portfolios(links, accounts)
    assert _groups(got) == sorted(EXPECTED, key=min)
    for group in EXPECTED:  # the id is "P" + the smallest account id of the portfolio
        assert {got[a] for a in group} == {"P" + min(group)}


def test_a_shard_alone_cannot_see_cross_shard_links(rules, hand_features):
    """The EIN shared by C07 (shard A) and C08 (shard B) links only when both shards' links are resolved."""
    a_only = resolve_portfolios([portfolio_links(hand_features[0], rules)],
                                hand_features[0].column("account_id").to_pylist())
    assert a_only["A071"] == "PA071"
    assert {a_only[x] for x in ("A011", "A041", "A051")} == {"PA011"}  # same root, same shard


def test_link_keys_are_the_rules_and_values(rules, hand_features):
    keys_a, keys_b = portfolio_links(hand_features[0], rules)
    assert len(keys_a) == len(keys_b)
    assert ("A071", "shared_tax_id\x1f95-2000001") in set(zip(keys_a, keys_b))
    assert ("A011", "common_root\x1fE-R1") in set(zip(keys_a, keys_b))
    assert not any(b.endswith("00-0000000") for b in keys_b)  # placeholder EINs are ignored
    assert not any(a == "A191" and b.startswith("owner_name_address") for a, b in zip(keys_a, keys_b))


def test_engine_equals_reference_on_hand_built_graphs(rules, hand_features):
    rows = [r for f in hand_features for r in f.to_pylist()]
    link_rules = [{"id": r.id, "key": r.key, "where": r.where.source if r.where else None, "ignore": r.ignore}
                  for r in rules.links]
    links = [portfolio_links(f, rules) for f in hand_features]
    assert resolve_portfolios(links, [r["account_id"] for r in rows]) == reference_portfolios(rows, link_rules)


@st.composite
def account_graphs(draw):
    """Accounts with a few string keys and list keys drawn from small pools (so they collide), and a split."""
    n = draw(st.integers(0, 30))
    pool = st.sampled_from(["k1", "k2", "k3", "k4", "k5", "", "x"])
    rows = [{"account_id": f"A{i:03d}", "customer_id": f"C{i // 2:03d}", "kind": draw(st.sampled_from(
                ["residential", "commercial"])),
             "root_entity_id": draw(st.one_of(st.none(), pool)),
             "tax_ids": draw(st.lists(pool, max_size=3)), "owner_keys": draw(st.lists(pool, max_size=2))}
            for i in draw(st.permutations(range(n)))]
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    return rows, cuts


FEATURE_TYPES = {"account_id": pa.string(), "customer_id": pa.string(), "kind": pa.string(),
                 "root_entity_id": pa.string(), "tax_ids": pa.list_(pa.string()),
                 "owner_keys": pa.list_(pa.string())}


def _table(rows):
    return pa.table({k: pa.array([r[k] for r in rows], t) for k, t in FEATURE_TYPES.items()})


@settings(max_examples=150)
@given(account_graphs(), st.randoms(use_true_random=False))
def test_resolve_equals_reference_whatever_the_sharding(rules, graph, rnd):
    rows, cuts = graph
    link_rules = [{"id": r.id, "key": r.key, "where": r.where.source if r.where else None, "ignore": r.ignore}
                  for r in rules.links]
    expected = reference_portfolios(rows, link_rules)
    bounds = [0, *cuts, len(rows)]
    parts = [rows[lo:hi] for lo, hi in zip(bounds, bounds[1:])]
    links = [portfolio_links(_table(p), rules) for p in parts]
    rnd.shuffle(links)
    links = [(list(a), list(b)) for a, b in links]
    for a, b in links:  # edge order within a shard does not matter either
        order = list(range(len(a)))
        rnd.shuffle(order)
        a[:], b[:] = [a[i] for i in order], [b[i] for i in order]
    ids = [r["account_id"] for r in rows]
    rnd.shuffle(ids)
    assert resolve_portfolios(links, ids) == expected


def test_resolve_edge_cases():
    assert resolve_portfolios([], []) == {}
    assert resolve_portfolios([([], [])], ["A2", "A1", "A2"]) == {"A1": "PA1", "A2": "PA2"}
    # links may join any strings; key nodes never become portfolio ids
    got = resolve_portfolios([(["A2", "A3"], ["t\x1fk", "t\x1fk"]), (["A1"], ["x\x1fy"])], ["A3", "A2", "A1"])
    assert got == {"A1": "PA1", "A2": "PA2", "A3": "PA2"}
    # Arrow arrays are accepted as they come from the shards
    got = resolve_portfolios([(pa.array(["B", "A"]), pa.array(["k", "k"]))], pa.array(["A", "B"]))
    assert got == {"A": "PA", "B": "PA"}


@pytest.mark.parametrize("links, accounts, field", [
    ([(["A1"], [])], ["A1"], "links[0]"),
    ([(["A1"], [None])], ["A1"], "links[0][1]"),
    ([(["A1"], [3])], ["A1"], "links[0][1]"),
    ([], ["A1", None], "account_ids"),
    ([(["A1"],)], ["A1"], "links[0]"),
])
def test_resolve_rejects_malformed_links(links, accounts, field):
    with pytest.raises(InvalidInput) as info:
        resolve_portfolios(links, accounts)
    assert info.value.field == field


# -- a generated base -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from grid.synth import generate_base

    out = tmp_path_factory.mktemp("rules-base")
    generate_base(out, 700, seed=7, months=2, chunk_customers=250)
    return str(out)


def _pairs(labels: dict[str, str]) -> set[tuple[str, str]]:
    groups = defaultdict(list)
    for a, label in labels.items():
        groups[label].append(a)
    return {p for g in groups.values() for p in itertools.combinations(sorted(g), 2)}


def test_generated_base_recovers_the_recorded_portfolios(base, rules):
    """Every pair of accounts the generator put in one portfolio is found, and no other pair (precision and
    recall over account pairs). Every link the generator records (shared tax id, parent chain to a common
    root, normalized name + address) is expressible by the shipped rules, so both must be exactly 1."""
    shards = load_base(base, 2)
    features = [account_features(s) for s in shards]
    links = [portfolio_links(f, rules) for f in features]
    accounts = [a for f in features for a in f.column("account_id").to_pylist()]
    got = resolve_portfolios(links, accounts)

    truth = {r["entity_id"]: r["portfolio_key"] for r in pq.read_table(f"{base}/truth/portfolios.parquet").to_pylist()}
    owner = {a: e for f in features
             for a, e in zip(f.column("account_id").to_pylist(), f.column("entity_id").to_pylist())}
    # a customer's accounts share its owning entity, so the truth links them too
    expected = {a: truth[e] for a, e in owner.items()}
    predicted_pairs, true_pairs = _pairs(got), _pairs(expected)
    hits = len(predicted_pairs & true_pairs)
    precision = hits / len(predicted_pairs) if predicted_pairs else 1.0
    recall = hits / len(true_pairs) if true_pairs else 1.0
    kinds = {k for k in pq.read_table(f"{base}/truth/portfolios.parquet").column("link_kind").to_pylist()}
    print(f"\nportfolios: {len(set(got.values()))} over {len(got)} accounts; pairs predicted "
          f"{len(predicted_pairs)}, true {len(true_pairs)}; precision {precision:.4f} recall {recall:.4f}; "
          f"link kinds in truth {sorted(kinds)}")
    assert {"parent", "tax_id", "name_address", "none"} <= kinds  # every shape is exercised
    assert len(true_pairs) > 50
    assert precision == 1.0 and recall == 1.0
    # one shard alone resolves fewer links: the base's portfolios do span shards
    alone = resolve_portfolios([links[0]], features[0].column("account_id").to_pylist())
    assert _pairs(alone) < {p for p in predicted_pairs if p[0] in alone and p[1] in alone}


def test_generated_base_sharding_does_not_change_portfolios(base, rules):
    one = [account_features(s) for s in load_base(base, 1)]
    three = [account_features(s) for s in load_base(base, 3)]
    resolved = []
    for features in (one, three):
        links = [portfolio_links(f, rules) for f in features]
        resolved.append(resolve_portfolios(links, [a for f in features for a in f.column("account_id").to_pylist()]))
    assert resolved[0] == resolved[1]
