"""The one middleware that turns errors into ``application/problem+json`` (RFC 9457).

Every answer carries an ``X-Request-Id`` (the caller's, if it sent a sane one, else a new one); a problem body
quotes it as ``request_id``. A 500 says nothing about its cause (no library message, path or traceback): the
cause goes to the log under the same id, where an operator finds it.
"""
from __future__ import annotations

import json
import logging
import re
import time
import uuid

from aiohttp import web

from grid.errors import ContextGridError, PayloadTooLarge, ShardUnavailable
from grid.gateway.keys import CONFIG, METRICS, REQUEST_ID

log = logging.getLogger("grid.gateway")

PROBLEM = "application/problem+json"
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id(request: web.Request) -> str:
    """The id this request is logged under: the caller's ``X-Request-Id`` if it is short and plain."""
    rid = request.get(REQUEST_ID)
    if rid is None:
        given = request.headers.get("X-Request-Id", "")
        rid = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
        request[REQUEST_ID] = rid
    return rid


def problem_response(status: int, title: str, detail: str, **extra) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {}
    if status in (429, 503) or "retry_after" in extra:  # also a 409 that passes (a merge under way)
        headers["Retry-After"] = str(extra.get("retry_after", 1))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="contextgrid"'
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=PROBLEM, headers=headers)


def from_error(exc: ContextGridError, request_id: str | None = None) -> web.Response:
    body = exc.problem()
    return problem_response(exc.status, body.pop("title"), body.pop("detail"), request_id=request_id,
                            **{k: v for k, v in body.items() if k not in ("type", "status", "request_id")})


@web.middleware
async def problems(request: web.Request, handler):
    t0 = time.perf_counter()
    metrics = request.app.get(METRICS)
    rid = request_id(request)
    try:
        resp = await handler(request)
    except ShardUnavailable as exc:
        # its detail names WAL/segment paths and OS messages: for the log, not for the caller
        log.warning("%s %s: %s [request %s]", request.method, request.path, exc.detail, rid)
        resp = from_error(ShardUnavailable(f"the customer's shard is unavailable; retry after {exc.retry_after} s "
                                           f"(request {rid})", retry_after=exc.retry_after), rid)
    except ContextGridError as exc:
        resp = from_error(exc, rid)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG].max_body_bytes
        resp = from_error(PayloadTooLarge(f"body larger than the {limit}-byte limit", field="body"), rid)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        field = "path" if exc.status in (404, 405) else None
        resp = problem_response(exc.status, exc.reason, exc.reason, field=field, request_id=rid)
        if "Allow" in exc.headers:  # a 405 says what is allowed (RFC 9110 section 15.5.6)
            resp.headers["Allow"] = exc.headers["Allow"]
    except Exception:  # noqa: BLE001 - the last line of defence: log, never leak a traceback
        log.exception("unhandled error on %s %s [request %s]", request.method, request.path, rid)
        resp = problem_response(500, "Internal error", f"the gateway failed; the error was logged under request "
                                f"{rid}", request_id=rid)
    resp.headers["X-Request-Id"] = rid
    if metrics is not None:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        metrics.observe(request.method, route, resp.status, time.perf_counter() - t0)
    return resp
