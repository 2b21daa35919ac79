"""Hourly load and rooftop-solar curves for a whole chunk of service points at once.

# Design: a month of one chunk is one float32 matrix, service point x interval, built from outer products and
# gathers, never a Python loop over service points:
#   load = base_wh * month_factor[profile] * shape[profile, daytype, hour]      (daily curve by kind/segment)
#          * (1 + cool * CDH + heat * HDH)                                      (weather: shared by the base)
#          * daily lognormal * interval lognormal                              (behaviour, unit-mean noise)
#          + ev_kwh * charging-day flag * ev_shape[hour]                        (overnight EV charging)
#   gen  = solar_kw * derate * clear-sky-with-clouds(t) * small noise          (fixed tilt = latitude, south)
# Both are rounded to integer Wh, then import = max(0, load - gen) and export = max(0, gen - load) interval by
# interval, which is what a net meter's two registers record.
# Weather (temperature anomaly and cloudiness per day) is drawn once per base from the seed, so every chunk
# sees the same heat wave on the same day, as a real service territory does.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from grid.sunpath import day_of_year, plane_of_array_wm2
from grid.timegrid import IntervalCalendar

LATITUDE = 36.75  # Fresno, CA: the made-up service territory sits in the Central Valley
LONGITUDE = -119.77
COOL_BASE_C = 24.0  # cooling degree-hours above this
HEAT_BASE_C = 14.0  # heating degree-hours below this


def _curve(base: float, *bumps: tuple[float, float, float]) -> np.ndarray:
    """24 hourly values: ``base`` plus Gaussian bumps ``(centre_hour, width_hours, amplitude)`` (circular)."""
    h = np.arange(24, dtype=np.float64) + 0.5
    out = np.full(24, base)
    for centre, width, amp in bumps:
        d = np.abs(h - centre)
        d = np.minimum(d, 24 - d)
        out += amp * np.exp(-0.5 * (d / width) ** 2)
    return out


def _plateau(base: float, start: float, end: float, amp: float, edge: float = 0.8) -> np.ndarray:
    """``base`` with a smooth business-hours plateau of height ``amp`` from ``start`` to ``end``."""
    h = np.arange(24, dtype=np.float64) + 0.5
    rise = 1 / (1 + np.exp(-(h - start) / edge))
    fall = 1 / (1 + np.exp((h - end) / edge))
    return base + amp * rise * fall


_SCHOOL_MONTHS = (1.0, 1.0, 1.0, 1.0, 1.0, 0.55, 0.35, 0.6, 1.0, 1.0, 1.0, 0.85)  # summer break, winter recess
_FLAT_MONTHS = (1.0,) * 12

# name: (weekday curve, weekend/holiday curve, month factor). Weekend curves are relative to the weekday's
# scale (both are normalised by the weekday mean below), so a closed office really drops at weekends.
_PROFILES: dict[str, tuple[np.ndarray, np.ndarray, tuple[float, ...]]] = {
    # residential: morning and evening peaks, several household rhythms
    "res_commuter": (_curve(0.42, (7.0, 1.1, 0.55), (19.2, 2.1, 1.25)),
                     _curve(0.48, (9.5, 2.0, 0.6), (13.0, 3.0, 0.3), (18.8, 2.4, 1.1)), _FLAT_MONTHS),
    "res_early": (_curve(0.42, (5.8, 1.0, 0.6), (17.8, 2.0, 1.2)),
                  _curve(0.48, (8.0, 2.0, 0.6), (13.0, 3.0, 0.3), (17.8, 2.4, 1.1)), _FLAT_MONTHS),
    "res_home": (_curve(0.5, (8.0, 1.5, 0.45), (13.0, 3.0, 0.4), (19.0, 2.3, 1.05)),
                 _curve(0.5, (9.0, 2.0, 0.5), (13.5, 3.0, 0.45), (19.0, 2.3, 1.0)), _FLAT_MONTHS),
    "res_late": (_curve(0.45, (9.0, 1.5, 0.35), (21.3, 2.0, 1.25), (0.5, 1.3, 0.35)),
                 _curve(0.48, (11.0, 2.0, 0.45), (21.5, 2.2, 1.2), (1.0, 1.4, 0.4)), _FLAT_MONTHS),
    "res_retiree": (_curve(0.5, (9.0, 2.0, 0.6), (17.5, 2.5, 0.9)),
                    _curve(0.5, (9.5, 2.0, 0.6), (17.5, 2.5, 0.9)), _FLAT_MONTHS),
    # commercial: business hours
    "office": (_plateau(0.32, 7.0, 18.5, 1.0), _curve(0.33, (12.0, 3.0, 0.08)), _FLAT_MONTHS),
    "retail": (_plateau(0.3, 9.5, 21.0, 0.95), _plateau(0.3, 9.5, 20.0, 1.0), _FLAT_MONTHS),
    "restaurant": (_curve(0.3, (12.3, 1.4, 0.75), (18.8, 1.9, 1.05)),
                   _curve(0.3, (12.5, 1.7, 0.9), (19.0, 2.0, 1.2)), _FLAT_MONTHS),
    "grocery": (_plateau(0.7, 7.0, 22.0, 0.5), _plateau(0.7, 7.5, 22.0, 0.55), _FLAT_MONTHS),
    "hotel": (_curve(0.75, (7.3, 1.4, 0.3), (20.0, 2.5, 0.45)), _curve(0.78, (8.3, 1.6, 0.3), (20.0, 2.5, 0.5)),
              _FLAT_MONTHS),
    "warehouse": (_plateau(0.3, 6.0, 17.0, 0.8), _curve(0.3, (11.0, 3.0, 0.1)), _FLAT_MONTHS),
    "medical_office": (_plateau(0.3, 7.5, 17.5, 1.0), _curve(0.3, (11.0, 2.0, 0.15)), _FLAT_MONTHS),
    "auto_service": (_plateau(0.25, 7.5, 18.0, 1.0), _plateau(0.25, 8.0, 16.0, 0.5), _FLAT_MONTHS),
    # industrial: one, two or three shifts
    "ind_1shift": (_plateau(0.35, 6.0, 15.5, 1.0), _curve(0.35, (10.0, 3.0, 0.1)), _FLAT_MONTHS),
    "ind_2shift": (_plateau(0.3, 6.0, 22.5, 0.9), _curve(0.4, (12.0, 4.0, 0.15)), _FLAT_MONTHS),
    "ind_3shift": (_curve(1.0, (15.0, 1.0, -0.05), (3.0, 2.0, -0.04)), _curve(0.85, (14.0, 4.0, 0.05)),
                   _FLAT_MONTHS),
    "cold_storage": (_curve(0.8, (15.0, 4.0, 0.3)), _curve(0.8, (15.0, 4.0, 0.28)), _FLAT_MONTHS),
    "data_center": (_curve(1.0, (15.5, 4.5, 0.06)), _curve(1.0, (15.5, 4.5, 0.06)), _FLAT_MONTHS),
    # public
    "hospital": (_curve(0.85, (13.0, 5.0, 0.35)), _curve(0.85, (13.0, 5.0, 0.28)), _FLAT_MONTHS),
    "water_treatment": (_curve(0.7, (2.5, 3.0, 0.5), (11.0, 3.0, 0.12)), _curve(0.7, (2.5, 3.0, 0.5)),
                        _FLAT_MONTHS),  # pumps run at night, when energy is cheap
    "school": (_plateau(0.3, 7.0, 15.5, 1.2), _curve(0.3, (12.0, 3.0, 0.05)), _SCHOOL_MONTHS),
    "fire_police": (_curve(0.8, (14.0, 5.0, 0.25)), _curve(0.8, (14.0, 5.0, 0.22)), _FLAT_MONTHS),
}

PROFILE_NAMES: tuple[str, ...] = tuple(_PROFILES)
PROFILE_INDEX = {name: i for i, name in enumerate(PROFILE_NAMES)}


def _shape_table() -> tuple[np.ndarray, np.ndarray]:
    shapes = np.empty((len(PROFILE_NAMES), 2, 24), dtype=np.float32)
    months = np.empty((len(PROFILE_NAMES), 12), dtype=np.float32)
    for i, (weekday, weekend, month_factor) in enumerate(_PROFILES.values()):
        scale = 1.0 / weekday.mean()  # weekday mean 1: ``base_wh`` is then an average weekday hour
        shapes[i, 0] = weekday * scale
        shapes[i, 1] = weekend * scale
        months[i] = month_factor
    shapes.setflags(write=False)
    months.setflags(write=False)
    return shapes, months


SHAPES, MONTH_FACTORS = _shape_table()  # (profiles, daytype 0 weekday / 1 weekend-holiday, hour), (profiles, 12)

# Overnight EV charging after the evening peak (what TOU EV rates reward); fractions of the day's charge.
EV_SHAPE = np.zeros(24, dtype=np.float32)
EV_SHAPE[[22, 23, 0, 1, 2]] = (0.15, 0.25, 0.25, 0.2, 0.15)


def us_holidays(year: int) -> set[dt.date]:
    """Federal holidays on which businesses run their weekend schedule (observed dates)."""

    def nth(month: int, weekday: int, n: int) -> dt.date:
        d = dt.date(year, month, 1)
        d += dt.timedelta(days=(weekday - d.weekday()) % 7)
        return d + dt.timedelta(weeks=n - 1)

    def last(month: int, weekday: int) -> dt.date:
        d = dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1)
        return d - dt.timedelta(days=(d.weekday() - weekday) % 7)

    def observed(d: dt.date) -> dt.date:
        return d + dt.timedelta(days={5: -1, 6: 1}.get(d.weekday(), 0))

    return {observed(dt.date(year, 1, 1)), nth(1, 0, 3), nth(2, 0, 3), last(5, 0), observed(dt.date(year, 6, 19)),
            observed(dt.date(year, 7, 4)), nth(9, 0, 1), observed(dt.date(year, 11, 11)), nth(11, 3, 4),
            observed(dt.date(year, 12, 25))}


@dataclass(frozen=True)
class Weather:
    """Daily weather of the service territory over the base's window: one draw per base, shared by all."""

    first_ordinal: int
    temp_anomaly_c: np.ndarray  # float32 per day
    cloud: np.ndarray  # float32 per day, 0 clear .. 0.95 overcast

    @classmethod
    def draw(cls, rng: np.random.Generator, start: dt.date, end: dt.date) -> "Weather":
        n = (end - start).days + 2  # +1 spare day: a local day may start before UTC midnight
        doy = (np.arange(n) + start.timetuple().tm_yday) % 365
        anomaly = np.empty(n)
        shocks = rng.normal(0.0, 1.8, n)
        prev = 0.0
        for i in range(n):  # AR(1): heat waves and cold snaps last several days
            prev = 0.72 * prev + shocks[i]
            anomaly[i] = prev
        mean_cloud = 0.16 + 0.12 * np.cos(2 * np.pi * (doy - 10) / 365)  # foggy winters, clear summers
        cloud = np.clip(rng.beta(0.6, 0.6 * (1 - mean_cloud) / mean_cloud), 0.0, 0.95)
        return cls(start.toordinal(), anomaly.astype(np.float32), cloud.astype(np.float32))

    def temperature_c(self, cal: IntervalCalendar) -> np.ndarray:
        """Outdoor temperature at each interval (local time), float32."""
        day = np.clip(cal.date_ordinal - self.first_ordinal, 0, self.temp_anomaly_c.shape[0] - 1)
        doy = day_of_year(cal.date_ordinal)
        seasonal = 17.5 + 9.0 * np.cos(2 * np.pi * (doy - 200) / 365)
        diurnal = 7.0 * np.cos(2 * np.pi * (cal.hour + 0.5 - 15.5) / 24)
        return (seasonal + diurnal + self.temp_anomaly_c[day]).astype(np.float32)

    def cloud_at(self, cal: IntervalCalendar) -> np.ndarray:
        day = np.clip(cal.date_ordinal - self.first_ordinal, 0, self.cloud.shape[0] - 1)
        return self.cloud[day]


