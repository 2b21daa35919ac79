"""Resolve portfolios and classify 1M accounts: the rules engine beside pandas + networkx, same input, same run.

Input: a synthetic account-feature table (the columns ``grid.rules.account_features`` produces) of
BENCH_PORTFOLIO_ACCOUNTS accounts (1,000,000), split in two "shards" by customer, shaped like a utility base:
85% residential single-account customers; businesses with 1-6 accounts owned standalone, through
special-purpose-vehicle chains (shared root), under shared tax ids (spread across both shards) or keyed twice by
name + address; public customers with hospital and critical-infrastructure attributes. Rules: the shipped
``rules/`` files.

Work timed, per peer:
- engine: ``portfolio_links`` per shard, ``resolve_portfolios`` (Arrow dictionary encoding + the Cython
  union-find), ``classify_accounts`` per shard, ``portfolio_partials`` per shard (the Cython group-by),
  ``merge_keyed`` and ``classify_portfolios``.
- pandas + networkx: the same rules evaluated as pandas boolean expressions over the whole table, link edges by
  ``explode``, ``networkx.connected_components``, portfolio totals by ``groupby``.
Outputs (every account's portfolio, every account's key-account and load-priority result with reasons, every
portfolio's key-account result with reasons) are checked equal after timing.

Run: ``.venv/bin/python -m pytest bench/bench_portfolios.py -s`` or ``.venv/bin/python bench/bench_portfolios.py``.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from grid.rules import (classify_accounts, classify_portfolios, load_ruleset, merge_keyed, portfolio_links,
                        portfolio_partials, resolve_portfolios)
from grid.rules.portfolios import KEY_SEPARATOR

ACCOUNTS = int(os.environ.get("BENCH_PORTFOLIO_ACCOUNTS", "1000000"))
RULES_DIR = Path(__file__).resolve().parents[1] / "rules"
PROGRAMS = ("DEMAND_RESPONSE", "GREEN_POWER", "BUDGET_BILLING", "LOW_INCOME", "MEDICAL_BASELINE", "EV_RATE")


# ---- input ------------------------------------------------------------------------------------------------------
def make_features(n_accounts: int = ACCOUNTS, seed: int = 0, n_shards: int = 2) -> list[pa.Table]:
    """Feature tables of ``n_shards`` shards holding about ``n_accounts`` accounts together."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in (
        "customer_id", "account_id", "kind", "segment", "status", "spend_12m_cents", "peak_demand_w", "usage_wh",
        "n_sites", "site_keys", "programs", "sp_load_priority", "entity_id", "root_entity_id", "tax_ids",
        "owner_keys", "attr.hospital", "attr.critical_infrastructure", "attr.life_support",
        "attr.emergency_services", "attr.employees")}
    shard_of: list[int] = []
    n_res = int(n_accounts * 0.85)
    n_acc = 0
    cust = 0

    # per-account draws made in bulk up front (a scalar draw per field per account would take most of a minute)
    cap = n_accounts + 64
    draw = {"sites": rng.integers(1, 4, cap), "big_spend": rng.lognormal(17.0, 1.2, cap).astype(np.int64),
            "small_spend": rng.lognormal(11.3, 0.5, cap).astype(np.int64),
            "big_peak": rng.lognormal(12.8, 1.0, cap).astype(np.int64),
            "small_peak": rng.lognormal(8.5, 0.4, cap).astype(np.int64), "active": rng.random(cap) < 0.97,
            "priority": rng.random(cap), "programs": rng.random((cap, len(PROGRAMS))) < 0.06,
            "site_keys": rng.integers(-(2**62), 2**62, (cap, 3))}
    draw = {k: v.tolist() for k, v in draw.items()}

    def add(kind, segment, root, tax_ids, owner_keys, n, attrs, big):
        nonlocal n_acc, cust
        cid = f"C{cust:08d}"
        shard_of.extend([cust % n_shards] * n)
        for _ in range(n):
            i = n_acc
            aid = f"A{i:09d}"
            n_acc += 1
            sites = draw["sites"][i] if big else 1
            peak = draw["big_peak"][i] if big else draw["small_peak"][i]
            cols["customer_id"].append(cid)
            cols["account_id"].append(aid)
            cols["kind"].append(kind)
            cols["segment"].append(segment)
            cols["status"].append("active" if draw["active"][i] else "closed")
            cols["spend_12m_cents"].append(draw["big_spend"][i] if big else draw["small_spend"][i])
            cols["peak_demand_w"].append(peak)
            cols["usage_wh"].append(peak * 3000)
            cols["n_sites"].append(sites)
            cols["site_keys"].append(draw["site_keys"][i][:sites])
            cols["programs"].append([p for p, on in zip(PROGRAMS, draw["programs"][i]) if on])
            r = draw["priority"][i]
            cols["sp_load_priority"].append("critical" if r < 0.01 else "priority" if r < 0.03 else "normal")
            cols["entity_id"].append(root)
            cols["root_entity_id"].append(root)
            cols["tax_ids"].append(tax_ids)
            cols["owner_keys"].append(owner_keys)
            for k in ("hospital", "critical_infrastructure", "life_support", "emergency_services", "employees"):
                cols[f"attr.{k}"].append(attrs.get(k))
        cust += 1

    life_support = (rng.random(n_res) < 0.012).tolist()
    for i in range(n_res):
        add("residential", "single_family", f"R{i}", [], [f"person {i}|{i} elm st"], 1,
            {"life_support": True} if life_support[i] else {}, False)
    g = 0
    while n_acc < n_accounts:
        shape = rng.random()
        members = 1 if shape < 0.5 else int(rng.integers(2, 8))
        kind = "industrial" if rng.random() < 0.2 else "commercial"
        attrs = {"employees": int(rng.integers(5, 2000))} if kind == "industrial" else {}
        if rng.random() < 0.05:
            kind, attrs = "public", ({"hospital": True} if rng.random() < 0.5 else {"critical_infrastructure": True})
        for m in range(members):
            n = int(rng.integers(1, 7))
            if shape < 0.5 or shape >= 0.95:  # standalone, or a look-alike (its own keys)
                add(kind, "office", f"E{g}-{m}", [f"T{g}-{m}"], [f"biz {g} {m}|{g} main st"], n, attrs, True)
            elif shape < 0.7:  # SPV chain: own SPV keys, shared holding and root
                add(kind, "office", f"G{g}", [f"T{g}-{m}", f"TH{g}"], [f"spv {g} {m}|agent", f"root {g}|hq"], n,
                    attrs, True)
            elif shape < 0.85:  # operators under one EIN
                add(kind, "retail", f"E{g}-{m}", [f"TX{g}"], [f"op {g} {m}|{m} oak ave"], n, attrs, True)
            else:  # one owner keyed twice: no tax id
                add(kind, "retail", f"E{g}-{m}", [], [f"owner {g}|1 market st"], n, attrs, True)
        g += 1
    table = pa.table({k: pa.array(v) for k, v in cols.items()})
    shard = np.array(shard_of)
    return [table.filter(pa.array(shard == s)) for s in range(n_shards)]


