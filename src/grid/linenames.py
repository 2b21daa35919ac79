"""Readable names of bill line codes, from the tariff that made them.

The bill kernel names lines by position (``ENERGY_P3_T1``: energy period 3, tier 2); a customer reads "Peak
energy, tier 2". Period names come from ``contextgrid.period_names`` (``{"energy": [...], "demand": [...]}``)
when the tariff carries them, else they are derived from its URDB schedules: periods used in the same months
form a season, and within a season the dearest first-tier price is "Peak", the cheapest "Off-peak", any other
"Mid-peak" (a utility's own TOU sheets name them so). A season that does not cover the whole year is called
"Summer" when it holds July, else "Winter". Two periods that would still read alike get the hours they apply
("Summer peak energy (12:00-18:00)"); a tariff that knows better names them in ``contextgrid.period_names``.
"""

from __future__ import annotations

FIXED_NAMES = {
    "DEMAND_FLAT": "Demand charge (monthly peak)",
    "FIXED": "Customer charge",
    "NEM_CREDIT": "Net-metering credit",
    "MINIMUM": "Minimum charge",
}


def _months_of(weekday: list, weekend: list) -> dict[int, frozenset[int]]:
    """Period -> the months (0-11) in which any hour of the weekday or weekend schedule uses it."""
    out: dict[int, set[int]] = {}
    for sched in (weekday or [], weekend or []):
        for m, hours in enumerate(sched):
            for p in hours:
                out.setdefault(int(p), set()).add(m)
    return {p: frozenset(ms) for p, ms in out.items()}


def _first_price(structure: list, p: int) -> float:
    tiers = structure[p] if p < len(structure) else []
    return float(tiers[0].get("rate", 0) + tiers[0].get("adj", 0)) if tiers else 0.0


def derive_names(structure: list, weekday: list, weekend: list, noun: str) -> list[str]:
    """One name per period of ``structure`` (URDB ``*ratestructure``), e.g. ``"Summer peak energy"``."""
    n = len(structure or [])
    if n <= 1:
        return [noun.capitalize()] * n
    months = _months_of(weekday, weekend)
    names = []
    for p in range(n):
        season = months.get(p, frozenset(range(12)))
        peers = [q for q in range(n) if months.get(q, frozenset(range(12))) & season]
        prices = sorted({_first_price(structure, q) for q in peers})
        price = _first_price(structure, p)
        if len(prices) <= 1:
            rank = ""
        elif price == prices[-1]:
            rank = "peak"
        elif price == prices[0]:
            rank = "off-peak"
        else:
            rank = "mid-peak"
        prefix = "" if len(season) == 12 else ("summer" if 6 in season else "winter")
        words = " ".join(w for w in (prefix, rank, noun) if w)
        names.append(words[0].upper() + words[1:])
    return _distinct(names, weekday, weekend)


def _hours_of(p: int, weekday: list, weekend: list) -> str:
    """When period ``p`` applies, as a utility's sheet writes it: ``"12:00-18:00"``, ``"08:00-12:00 and
    18:00-21:00"`` (weekday hours of the first month that uses it; weekend hours, marked so, if only then)."""
    for sched, suffix in ((weekday or [], ""), (weekend or [], " weekends")):
        for hours in sched:
            used = [h for h, q in enumerate(hours) if int(q) == p]
            if used:
                runs, start = [], used[0]
                for a, b in zip(used, used[1:] + [None]):
                    if b != a + 1:
                        runs.append(f"{start:02d}:00-{a + 1:02d}:00")
                        start = b
                return " and ".join(runs) + suffix
    return ""


def _distinct(names: list[str], weekday: list, weekend: list) -> list[str]:
    """Names made distinct: two periods priced alike in one season (URDB often records a part-peak at the
    peak's price) get the hours they apply, so a bill never shows two lines under one name."""
    out = list(names)
    for i, name in enumerate(names):
        if names.count(name) > 1:
            hours = _hours_of(i, weekday, weekend)
            out[i] = f"{name} ({hours})" if hours else f"{name} ({i + 1})"
    return out


def period_names(urdb: dict) -> dict[str, list[str]]:
    """``{"energy": [name per energy period], "demand": [name per demand period]}`` of a URDB tariff."""
    given = (urdb.get("contextgrid") or {}).get("period_names") or {}
    energy = given.get("energy") or derive_names(urdb.get("energyratestructure") or [],
                                                 urdb.get("energyweekdayschedule") or [],
                                                 urdb.get("energyweekendschedule") or [], "energy")
    demand = given.get("demand") or derive_names(urdb.get("demandratestructure") or [],
                                                 urdb.get("demandweekdayschedule") or [],
                                                 urdb.get("demandweekendschedule") or [], "demand")
    return {"energy": list(energy), "demand": list(demand)}


def line_label(code: str, urdb: dict | None, names: dict[str, list[str]] | None = None) -> str:
    """The readable name of one line code of a bill made with ``urdb`` (the code itself when unknown)."""
    if urdb is None:
        return FIXED_NAMES.get(code, code)
    names = names or period_names(urdb)
    if code.startswith("ENERGY_P") and "_T" in code:
        p, t = (int(x) for x in code[len("ENERGY_P"):].split("_T"))
        structure = urdb.get("energyratestructure") or []
        tiers = structure[p] if p < len(structure) else []
        base = names["energy"][p] if p < len(names["energy"]) else f"Energy period {p + 1}"
        return f"{base}, tier {t + 1}" if len(tiers) > 1 else base
    if code.startswith("DEMAND_P") and code[len("DEMAND_P"):].isdigit():
        q = int(code[len("DEMAND_P"):])
        return names["demand"][q] if q < len(names["demand"]) else f"Demand period {q + 1}"
    if code.startswith("RIDER_"):
        return f"Rider {code[len('RIDER_'):]}"
    if code.startswith("TAX_"):
        tax = code[len("TAX_"):]
        for t in (urdb.get("contextgrid") or {}).get("taxes") or []:
            if t.get("code") == tax:
                return f"{tax} tax {t.get('percent')} %"
        return f"{tax} tax"
    return FIXED_NAMES.get(code, code)


def label_bill(bill: dict | None, urdb: dict | None) -> dict | None:
    """``bill`` with a ``label`` beside each line's ``code`` (a copy; None stays None)."""
    if not bill or not bill.get("lines"):
        return bill
    names = period_names(urdb) if urdb is not None else None
    return {**bill, "lines": [{**ln, "label": line_label(ln["code"], urdb, names)} for ln in bill["lines"]]}
