"""Security headers on every answer: the portal's and console's pages may run only their own files.

Pages (``text/html``, anything under ``/portal`` or ``/console``) get a Content-Security-Policy that allows
scripts, styles, images and fetches from this origin only: no inline script or ``eval``, no plugins, no
framing (``frame-ancestors 'none'``, and ``X-Frame-Options: DENY`` for old browsers). API answers get the
strictest policy (they are data, never a document). Everything gets ``X-Content-Type-Options: nosniff`` so a
browser never runs a JSON or CSV answer as script, and ``Referrer-Policy: no-referrer`` so ids in URLs stay
here.
"""
from __future__ import annotations

from aiohttp import web

PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'"
PAGE_PREFIXES = ("/portal", "/console")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    page = response.content_type == "text/html" or request.path.startswith(PAGE_PREFIXES)
    h = response.headers
    h.setdefault("Content-Security-Policy", PAGE_CSP if page else API_CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "no-referrer")


def setup_security_headers(app: web.Application) -> None:
    """Send the headers above with every response ``app`` prepares (files and errors included)."""
    app.on_response_prepare.append(_security_headers)
