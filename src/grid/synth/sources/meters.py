"""The meter-data management system's interval export: ``meter_reads.csv`` (meter id, local timestamp, kWh).

An MDM exports what the head-end delivered: one row per meter per interval, the interval's local start time
with its UTC offset (so the repeated hour at the end of daylight time is unambiguous), delivered kWh with three
decimals (exactly the base's Wh) and received kWh for meters with generation. Only active meters report, and
only the last ``days`` days of the base's window are exported (a 10-million-row file is a flag away).

Defects, as head-ends make them:

- ``duplicate``: an interval delivered twice with the same value (a retried upload);
- ``corrected``: an interval first delivered with a wrong value and later in the file with the right one (the
  base's value is the later one; DOMAIN section 7: a later reading replaces the earlier one);
- ``gap``: an interval never delivered.

Truth: ``truth/meter_reads.csv`` has one row per meter (key = meter id, no row number) and one per defective
data row (key = ``meter_id@timestamp``).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from grid import timegrid
from grid.synth.sources.records import BaseChunk, CsvFile, Truth

COLUMNS = ("meter_id", "read_start", "kwh_delivered", "kwh_received")
DUPLICATE_RATE, CORRECTION_RATE, GAP_RATE = 0.002, 0.001, 0.001


def kwh(wh: int) -> str:
    """Whole Wh as kWh text with three decimals (``1234`` -> ``"1.234"``): exact, no float."""
    sign = "-" if wh < 0 else ""
    q, r = divmod(abs(int(wh)), 1000)
    return f"{sign}{q}.{r:03d}"


def local_stamps(cal: timegrid.IntervalCalendar) -> list[str]:
    """ISO 8601 local start of every interval, with its offset (``2026-11-01T01:00:00-07:00``)."""
    z = timegrid.zone(cal.timezone)
    return [dt.datetime.fromtimestamp(int(t), z).isoformat() for t in cal.utc_start]


class MeterExport:
    """Writes ``meter_reads.csv`` and ``truth/meter_reads.csv`` chunk by chunk."""

    source = "meter_reads"
    file = "meter_reads.csv"

    def __init__(self, root: Path, manifest: dict, days: int):
        self.out = CsvFile(root / self.file, COLUMNS)
        self.truth = Truth(root, self.source)
        self.month = manifest["months"][-1]
        start, end = timegrid.month_bounds(self.month)
        cal = timegrid.calendar(start, end, int(manifest["interval_minutes"]), manifest["timezone"])
        first_day = max(0, cal.days - days)
        self.first = int(np.searchsorted(cal.day, first_day))
        self.stamps = local_stamps(cal)[self.first:]

    def add(self, chunk: BaseChunk, rng: np.random.Generator) -> None:
        sps = {sp["service_point_id"]: sp for sp in chunk.service_points}
        active = {a["account_id"] for a in chunk.accounts if a["status"] == "active"}
        for u in chunk.usage(self.month):
            sp = sps[u["service_point_id"]]
            if sp["account_id"] not in active:
                continue
            meter, cid = sp["meter_id"], sp["customer_id"]
            self.truth.record(self.file, None, meter, cid)
            imp = u["import_wh"][self.first:]
            exp = u["export_wh"][self.first:] if u["export_wh"] is not None else None
            draws = rng.random((len(imp), 2))
            late = []  # corrections arrive after the meter's block, as a re-upload does
            for k, stamp in enumerate(self.stamps):
                good = (meter, stamp, kwh(imp[k]), kwh(exp[k]) if exp is not None else None)
                d = draws[k, 0]
                key = f"{meter}@{stamp}"
                if d < GAP_RATE:
                    self.truth.record(self.file, None, key, cid, ["gap"])
                    continue
                if d < GAP_RATE + CORRECTION_RATE:
                    wrong = (meter, stamp, kwh(imp[k] + 1 + int(draws[k, 1] * 5000)), good[3])
                    self.truth.record(self.file, self.out.write(wrong), key, cid, ["corrected"])
                    late.append(good)
                    continue
                self.out.write(good)
                if d < GAP_RATE + CORRECTION_RATE + DUPLICATE_RATE:
                    self.truth.record(self.file, self.out.write(good), key, cid, ["duplicate"])
            for good in late:
                self.truth.record(self.file, self.out.write(good), f"{meter}@{good[1]}", cid, ["correction"])

    def close(self) -> dict:
        self.out.close()
        self.truth.close()
        return {"kind": "file", "format": "csv", "file": self.file, "rows": self.out.rows,
                "month": self.month, "first_interval": self.first, "truth": f"truth/{self.source}.csv"}
