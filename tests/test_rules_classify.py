"""Account features, key-account and load-priority classification, portfolio totals: engine == reference."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid.errors import InvalidInput
from grid.rules import (account_features, classify_accounts, classify_portfolios, customer_classification,
                        load_ruleset, merge_keyed, portfolio_links, portfolio_partials, resolve_portfolios)
from grid.rules.features import site_key
from reference_rules import classify_account, portfolio_totals
from rules_fixtures import (RULES_DIR, account, add_bills, add_usage, chain, customer, entity, load_base,
                            service_point, shard_of)


@pytest.fixture(scope="module")
def rules():
    return load_ruleset(RULES_DIR)


def _reference_rules(rules):
    ka, lp = rules.key_accounts, rules.load_priority
    key = {"eligible": ka.account_eligible.source if ka.account_eligible else None,
           "rules": [(r.id, r.when.source) for r in ka.account_rules]}
    load = {"levels": list(lp.levels), "default": lp.default,
            "rules": [(r.id, r.level, r.when.source) for r in lp.rules]}
    return key, load


# -- features -------------------------------------------------------------------------------------------------
def _hand_shard():
    ents = {"E1": entity("E1", "Cold Chain Holdings Inc", "9 Dock St, Oakland, CA 94607", "94-1111111"),
            "E2": entity("E2", "Cold Chain Stockton LLC", "9 Dock Street, Oakland, CA 94607", "94-2222222", "E1"),
            "E3": entity("E3", "Nameless", "")}
    sps = [service_point("S1", "12 Industrial Way, Stockton, CA", priority="priority", interval=15),
           service_point("S2", "12 INDUSTRIAL WAY,  Stockton CA", priority="critical", interval=15),
           service_point("S3", "14 Industrial Way, Stockton, CA", interval=60)]
    recs = [customer("C1", [account("A1", sps, programs=["DEMAND_RESPONSE", "GREEN_POWER", "DEMAND_RESPONSE"])],
                     chain(ents, "E2"), kind="industrial", segment="cold_storage",
                     attributes={"employees": 640, "site": {"dock_doors": 12, "sprinklers": True}, "tags": ["a"],
                                 "empty": {}}),
            customer("C2", [account("A2", [], status="closed")], chain(ents, "E3"), kind="commercial",
                     attributes={"employees": "about 30"})]
    shard = shard_of(recs)
    bills = []
    for k in range(14):  # 14 monthly bills: only the latest 12 count
        start = dt.date(2025, 1, 1) + dt.timedelta(days=31 * k)
        start = start.replace(day=1)
        bills.append((f"B{k:02d}", "A1", "C1", start, start + dt.timedelta(days=28), 1000 * (k + 1)))
    add_bills(shard, bills)
    n15 = 31 * 96
    s1 = np.zeros(n15, np.int32)
    s1[100] = 250  # 250 Wh in 15 minutes = 1,000 W
    s2 = np.full(n15, 10, np.int32)
    add_usage(shard, "2026-01", 15, {"S1": s1, "S2": s2})
    s3 = np.zeros(31 * 24, np.int32)
    s3[5] = 900  # 900 Wh in an hour = 900 W
    add_usage(shard, "2026-01", 60, {"S3": s3})
    return shard


def test_hand_built_features():
    f = account_features(_hand_shard())
    rows = {r["account_id"]: r for r in f.to_pylist()}
    a1, a2 = rows["A1"], rows["A2"]
    assert a1["spend_12m_cents"] == sum(1000 * (k + 1) for k in range(2, 14)) and a1["bills_12m"] == 12
    assert a1["peak_demand_w"] == 1000
    assert a1["usage_wh"] == 250 + 10 * 31 * 96 + 900
    assert a1["n_service_points"] == 3 and a1["n_sites"] == 2  # S1 and S2 are one premise keyed twice
    assert a1["sp_load_priority"] == "critical"
    assert a1["programs"] == ["DEMAND_RESPONSE", "GREEN_POWER"]
    assert (a1["entity_id"], a1["root_entity_id"], a1["ownership_depth"]) == ("E2", "E1", 1)
    assert a1["tax_id"] == "94-2222222" and a1["tax_ids"] == ["94-2222222", "94-1111111"]
    assert a1["owner_key"] == "cold chain stockton|9 dock st oakland ca 94607"
    assert a1["owner_keys"] == [a1["owner_key"], "cold chain holdings|9 dock st oakland ca 94607"]
    assert a1["attr.site.dock_doors"] == 12 and a1["attr.site.sprinklers"] is True
    assert a1["attr.tags"] == ["a"]
    assert a1["attr.empty"] == b"{}"  # an empty map: kept as JSON, seen by `exists` only
    assert a1["attr.employees"] == 640 and a2["attr.employees"] == "about 30"  # a union column
    assert pa.types.is_union(f.schema.field("attr.employees").type)
    assert (a2["spend_12m_cents"], a2["peak_demand_w"], a2["n_sites"], a2["sp_load_priority"]) == (0, 0, 0, None)
    assert a2["owner_key"] is None and a2["owner_keys"] == []  # no address: never a link key
    assert set(a1["site_keys"]) == {site_key("12 Industrial Way, Stockton, CA"),
                                    site_key("14 Industrial Way, Stockton, CA")}


def test_features_of_some_customers_equal_their_rows_of_the_whole():
    shard = _hand_shard()
    whole = {r["account_id"]: r for r in account_features(shard).to_pylist()}
    some = account_features(shard, ["C2", "C9"]).to_pylist()
    assert [r["account_id"] for r in some] == ["A2"]
    # the same values; attributes no selected customer has are absent, which reads as missing
    assert some[0] == {k: v for k, v in whole["A2"].items() if k in some[0]}
    assert all(whole["A2"][k] is None for k in set(whole["A2"]) - set(some[0]))


def test_empty_shard():
    f = account_features(shard_of([]))
    assert f.num_rows == 0
    rules = load_ruleset(RULES_DIR)
    assert classify_accounts(f, rules) == []
    assert portfolio_links(f, rules) == ([], [])
    merged = merge_keyed([portfolio_partials(f, {}, rules)])
    assert classify_portfolios(merged, rules) == {}


# -- a generated base ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from grid.synth import generate_base

    out = tmp_path_factory.mktemp("classify-base")
    generate_base(out, 500, seed=11, months=2, chunk_customers=250)
    return str(out)


@pytest.fixture(scope="module")
def shards(base):
    return load_base(base, 2)


@pytest.fixture(scope="module")
def features(shards):
    return [account_features(s) for s in shards]


def test_generated_features_equal_a_plain_reference(shards, features):
    for shard, f in zip(shards, features):
        for row in f.to_pylist():
            bills = sorted(shard.bills.for_accounts([row["account_id"]]), key=lambda b: b["period_start"])
            assert row["spend_12m_cents"] == sum(b["total_cents"] for b in bills[-12:])
            peak = energy = 0
            rec = shard.records[row["customer_id"]]
            acc = next(a for a in rec["accounts"] if a["account_id"] == row["account_id"])
            for sp in acc["service_points"]:
                store = shard.usage[sp["interval_minutes"]]
                for month in store.months:
                    imp, _ = store.series(store.row_of[sp["service_point_id"]], month)
                    peak = max(peak, int(imp.max()) * 60 // sp["interval_minutes"])
                    energy += int(imp.astype(np.int64).sum())
            assert (row["peak_demand_w"], row["usage_wh"]) == (peak, energy)
            assert row["tax_ids"] == list(dict.fromkeys(e["tax_id"] for e in rec["ownership"] if e["tax_id"]))


def test_generated_features_of_a_few_customers_equal_the_whole(shards, features):
    """Re-classification after a write reads a few customers: the same rows as the whole shard's."""
    whole = {r["account_id"]: r for r in features[0].to_pylist()}
    few = sorted(shards[0].records)[::40]
    some = account_features(shards[0], few).to_pylist()
    assert {r["customer_id"] for r in some} == set(few)
    for row in some:
        assert row == {k: v for k, v in whole[row["account_id"]].items() if k in row}


