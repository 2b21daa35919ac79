"""Profitability: revenue billed minus cost to serve, per account on each shard, per portfolio on the caller.

Over the price curve's window (whole local months):
- revenue = the account's legacy bills whose period starts in the window (cents, exact);
- energy cost = sum over intervals of import Wh x the hour's price (micro-$/kWh) = nano-dollars, exact in int64,
  grossed up by the configured losses and rounded half-up once, to micro-dollars;
- service cost = the per-account monthly cost of the customer's kind x the months billed in the window.
Per-account figures are reduced per portfolio on each shard with the group-by kernel and merged on the caller
(:func:`grid.rules.partials.merge_keyed`); :func:`rank_profitability` orders the whole base.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grid.errors import InvalidInput
from grid.rules.costs import PPM, CostToServe, PriceCurve
from grid.rules.partials import KeyedPartials, local_keys
from grid.rules.portfolios import portfolio_id_of
from grid.timegrid import calendar, month_bounds
from kernels.aggregate import group_partials
from kernels.billing import round_half_up_div

__all__ = ["account_profitability", "profitability_partials", "rank_profitability"]

INT64_MAX = np.iinfo(np.int64).max
MICRO_PER_CENT = 10_000
NANO_PER_MICRO = 1_000
_ROWS_PER_BLOCK = 16_384  # rows of a usage matrix widened to int64 at a time (~100 MB for a 31-day month)


def _revenue(bills: pa.Table, prices: PriceCurve) -> tuple[dict[str, int], dict[str, int]]:
    """(revenue cents, months billed) per account, over bills whose period starts in the price window."""
    if bills.num_rows == 0:
        return {}, {}
    first, _ = month_bounds(prices.months[0])
    _, end = month_bounds(prices.months[-1])
    start = bills.column("period_start")
    mask = pc.and_(pc.greater_equal(start, pa.scalar(first, pa.date32())), pc.less(start, pa.scalar(end, pa.date32())))
    t = bills.filter(mask)
    if t.num_rows == 0:
        return {}, {}
    g = t.group_by("account_id").aggregate([("total_cents", "sum"), ("period_start", "count_distinct")])
    ids = g.column("account_id").to_pylist()
    return (dict(zip(ids, g.column("total_cents_sum").to_pylist())),
            dict(zip(ids, g.column("period_start_count_distinct").to_pylist())))


def _energy(store, prices: PriceCurve) -> tuple[list[int], np.ndarray]:
    """(nano-dollars, import Wh) per row of one usage store over the price window (Python ints: exact)."""
    n = store.n_rows
    nano = np.zeros(n, dtype=object)
    wh = np.zeros(n, dtype=np.int64)
    for month in prices.months:
        block = store.months.get(month)
        if block is None or n == 0:
            continue
        cal = calendar(*month_bounds(month), store.interval_minutes, prices.timezone)
        price, inside = prices.per_interval(cal.utc_start)
        imp = block.imp[:n]
        if imp.shape[1] != price.shape[0]:
            raise InvalidInput(f"usage of {month} has {imp.shape[1]} intervals, the {prices.timezone} calendar "
                               f"{price.shape[0]}", field="usage")
        bound = int(np.abs(imp).max(initial=0)) * int(np.abs(price).max(initial=0)) * int(price.shape[0])
        if bound > INT64_MAX:
            raise InvalidInput(f"energy cost of {month} could overflow int64 (bound {bound})", field="usage")
        month_nano = np.empty(n, dtype=np.int64)
        for lo in range(0, n, _ROWS_PER_BLOCK):
            part = imp[lo:lo + _ROWS_PER_BLOCK].astype(np.int64)
            month_nano[lo:lo + part.shape[0]] = part @ price  # integer matmul: exact, bounded above
            wh[lo:lo + part.shape[0]] += part[:, inside].sum(axis=1)
        nano += month_nano.astype(object)
    return nano.tolist(), wh


def account_profitability(shard, prices: PriceCurve, costs: CostToServe) -> pa.Table:
    """Revenue and cost to serve of every account of ``shard`` over the price curve's window.

    Returns
    -------
    pyarrow.Table
        ``account_id, customer_id, kind, months_billed, revenue_cents, import_wh, energy_cost_micro,
        service_cost_micro, margin_micro`` (int64; micro-dollars; energy cost includes losses).
    """
    revenue, months = _revenue(shard.bills.table, prices)
    sp_nano: dict[str, int] = {}
    sp_wh: dict[str, int] = {}
    for store in shard.usage.values():
        nano, wh = _energy(store, prices)
        for sp, v, w in zip(store.sp_ids, nano, wh.tolist()):
            sp_nano[sp] = v
            sp_wh[sp] = w
    cols: dict[str, list] = {k: [] for k in ("account_id", "customer_id", "kind", "months_billed", "revenue_cents",
                                             "import_wh", "energy_cost_micro", "service_cost_micro",
                                             "margin_micro")}
    scale = PPM + costs.losses_ppm
    for cid in sorted(shard.records):
        rec = shard.records[cid]
        per_month = costs.service_micro_per_month.get(rec.get("kind"), 0)
        for acc in rec.get("accounts") or []:
            aid = acc["account_id"]
            sps = [sp["service_point_id"] for sp in acc.get("service_points") or []]
            nano = sum(sp_nano.get(sp, 0) for sp in sps)
            energy = round_half_up_div(nano * scale, PPM * NANO_PER_MICRO)
            billed = months.get(aid, 0)
            service = billed * per_month
            rev = revenue.get(aid, 0)
            cols["account_id"].append(aid)
            cols["customer_id"].append(cid)
            cols["kind"].append(rec.get("kind"))
            cols["months_billed"].append(billed)
            cols["revenue_cents"].append(rev)
            cols["import_wh"].append(sum(sp_wh.get(sp, 0) for sp in sps))
            cols["energy_cost_micro"].append(energy)
            cols["service_cost_micro"].append(service)
            cols["margin_micro"].append(rev * MICRO_PER_CENT - energy - service)
    types = {"account_id": pa.string(), "customer_id": pa.string(), "kind": pa.string()}
    return pa.table({k: pa.array(v, types.get(k, pa.int64())) for k, v in cols.items()})


def profitability_partials(shard, portfolio_of: Mapping[str, str], prices: PriceCurve,
                           costs: CostToServe) -> KeyedPartials:
    """One shard's revenue and cost to serve per portfolio (merge with :func:`grid.rules.partials.merge_keyed`).

    Parameters
    ----------
    shard : grid.shard.Shard
    portfolio_of : mapping of str to str
        Account id -> portfolio id; an account it lacks is a portfolio of its own.
    prices, costs : PriceCurve, CostToServe
        ``RuleSet.prices`` and ``RuleSet.costs``.
    """
    t = account_profitability(shard, prices, costs)
    pids = [portfolio_of.get(a) or portfolio_id_of(a) for a in t.column("account_id").to_pylist()]
    keys, ids = local_keys(pids)

    def col(name: str) -> np.ndarray:
        return t.column(name).to_numpy().astype(np.int64) if t.num_rows else np.zeros(0, np.int64)

    columns = {"revenue": group_partials(keys, col("revenue_cents")),
               "energy": group_partials(keys, col("energy_cost_micro")),
               "service": group_partials(keys, col("service_cost_micro")),
               "import": group_partials(keys, col("import_wh"))}
    meta = {"window": [prices.months[0], prices.months[-1]], "losses_ppm": costs.losses_ppm}
    return KeyedPartials(columns, ids, {}, meta)


def rank_profitability(merged: KeyedPartials) -> list[dict]:
    """Every portfolio's profitability, most profitable first (ties by portfolio id).

    Returns
    -------
    list of dict
        ``{rank, portfolio_id, n_accounts, revenue_cents, energy_cost_micro, service_cost_micro,
        cost_to_serve_micro, margin_micro, margin_cents, margin_bp, import_wh}``; ``margin_cents`` is the margin
        rounded half-up to the cent, ``margin_bp`` the margin in basis points of revenue (None without revenue).
    """
    c = merged.columns
    if not c:
        return []
    keys = c["revenue"].keys
    for name in ("energy", "service", "import"):
        if not np.array_equal(c[name].keys, keys):
            raise InvalidInput(f"partials column {name} covers other portfolios than revenue", field=name)
    rows = []
    for pid, n, rev, energy, service, wh in zip(merged.id_of(keys), c["revenue"].count.tolist(),
                                                c["revenue"].sum.tolist(), c["energy"].sum.tolist(),
                                                c["service"].sum.tolist(), c["import"].sum.tolist()):
        cost = energy + service
        margin = rev * MICRO_PER_CENT - cost
        rows.append({"portfolio_id": pid, "n_accounts": n, "revenue_cents": rev,
                     "energy_cost_micro": energy, "service_cost_micro": service, "cost_to_serve_micro": cost,
                     "margin_micro": margin, "margin_cents": round_half_up_div(margin, MICRO_PER_CENT),
                     "margin_bp": round_half_up_div(margin * 10_000, rev * MICRO_PER_CENT) if rev > 0 else None,
                     "import_wh": wh})
    rows.sort(key=lambda r: (-r["margin_micro"], r["portfolio_id"]))
    for i, r in enumerate(rows):
        r["rank"] = i + 1
    return rows
