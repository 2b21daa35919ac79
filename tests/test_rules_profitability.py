"""Profitability: the price curve file, exact energy cost, revenue, service cost; sharded == unsharded."""
from __future__ import annotations

import datetime as dt
import importlib.util
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest

from grid.errors import InvalidInput
from grid.rules import (account_profitability, load_ruleset, merge_keyed, profitability_partials,
                        rank_profitability)
from grid.rules.costs import PriceCurve
from grid.timegrid import calendar, month_bounds
from rules_fixtures import RULES_DIR, account, add_bills, add_usage, customer, load_base, service_point, shard_of


@pytest.fixture(scope="module")
def rules():
    return load_ruleset(RULES_DIR)


def test_price_file_is_what_its_script_writes():
    spec = importlib.util.spec_from_file_location("make_wholesale_curve",
                                                  RULES_DIR / "prices" / "make_wholesale_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == (RULES_DIR / "prices" / "wholesale_hourly.csv").read_text()


def test_price_curve_reads_exactly(rules):
    text = (RULES_DIR / "prices" / "wholesale_hourly.csv").read_text().splitlines()[1:]
    prices = [int(Decimal(line.rsplit(",", 1)[1]) * 1000) for line in text]
    assert rules.prices.micro_per_kwh.tolist() == prices
    assert min(prices) < 0 < max(prices)  # spring middays go negative, heat-wave evenings spike
    cal = calendar(*month_bounds("2025-11"), 15, rules.prices.timezone)  # DST ends: 25-hour day
    price, inside = rules.prices.per_interval(cal.utc_start)
    assert inside.all() and cal.n == (30 * 24 + 1) * 4
    assert price.reshape(-1, 4).min(axis=1).tolist() == price.reshape(-1, 4).max(axis=1).tolist() == prices[:721]


def _nano_reference(series: dict[str, tuple[str, int, np.ndarray]], prices: PriceCurve) -> dict[str, int]:
    """Nano-dollars per service point: interval by interval, the hour's price from the curve, Python ints."""
    price_of = {prices.start + 3600 * h: int(p) for h, p in enumerate(prices.micro_per_kwh.tolist())}
    out = {}
    for sp, (month, iv, wh) in series.items():
        cal = calendar(*month_bounds(month), iv, prices.timezone)
        out[sp] = sum(int(w) * price_of.get(int(t) - int(t) % 3600, 0) for w, t in zip(wh.tolist(),
                                                                                     cal.utc_start.tolist()))
    return out


def _round_micro(nano_times_ppm: int) -> int:
    return int((Decimal(nano_times_ppm) / Decimal(10**9)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def test_hand_built_account(rules):
    sps = [service_point("S1", "1 Mill Rd", interval=15), service_point("S2", "3 Mill Rd", interval=60)]
    shard = shard_of([customer("C1", [account("A1", sps)], [], kind="industrial"),
                      customer("C2", [account("A2", [])], [], kind="residential")])
    rng = np.random.default_rng(3)
    s1 = rng.integers(0, 40_000, calendar(*month_bounds("2026-01"), 15, "America/Los_Angeles").n).astype(np.int32)
    s2 = rng.integers(0, 90_000, calendar(*month_bounds("2026-03"), 60, "America/Los_Angeles").n).astype(np.int32)
    add_usage(shard, "2026-01", 15, {"S1": s1})
    add_usage(shard, "2026-03", 60, {"S2": s2})
    add_usage(shard, "2024-03", 60, {"S2": s2})  # outside the curve's window: costs nothing
    add_bills(shard, [("B1", "A1", "C1", dt.date(2026, 1, 1), dt.date(2026, 2, 1), 123_456),
                      ("B2", "A1", "C1", dt.date(2026, 3, 1), dt.date(2026, 4, 1), 200_000),
                      ("B3", "A1", "C1", dt.date(2024, 3, 1), dt.date(2024, 4, 1), 999_999),   # before the window
                      ("B4", "A2", "C2", dt.date(2026, 10, 1), dt.date(2026, 11, 1), 4_321)])
    got = {r["account_id"]: r for r in account_profitability(shard, rules.prices, rules.costs).to_pylist()}
    nano = _nano_reference({"S1": ("2026-01", 15, s1), "S2": ("2026-03", 60, s2)}, rules.prices)
    energy = _round_micro((nano["S1"] + nano["S2"]) * (10**6 + rules.costs.losses_ppm))
    service = 2 * rules.costs.service_micro_per_month["industrial"]
    assert got["A1"] == {"account_id": "A1", "customer_id": "C1", "kind": "industrial", "months_billed": 2,
                         "revenue_cents": 323_456, "import_wh": int(s1.sum()) + int(s2.sum()),
                         "energy_cost_micro": energy, "service_cost_micro": service,
                         "margin_micro": 323_456 * 10_000 - energy - service}
    assert got["A2"]["energy_cost_micro"] == 0
    assert got["A2"]["service_cost_micro"] == rules.costs.service_micro_per_month["residential"]

    ranking = rank_profitability(merge_keyed([profitability_partials(shard, {"A1": "PX", "A2": "PX"}, rules.prices,
                                                                     rules.costs)]))
    assert len(ranking) == 1 and ranking[0]["n_accounts"] == 2
    assert ranking[0]["margin_micro"] == got["A1"]["margin_micro"] + got["A2"]["margin_micro"]


def test_overflow_is_refused_not_wrapped(rules):
    cal = calendar(*month_bounds("2026-01"), 60, "America/Los_Angeles")
    huge = PriceCurve(int(cal.utc_start[0]), np.full(cal.n, 50_000_000, np.int64), "America/Los_Angeles",
                      ("2026-01",))
    shard = shard_of([customer("C1", [account("A1", [service_point("S1", "x")])], [])])
    add_usage(shard, "2026-01", 60, {"S1": np.full(cal.n, 2**31 - 1, np.int32)})
    with pytest.raises(InvalidInput, match="overflow"):
        account_profitability(shard, huge, rules.costs)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from grid.synth import generate_base

    out = tmp_path_factory.mktemp("profit-base")
    generate_base(out, 300, seed=5, months=2, chunk_customers=150)
    return str(out)


def test_generated_base_energy_cost_equals_reference(base, rules):
    shard = load_base(base, 1)[0]
    got = {r["account_id"]: r for r in account_profitability(shard, rules.prices, rules.costs).to_pylist()}
    store = shard.usage[60]
    checked = 0
    for rec in list(shard.records.values())[:60]:
        for acc in rec["accounts"]:
            series = {}
            for sp in acc["service_points"]:
                for month in store.months:
                    imp, _ = store.series(store.row_of[sp["service_point_id"]], month)
                    series[(sp["service_point_id"], month)] = (month, 60, imp)
            nano = sum(_nano_reference(series, rules.prices).values())
            assert got[acc["account_id"]]["energy_cost_micro"] == _round_micro(nano * (10**6 +
                                                                                       rules.costs.losses_ppm))
            checked += 1
    assert checked >= 60


def test_ranking_sharded_equals_unsharded(base, rules):
    def ranking(n_shards):
        shards = load_base(base, n_shards)
        accounts = sorted(a["account_id"] for s in shards for r in s.records.values() for a in r["accounts"])
        portfolio_of = {a: f"P{int(a[1:]) % 17}" for a in accounts}  # any grouping: the merge must not care
        parts = [profitability_partials(s, portfolio_of, rules.prices, rules.costs) for s in shards]
        return rank_profitability(merge_keyed(parts)), shards

    one, shards = ranking(1)
    three, _ = ranking(3)
    assert one == three
    margins = [r["margin_micro"] for r in one]
    assert margins == sorted(margins, reverse=True) and [r["rank"] for r in one] == list(range(1, len(one) + 1))
    total = sum(r["margin_micro"] for s in shards for r in account_profitability(s, rules.prices,
                                                                                 rules.costs).to_pylist())
    assert sum(margins) == total
    for r in one:
        assert r["cost_to_serve_micro"] == r["energy_cost_micro"] + r["service_cost_micro"]
        assert r["margin_micro"] == r["revenue_cents"] * 10_000 - r["cost_to_serve_micro"]
        exact = Decimal(r["margin_micro"]) / 10_000
        assert r["margin_cents"] == int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
