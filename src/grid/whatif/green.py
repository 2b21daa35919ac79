"""Green metrics: how much of a customer's consumption on-site solar and green programs cover, and the CO2
their clean energy avoids.

A net meter records import and export only; what the panels produce and the home uses at once never crosses it.
So generation is *estimated* interval by interval from the system size and a generation profile
(``grid.whatif.solar``), and self-consumption is what that estimate leaves after the measured export:
``self_i = max(gen_i - export_i, 0)``. Consumption is ``import + self``.

* **System size**: the customer attribute ``solar_kw_dc`` (the generator and most interconnection records
  carry it), shared equally by the customer's solar service points. Without it, the smallest size that explains
  the measured export (``max export_i / profile_i`` over daylight intervals): a lower bound, reported as
  ``"estimated from export"``.
* **Green program share**: an account enrolled (by the month's start) in a program listed in the factors'
  ``green_programs`` has that percent of its import matched by renewable purchases.
* **Avoided CO2** = (estimated generation + green-program energy) x ``grid_co2_g_per_kwh``, integer grams.

Factors come from configuration (``DEFAULT_FACTORS`` otherwise): ``grid_co2_g_per_kwh`` defaults to 200 g/kWh,
the order of California's average grid emission rate (EPA eGRID, CAMX subregion): a utility sets its own.
"""
from __future__ import annotations

import datetime as dt

import numpy as np

from grid.errors import InvalidInput
from grid.timegrid import month_bounds
from grid.whatif import solar
from grid.whatif.loads import account_load, active_accounts
from grid.whatif.periods import as_date, history_months, today_in
from kernels.billing import round_half_up_div

DEFAULT_FACTORS = {"grid_co2_g_per_kwh": 200, "green_programs": {"GREEN_POWER": 100}}
MAX_MONTHS = 24
DAYLIGHT_WH_PER_KW = 100  # profile intervals below this are dawn/dusk: too noisy to size a system from

FIELDS = ("import_wh", "export_wh", "generation_wh", "self_consumed_wh", "consumption_wh", "green_program_wh",
          "avoided_co2_g")


def parse_factors(factors: dict | None) -> dict:
    """Checked factors: ``grid_co2_g_per_kwh`` (0-2000 integer grams) and ``green_programs`` ({code: 0-100})."""
    f = dict(DEFAULT_FACTORS)
    if factors:
        if not isinstance(factors, dict):
            raise InvalidInput("green factors must be an object", field="factors")
        f.update(factors)
    g = f["grid_co2_g_per_kwh"]
    if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 <= g <= 2000:
        raise InvalidInput(f"grid_co2_g_per_kwh must be 0-2000 g/kWh, got {g!r}", field="factors.grid_co2_g_per_kwh")
    progs = f.get("green_programs") or {}
    if not isinstance(progs, dict):
        raise InvalidInput("green_programs must map program codes to percents", field="factors.green_programs")
    for code, pct in progs.items():
        if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 <= pct <= 100:
            raise InvalidInput(f"green_programs.{code} must be a percent 0-100",
                               field=f"factors.green_programs.{code}")
    return {"grid_co2_g_per_kwh": int(round(g)), "green_programs": {str(k): int(round(v)) for k, v in progs.items()}}


def _share(num: int, den: int) -> float | None:
    return round(num / den, 4) if den > 0 else None


def _solar_kw(rec: dict, accounts: list[dict]) -> tuple[dict[str, int], str | None]:
    """milli-kW-dc per account from the ``solar_kw_dc`` attribute, split over solar service points."""
    kw = rec.get("attributes", {}).get("solar_kw_dc")
    sps = [(a["account_id"], sp) for a in accounts for sp in a["service_points"] if sp.get("has_solar")]
    if isinstance(kw, bool) or not isinstance(kw, (int, float)) or kw <= 0 or not sps:
        return {}, None
    each = round_half_up_div(int(round(kw * 1000)), len(sps))
    out: dict[str, int] = {}
    for aid, _ in sps:
        out[aid] = out.get(aid, 0) + each
    return out, "attribute"


