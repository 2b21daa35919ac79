"""Rooftop solar generation profiles: Wh that one kW-dc yields in each interval of a calendar.

The default profile is a clear-sky model scaled by an average clearness, the same physics the synthetic base
uses for its solar meters (``grid.synth.load_shapes.solar_wh_per_kw``) but without the base's day-by-day
weather, because a what-if must not depend on a weather draw nobody knows in advance:

* sun position from UTC (declination, equation of time, hour angle at the site's longitude), so daylight
  saving moves the curve on the clock as it should;
* clear-sky beam irradiance from the Meinel air-mass model, 10 % diffuse;
* panels south-facing, tilted at the latitude (``cos i = cos(decl) cos(hour angle)``);
* 86 % system derate (inverter, wiring, soiling; PVWatts' default loss of 14 %);
* ``CLEARNESS`` = 0.8: the average share of clear-sky output left after clouds in California's Central Valley,
  an annual figure (winter is cloudier, summer clearer), so monthly totals are indicative, not a forecast.

A customer (or installer) who has a better profile passes it instead: 12 x 24 Wh per kW-dc by local month and
hour (a PVWatts "typical day per month" table), see :func:`table_profile`.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from grid.sunpath import plane_of_array_wm2
from grid.timegrid import IntervalCalendar, calendar

LATITUDE = 36.75  # the service territory of the synthetic base (Fresno, CA)
LONGITUDE = -119.77
DERATE = 0.86
CLEARNESS = 0.8


@lru_cache(maxsize=256)
def _model(start, end, interval_minutes: int, tz: str, latitude: float, longitude: float) -> np.ndarray:
    cal = calendar(start, end, interval_minutes, tz)
    hours = cal.interval_minutes / 60.0
    poa = plane_of_array_wm2(cal, latitude, longitude)  # W/m2 on the panel
    out = poa / 1000.0 * DERATE * CLEARNESS * hours * 1000.0
    out.setflags(write=False)
    return out


def model_profile(cal: IntervalCalendar, latitude: float = LATITUDE, longitude: float = LONGITUDE) -> np.ndarray:
    """Wh per kW-dc in each interval of ``cal`` (float64, read-only), from the clear-sky model above."""
    return _model(cal.start, cal.end, cal.interval_minutes, cal.timezone, float(latitude), float(longitude))


def table_profile(cal: IntervalCalendar, table: np.ndarray) -> np.ndarray:
    """Wh per kW-dc in each interval from a 12 x 24 table of Wh per kW-dc per local month and hour."""
    t = np.asarray(table, dtype=np.float64)
    per_hour = 60 // cal.interval_minutes
    return t[cal.month.astype(np.intp) - 1, cal.hour.astype(np.intp)] / per_hour


def generation_wh(kw_milli: int, per_kw: np.ndarray) -> np.ndarray:
    """Integer Wh of a ``kw_milli`` / 1000 kW-dc system, interval by interval (rounded half-up once, here)."""
    return np.floor(per_kw * (kw_milli / 1000.0) + 0.5).astype(np.int64)