def test_classify_accounts_equals_reference(features, rules):
    key, load = _reference_rules(rules)
    seen_key = seen_levels = 0
    for f in features:
        got = classify_accounts(f, rules)
        for row, result in zip(f.to_pylist(), got):
            expected = classify_account(row, key, load)
            assert {k: result[k] for k in expected} == expected
            assert result["account_id"] == row["account_id"] and result["rules_version"] == rules.version
            seen_key += result["key_account"]
            seen_levels += result["load_priority"] != "normal"
    assert seen_key > 0 and seen_levels > 0  # the base exercises the rules


def _portfolios(features, rules):
    links = [portfolio_links(f, rules) for f in features]
    return resolve_portfolios(links, [a for f in features for a in f.column("account_id").to_pylist()])


def test_portfolio_totals_and_classification_equal_reference(features, rules):
    portfolio_of = _portfolios(features, rules)
    key, load = _reference_rules(rules)
    rows = [r for f in features for r in f.to_pylist()]
    classes = {r["account_id"]: classify_account(r, key, load) for r in rows}
    classes["__levels__"] = list(rules.load_priority.levels)
    expected = portfolio_totals(rows, portfolio_of, classes)

    got = classify_portfolios(merge_keyed(portfolio_partials(f, portfolio_of, rules) for f in features), rules)
    assert set(got) == set(expected) == set(portfolio_of.values())
    from reference_rules import matches
    n_key = 0
    for pid, result in got.items():
        totals = dict(result["totals"])
        assert totals == {k: v for k, v in expected[pid].items() if k != "load_priority"}
        assert result["load_priority"] == expected[pid]["load_priority"]
        row = {"portfolio_id": pid, **expected[pid]}
        assert result["reasons"] == [r.id for r in rules.key_accounts.portfolio_rules if matches(r.when.source, row)]
        assert result["key_account"] == bool(result["reasons"])
        n_key += result["key_account"]
    assert 0 < n_key < len(got)