# ---- the engine -------------------------------------------------------------------------------------------------
def engine(shards: list[pa.Table], rules, stages: dict | None = None):
    """The whole pipeline; ``stages`` (if given) receives the seconds of each step."""
    clock = [time.perf_counter()]

    def lap(name):
        now = time.perf_counter()
        if stages is not None:
            stages[name] = now - clock[0]
        clock[0] = now

    links = [portfolio_links(f, rules) for f in shards]
    lap("links")
    accounts = [a for f in shards for a in f.column("account_id").to_pylist()]
    portfolio_of = resolve_portfolios(links, accounts)
    lap("resolve")
    classified = [r for f in shards for r in classify_accounts(f, rules)]
    lap("classify accounts")
    parts = [portfolio_partials(f, portfolio_of, rules) for f in shards]
    lap("portfolio partials")
    merged = merge_keyed(parts)
    lap("merge")
    portfolios = classify_portfolios(merged, rules)
    lap("classify portfolios")
    return portfolio_of, classified, portfolios


# ---- pandas + networkx --------------------------------------------------------------------------------------------
def _explode_any(s: pd.Series, test) -> pd.Series:
    ex = s.explode()
    hit = test(ex).fillna(False).astype(bool)
    return hit.groupby(level=0).any().reindex(s.index, fill_value=False)


