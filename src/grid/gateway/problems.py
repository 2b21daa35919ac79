"""The one middleware that turns errors into ``application/problem+json`` (RFC 9457)."""
from __future__ import annotations

import json
import logging
import time

from aiohttp import web

from grid.errors import ContextGridError, PayloadTooLarge, ShardUnavailable
from grid.gateway.keys import CONFIG, METRICS

log = logging.getLogger("grid.gateway")

PROBLEM = "application/problem+json"


def problem_response(status: int, title: str, detail: str, **extra) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {}
    if status == 503:
        headers["Retry-After"] = str(extra.get("retry_after", 1))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="contextgrid"'
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=PROBLEM, headers=headers)


def from_error(exc: ContextGridError) -> web.Response:
    body = exc.problem()
    return problem_response(exc.status, body.pop("title"), body.pop("detail"),
                            **{k: v for k, v in body.items() if k not in ("type", "status")})


@web.middleware
async def problems(request: web.Request, handler):
    t0 = time.perf_counter()
    metrics = request.app.get(METRICS)
    try:
        resp = await handler(request)
    except ContextGridError as exc:
        resp = from_error(exc)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG].max_body_bytes
        resp = from_error(PayloadTooLarge(f"body larger than the {limit}-byte limit", field="body"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        field = "path" if exc.status in (404, 405) else None
        resp = problem_response(exc.status, exc.reason, exc.text or exc.reason, field=field)
    except ShardUnavailable as exc:  # pragma: no cover - covered by ContextGridError above
        resp = from_error(exc)
    except Exception:  # noqa: BLE001 - the last line of defence: log, never leak a traceback
        log.exception("unhandled error on %s %s", request.method, request.path)
        resp = problem_response(500, "Internal error", "the gateway failed; the error was logged")
    if metrics is not None:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        metrics.observe(request.method, route, resp.status, time.perf_counter() - t0)
    return resp