def solar_wh_per_kw(cal: IntervalCalendar, weather: Weather) -> np.ndarray:
    """Energy (Wh) one kW-dc of south-facing panels tilted at the latitude yields in each interval.

    Clear-sky irradiance from :mod:`grid.sunpath`, 86% system derate, daily cloud cover.
    """
    hours = cal.interval_minutes / 60.0
    poa = plane_of_array_wm2(cal, LATITUDE, LONGITUDE)  # W/m2 on the panel
    clouds = 1.0 - 0.75 * weather.cloud_at(cal)
    return (poa / 1000.0 * 0.86 * clouds * hours * 1000.0).astype(np.float32)


@dataclass
class LoadParams:
    """Per service point load parameters of one chunk (struct of arrays, length ``n``)."""

    profile: np.ndarray  # int16 index into PROFILE_NAMES
    base_wh: np.ndarray  # float32 mean Wh of an average weekday hour before weather
    cool: np.ndarray  # float32 fractional load increase per cooling degree-hour
    heat: np.ndarray  # float32 fractional load increase per heating degree-hour
    day_sigma: np.ndarray  # float32 day-to-day lognormal sigma
    noise_sigma: np.ndarray  # float32 interval lognormal sigma
    ev_kwh: np.ndarray  # float32 kWh per charging day, 0 without an EV
    solar_kw: np.ndarray  # float32 kW-dc of rooftop solar, 0 without
    active: np.ndarray  # bool: closed accounts' meters read zero

    @property
    def n(self) -> int:
        return int(self.profile.shape[0])