def pandas_mask(tree: dict, df: pd.DataFrame) -> pd.Series:
    """A predicate tree as a pandas boolean Series (same semantics as grid.rules.predicates on this data)."""
    if "all" in tree:
        out = pandas_mask(tree["all"][0], df)
        for t in tree["all"][1:]:
            out = out & pandas_mask(t, df)
        return out
    if "any" in tree:
        out = pandas_mask(tree["any"][0], df)
        for t in tree["any"][1:]:
            out = out | pandas_mask(t, df)
        return out
    if "not" in tree:
        return ~pandas_mask(tree["not"], df)
    field, op, value = tree["field"], tree["op"], tree.get("value")
    if field not in df:
        return pd.Series(False, index=df.index)
    s = df[field]
    listed = s.dtype == object and len(s) and isinstance(s.dropna().iloc[0] if s.notna().any() else None,
                                                          (list, np.ndarray))
    if op == "exists":
        return s.map(lambda v: v is not None and len(v) > 0) if listed else s.notna()
    if op == "contains":
        return _explode_any(s, lambda e: e == value) if listed else s.str.contains(value, regex=False).fillna(False)
    if op == "in":
        return _explode_any(s, lambda e: e.isin(value)) if listed else s.isin(value)
    if isinstance(value, bool):  # bools with missing values are objects: a missing value never matches
        return s.map(lambda v: v is not None and type(v) is type(value) and {"eq": v == value,
                                                                             "ne": v != value}[op])
    result = {"eq": s == value, "ne": s != value, "gt": s > value, "ge": s >= value, "lt": s < value,
              "le": s <= value}[op]
    return result & s.notna()


def _reasons(masks: pd.DataFrame) -> list[list[str]]:
    """Fired rule ids per row, by the boolean-matrix-dot-strings idiom."""
    if masks.shape[1] == 0:
        return [[] for _ in range(len(masks))]
    joined = masks.astype(object).dot(pd.Series([c + "," for c in masks.columns], index=masks.columns)) \
        if masks.shape[0] else pd.Series([], dtype=object)
    return [j[:-1].split(",") if isinstance(j, str) and j else [] for j in joined.tolist()]


def peers_pandas(table: pa.Table, rules):
    df = table.to_pandas()
    accounts = df["account_id"]
    graph = nx.Graph()
    graph.add_nodes_from(accounts.tolist())
    for rule in rules.links:
        s = df[rule.key]
        if rule.where is not None:
            s = s[pandas_mask(rule.where.source, df)]
        ex = s.explode() if s.dtype == object and isinstance(s.iloc[0], (list, np.ndarray)) else s
        ex = ex.dropna()
        ex = ex[(ex != "") & ~ex.isin(list(rule.ignore))]
        keys = rule.id + KEY_SEPARATOR + ex.astype(str)
        graph.add_edges_from(zip(accounts.loc[ex.index].tolist(), keys.tolist()))
    portfolio_of = {}
    for component in nx.connected_components(graph):
        members = [x for x in component if KEY_SEPARATOR not in x]
        if members:
            pid = "P" + min(members)
            for a in members:
                portfolio_of[a] = pid

    ka, lp = rules.key_accounts, rules.load_priority
    eligible = pandas_mask(ka.account_eligible.source, df) if ka.account_eligible else True
    key_masks = pd.DataFrame({r.id: pandas_mask(r.when.source, df) & eligible for r in ka.account_rules})
    key = key_masks.any(axis=1)
    raw = pd.DataFrame({r.id: pandas_mask(r.when.source, df) for r in lp.rules})
    ranks = pd.Series({r.id: lp.rank(r.level) for r in lp.rules})
    level = raw.mul(ranks + 1).max(axis=1).sub(1).clip(lower=lp.rank(lp.default)).astype(int)
    at_level = raw & pd.DataFrame({r.id: level == lp.rank(r.level) for r in lp.rules})
    levels = list(lp.levels)
    classified = [{"account_id": a, "customer_id": c, "key_account": k, "reasons": kr,
                   "load_priority": levels[lv], "load_priority_reasons": lr, "rules_version": rules.version}
                  for a, c, k, kr, lv, lr in zip(accounts.tolist(), df["customer_id"].tolist(), key.tolist(),
                                                 _reasons(key_masks), level.tolist(), _reasons(at_level))]

    df["pid"] = accounts.map(portfolio_of)
    df["key"] = key.astype(np.int64)
    df["level"] = level
    g = df.groupby("pid", sort=True)
    totals = g.agg(n_accounts=("account_id", "size"), n_customers=("customer_id", "nunique"),
                   spend_12m_cents=("spend_12m_cents", "sum"), max_account_spend_12m_cents=("spend_12m_cents", "max"),
                   peak_demand_w=("peak_demand_w", "sum"), max_account_peak_demand_w=("peak_demand_w", "max"),
                   usage_wh=("usage_wh", "sum"), n_key_accounts=("key", "sum"), level=("level", "max"))
    totals["n_sites"] = df[["pid", "site_keys"]].explode("site_keys").dropna().groupby("pid")["site_keys"] \
        .nunique().reindex(totals.index, fill_value=0)
    programs = df[["pid", "programs"]].explode("programs").dropna()
    totals["programs"] = programs.groupby("pid")["programs"].agg(lambda s: sorted(set(s))) \
        .reindex(totals.index)
    totals["programs"] = totals["programs"].map(lambda v: v if isinstance(v, list) else [])
    totals["kinds"] = g["kind"].agg(lambda s: sorted(set(s.dropna())))
    totals["load_priority"] = [levels[i] for i in totals["level"].tolist()]
    port_masks = pd.DataFrame({r.id: pandas_mask(r.when.source, totals) for r in ka.portfolio_rules},
                              index=totals.index)
    portfolios = {pid: {"key_account": bool(r), "reasons": r}
                  for pid, r in zip(totals.index.tolist(), _reasons(port_masks))}
    return portfolio_of, classified, portfolios


