"""Routes for ``/v1/imports``: sources' progress, HTTP push, quarantine and replay; folder watchers.

``setup_imports(app)`` adds the routes, an :class:`grid.imports.importer.Importer` on the grid's data dir, a
Prometheus collector for per-source progress, and (cleanup_ctx) one watcher task per folder source.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily

from grid.errors import InvalidInput, UnsupportedMediaType
from grid.gateway.audit import audit_of
from grid.gateway.keys import GRID, METRICS, PARAMS, PRINCIPAL, READS
from grid.gateway.responses import respond
from grid.imports import espi
from grid.imports.importer import Importer
from grid.imports.readers import open_file
from grid.imports.watch import Watchers

IMPORTER: web.AppKey[Importer] = web.AppKey("importer")
WATCHERS: web.AppKey[Watchers] = web.AppKey("import_watchers")
SPREADSHEETS = {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
                "application/vnd.ms-excel": ".xls", "application/vnd.oasis.opendocument.spreadsheet": ".ods"}
MAX_PUSH_ROWS = 100_000


def _source_view(importer: Importer, name: str) -> dict:
    src = importer.registry.sources.get(name)
    view = {"source": name, **importer._progress(name).view(),
            "quarantined": importer.quarantine.count(name)}
    if src is not None:
        view.update(kind=src.kind, does=src.does, file=src.file, version=src.digest)
    return view


async def list_imports(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    imp = request.app[IMPORTER]
    imp.registry.reload()
    items = [_source_view(imp, n) for n in sorted(imp.registry.sources)]
    errors = [{"file": f, "field": e.field, "detail": e.detail} for f, e in sorted(imp.registry.errors.items())]
    return respond(request, {"items": items, "invalid": errors}, "imports")


async def post_reload(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    imp = request.app[IMPORTER]
    changed = imp.registry.reload(strict=True)  # 422 naming file and key
    request.app[WATCHERS].sync()
    return respond(request, {"changed": changed, "sources": sorted(imp.registry.sources)}, "imports")


# what spreadsheet files start with: .xlsx/.ods are zip archives, legacy .xls an OLE compound file
SPREADSHEET_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


def _rows_from_file(data: bytes, suffix: str, options: dict) -> list[dict]:
    if suffix != ".csv" and not data.startswith(SPREADSHEET_MAGIC):
        # Windows browsers label a .csv upload application/vnd.ms-excel when Excel is installed: text is text
        suffix = ".csv"
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(data)
        f.flush()
        fmt = "csv" if suffix == ".csv" else "spreadsheet"
        rows, bad = [], []
        try:
            for b in open_file(f.name, fmt, options, batch_rows=MAX_PUSH_ROWS + 1).batches():
                rows += b.rows.to_pylist() if hasattr(b.rows, "to_pylist") else list(b.rows)
                bad += b.rejected
        except InvalidInput as exc:  # the reader names its file: here that is our temporary one, not the user's
            raise InvalidInput(exc.detail.replace(Path(f.name).name, "the body"), field="body",
                               reason=getattr(exc, "reason", None)) from exc
        if bad:
            raise InvalidInput(f"line {bad[0].get('text', '')[:60]!r}: {bad[0].get('detail')}", field="body",
                               reason="malformed")
        return rows


async def post_import(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    imp = request.app[IMPORTER]
    name = request[PARAMS]["source"]
    src = imp.registry.get(name)
    raw = await request.read()
    ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
    if ctype in ("application/json", ""):
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"malformed JSON: {exc}", field="body", reason="json") from exc
        rows = body.get("rows") if isinstance(body, dict) else body
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InvalidInput("body must be a list of row objects or {\"rows\": [...]}", field="rows")
    elif ctype in ("text/csv", "text/plain"):
        rows = _rows_from_file(raw, ".csv", src.options)
    elif ctype in SPREADSHEETS:
        rows = _rows_from_file(raw, SPREADSHEETS[ctype], src.options)
    elif ctype in espi.MEDIA_TYPES:  # a Green Button file: its readings, for ?service_point_id= or the mapping
        feed = espi.parse(raw)
        rows = feed.rows(request[PARAMS].get("service_point_id") or src.options.get("service_point_id"),
                         src.options.get("usage_points"))
        if not rows and feed.skipped:  # a gas file, daily totals: say why nothing is imported, not "0 accepted"
            raise InvalidInput("the file holds no electricity interval readings: "
                               + "; ".join(sorted({x["reason"] for x in feed.skipped}))[:500], field="body")
    else:
        raise UnsupportedMediaType(f"rows must be JSON, CSV, a spreadsheet or Green Button XML, not {ctype}",
                                field="Content-Type")
    if len(rows) > MAX_PUSH_ROWS:
        raise InvalidInput(f"at most {MAX_PUSH_ROWS} rows per push", field="rows")
    if principal.role == "agent":
        principal.require("operator")
    receipt = await imp.push(name, rows, principal=principal, key=request[PARAMS].get("Idempotency-Key"),
                             audit=audit_of(request, "import", {"source": name}))
    for cid, version in receipt.versions.items():  # read-your-write: no cached context older than the push
        request.app[READS].cache.written(cid, version)
    return respond(request, receipt.view(), "receipt")


async def get_quarantine(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    imp = request.app[IMPORTER]
    p = request[PARAMS]
    entries = await imp.quarantined(p["source"])
    limit = p.get("limit", 100)
    return respond(request, {"source": p["source"], "total": len(entries), "items": entries[:limit]}, "quarantine")


async def post_replay(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    receipt = await request.app[IMPORTER].replay(request[PARAMS]["source"])
    return respond(request, receipt.view(), "receipt")


class ImportCollector:
    """Per-source progress as Prometheus gauges (read at scrape time from the importer)."""

    def __init__(self, importer: Importer):
        self.importer = importer

    def collect(self):
        rows = GaugeMetricFamily("contextgrid_import_rows", "Rows per import source and outcome",
                                 labels=["source", "outcome"])
        lag = GaugeMetricFamily("contextgrid_import_lag_seconds", "Read-to-durable time of the last batch",
                                labels=["source"])
        for name, p in self.importer.progress.items():
            for outcome in ("read", "applied", "unchanged", "quarantined", "skipped"):
                rows.add_metric([name, outcome], getattr(p, f"rows_{outcome}"))
            lag.add_metric([name], p.lag_s)
        yield rows
        yield lag


async def _watch_folders(app: web.Application):
    await app[WATCHERS].start()
    yield
    await app[WATCHERS].stop(timeout=2)


def setup_imports(app: web.Application, data_dir: str | Path | None = None) -> None:
    grid = app[GRID]
    importer = Importer(grid, data_dir or getattr(grid, "data_dir", "data/grid"))
    app[IMPORTER] = importer
    app[WATCHERS] = Watchers(importer)
    app[METRICS].registry.register(ImportCollector(importer))
    app.cleanup_ctx.append(_watch_folders)
    r = app.router
    r.add_get("/v1/imports", list_imports, name="list_imports")
    r.add_post("/v1/imports/reload", post_reload, name="post_imports_reload")
    r.add_post("/v1/imports/{source}", post_import, name="post_import")
    r.add_get("/v1/imports/{source}/quarantine", get_quarantine, name="get_import_quarantine")
    r.add_post("/v1/imports/{source}/quarantine/replay", post_replay, name="post_import_replay")
