"""``generate_base``: a synthetic utility customer base, written chunk by chunk as Parquet.

The steps, and why they are in this order:

1. Plan the base from the seed (:mod:`grid.synth.plan`): kinds, account counts and owners; this fixes every id
   and lets portfolios span chunks while chunks are generated independently.
2. Draw the territory's weather and outages once (every chunk sees the same heat wave).
3. For each chunk, from random streams keyed by (seed, chunk, purpose): the records, then month by month the
   hourly usage of all its meters (one matrix), its Parquet part, and the month's legacy bills (one kernel call
   per tariff); then bills, payments and the chunk's other parts. The chunk is then dropped: memory is bounded
   by one chunk-month of usage, whatever the base's size.
4. Tariff copies and ``manifest.json`` last, so an interrupted run leaves no manifest.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from grid import timegrid
from grid.errors import InvalidInput
from grid.synth.customers import build_chunk
from grid.synth.interactions import OutageCalendar, finish_events
from grid.synth.legacy_bills import LegacyBiller, bills_table, errors_table
from grid.synth.load_shapes import Weather, month_usage, us_holidays
from grid.synth.churn import plant as plant_churners
from grid.synth.payments import payments_for
from grid.synth.plan import (CHUNK_BILLS, CHUNK_EVENTS, CHUNK_RECORDS, CHUNK_USAGE, STREAM_CHUNK, STREAM_WEATHER,
                             build_plan, stream)
from grid.synth.rate_plans import RatePlans
from grid.synth.writer import BaseWriter, table, usage_table
from grid.tariffs import SHIPPED

FORMAT = "contextgrid-base/1"
DEFAULT_TARIFF_DIR = SHIPPED  # the generator prices its legacy bills with the shipped tariffs (read-only)
CHUNK_PAYMENTS = 5
CHUNK_CHURN = 6
MAX_CHUNK_CUSTOMERS = 500_000  # a chunk-month's usage must fit Parquet's int32 list offsets


def _check(customers, seed, months, chunk_customers, bill_error_rate) -> None:
    for name, value, lo in (("customers", customers, 1), ("seed", seed, 0), ("months", months, 1),
                            ("chunk_customers", chunk_customers, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
            raise InvalidInput(f"{name} must be an integer >= {lo}, got {value!r}", field=name)
    if chunk_customers > MAX_CHUNK_CUSTOMERS:
        raise InvalidInput(f"chunk_customers must be at most {MAX_CHUNK_CUSTOMERS}, got {chunk_customers}",
                           field="chunk_customers")
    if not isinstance(bill_error_rate, (int, float)) or not 0.0 <= bill_error_rate <= 1.0:
        raise InvalidInput(f"bill_error_rate must be between 0 and 1, got {bill_error_rate!r}",
                           field="bill_error_rate")


def generate_base(out_dir: str | Path, customers: int, seed: int = 0, *, first_month: str = "2025-11",
                  months: int = 12, chunk_customers: int = 2000, timezone: str = timegrid.DEFAULT_TIMEZONE,
                  tariff_dir: str | Path = DEFAULT_TARIFF_DIR, bill_error_rate: float = 0.02,
                  progress: Callable[[int], None] | None = None, bill_fn: Callable | None = None,
                  churn_rate: float = 0.0) -> dict:
    """Write a synthetic customer base of ``customers`` customers to ``out_dir``; return its manifest.

    Parameters
    ----------
    out_dir : path
        Created if missing; parts of an earlier base in the layout's folders are replaced.
    customers, seed : int
        Size and seed; the same seed (and arguments) gives the same Parquet content, byte for byte.
    first_month, months : str, int
        The window of usage and legacy bills: ``months`` calendar months from ``first_month`` (YYYY-MM),
        local time in ``timezone``, hourly intervals (a DST month has one hour more or less).
    chunk_customers : int
        Customers per Parquet part; also the unit of work and of memory.
    tariff_dir : path
        The tariff catalogue; rate plans are assigned from the ids found there (see
        :mod:`grid.synth.rate_plans`) and must schedule in ``timezone``.
    bill_error_rate : float
        Share of legacy bills carrying one injected error (truth in ``truth/bill_errors.parquet``).
    progress : callable, optional
        Called after each chunk with the number of customers that chunk held (an increment: ``bar.update``).
    churn_rate : float
        Share of customers planted as churners (:mod:`grid.synth.churn`; truth in ``truth/churn.parquet``);
        0 (the default) plants none and leaves the base as it was.
    bill_fn : callable, optional
        The bill kernel, ``kernels.billing.bill_intervals`` by default (tests may pass an instrumented one).

    Returns
    -------
    dict
        The manifest also written to ``out_dir/manifest.json``.
    """
    _check(customers, seed, months, chunk_customers, bill_error_rate)
    if isinstance(churn_rate, bool) or not isinstance(churn_rate, (int, float)) or not 0.0 <= churn_rate < 1.0:
        raise InvalidInput(f"churn_rate must be in [0, 1), got {churn_rate!r}", field="churn_rate")
    customers, seed, months, chunk_customers = int(customers), int(seed), int(months), int(chunk_customers)
    timegrid.zone(timezone)
    month_list = timegrid.months_between(first_month, months)
    bounds = [timegrid.month_bounds(m) for m in month_list]
    rates = RatePlans(tariff_dir)
    from grid.tariffs import TariffCatalogue

    biller = LegacyBiller(rates, TariffCatalogue(tariff_dir), bill_error_rate, timezone, bill_fn)
    plan = build_plan(seed, customers, chunk_customers)
    window_start, window_end = bounds[0][0], bounds[-1][1]
    start_ts = timegrid.local_midnight_utc(window_start, timezone)
    end_ts = timegrid.local_midnight_utc(window_end, timezone)
    weather = Weather.draw(stream(seed, STREAM_WEATHER, 0), window_start, window_end)
    outages = OutageCalendar.draw(stream(seed, STREAM_WEATHER, 1), start_ts, end_ts)
    holidays = set().union(*(us_holidays(y) for y in range(window_start.year, window_end.year + 1)))

    writer = BaseWriter(out_dir)
    writer.root.mkdir(parents=True, exist_ok=True)
    writer.clear()
    counts = dict.fromkeys(("customers", "accounts", "service_points", "entities", "bills", "payments",
                            "bill_errors", "solar_service_points"), 0)
    plans_used: set[str] = set()
    for c in range(plan.n_chunks):
        key = (STREAM_CHUNK, c)
        chunk = build_chunk(plan, c, rates, window_start, start_ts, end_ts, outages,
                            stream(seed, *key, CHUNK_RECORDS), stream(seed, *key, CHUNK_EVENTS))
        usage_rng, bill_rng = stream(seed, *key, CHUNK_USAGE), stream(seed, *key, CHUNK_BILLS)
        sps = chunk.service_points
        solar = np.array(sps["has_solar"], dtype=bool)
        active = np.array(chunk.account_active, dtype=bool)
        pieces, errors = [], []
        for m, (start, end) in enumerate(bounds):
            cal = timegrid.calendar(start, end, 60, timezone)
            imp, exp = month_usage(chunk.load, cal, weather, holidays, usage_rng)
            writer.write_part(f"usage/{month_list[m]}", c,
                              usage_table(sps["service_point_id"], sps["customer_id"], imp, exp, solar))
            p, e = biller.bill_month(chunk.account_plan, chunk.account_kind, active, m, start, end, imp, exp, solar,
                                     bill_rng)
            pieces += p
            errors += e
            del imp, exp
        account_number = np.array(chunk.account_number, dtype=np.int64)
        bills, bill_rows = bills_table(pieces, account_number, sps["customer_id"], month_list, bounds)
        del pieces
        payments = payments_for(bill_rows, bounds, account_number, np.array(chunk.account_customer, np.int64),
                                chunk.customers["customer_id"], chunk.payer, chunk.pay_method, window_end,
                                stream(seed, *key, CHUNK_PAYMENTS), chunk.events)
        if churn_rate > 0:  # churn: signals added to the events, churners' accounts closed (grid.synth.churn)
            writer.write_truth("churn", plant_churners(chunk, stream(seed, *key, CHUNK_CHURN), start_ts, end_ts,
                                                       churn_rate))
        chunk.customers["events"] = [finish_events(ev) for ev in chunk.events]
        for folder in ("customers", "accounts", "service_points", "entities"):
            writer.write_part(folder, c, table(folder, getattr(chunk, folder)))
        writer.write_part("bills", c, bills)
        writer.write_part("payments", c, payments)
        writer.write_truth("bill_errors", errors_table(errors, account_number, month_list, bounds))
        writer.write_truth("portfolios", table("portfolios", chunk.portfolios))

        plans_used.update(chunk.account_plan)
        n_customers = len(chunk.customers["customer_id"])
        for name, n in (("customers", n_customers), ("accounts", len(chunk.account_number)),
                        ("service_points", len(chunk.account_number)), ("entities", len(chunk.entities["entity_id"])),
                        ("bills", bills.num_rows), ("payments", payments.num_rows), ("bill_errors", len(errors)),
                        ("solar_service_points", int(solar.sum()))):
            counts[name] += n
        del chunk, bills, payments
        if progress is not None:
            progress(n_customers)
    writer.close()

    plans_used.update(biller.plans_billed)
    for plan_id in sorted(plans_used):
        (writer.root / "tariffs").mkdir(exist_ok=True)
        (writer.root / "tariffs" / f"{plan_id}.json").write_bytes(rates.path(plan_id).read_bytes())
    manifest = {
        "format": FORMAT, "seed": seed, "customers": customers, "first_month": month_list[0], "months": month_list,
        "timezone": timezone, "interval_minutes": 60, "chunks": plan.n_chunks, "chunk_customers": chunk_customers,
        "tariffs": sorted(plans_used), "bill_error_rate": bill_error_rate, "counts": counts,
    }
    writer.write_json("manifest.json", manifest)
    return manifest
