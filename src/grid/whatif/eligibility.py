"""Which rate plans a customer may take, read from the tariffs' own URDB fields, so a comparison never offers
a plan the utility would refuse.

A plan is open to a customer when (each rule from a URDB field; a field the tariff leaves out does not limit):

- ``sector``: ``Residential`` plans for residential customers only; ``Commercial`` and ``Industrial`` plans
  for the others (``Lighting`` plans are for street lights, never compared);
- ``peakkwcapacitymin`` / ``peakkwcapacitymax`` (kW): the customer's peak demand over the usage held (the
  largest interval's import, as demand: Wh x 60 / interval minutes) lies within them;
- ``voltageminimum`` / ``voltagemaximum`` (V): the customer's ``service_voltage_v`` attribute lies within them
  (a customer whose service voltage is not known cannot be placed on a voltage-limited plan);
- net metering (``contextgrid.net_metering``): only for a customer with solar; a customer with solar is shown
  the net-metering plans.
"""
from __future__ import annotations

import numpy as np

RESIDENTIAL = {"Residential"}
NON_RESIDENTIAL = {"Commercial", "Industrial"}


def peak_kw(shard, rec: dict) -> float:
    """Largest interval demand (kW) of the customer's service points over every month the shard holds."""
    best = 0.0
    for a in rec.get("accounts", []):
        for sp in a.get("service_points", []):
            iv = int(sp.get("interval_minutes", 60))
            store = shard.usage.get(iv)
            row = store.row_of.get(sp["service_point_id"]) if store is not None else None
            if row is None:
                continue
            for block in list(store.months.values()):  # a write may add a month meanwhile (threads)
                if row < block.imp.shape[0] and block.imp.shape[1]:
                    best = max(best, float(np.max(block.imp[row])) * 60.0 / iv / 1000.0)
    return best


def refusal(urdb: dict, rec: dict, peak: float, has_solar: bool) -> str | None:
    """Why ``rec`` may not take the plan ``urdb`` (None when it may)."""
    sector = urdb.get("sector")
    if sector:
        allowed = RESIDENTIAL if rec.get("kind") == "residential" else NON_RESIDENTIAL
        if sector not in allowed:
            return f"a {sector.lower()} plan"
    lo, hi = urdb.get("peakkwcapacitymin"), urdb.get("peakkwcapacitymax")
    if lo is not None and peak < float(lo):
        return f"for a peak demand of at least {float(lo):g} kW (yours: {peak:.0f} kW)"
    if hi is not None and peak > float(hi):
        return f"for a peak demand of at most {float(hi):g} kW (yours: {peak:.0f} kW)"
    vlo, vhi = urdb.get("voltageminimum"), urdb.get("voltagemaximum")
    if vlo is not None or vhi is not None:
        volts = (rec.get("attributes") or {}).get("service_voltage_v")
        if not isinstance(volts, (int, float)):
            return "for a service voltage we do not know for you"
        if (vlo is not None and volts < float(vlo)) or (vhi is not None and volts > float(vhi)):
            return f"for service at {vlo or 0:g}-{vhi or 'any':} V (yours: {volts:g} V)"
    if _net_metering(urdb) and not has_solar:
        return "for customers with solar"
    return None


def _net_metering(urdb: dict) -> bool:
    return (urdb.get("contextgrid") or {}).get("net_metering") not in (None, "", "none")


def plan_choices(shard, cid: str, catalogue) -> dict:
    """Every catalogue plan with whether this customer may take it and why not."""
    rec = shard.record(cid)
    current = {a["rate_plan_id"] for a in rec.get("accounts", []) if a.get("status", "active") == "active"}
    has_solar = any(sp.get("has_solar") for a in rec.get("accounts", []) for sp in a.get("service_points", []))
    peak = peak_kw(shard, rec)
    items = []
    for plan_id in catalogue.ids():
        urdb = catalogue.get_json(plan_id)
        why = refusal(urdb, rec, peak, has_solar)
        items.append({"plan_id": plan_id, "name": urdb.get("name") or plan_id, "sector": urdb.get("sector"),
                      "current": plan_id in current, "eligible": why is None or plan_id in current,
                      "reason": None if plan_id in current else why,
                      "net_metering": _net_metering(urdb)})
    return {"customer_id": cid, "peak_kw": round(peak, 1), "has_solar": has_solar, "items": items}