def test_portfolio_partials_sharded_equal_unsharded(base, features, rules):
    portfolio_of = _portfolios(features, rules)
    two = classify_portfolios(merge_keyed(portfolio_partials(f, portfolio_of, rules) for f in features), rules)
    one_features = account_features(load_base(base, 1)[0])
    one = classify_portfolios(merge_keyed([portfolio_partials(one_features, portfolio_of, rules)]), rules)
    reverse = classify_portfolios(merge_keyed(portfolio_partials(f, portfolio_of, rules)
                                              for f in reversed(features)), rules)
    assert one == two == reverse


def test_stale_or_missing_account_rules_are_refused(features, rules, tmp_path):
    portfolio_of = _portfolios(features, rules)
    bare = merge_keyed(portfolio_partials(f, portfolio_of) for f in features)
    with pytest.raises(InvalidInput) as info:
        classify_portfolios(bare, rules)  # the shipped portfolio rules use n_key_accounts
    assert "n_key_accounts" in info.value.detail
    with pytest.raises(InvalidInput):
        merge_keyed([portfolio_partials(features[0], portfolio_of), portfolio_partials(features[1], portfolio_of,
                                                                                      rules)])


def test_customer_classification(features, rules):
    portfolio_of = _portfolios(features, rules)
    accounts = [r for f in features for r in classify_accounts(f, rules)]
    portfolios = classify_portfolios(merge_keyed(portfolio_partials(f, portfolio_of, rules) for f in features),
                                     rules)
    customers = customer_classification(accounts, portfolio_of, portfolios, rules)
    by_customer = {}
    for a in accounts:
        by_customer.setdefault(a["customer_id"], []).append(a)
    levels = rules.load_priority.levels
    for cid, c in customers.items():
        accs = by_customer[cid]
        assert c["portfolio_ids"] == [c["portfolio_id"]]  # the same_customer rule keeps a customer in one
        port = portfolios[c["portfolio_id"]]
        expected_reasons = {f"account:{r}" for a in accs for r in a["reasons"]} | {
            f"portfolio:{r}" for r in port["reasons"]}
        assert set(c["reasons"]) == expected_reasons
        assert c["key_account"] == bool(expected_reasons)
        assert c["load_priority"] == max((a["load_priority"] for a in accs), key=levels.index)


# -- portfolio partials on random tables --------------------------------------------------------------------------
@st.composite
def feature_tables(draw):
    n = draw(st.integers(0, 25))
    codes = st.sampled_from(["DR", "GP", "LI"])
    rows = [{"account_id": f"A{i:02d}", "customer_id": f"C{draw(st.integers(0, 6))}",
             "kind": draw(st.sampled_from([None, "commercial", "public"])),
             "spend_12m_cents": draw(st.integers(-10**6, 10**12)), "peak_demand_w": draw(st.integers(0, 10**9)),
             "usage_wh": draw(st.integers(0, 10**12)), "programs": draw(st.lists(codes, max_size=3, unique=True)),
             "site_keys": draw(st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(0, 4), max_size=3,
                                        unique=True))}
            for i in range(n)]
    portfolio_of = {r["account_id"]: f"P{draw(st.integers(0, 4))}" for r in rows if draw(st.booleans())}
    shard_of = {f"C{c}": draw(st.integers(0, 2)) for c in range(7)}  # a customer lives on one shard
    return rows, portfolio_of, shard_of


TYPES = {"account_id": pa.string(), "customer_id": pa.string(), "kind": pa.string(), "spend_12m_cents": pa.int64(),
         "peak_demand_w": pa.int64(), "usage_wh": pa.int64(), "programs": pa.list_(pa.string()),
         "site_keys": pa.list_(pa.int64())}


@settings(max_examples=60)
@given(feature_tables())
def test_portfolio_partials_equal_reference_on_random_tables(rules, table):
    rows, portfolio_of, shard_of = table
    parts = [pa.table({k: pa.array([r[k] for r in rows if shard_of[r["customer_id"]] == s], t)
                       for k, t in TYPES.items()}) for s in range(3)]
    merged = merge_keyed(portfolio_partials(p, portfolio_of) for p in parts)
    from grid.rules import portfolio_table
    got = {r.pop("portfolio_id"): r for r in portfolio_table(merged).to_pylist()}
    assert got == portfolio_totals(rows, portfolio_of, None)
