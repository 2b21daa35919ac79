"""Where the sun is, and what it puts on a panel: one clear-sky model shared by the synthetic base's rooftop
solar and the what-if's added solar, so both see the same sun.

Clear-sky beam irradiance from the Meinel air-mass model, incidence on a south-facing plane tilted at the
latitude (``cos i = cos(decl) cos(hour angle)``), plus 10 % diffuse; the sun's position is computed from UTC,
so daylight-saving shifts move the curve on the clock as they should.
"""
from __future__ import annotations

import datetime as dt

import numpy as np

from grid.timegrid import IntervalCalendar


def day_of_year(ordinals: np.ndarray) -> np.ndarray:
    """1-based day of the year of each proleptic Gregorian date ordinal (vectorized, any span)."""
    o = np.asarray(ordinals, dtype=np.int64)
    if o.size == 0:
        return o.copy()
    years = range(dt.date.fromordinal(int(o.min())).year, dt.date.fromordinal(int(o.max())).year + 2)
    jan1 = np.array([dt.date(y, 1, 1).toordinal() for y in years], dtype=np.int64)
    return o - jan1[np.searchsorted(jan1, o, side="right") - 1] + 1


def plane_of_array_wm2(cal: IntervalCalendar, latitude: float, longitude: float) -> np.ndarray:
    """Clear-sky irradiance (W/m2) on a latitude-tilt, south-facing panel at the middle of each interval."""
    mid = cal.utc_start + cal.interval_minutes * 30
    doy = day_of_year(cal.date_ordinal).astype(np.float64)
    b = 2 * np.pi * (doy - 81) / 364
    eot_min = 9.87 * np.sin(2 * b) - 7.53 * np.cos(b) - 1.5 * np.sin(b)
    solar_hour = ((mid % 86400) / 3600.0 + longitude / 15.0 + eot_min / 60.0) % 24
    hour_angle = np.radians(15.0 * (solar_hour - 12.0))
    decl = np.radians(23.45 * np.sin(2 * np.pi * (284 + doy) / 365))
    lat = np.radians(latitude)
    sin_elev = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    up = sin_elev > 0.02
    air_mass = np.where(up, 1.0 / np.maximum(sin_elev, 0.02), 50.0)
    beam = 1353.0 * 0.7 ** (air_mass ** 0.678)
    incidence = np.maximum(np.cos(decl) * np.cos(hour_angle), 0.0)
    return np.where(up, beam * incidence + 0.1 * beam * sin_elev, 0.0)
