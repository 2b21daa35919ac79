"""Reference biller: slow, plain Python with ``decimal``, written from DOMAIN.md section 3 and the rules in
``kernels/billing.py``'s docstring, not from the kernel.

It reads the URDB dict itself (no ``compile_tariff``), walks the period interval by interval in UTC and asks
``zoneinfo`` for each interval's local time (no ``grid.timegrid``), and does the money in dollars and kWh as
``Decimal`` with ``ROUND_HALF_UP`` exactly where the rules round:

* tier bounds of a part month: to whole Wh;
* a pooled tier's share of a period (SAM's split): the amount to nano-dollars, the quantity to whole Wh;
* prorated fixed and minimum charges: to nano-dollars per calendar-month segment;
* every line: to the cent; taxes: to the cent on the rounded subtotal.

It returns ``{"lines": {code: (quantity, amount_cents)}, "total_cents": int}`` with every line of the tariff.
"""
from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal, localcontext
from zoneinfo import ZoneInfo

NANO = Decimal("0.000000001")
CENT = Decimal("0.01")
ONE = Decimal(1)


def D(x) -> Decimal:
    if isinstance(x, float):
        return Decimal(repr(x))
    return Decimal(x) if not isinstance(x, Decimal) else x


def half_up(x: Decimal, quantum: Decimal) -> Decimal:
    return x.quantize(quantum, rounding=ROUND_HALF_UP)


def _intervals(start: dt.date, end: dt.date, minutes: int, tz: ZoneInfo):
    """(local datetime) of each interval of [start, end), stepping in UTC so DST days have 23 or 25 hours."""
    t0 = int(dt.datetime(start.year, start.month, start.day, tzinfo=tz).timestamp())
    t1 = int(dt.datetime(end.year, end.month, end.day, tzinfo=tz).timestamp())
    return [dt.datetime.fromtimestamp(t, tz) for t in range(t0, t1, minutes * 60)]


def _days_in_month(d: dt.date) -> int:
    nxt = dt.date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    return (nxt - d.replace(day=1)).days


def _tier_list(period: list, daily_allowed: bool = True):
    """[(max kWh or None for open, price $, sell $, daily)] with the last tier open."""
    out = []
    for j, tier in enumerate(period):
        mx = tier.get("max")
        last = j == len(period) - 1
        price = D(tier["rate"]) + D(tier.get("adj") or 0)
        sell = D(tier.get("sell") or 0)
        daily = str(tier.get("unit", "kWh")).strip().lower() == "kwh daily" if daily_allowed else False
        out.append((None if (mx is None or last) else D(mx), price, sell, daily))
    return out


def _fill(e: Decimal, lo: Decimal, hi: Decimal | None) -> Decimal:
    if e <= lo:
        return Decimal(0)
    if hi is None or e < hi:
        return e - lo
    return hi - lo


def reference_bill(urdb: dict, start: dt.date, end: dt.date, interval_minutes: int,
                   import_wh: list[int], export_wh: list[int] | None = None,
                   default_timezone: str = "America/Los_Angeles") -> dict:
    with localcontext() as ctx:
        ctx.prec = 80
        return _bill(urdb, start, end, interval_minutes, list(map(int, import_wh)),
                     None if export_wh is None else list(map(int, export_wh)), default_timezone)


