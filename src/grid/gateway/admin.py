"""Operator routes: the partition table and shards, scaling, snapshots, jobs."""
from __future__ import annotations

from aiohttp import web

from grid.gateway.keys import BODY, GRID, JOBS, PARAMS, PRINCIPAL
from grid.gateway.responses import respond


async def get_shards(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    grid = request.app[GRID]
    t = grid.table
    stats = await grid.astats()
    return respond(request, {"version": t.version, "partitions": len(t.owner), "owner": t.owner,
                             "moving": sorted(grid.moving), "shards": stats}, "shards")


async def post_shards(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    count = request[BODY]["count"]
    grid = request.app[GRID]

    async def work(job):
        return await grid.ascale(count, progress=job.progress)

    job = request.app[JOBS].start("scale", work)
    return respond(request, job.view(), "job", status=202,
                   headers={"Location": f"/v1/admin/jobs/{job.job_id}"})


async def get_job(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    return respond(request, request.app[JOBS].get(request[PARAMS]["id"]).view(), "job")


async def post_snapshots(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    return respond(request, {"items": await request.app[GRID].asnapshot()}, "snapshots")


def setup_admin(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/admin/shards", get_shards, name="get_shards")
    r.add_post("/v1/admin/shards", post_shards, name="post_shards")
    r.add_get("/v1/admin/jobs/{id}", get_job, name="get_job")
    r.add_post("/v1/admin/snapshots", post_snapshots, name="post_snapshots")
