"""A reading's length against its service point's interval, and re-imports of what is already held, through the
push route of a running grid (issue 11, as a new user's tester met them): an hourly Green Button file pushed to
a 15-minute meter was stored whole in the hour's first quarter (silently four times the quarter's energy), and
a report uploaded twice answered "applied 744, unchanged 0"."""
from __future__ import annotations

import datetime as dt

from conftest import auth
from test_imports_espi import _feed, _rt
from test_imports_grid import iapi, igrid  # noqa: F401  (the imports module's grid: sources/ copied in)
from test_newuser_imports import push, readings

T0 = int(dt.datetime(2026, 3, 10, 5, tzinfo=dt.timezone.utc).timestamp())  # 00:00 in New York, standard time
ESPI = "application/atom+xml"


def _gb(readings_: list[tuple[int, int, int]]) -> bytes:
    """A Green Button file of (start, duration s, Wh) readings."""
    return _feed("".join(f"<espi:IntervalReading><espi:timePeriod><espi:duration>{d}</espi:duration><espi:start>"
                         f"{s}</espi:start></espi:timePeriod><espi:value>{v}</espi:value></espi:IntervalReading>"
                         for s, d, v in readings_), _rt())


def _z(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


async def _customer(api, n: int, interval: int) -> tuple[str, str]:
    row = {"CUST_ID": f"C00077{n:02d}", "CUST_NAME": "interval tester", "CLASS": "RES", "ACCT_NO": f"A00077{n:02d}",
           "RATE": "res-tou", "SP_ID": f"S00077{n:02d}", "METER_NO": f"M00077{n:02d}", "INTERVAL": str(interval)}
    r = await api.post("/v1/imports/billing-customers", json=[row], headers=auth("operator"))
    assert r.status == 200, await r.text()
    return row["CUST_ID"], row["SP_ID"]


async def _quarantine(api, source: str, sp: str) -> list[tuple[str, str]]:
    r = await api.get(f"/v1/imports/{source}/quarantine", headers=auth("operator"), params={"limit": 1000})
    return sorted((e["row"]["start"], e["field"]) for e in (await r.json())["items"]
                  if e["row"] and e["row"].get("service_point_id") == sp)


async def test_hourly_green_button_on_a_quarter_hour_meter_is_quarantined_not_put_in_its_first_quarter(iapi):
    cid, sp = await _customer(iapi, 1, 15)
    r = await push(iapi, "greenbutton", _gb([(T0, 3600, 1000), (T0 + 3600, 3600, 2000)]), ESPI, service_point_id=sp)
    assert r.status == 200, await r.text()
    rcpt = await r.json()
    assert (rcpt["applied"], rcpt["quarantined"]) == (0, 2), rcpt
    assert await readings(iapi, cid, sp, "2026-03") == {}  # was {T0: 1000, T0 + 1 h: 2000}: quarters holding hours
    assert await _quarantine(iapi, "greenbutton", sp) == [(_z(T0), "usage.duration"), (_z(T0 + 3600), "usage.duration")]
    # its own quarter-hours import as they are
    r = await push(iapi, "greenbutton", _gb([(T0 + 900 * i, 900, 10 + i) for i in range(4)]), ESPI, service_point_id=sp)
    assert (await r.json())["applied"] == 4
    assert await readings(iapi, cid, sp, "2026-03") == {_z(T0 + 900 * i): 10 + i for i in range(4)}


async def test_quarter_hours_on_an_hourly_meter_sum_into_whole_hours_and_a_partial_hour_is_quarantined_whole(iapi):
    cid, sp = await _customer(iapi, 2, 60)
    parts = [(T0 + 900 * i, 900, 100 + i) for i in range(4)]  # a whole hour: 406 Wh
    parts += [(T0 + 3600 + 900 * i, 900, 7) for i in (0, 1, 3)]  # the next hour lacks its third quarter
    r = await push(iapi, "greenbutton", _gb(parts), ESPI, service_point_id=sp)
    assert r.status == 200, await r.text()
    rcpt = await r.json()
    assert (rcpt["applied"], rcpt["quarantined"]) == (4, 3), rcpt
    # was {T0: 100}: the first quarter stored as the hour, the other six quarantined
    assert await readings(iapi, cid, sp, "2026-03") == {_z(T0): 406}
    held = await _quarantine(iapi, "greenbutton", sp)
    assert held == [(_z(T0 + 3600 + 900 * i), "usage.duration") for i in (0, 1, 3)]


async def test_reuploaded_usage_counts_as_unchanged_and_a_corrected_reading_as_applied(iapi):
    cid, sp = await _customer(iapi, 3, 60)
    body = "sp,ts,wh\n" + "".join(f"{sp},{_z(T0 + 3600 * h)},{500 + h}\n" for h in range(24))
    first = await (await push(iapi, "interval-wh", body.encode(), "text/csv")).json()
    assert (first["applied"], first["unchanged"]) == (24, 0), first
    before = (await (await iapi.get(f"/v1/customers/{cid}", headers=auth("operator"))).json())["version"]
    again = await (await push(iapi, "interval-wh", body.encode(), "text/csv")).json()
    assert (again["applied"], again["unchanged"]) == (0, 24), again  # was applied 24, unchanged 0
    assert (await (await iapi.get(f"/v1/customers/{cid}", headers=auth("operator"))).json())["version"] == before
    fixed = await (await push(iapi, "interval-wh", body.replace(f",{_z(T0)},500", f",{_z(T0)},555").encode(),
                              "text/csv")).json()
    assert (fixed["applied"], fixed["unchanged"]) == (1, 23), fixed
    assert (await readings(iapi, cid, sp, "2026-03"))[_z(T0)] == 555
    # a Green Button download of the same hours, summed from quarters, is unchanged too (all four of each hour)
    gb = [(T0 + 3600 * h + 900 * q, 900, (555 if h == 0 else 500 + h) // 4 + (q < (555 if h == 0 else 500 + h) % 4))
          for h in range(2) for q in range(4)]
    rcpt = await (await push(iapi, "greenbutton", _gb(gb), ESPI, service_point_id=sp)).json()
    assert (rcpt["applied"], rcpt["unchanged"]) == (0, 8), rcpt
    r = await iapi.get("/v1/imports", headers=auth("operator"))
    src = next(s for s in (await r.json())["items"] if s["source"] == "interval-wh")
    assert src["rows_unchanged"] >= 24 + 23


# -- the shard's usage apply on its own (no Ray): any mix of whole and partial hours, exact to the Wh ----------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 5000), min_size=4, max_size=4), st.sets(st.integers(0, 3))),
                min_size=1, max_size=6))
