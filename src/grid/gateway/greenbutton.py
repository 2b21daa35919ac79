"""Green Button on the gateway: the ``espi`` format ("Download My Data") for a customer's usage.

``GET /v1/customers/{id}/usage?format=espi`` (or ``Accept: application/atom+xml``) answers the month's interval
usage as an ESPI Atom feed (:mod:`grid.imports.espi_export`); the same registry entry decodes a pushed Green
Button body into usage rows (:mod:`grid.imports.espi`), so an import route can accept the file as it is.
"""
from __future__ import annotations

from aiohttp import web

from grid.gateway.formats import Format, register
from grid.imports import espi
from grid.imports.espi_export import encode_usage

ESPI = Format("espi", "application/atom+xml", encode_usage, lambda body: espi.parse(body).rows())


def setup_greenbutton(app: web.Application) -> None:
    """Register the ``espi`` format; the usage route serves it through content negotiation."""
    register(ESPI)