def green(shard, cid: str, factors: dict | None = None, today: dt.date | str | None = None,
          months: int = 12) -> dict:
    """Green metrics of customer ``cid`` over the ``months`` complete months before today's month.

    Returns
    -------
    dict
        ``{"customer_id", "as_of", "factors", "solar_kw_dc", "solar_kw_source", <totals>, "solar_share",
        "green_program_share", "renewable_share", "avoided_co2_kg", "items": [per month]}``; energy in Wh,
        CO2 in grams (``avoided_co2_kg`` for display), shares as fractions of consumption (4 decimals).
    """
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= MAX_MONTHS:
        raise InvalidInput(f"months must be an integer 1-{MAX_MONTHS}, got {months!r}", field="months")
    f = parse_factors(factors)
    rec = shard.record(cid)
    today = as_date(today) if today is not None else today_in(shard.timezone)
    hist = history_months(today, months)
    accounts = active_accounts(rec)
    kw_milli, kw_source = _solar_kw(rec, accounts)
    per_month = [dict.fromkeys(FIELDS, 0) for _ in hist]
    for account in accounts:
        aid = account["account_id"]
        loads = [account_load(shard, account, *month_bounds(m)) for m in hist]
        profiles = [solar.model_profile(ld.calendar) for ld in loads]
        size = kw_milli.get(aid, 0)
        if size == 0 and any(sp.get("has_solar") for sp in account["service_points"]):
            ratios = [ld.export_wh[p >= DAYLIGHT_WH_PER_KW] / p[p >= DAYLIGHT_WH_PER_KW] for ld, p in zip(loads, profiles)]
            best = max((float(r.max()) for r in ratios if r.size), default=0.0)
            size = int(np.ceil(best * 1000))
            if size:
                kw_milli[aid] = size
                kw_source = kw_source or "estimated from export"
        for k, (m, ld, prof) in enumerate(zip(hist, loads, profiles)):
            row = per_month[k]
            gen = solar.generation_wh(size, prof) if size else np.zeros_like(ld.export_wh)
            self_used = np.maximum(gen - ld.export_wh, 0)
            imp, exp = int(ld.import_wh.sum()), int(ld.export_wh.sum())
            enrolled = [p for p in account.get("programs", []) if p["code"] in f["green_programs"]
                        and str(p.get("enrolled", "")) <= month_bounds(m)[0].isoformat()]
            pct = max((f["green_programs"][p["code"]] for p in enrolled), default=0)
            green_wh = round_half_up_div(imp * pct, 100)
            row["import_wh"] += imp
            row["export_wh"] += exp
            row["generation_wh"] += int(gen.sum())
            row["self_consumed_wh"] += int(self_used.sum())
            row["consumption_wh"] += imp + int(self_used.sum())
            row["green_program_wh"] += green_wh
    items = []
    for m, row in zip(hist, per_month):
        row["avoided_co2_g"] = round_half_up_div((row["generation_wh"] + row["green_program_wh"])
                                                 * f["grid_co2_g_per_kwh"], 1000)
        items.append({"month": m, **row, **_shares(row)})
    totals = {k: sum(x[k] for x in items) for k in FIELDS}
    return {"customer_id": cid, "as_of": today.isoformat(), "months": hist, "factors": f,
            "solar_kw_dc": round(sum(kw_milli.values()) / 1000, 3) if kw_milli else None,
            "solar_kw_source": kw_source, **totals, **_shares(totals),
            "avoided_co2_kg": round(totals["avoided_co2_g"] / 1000, 1), "items": items}


def _shares(row: dict) -> dict:
    c = row["consumption_wh"]
    return {"solar_share": _share(row["self_consumed_wh"], c),
            "green_program_share": _share(row["green_program_wh"], c),
            "renewable_share": _share(row["self_consumed_wh"] + row["green_program_wh"], c)}