def test_quarter_hours_sum_exactly_into_whole_hours_only_and_the_same_rows_again_are_unchanged(hours):
    import numpy as np

    from grid.imports.usage_rows import apply_usage
    from grid.shard import Shard
    from grid.timegrid import local_midnight_utc

    shard = Shard(0)
    shard.sp_owner = {"S1": ("C1", 60)}
    start, wh, dur = [], [], []
    for h, (parts, dropped) in enumerate(hours):
        for q in range(4):
            if q not in dropped:
                start.append(T0 + 3600 * h + 900 * q)
                wh.append(parts[q])
                dur.append(900)
    n = len(start)
    cols = {"service_point_id": ["S1"] * n, "usage.start": start, "usage.import_wh": wh, "usage.duration": dur}
    offs = np.arange(1, n + 1, dtype=np.int64)
    touched: dict = {}
    refused, unchanged = apply_usage(shard, ["C1"] * n, offs, cols, touched)
    want = {h: sum(p) for h, (p, dropped) in enumerate(hours) if not dropped}
    assert unchanged == 0 and len(refused) == n - 4 * len(want)
    assert {r["field"] for r in refused} <= {"usage.duration"}
    store = shard._store(60)
    block = store.block("2026-03")
    first = (T0 - local_midnight_utc(dt.date(2026, 3, 1), shard.timezone)) // 3600
    row = store.row_of.get("S1")
    got = {h: 0 if row is None else int(block.imp[row, first + h]) for h in range(len(hours))}
    assert got == {h: want.get(h, 0) for h in range(len(hours))}
    assert bool(touched) == bool(want)
    touched.clear()
    again, unchanged = apply_usage(shard, ["C1"] * n, offs, cols, touched)
    assert unchanged == 4 * len(want) and len(again) == len(refused) and not touched


def test_green_button_batches_never_split_an_hour_of_quarter_hours(tmp_path):
    from grid.imports.espi import EspiReader
    from grid.imports.readers import FileInfo, file_digest

    path = tmp_path / "quarters.xml"
    path.write_bytes(_gb([(T0 + 900 * i, 900, i) for i in range(4 * 6)]))
    info = FileInfo(path, path.stat().st_size, file_digest(path), {"service_point_id": "S1"})
    batches = list(EspiReader(info, batch_rows=6).batches())  # 6 rows would end mid-hour: the hour goes whole
    assert [b.position["offset"] for b in batches] == [8, 16, 24]
    assert [r["import_wh"] for b in batches for r in b.rows] == list(range(24))
    rest = list(EspiReader(info, batch_rows=6).batches(batches[0].position))
    assert [b.position["offset"] for b in rest] == [16, 24]
