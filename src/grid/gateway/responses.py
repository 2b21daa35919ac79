"""Encoding handler results in the negotiated format."""
from __future__ import annotations

from aiohttp import web

from grid.gateway.formats import by_media_type, negotiate
from grid.gateway.keys import FORMAT, PARAMS


def respond(request: web.Request, data, root: str, status: int = 200, headers: dict | None = None) -> web.Response:
    """``data`` in the format the client asked for (``?format=`` or ``Accept``; JSON by default)."""
    media = request.get(FORMAT)  # chosen by the contract middleware before the handler ran
    if media is not None:
        fmt = by_media_type(media)
    else:  # a route outside the contract
        params = request.get(PARAMS) or {}
        fmt = negotiate(params.get("format") or request.query.get("format"), request.headers.get("Accept"))
    body = fmt.encode(data, root)
    charset = "utf-8" if fmt.media_type.startswith("text/") or fmt.media_type.endswith("xml") else None
    resp = web.Response(status=status, body=body, headers=headers)
    resp.content_type = fmt.media_type
    if charset:
        resp.charset = charset
    resp.headers["Vary"] = "Accept"
    return resp