def _bill(urdb, start, end, minutes, imp, exp, default_tz):
    ext = urdb.get("contextgrid") or {}
    tz = ZoneInfo(ext.get("timezone") or default_tz)
    scope = ext.get("tier_scope", "pooled")
    nm = ext.get("net_metering")
    sell_rate = None
    if isinstance(nm, dict):
        mode = nm.get("mode", "net")
        if nm.get("sell_rate") is not None:
            sell_rate = D(nm["sell_rate"])
    else:
        mode = nm or "none"
    holidays = {dt.date.fromisoformat(h) for h in ext.get("holidays") or []}

    eperiods = [_tier_list(p) for p in urdb.get("energyratestructure") or []]
    dperiods = [_tier_list(p, False) for p in urdb.get("demandratestructure") or []]
    fperiods = [_tier_list(p, False) for p in urdb.get("flatdemandstructure") or []]

    local = _intervals(start, end, minutes, tz)
    assert len(imp) == len(local), (len(imp), len(local))
    if exp is None or mode == "none":
        exp = [0] * len(local)

    # calendar-month segments of [start, end)
    segs = []
    d = start
    while d < end:
        nxt = min(dt.date(d.year + (d.month == 12), d.month % 12 + 1, 1), end)
        segs.append((d, nxt))
        d = nxt

    def seg_of(day: dt.date) -> int:
        return max(i for i, (a, _) in enumerate(segs) if a <= day)

    # accumulate per segment and period (Wh), demand peaks per period (W) with first interval
    P = len(eperiods)
    e_imp = [[0] * P for _ in segs]
    e_exp = [[0] * P for _ in segs]
    total_import = 0
    dpeak = {}  # ("tou", q) or ("flat", f) -> (W, index)
    w_per_wh = 60 // minutes
    for k, t in enumerate(local):
        day = t.date()
        weekend = t.weekday() >= 5 or day in holidays
        m, h = t.month - 1, t.hour
        total_import += imp[k]
        s = seg_of(day)
        if P:
            sched = urdb["energyweekendschedule"] if weekend else urdb["energyweekdayschedule"]
            p = sched[m][h]
            e_imp[s][p] += imp[k]
            e_exp[s][p] += exp[k]
        w = imp[k] * w_per_wh
        keys = []
        if dperiods:
            sched = urdb["demandweekendschedule"] if weekend else urdb["demandweekdayschedule"]
            keys.append(("tou", sched[m][h]))
        if fperiods:
            keys.append(("flat", urdb["flatdemandmonths"][m]))
        for key in keys:
            if key not in dpeak or w > dpeak[key][0]:
                dpeak[key] = (w, k)

    lines: dict[str, list] = {}  # code -> [quantity, dollars (exact until rounded)]

    def add(code, qty, dollars):
        q = lines.setdefault(code, [0, Decimal(0)])
        q[0] += qty
        q[1] += dollars

    for p, tiers in enumerate(eperiods):
        for t in range(len(tiers)):
            lines[f"ENERGY_P{p}_T{t}"] = [0, Decimal(0)]

    nem_qty = 0
    nem_dollars = Decimal(0)
    for s, (a, b) in enumerate(segs):
        days = (b - a).days
        dim = _days_in_month(a)

        def bounds(tiers):
            out = []
            for mx, _, _, daily in tiers:
                if mx is None:
                    out.append(None)
                elif daily:
                    out.append(mx * 1000 * days)
                else:
                    out.append(half_up(mx * 1000 * days / dim, ONE))
            return out

        billed = []
        for p in range(P):
            i_, x_ = e_imp[s][p], e_exp[s][p]
            if mode == "net":
                n = i_ - x_
                if n < 0:
                    nem_qty += -n
                    nem_dollars += Decimal(n) * eperiods[p][0][1] / 1000
                    n = 0
                billed.append(n)
            else:
                if mode == "sell_rate":
                    nem_qty += x_
                    rate = sell_rate if sell_rate is not None else eperiods[p][0][2]
                    nem_dollars -= Decimal(x_) * rate / 1000
                billed.append(i_)
        if not P:
            continue
        if scope == "pooled":
            total = sum(billed)
            if total == 0:
                continue
            month = a.month - 1
            used = set(urdb["energyweekdayschedule"][month]) | set(urdb["energyweekendschedule"][month])
            pool = bounds(eperiods[min(used)])
            lo = Decimal(0)
            for t, hi in enumerate(pool):
                fill = _fill(Decimal(total), lo, hi)
                lo = hi if hi is not None else lo
                for p in range(P):
                    if billed[p] == 0 or fill == 0:
                        continue
                    share = Decimal(billed[p]) * fill / total  # Wh
                    price = eperiods[p][t][1]
                    add(f"ENERGY_P{p}_T{t}", int(half_up(share, ONE)), half_up(share * price / 1000, NANO))
        else:
            for p in range(P):
                lo = Decimal(0)
                for t, hi in enumerate(bounds(eperiods[p])):
                    fill = _fill(Decimal(billed[p]), lo, hi)
                    lo = hi if hi is not None else lo
                    add(f"ENERGY_P{p}_T{t}", int(fill), fill * eperiods[p][t][1] / 1000)

    def demand_dollars(w: int, tiers) -> Decimal:
        out = Decimal(0)
        lo = Decimal(0)
        for mx, price, _, _ in tiers:
            hi = None if mx is None else mx * 1000
            out += _fill(Decimal(w), lo, hi) * price / 1000
            lo = hi if hi is not None else lo
        return out

    for q, tiers in enumerate(dperiods):
        w = dpeak.get(("tou", q), (0, None))[0]
        lines[f"DEMAND_P{q}"] = [w, demand_dollars(w, tiers)]
    if fperiods:
        qty, dollars = 0, Decimal(0)
        for f, tiers in enumerate(fperiods):
            if ("flat", f) in dpeak:
                w = dpeak[("flat", f)][0]
                qty = max(qty, w)
                dollars += demand_dollars(w, tiers)
        lines["DEMAND_FLAT"] = [qty, dollars]

    def charge(value, unit) -> Decimal:
        value = D(value)
        unit = unit or "$/month"
        if unit == "$/day":
            return value * (end - start).days
        per = 12 if unit == "$/year" else 1
        return sum((half_up(value * (b - a).days / (per * _days_in_month(a)), NANO) for a, b in segs),
                   Decimal(0))

    if urdb.get("fixedchargefirstmeter") is not None:
        unit = urdb.get("fixedchargeunits") or "$/month"
        qty = (end - start).days if unit == "$/day" else len(segs)
        lines["FIXED"] = [qty, charge(urdb["fixedchargefirstmeter"], unit)]
    for r in ext.get("riders") or []:
        lines[f"RIDER_{r['code']}"] = [total_import, Decimal(total_import) * D(r["rate"]) / 1000]
    if mode != "none":
        lines["NEM_CREDIT"] = [nem_qty, nem_dollars]

    out = {code: (qty, int(half_up(dollars, CENT) * 100)) for code, (qty, dollars) in lines.items()}
    subtotal = sum(c for _, c in out.values())
    if urdb.get("mincharge") is not None:
        minimum = int(half_up(charge(urdb["mincharge"], urdb.get("minchargeunits")), CENT) * 100)
        if subtotal < minimum:
            out["MINIMUM"] = (len(segs), minimum - subtotal)
            subtotal = minimum
        else:
            out["MINIMUM"] = (0, 0)
    total = subtotal
    for tax in ext.get("taxes") or []:
        cents = int(half_up(Decimal(max(subtotal, 0)) * D(tax["percent"]) / 100, ONE))
        out[f"TAX_{tax['code']}"] = (len(segs), cents)
        total += cents
    return {"lines": out, "total_cents": total}