def check_equal(engine_out, peer_out) -> None:
    pof_a, acc_a, port_a = engine_out
    pof_b, acc_b, port_b = peer_out
    assert pof_a == pof_b, "portfolios differ"
    key = ("key_account", "reasons", "load_priority", "load_priority_reasons")
    by_b = {r["account_id"]: r for r in acc_b}
    for r in acc_a:
        assert tuple(r[k] for k in key) == tuple(by_b[r["account_id"]][k] for k in key), r["account_id"]
    assert set(port_a) == set(port_b)
    for pid, r in port_a.items():
        assert (r["key_account"], r["reasons"]) == (port_b[pid]["key_account"], port_b[pid]["reasons"]), pid


# ---- pytest-benchmark ---------------------------------------------------------------------------------------------
_times: dict[str, float] = {}
_outputs: dict[str, object] = {}


@pytest.fixture(scope="module")
def inputs():
    shards = make_features()
    return shards, pa.concat_tables(shards), load_ruleset(RULES_DIR)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if {"engine", "pandas+networkx"} <= set(_times):
        check_equal(_outputs["engine"], _outputs["pandas+networkx"])
        base = _times["engine"]
        print(f"\n{ACCOUNTS:,} accounts: resolve portfolios + classify accounts and portfolios")
        for peer, t in _times.items():
            print(f"  {peer:16s} {t:8.2f} s  {t / base:6.1f}x")


def test_engine(benchmark, inputs):
    benchmark.group = "portfolios resolve + classify"
    shards, _, rules = inputs
    _outputs["engine"] = benchmark.pedantic(engine, args=(shards, rules), rounds=1, iterations=1)
    _times["engine"] = benchmark.stats.stats.min


def test_pandas_networkx(benchmark, inputs):
    benchmark.group = "portfolios resolve + classify"
    _, whole, rules = inputs
    _outputs["pandas+networkx"] = benchmark.pedantic(peers_pandas, args=(whole, rules), rounds=1, iterations=1)
    _times["pandas+networkx"] = benchmark.stats.stats.min


# ---- script -------------------------------------------------------------------------------------------------------
def main() -> None:
    t0 = time.perf_counter()
    shards = make_features()
    whole = pa.concat_tables(shards)
    rules = load_ruleset(RULES_DIR)
    print(f"{whole.num_rows:,} accounts generated in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    ours = engine(shards, rules, stages := {})
    t_engine = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = peers_pandas(whole, rules)
    t_peer = time.perf_counter() - t0
    check_equal(ours, theirs)
    n_port = len(set(ours[0].values()))
    n_key = sum(p["key_account"] for p in ours[2].values())
    print(f"{whole.num_rows:,} accounts -> {n_port:,} portfolios ({n_key:,} key); outputs equal")
    print(f"  engine           {t_engine:8.2f} s  1.0x    ("
          + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()) + ")")
    print(f"  pandas+networkx  {t_peer:8.2f} s  {t_peer / t_engine:.1f}x")


if __name__ == "__main__":
    main()
