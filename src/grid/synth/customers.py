"""One chunk's customers, accounts, service points, owners and the load parameters of their meters.

Everything here is per customer and small; the hourly data is drawn later, month by month, from the
:class:`~grid.synth.load_shapes.LoadParams` built here (one row per service point, which is one per account).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from grid.synth import names as nm
from grid.synth.interactions import OutageCalendar, city_of, contacts_for, events_for
from grid.synth.load_shapes import PROFILE_INDEX, LoadParams
from grid.synth.plan import KINDS, Plan, account_id, customer_id, entity_id, meter_id, service_point_id
from grid.synth.rate_plans import RatePlans

SIC = {
    "office": ("6512", "8111", "6411", "8742"), "retail": ("5311", "5651", "5251", "5712", "5912"),
    "restaurant": ("5812",), "grocery": ("5411",), "hotel": ("7011",), "warehouse": ("4225",),
    "medical_office": ("8011", "8021", "8049"), "auto_service": ("7538", "7542", "5531"),
    "manufacturing": ("3089", "3441", "3599", "3714"), "food_processing": ("2033", "2068", "2026"),
    "cold_storage": ("4222",), "data_center": ("7374",), "chemical": ("2869", "2873", "2813"),
    "hospital": ("8062",), "water_treatment": ("4941", "4952"), "school": ("8211",),
    "fire_police": ("9224", "9221"), "government": ("9199", "8231"),
}
# profile choices per segment: ((profile, weight), ...)
PROFILES = {
    "manufacturing": (("ind_1shift", 0.4), ("ind_2shift", 0.4), ("ind_3shift", 0.2)),
    "food_processing": (("ind_2shift", 0.6), ("ind_3shift", 0.4)),
    "chemical": (("ind_3shift", 1.0),), "cold_storage": (("cold_storage", 1.0),),
    "data_center": (("data_center", 1.0),), "government": (("office", 1.0),),
}
RESIDENTIAL_PROFILES = (("res_commuter", 0.35), ("res_early", 0.15), ("res_home", 0.25), ("res_late", 0.12),
                        ("res_retiree", 0.13))
# median monthly MWh per service point and lognormal sigma, clip range
SIZE_MWH = {"commercial": (25.0, 0.9, 5.0, 200.0), "industrial": (600.0, 0.8, 150.0, 8000.0),
            "hospital": (900.0, 0.5, 250.0, 4000.0), "water_treatment": (350.0, 0.6, 60.0, 2500.0),
            "school": (45.0, 0.5, 12.0, 250.0), "fire_police": (12.0, 0.5, 4.0, 60.0),
            "government": (40.0, 0.6, 8.0, 300.0)}
RES_KWH = {"single_family": 720.0, "multi_family": 430.0, "mobile_home": 560.0}
PAY_METHODS = ("autopay", "card", "ach", "check", "web", "cash")
PAY_WEIGHTS = {"residential": (0.35, 0.2, 0.05, 0.15, 0.2, 0.05), "other": (0.3, 0.05, 0.35, 0.25, 0.05, 0.0)}


@dataclass
class Chunk:
    """The records of one chunk, column by column, plus per-account arrays the bill step needs."""

    index: int
    customers: dict[str, list] = field(default_factory=dict)
    accounts: dict[str, list] = field(default_factory=dict)
    service_points: dict[str, list] = field(default_factory=dict)
    entities: dict[str, list] = field(default_factory=dict)
    portfolios: dict[str, list] = field(default_factory=dict)
    events: list[list[dict]] = field(default_factory=list)  # per customer, ``ts`` still epoch seconds
    payer: list[int] = field(default_factory=list)  # per customer: 0 pays on time, 1 often late, 2 delinquent
    pay_method: list[str] = field(default_factory=list)
    account_number: list[int] = field(default_factory=list)
    account_customer: list[int] = field(default_factory=list)  # row of the account's customer in ``customers``
    account_active: list[bool] = field(default_factory=list)
    account_plan: list[str] = field(default_factory=list)
    account_kind: list[str] = field(default_factory=list)
    load: LoadParams | None = None


def _cols(*names: str) -> dict[str, list]:
    return {n: [] for n in names}


def _weighted(rng: np.random.Generator, table) -> str:
    """A choice from ``((value, weight), ...)`` (one uniform draw; ``Generator.choice`` costs 30x more)."""
    u = rng.random() * sum(w for _, w in table)
    for value, w in table:
        u -= w
        if u < 0:
            return value
    return table[-1][0]


def _lognormal_clip(rng, median, sigma, lo, hi) -> float:
    return float(np.clip(median * np.exp(sigma * rng.standard_normal()), lo, hi))


class _LoadRows:
    """Collects one LoadParams row per service point."""

    def __init__(self):
        self.rows: list[tuple] = []

    def add(self, profile: str, monthly_kwh: float, cool: float, heat: float, day_sigma: float,
            noise_sigma: float, ev_kwh: float, solar_kw: float, active: bool) -> None:
        # an average weekday hour; weather adds roughly 15% over the year in this climate
        base = monthly_kwh * 1000.0 / 730.0 / 1.15
        self.rows.append((PROFILE_INDEX[profile], base, cool, heat, day_sigma, noise_sigma, ev_kwh, solar_kw, active))

    def params(self) -> LoadParams:
        cols = list(zip(*self.rows)) if self.rows else [()] * 9
        f32 = [np.array(c, dtype=np.float32) for c in cols[1:8]]
        return LoadParams(np.array(cols[0], dtype=np.int16), *f32, np.array(cols[8], dtype=bool))


def build_chunk(plan: Plan, chunk: int, rates: RatePlans, window_start: dt.date, start_ts: int, as_of_ts: int,
                outages: OutageCalendar, rng: np.random.Generator, event_rng: np.random.Generator) -> Chunk:
    """Records of chunk ``chunk``: customers ``plan.chunk_range(chunk)``, their accounts and owners.

    The window is ``[start_ts, as_of_ts)`` in epoch seconds (local midnights of its first day and of the day
    after it); ``window_start`` is its first local date.

    ``rng`` draws the records and each meter's load parameters, ``event_rng`` the events (separate streams, so
    a change to how events are drawn leaves the load curves alone).
    """
    out = Chunk(chunk)
    out.customers = _cols("customer_id", "name", "kind", "segment", "created_at", "entity_id", "attributes",
                          "contacts", "events")
    out.accounts = _cols("account_id", "customer_id", "status", "rate_plan_id", "bill_cycle_day", "billing_address",
                         "programs")
    out.service_points = _cols("service_point_id", "account_id", "customer_id", "premise_address", "meter_id",
                               "interval_minutes", "has_solar", "load_priority")
    out.entities = _cols("entity_id", "legal_name", "tax_id", "mailing_address", "parent_entity_id")
    out.portfolios = _cols("entity_id", "portfolio_key", "link_kind")
    loads = _LoadRows()
    ents = plan.ownership.entities

    for e in plan.chunk_plan_entities[chunk].tolist():
        pe = ents[e]
        eid = entity_id(int(plan.entity_number[e]))
        _row(out.entities, entity_id=eid, legal_name=pe.legal_name, tax_id=pe.tax_id,
             mailing_address=pe.mailing_address,
             parent_entity_id=entity_id(int(plan.entity_number[pe.parent])) if pe.parent >= 0 else None)
        _row(out.portfolios, entity_id=eid, portfolio_key=entity_id(int(plan.group_key[pe.group])),
             link_kind=pe.link_kind)
    next_res_entity = int(plan.chunk_entity_offset[chunk]) + len(plan.chunk_plan_entities[chunk]) + 1

    lo, hi = plan.chunk_range(chunk)
    for i in range(lo, hi):
        kind = KINDS[int(plan.kind[i])]
        segment = plan.segment[i]
        row = len(out.customers["customer_id"])
        cid = customer_id(i)
        mean_age_years = 8.0 if kind == "residential" else 12.0
        age_days = int(np.clip(rng.exponential(mean_age_years * 365), 60, 35 * 365))
        created_ts = start_ts - age_days * 86400 - int(rng.integers(0, 86400))
        created_day = dt.datetime.fromtimestamp(created_ts, dt.timezone.utc).date()

        if kind == "residential":
            name = nm.person_name(rng)
            premise = plan.slots.address(i)
            mailing = premise if rng.random() > 0.04 else f"PO Box {10000 + i}, {nm.city_line(i % len(nm.CITIES), rng)}"
            eid = entity_id(next_res_entity)
            next_res_entity += 1
            _row(out.entities, entity_id=eid, legal_name=name, tax_id=None, mailing_address=mailing,
                 parent_entity_id=None)
            _row(out.portfolios, entity_id=eid, portfolio_key=eid, link_kind="none")
            attrs, accounts = _residential(rng, segment, premise, mailing, window_start)
            profile = None  # each home's profile is drawn in _residential
        else:
            e = plan.ownership.owner[i]
            name = plan.ownership.customer_name[i]
            eid = entity_id(int(plan.entity_number[e]))
            mailing = ents[e].mailing_address
            attrs, profile = _business(rng, kind, segment)
            accounts = []
        n_acc = int(plan.account_offset[i + 1] - plan.account_offset[i])
        accounts = _fit_accounts(accounts, n_acc, rng, kind, segment, profile, mailing, window_start)
        if kind in ("commercial", "industrial"):  # floor area and staff follow the load (12-30 kWh/sqft/year)
            annual_kwh = 12 * sum(a["kwh"] for a in accounts)
            attrs["sqft"] = int(annual_kwh / rng.uniform(12.0, 30.0))
            attrs["employees"] = max(2, int(attrs["sqft"] / rng.uniform(250.0, 1500.0)))
        critical = any(a["priority"] == "critical" for a in accounts)

        offers: list[tuple[str, str]] = []
        city = city_of(accounts[-1]["premise"])
        events = events_for(event_rng, kind, city, outages, start_ts, as_of_ts, offers)
        first_active = next(a for a in accounts if a["active"])
        for code, day in offers:
            if all(p["code"] != code for p in first_active["programs"]):
                first_active["programs"].append({"code": code, "enrolled": day})

        _row(out.customers, customer_id=cid, name=name, kind=kind, segment=segment,
             created_at=created_ts * 1_000_000, entity_id=eid, attributes=attrs,
             contacts=contacts_for(rng, kind, name, n_accounts=n_acc, critical=critical, contact_base=i + 1),
             events=None)
        out.events.append(events)
        r = rng.random()
        out.payer.append(0 if r < 0.85 else 1 if r < 0.95 else 2)
        weights = PAY_WEIGHTS["residential" if kind == "residential" else "other"]
        out.pay_method.append(_weighted(rng, tuple(zip(PAY_METHODS, weights))))

        for j, a in enumerate(accounts):
            number = int(plan.account_offset[i]) + j + 1
            aid = account_id(number)
            plan_id = rates.resolve(a["plan"], kind)
            for p in a["programs"]:
                if p["enrolled"] < created_day.isoformat():
                    p["enrolled"] = created_day.isoformat()
            a["programs"].sort(key=lambda p: (p["enrolled"], p["code"]))
            _row(out.accounts, account_id=aid, customer_id=cid, status="active" if a["active"] else "closed",
                 rate_plan_id=plan_id, bill_cycle_day=1, billing_address=a["billing"], programs=a["programs"])
            _row(out.service_points, service_point_id=service_point_id(number), account_id=aid, customer_id=cid,
                 premise_address=a["premise"], meter_id=meter_id(number, plan.seed), interval_minutes=60,
                 has_solar=a["solar_kw"] > 0, load_priority=a["priority"])
            out.account_number.append(number)
            out.account_customer.append(row)
            out.account_active.append(a["active"])
            out.account_plan.append(plan_id)
            out.account_kind.append(kind)
            loads.add(a["profile"], a["kwh"], a["cool"], a["heat"], a["day_sigma"], a["noise"], a["ev_kwh"],
                      a["solar_kw"], a["active"])
    out.load = loads.params()
    return out


def _row(cols: dict[str, list], **values) -> None:
    for k, v in values.items():
        cols[k].append(v)


def _date_before(rng: np.random.Generator, window_start: dt.date, years: float = 6.0) -> str:
    """An enrolment date in the years before the window (clamped to the customer's start by the caller)."""
    d = window_start - dt.timedelta(days=int(rng.integers(1, int(years * 365))))
    return d.isoformat()


def _residential(rng: np.random.Generator, segment: str, premise: str, mailing: str,
                 window_start: dt.date) -> tuple[dict, list[dict]]:
    sqft = {"single_family": (1100, 3600), "multi_family": (500, 1400), "mobile_home": (700, 1600)}[segment]
    ev = rng.random() < 0.08
    life_support = rng.random() < 0.012
    central_ac = rng.random() < (0.75 if segment == "single_family" else 0.5)
    electric_heat = rng.random() < 0.25
    p_solar = {"single_family": 0.2, "multi_family": 0.06, "mobile_home": 0.1}[segment]
    kwh = _lognormal_clip(rng, RES_KWH[segment], 0.4, 200.0, 2500.0)
    solar_kw = 0.0
    if rng.random() < p_solar:  # sized by the installer to offset 60-110% of the year's use (4.8 kWh/kW/day)
        solar_kw = round(float(np.clip(kwh * 12 / (365 * 4.8) * rng.uniform(0.6, 1.1), 2.0, 14.0)), 1)
    attrs = {"dwelling": segment, "sqft": int(rng.integers(*sqft)), "occupants": int(rng.integers(1, 7)),
             "year_built": int(rng.integers(1940, 2024)), "central_ac": central_ac, "electric_heat": electric_heat,
             "ev": ev, "life_support": life_support, "paperless": bool(rng.random() < 0.45),
             "language": _weighted(rng, (("en", 0.72), ("es", 0.2), ("zh", 0.03), ("vi", 0.03), ("tl", 0.02)))}
    if solar_kw:
        attrs["solar_kw_dc"] = solar_kw
    programs = []
    for code, p in (("LOW_INCOME", 0.12), ("BUDGET_BILLING", 0.07), ("GREEN_POWER", 0.04), ("DEMAND_RESPONSE", 0.06)):
        if rng.random() < p:
            programs.append({"code": code, "enrolled": _date_before(rng, window_start)})
    if ev and rng.random() < 0.6:
        programs.append({"code": "EV_RATE", "enrolled": _date_before(rng, window_start, 4)})
    if life_support or rng.random() < 0.01:
        programs.append({"code": "MEDICAL_BASELINE", "enrolled": _date_before(rng, window_start)})
    if solar_kw:
        plan_id = "res-tou-nem"
    elif any(p["code"] == "EV_RATE" for p in programs) or rng.random() < 0.45:
        plan_id = "res-tou"
    else:
        plan_id = "res-tiered"
    account = {"active": True, "plan": plan_id, "premise": premise, "billing": mailing, "programs": programs,
               "priority": "critical" if life_support else "normal", "solar_kw": solar_kw,
               "profile": _weighted(rng, RESIDENTIAL_PROFILES), "kwh": kwh,
               "cool": float(rng.uniform(0.06, 0.15)) if central_ac else float(rng.uniform(0.0, 0.02)),
               "heat": float(rng.uniform(0.03, 0.08)) if electric_heat else float(rng.uniform(0.0, 0.01)),
               "day_sigma": 0.15, "noise": 0.35, "ev_kwh": float(rng.uniform(6.0, 14.0)) if ev else 0.0}
    return attrs, [account]


def _business(rng: np.random.Generator, kind: str, segment: str) -> tuple[dict, str]:
    """Attributes of a business or public customer and the load profile all its sites share."""
    profile = _profile(rng, segment)
    attrs: dict = {"sic": nm.pick(rng, SIC[segment]), "paperless": bool(rng.random() < 0.7)}
    if kind == "public":
        attrs["agency_type"] = segment
        if segment == "hospital":
            attrs.update(hospital=True, life_support=True, beds=int(rng.integers(40, 600)),
                         trauma_level=int(rng.integers(1, 5)), backup_generation=True)
        elif segment == "water_treatment":
            attrs.update(population_served=int(rng.integers(5_000, 400_000)), critical_infrastructure=True)
        elif segment == "school":
            attrs.update(students=int(rng.integers(200, 2500)))
        elif segment == "fire_police":
            attrs.update(emergency_services=True, backup_generation=bool(rng.random() < 0.8))
    else:
        attrs.update(employees=0, sqft=0)  # set from the sites' load once they are drawn
        if kind == "industrial":
            attrs.update(shifts={"ind_1shift": 1, "ind_2shift": 2}.get(profile, 3),
                         backup_generation=bool(rng.random() < 0.4))
    return attrs, profile


def _profile(rng: np.random.Generator, segment: str) -> str:
    if segment in PROFILES:
        return _weighted(rng, PROFILES[segment])
    return segment  # commercial and most public segments have a profile of their own name


def _priority(rng: np.random.Generator, kind: str, segment: str) -> str:
    if segment in ("hospital", "water_treatment"):
        return "critical"
    if segment in ("school", "fire_police"):
        return "priority"
    if kind == "industrial" and (segment in ("chemical", "data_center") or rng.random() < 0.2):
        return "priority"
    return "normal"


def _fit_accounts(accounts: list[dict], n: int, rng: np.random.Generator, kind: str, segment: str,
                  profile: str | None, mailing: str, window_start: dt.date) -> list[dict]:
    """Give the customer exactly ``n`` accounts (the plan fixed the count for dense ids)."""
    if kind == "residential":
        if n == 2:  # an earlier premise, closed before the window
            old = dict(accounts[0], active=False, plan="res-tiered", premise=nm.random_street_address(rng),
                       programs=[], solar_kw=0.0, ev_kwh=0.0, priority="normal")
            return [old, accounts[0]]
        return accounts
    size = SIZE_MWH.get(segment, SIZE_MWH.get(kind))
    priority = _priority(rng, kind, segment)
    out = []
    p_solar = {"commercial": 0.08, "industrial": 0.04, "public": 0.1}[kind]
    for j in range(n):
        mwh = _lognormal_clip(rng, *size)
        solar_kw = 0.0
        if rng.random() < p_solar:  # sized to cover 20-60% of the site's energy (5 kWh/kW/day)
            solar_kw = round(mwh * 1000 / 30 / 5.0 * float(rng.uniform(0.2, 0.6)), 1)
        if kind == "commercial":
            plan_id = "com-tou-demand" if solar_kw or rng.random() < 0.45 else "com-demand"
        else:
            plan_id = {"industrial": "ind-tou-demand", "public": "public-flat"}[kind]
        programs = []
        for code, p in (("DEMAND_RESPONSE", {"commercial": 0.15, "industrial": 0.35, "public": 0.25}[kind]),
                        ("GREEN_POWER", 0.06), ("BUDGET_BILLING", 0.02 if kind == "commercial" else 0.0),
                        ("EV_RATE", 0.03 if kind != "industrial" else 0.0)):
            if rng.random() < p:
                programs.append({"code": code, "enrolled": _date_before(rng, window_start)})
        premise = nm.random_street_address(rng, suite=segment in ("office", "medical_office") and rng.random() < 0.6)
        out.append({"active": j == 0 or rng.random() > 0.06, "plan": plan_id, "premise": premise,
                    "billing": mailing if rng.random() < 0.5 else premise, "programs": programs,
                    "priority": priority, "solar_kw": solar_kw, "profile": profile, "kwh": mwh * 1000,
                    "cool": float(rng.uniform(0.01, 0.05)), "heat": float(rng.uniform(0.0, 0.015)),
                    "day_sigma": 0.07 if kind != "industrial" else 0.1, "noise": 0.1 if kind == "commercial" else 0.07,
                    "ev_kwh": 0.0})
    return out
