"""Tariffs, the rate check, and bill runs over HTTP."""
from __future__ import annotations

import asyncio
import datetime as dt
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from aiohttp import web

from grid import billrun
from grid.errors import Conflict, InvalidInput, NotFound
from grid.gateway.keys import BODY, CONFIG, GRID, JOBS, LIMITS, PARAMS, PRINCIPAL, TARIFFS
from grid.gateway.responses import respond
from grid.tariffs import compile_checked
from grid.timegrid import month_bounds
from kernels.billing import bill_intervals


def _catalogue(request):
    return request.app[TARIFFS]


def _resolve_tariff(request, value):
    if isinstance(value, str):
        try:
            return _catalogue(request).get(value)
        except NotFound:
            raise InvalidInput(f"no tariff {value!r} in the catalogue", field="tariff") from None
    return compile_checked(value, "inline", request.app[TARIFFS].timezone)


async def post_calculate(request: web.Request) -> web.Response:
    body = request[BODY]
    tariff = _resolve_tariff(request, body["tariff"])
    start, end = (dt.date.fromisoformat(body[k]) for k in ("start", "end"))
    if end <= start:
        raise InvalidInput("end must be after start", field="end")
    # h3: size checked before any calendar is built: the span may not need more intervals than the
    # contract lets import_wh hold (40000), whatever the tariff's daylight-saving days add (at most a day).
    minutes = body.get("interval_minutes", 60)
    per_day = 1440 // minutes
    if ((end - start).days - 1) * per_day > len(body["import_wh"]):
        raise InvalidInput(f"{start} to {end} needs about {(end - start).days * per_day} intervals of {minutes} "
                           f"min, import_wh has {len(body['import_wh'])}", field="import_wh")
    trace = bool(request[PARAMS].get("trace"))

    def work():  # h3: off the event loop (a large request must not stall every other one), uncached
        imp = np.asarray(body["import_wh"], dtype=np.int64)
        exp = np.asarray(body["export_wh"], dtype=np.int64) if "export_wh" in body else None
        batch = bill_intervals(tariff, start, end, minutes, imp, exp, cache=False)
        out = batch.bill(0)
        if trace:
            out["trace"] = batch.trace(0)
        return out

    return respond(request, await asyncio.get_running_loop().run_in_executor(None, work), "bill")


# -- bill runs ------------------------------------------------------------------------------------------------
async def post_bill_run(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    period = request[BODY]["period"]
    month_bounds(period)  # a bad month is a 422 now, not a failed job later
    tolerance = request[BODY].get("tolerance_cents", 0)
    grid, tariff_dir = request.app[GRID], request.app[CONFIG].tariff_dir

    async def work(job):
        return await grid.abill_run(period, tariff_dir, tolerance, progress=job.progress)

    job = request.app[JOBS].start("bill-run", work, limit=request.app[LIMITS].config.bill_runs, params={"period": period, "tolerance_cents": tolerance})
    return respond(request, _run_view(job), "bill_run", status=202,
                   headers={"Location": f"/v1/bill-runs/{job.job_id}"})


def _run_view(job) -> dict:
    v = job.view()
    v["run_id"] = v.pop("job_id")
    report = v.pop("result")
    if report is not None:
        v["report"] = report
    return v


async def list_bill_runs(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    p = request[PARAMS]
    runs = [j for j in reversed(request.app[JOBS].list("bill-run"))
            if p.get("period") is None or j.params.get("period") == p["period"]][:p.get("limit", 50)]
    items = []
    for job in runs:
        v = _run_view(job)
        report = v.pop("report", None)
        if report is not None:
            v.update({k: report[k] for k in ("counts", "bills", "held", "released", "diff_cents", "billed_cents")})
        items.append(v)
    return respond(request, {"items": items}, "bill_runs")


async def get_bill_run(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    job = request.app[JOBS].get(request[PARAMS]["id"], kind="bill-run")
    fmt = request[PARAMS].get("format")
    if fmt == "csv" and job.result is not None:
        return respond(request, billrun.report_lines(job.result), "lines")
    return respond(request, _run_view(job), "bill_run")


async def get_bill_run_parquet(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    job = request.app[JOBS].get(request[PARAMS]["id"], kind="bill-run")
    if job.result is None:  # h3: 409, not 404: the run exists, its report does not yet (or it failed)
        raise Conflict(f"the run is {job.state} and has no report", field="id")
    rows = billrun.report_lines(job.result)
    schema = pa.schema([("customer_id", pa.string()), ("account_id", pa.string()), ("period", pa.string()),
                        ("legacy_bill_id", pa.string()), ("outcome", pa.string()), ("bill_diff_cents", pa.int64()),
                        ("computed_total_cents", pa.int64()), ("legacy_total_cents", pa.int64()),
                        ("code", pa.string()), ("computed_cents", pa.int64()), ("legacy_cents", pa.int64()),
                        ("line_status", pa.string())])
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
    return web.Response(body=buf.getvalue(), content_type="application/vnd.apache.parquet",
                        headers={"Content-Disposition": f'attachment; filename="bill-run-{job.job_id}.parquet"'})


def setup_billing(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/bills/calculate", post_calculate, name="post_calculate")
    r.add_get("/v1/bill-runs", list_bill_runs, name="list_bill_runs")
    r.add_post("/v1/bill-runs", post_bill_run, name="post_bill_run")
    r.add_get("/v1/bill-runs/{id}", get_bill_run, name="get_bill_run")
    r.add_get("/v1/bill-runs/{id}/report.parquet", get_bill_run_parquet, name="get_bill_run_parquet")