def month_usage(params: LoadParams, cal: IntervalCalendar, weather: Weather, holidays: set[dt.date],
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Import and export Wh of every service point over ``cal``.

    Returns
    -------
    import_wh, export_wh : int32 (n, cal.n)
        Export is zero where a service point has no solar (callers write those rows as null).
    """
    n, t = params.n, cal.n
    holiday_ordinals = np.array(sorted(d.toordinal() for d in holidays), dtype=np.int32)
    weekend = (cal.weekday >= 5) | np.isin(cal.date_ordinal, holiday_ordinals)
    daytype = weekend.astype(np.intp)
    hour = cal.hour.astype(np.intp)
    month = int(cal.month[0]) - 1
    load = SHAPES[:, daytype, hour][params.profile]  # (n, t) gather: one row per service point
    load *= (params.base_wh * MONTH_FACTORS[params.profile, month])[:, None]

    temp = weather.temperature_c(cal)
    cdh = np.maximum(temp - COOL_BASE_C, 0.0)
    hdh = np.maximum(HEAT_BASE_C - temp, 0.0)
    load *= 1.0 + params.cool[:, None] * cdh[None, :] + params.heat[:, None] * hdh[None, :]

    n_days = int(cal.day[-1]) + 1 if t else 0
    dsig = params.day_sigma[:, None]
    daily = np.exp(dsig * rng.standard_normal((n, n_days), dtype=np.float32) - 0.5 * dsig * dsig)
    load *= daily[:, cal.day]
    nsig = params.noise_sigma[:, None]
    noise = rng.standard_normal((n, t), dtype=np.float32)
    noise *= nsig
    noise -= 0.5 * nsig * nsig
    np.exp(noise, out=noise)
    load *= noise
    del noise, daily

    ev = np.flatnonzero(params.ev_kwh > 0)
    if ev.size:
        charging_days = (rng.random((ev.size, n_days)) < 0.7).astype(np.float32)
        # a charge that starts at 22:00 belongs to the evening's day; hours 0-2 finish the previous night's
        load[ev] += (params.ev_kwh[ev, None] * 1000.0) * charging_days[:, cal.day] * EV_SHAPE[hour][None, :]

    load_wh = np.rint(load).astype(np.int32)
    del load
    load_wh[~params.active] = 0
    export_wh = np.zeros((n, t), dtype=np.int32)
    solar = np.flatnonzero((params.solar_kw > 0) & params.active)
    if solar.size:
        per_kw = solar_wh_per_kw(cal, weather)
        wobble = 1.0 + 0.04 * rng.standard_normal((solar.size, t), dtype=np.float32)  # passing clouds, soiling
        gen = np.rint(np.maximum(params.solar_kw[solar, None] * per_kw[None, :] * wobble, 0.0)).astype(np.int32)
        net = load_wh[solar] - gen
        load_wh[solar] = np.maximum(net, 0)
        export_wh[solar] = np.maximum(-net, 0)
    return load_wh, export_wh
