"""Green Button (NAESB ESPI) usage files: parsed safely into interval readings in whole Wh.

A Green Button file is an Atom feed whose entries carry ESPI resources, linked by their ``self`` hrefs::

    .../UsagePoint/{up}                            the service point, as the utility calls it
    .../UsagePoint/{up}/MeterReading/{mr}          one channel (delivered or received energy)
    .../ReadingType/{rt}                           its unit: uom, powerOfTenMultiplier, flowDirection, ...
    .../UsagePoint/{up}/MeterReading/{mr}/IntervalBlock/{ib}   the readings (UTC epoch seconds, values)
    .../LocalTimeParameters/{lt}                   the local time zone: offset and DST rules

The parser reads element *local* names, so ``<IntervalReading>`` in the ESPI default namespace, ``<espi:...>``
with a prefix and the un-namespaced children some utilities write are one thing. A MeterReading is tied to
its UsagePoint and its IntervalBlocks by href prefix (how every ESPI server lays out its URLs), to its
ReadingType by its ``related`` link; a file with one ReadingType needs no link.

Conversions (DOMAIN section 7): ``uom`` 72 is Wh; a value times ``10^powerOfTenMultiplier`` is Wh, exact for
multipliers >= 0, else rounded half-up per reading (each reading of a milli-Wh file within 0.5 Wh). Other units
(therms, W, ...) are not interval energy: their channel is skipped with the reason. ``flowDirection`` 1 is
delivered energy (``import_wh``), 19 received (``export_wh``). Cumulative register channels
(``accumulationBehaviour`` 1) are skipped. Reading quality 12 (*projected*, a forecast, not a measurement) is
skipped; every other quality is kept and reported on the row.

Safety: ``defusedxml`` refuses any entity declaration (the billion-laughs bomb) and external entities or DTDs
before they are expanded or fetched; a refused or malformed file raises :class:`~grid.errors.InvalidInput`
naming the body.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as safe_et

from grid.errors import InvalidInput

ATOM_NS = "http://www.w3.org/2005/Atom"
ESPI_NS = "http://naesb.org/espi"
MEDIA_TYPES = ("application/atom+xml", "application/xml", "text/xml")
UOM_WH = 72
FLOW_IMPORT, FLOW_EXPORT = 1, 19
DELTA_DATA = 4  # accumulationBehaviour (IEC 61968-9): interval (delta) values
INTERVAL_SECONDS = (900, 1800, 3600)  # a meter's intervals (DOMAIN section 1): 15, 30 or 60 minutes
QUALITY_PROJECTED = 12
QUALITY_NAMES = {0: "valid", 7: "manually_edited", 8: "estimated_reference_day", 9: "estimated_interpolated",
                 10: "questionable", 11: "derived", 12: "projected", 13: "mixed", 14: "raw",
                 15: "normalized_for_weather", 16: "other", 17: "validated", 18: "verified", 19: "revenue_quality"}
MAX_BYTES = 64 * 1024 * 1024  # a year of 15-minute data for a few meters is a few MB


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(el: Element, name: str) -> Element | None:
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _text(el: Element | None, name: str, default: str | None = None) -> str | None:
    c = _child(el, name) if el is not None else None
    return c.text.strip() if c is not None and c.text is not None else default


def _int(el: Element | None, name: str, default: int | None = None, *, where: str) -> int | None:
    raw = _text(el, name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"{where}: {name} must be an integer, got {raw!r}", field=f"body.{name}") from None


def wh_of(value: int, power_of_ten: int) -> int:
    """``value x 10^power_of_ten`` Wh as whole Wh: exact for powers >= 0, else rounded half-up."""
    if power_of_ten >= 0:
        return value * 10**power_of_ten
    den = 10**-power_of_ten
    q, r = divmod(abs(value), den)
    q += 2 * r >= den
    return q if value >= 0 else -q


# -- local time ----------------------------------------------------------------------------------------------
def decode_dst_rule(rule: int, year: int) -> tuple[dt.date, int]:
    """The local date and second of day an ESPI ``DstRuleType`` names in ``year``.

    Bits (ESPI 1.1, REQ.21): 0-11 seconds, 12-16 hours, 17-19 day of week (1 = Monday), 20-24 day of month,
    25-27 operator, 28-31 month. Operator 0: that day of the month; 1: that day of week on or after the day
    of month; 2-6: its first to fifth occurrence on or after the day of month; 7: the last one on or before.
    A day of month of 0 reads as 1 (the first) for operators 1-6 and as the month's last day for 7.
    """
    seconds = rule & 0xFFF
    hours = (rule >> 12) & 0x1F
    dow = (rule >> 17) & 0x7
    dom = (rule >> 20) & 0x1F
    op = (rule >> 25) & 0x7
    month = (rule >> 28) & 0xF
    if not 1 <= month <= 12:
        raise InvalidInput(f"DST rule {rule:08X} names month {month}", field="body.LocalTimeParameters")
    last = (dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1)).day
    if op == 0:
        day = dt.date(year, month, min(max(dom, 1), last))
    elif op == 7:
        day = dt.date(year, month, min(dom or last, last))
        while dow and day.isoweekday() != dow:
            day -= dt.timedelta(days=1)
    else:
        day = dt.date(year, month, max(dom, 1))
        while dow and day.isoweekday() != dow:
            day += dt.timedelta(days=1)
        day += dt.timedelta(weeks=max(op - 2, 0))
    return day, hours * 3600 + seconds


@dataclass(frozen=True)
class LocalTime:
    """``LocalTimeParameters``: standard offset, DST offset and the rules that start and end DST."""

    tz_offset: int  # seconds east of UTC, standard time
    dst_offset: int = 0
    dst_start_rule: int = 0
    dst_end_rule: int = 0

    def utc_offset(self, ts: int) -> int:
        """The local offset from UTC (seconds) at epoch second ``ts``."""
        if not self.dst_offset or not self.dst_start_rule or not self.dst_end_rule:
            return self.tz_offset
        year = dt.datetime.fromtimestamp(ts + self.tz_offset, dt.timezone.utc).year
        d0, s0 = decode_dst_rule(self.dst_start_rule, year)
        d1, s1 = decode_dst_rule(self.dst_end_rule, year)
        epoch = dt.date(1970, 1, 1)
        start = (d0 - epoch).days * 86400 + s0 - self.tz_offset  # the wall clock reads standard time before
        end = (d1 - epoch).days * 86400 + s1 - self.tz_offset - self.dst_offset  # and daylight time before
        in_dst = start <= ts < end if start < end else not end <= ts < start  # southern hemisphere wraps
        return self.tz_offset + (self.dst_offset if in_dst else 0)

    def local_iso(self, ts: int) -> str:
        off = self.utc_offset(ts)
        return dt.datetime.fromtimestamp(ts, dt.timezone(dt.timedelta(seconds=off))).isoformat()


# -- the feed ------------------------------------------------------------------------------------------------
@dataclass
class Channel:
    """One MeterReading with its ReadingType, and its readings: (start, duration, Wh, quality)."""

    usage_point: str  # the UsagePoint's id: the last segment of its href
    usage_point_title: str | None
    href: str
    flow: str  # "import" | "export"
    interval_seconds: int | None
    power_of_ten: int = 0
    readings: list[tuple[int, int, int, int | None]] = field(default_factory=list)


@dataclass
class Feed:
    """What a Green Button file holds that usage import needs."""

    channels: list[Channel]
    local_time: LocalTime | None
    skipped: list[dict]  # {"href", "reason"}: channels and readings not imported, and why
    usage_points: dict[str, str | None]  # id -> title

    def rows(self, service_point_id: str | None = None,
             usage_points: dict[str, str] | None = None) -> list[dict]:
        """One row per (usage point, interval start): raw columns for the import mapping.

        The target service point is ``service_point_id`` if given (a file pushed for one service point),
        else ``usage_points[usage_point]`` (a source's mapping), else the usage point's own id: "Download My
        Data" from contextgrid names each usage point by its service point, so a customer's own download (one
        meter or several) reads back as it is; a foreign id that names no service point stays unresolved.
        Columns: ``usage_point``, ``service_point_id``, ``start`` (RFC 3339 UTC), ``local_start`` (with the
        file's LocalTimeParameters offset), ``duration_s``, ``import_wh``, ``export_wh`` (None where the file
        has no such channel), ``quality`` (the highest ReadingQuality code among the interval's readings, None if none given).
        """
        points = sorted({ch.usage_point for ch in self.channels})
        if service_point_id and len(points) > 1:
            # one service point for several meters would let one meter's readings overwrite another's
            raise InvalidInput(f"the file holds {len(points)} usage points ({', '.join(points)}): one "
                               f"service_point_id cannot take them all; map each in the source's "
                               f"options.usage_points", field="service_point_id")
        merged: dict[tuple[str, int], dict] = {}
        for ch in self.channels:
            target = service_point_id or (usage_points or {}).get(ch.usage_point) or ch.usage_point
            key_col = f"{ch.flow}_wh"
            for start, duration, wh, quality in ch.readings:
                row = merged.get((ch.usage_point, start))
                if row is None:
                    row = merged[(ch.usage_point, start)] = {
                        "usage_point": ch.usage_point, "service_point_id": target,
                        "start": dt.datetime.fromtimestamp(start, dt.timezone.utc).isoformat().replace(
                            "+00:00", "Z"),
                        "local_start": self.local_time.local_iso(start) if self.local_time else None,
                        "duration_s": duration, "import_wh": None, "export_wh": None, "quality": None}
                # a later reading of the same interval replaces the earlier one (a correction)
                row[key_col] = wh
                if quality is not None:
                    row["quality"] = quality if row["quality"] is None else max(row["quality"], quality)
        return [merged[k] for k in sorted(merged)]


def parse_xml(data: bytes) -> Element:
    """The document's root, parsed with every entity and DTD refused; errors name the body."""
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"Green Button file of {len(data)} bytes exceeds {MAX_BYTES}", field="body")
    try:
        return safe_et.fromstring(data, forbid_dtd=True)
    except defusedxml.DTDForbidden as exc:
        raise InvalidInput("XML with a document type declaration is refused (entity expansion and external "
                           "entities are not allowed)", field="body") from exc
    except defusedxml.DefusedXmlException as exc:
        raise InvalidInput(f"unsafe XML refused: {type(exc).__name__}", field="body") from exc
    except ParseError as exc:
        raise InvalidInput(f"malformed XML: {exc}", field="body") from exc


def _links(entry: Element) -> tuple[str, list[str], str | None]:
    self_href, related, up = "", [], None
    for c in entry:
        if _local(c.tag) != "link":
            continue
        rel, href = c.get("rel"), (c.get("href") or "").strip()
        if rel == "self":
            self_href = href
        elif rel == "related":
            related.append(href)
        elif rel == "up":
            up = href
    return self_href, related, up


def _path(href: str) -> str:
    """An href without scheme and host, no trailing slash: ``https://x/espi/1_1/...`` -> ``/espi/1_1/...``."""
    if "://" in href:
        href = "/" + href.split("://", 1)[1].partition("/")[2]
    return href.rstrip("/")


def parse(data: bytes) -> Feed:
    """Parse a Green Button file into its usage channels; see the module docstring for what is kept."""
    root = parse_xml(data)
    if _local(root.tag) not in ("feed", "entry"):
        raise InvalidInput(f"not a Green Button Atom feed (root element {_local(root.tag)!r})", field="body")
    entries = [root] if _local(root.tag) == "entry" else [e for e in root if _local(e.tag) == "entry"]
    usage_points: dict[str, tuple[str, str | None]] = {}  # href -> (id, title)
    meter_readings: dict[str, list[str]] = {}  # href -> related hrefs
    reading_types: dict[str, Element] = {}
    blocks: list[tuple[str, str | None, Element]] = []
    local_time = None
    for entry in entries:
        content = _child(entry, "content")
        resource = next(iter(content), None) if content is not None else None
        if resource is None:
            continue
        kind = _local(resource.tag)
        self_href, related, up = _links(entry)
        href = _path(self_href)
        if kind == "UsagePoint":
            usage_points[href] = (href.rsplit("/", 1)[-1], _text(entry, "title"))
        elif kind == "MeterReading":
            meter_readings[href] = [_path(r) for r in related]
        elif kind == "ReadingType":
            reading_types[href] = resource
        elif kind == "IntervalBlock":
            blocks.append((href, _path(up) if up else None, resource))
        elif kind == "LocalTimeParameters":
            w = "LocalTimeParameters"
            local_time = LocalTime(_int(resource, "tzOffset", 0, where=w), _int(resource, "dstOffset", 0, where=w),
                                   int(_text(resource, "dstStartRule", "0") or "0", 16),
                                   int(_text(resource, "dstEndRule", "0") or "0", 16))
    skipped: list[dict] = []
    channels: dict[str, Channel] = {}
    for mr_href, related in meter_readings.items():
        rt = next((reading_types[r] for r in related if r in reading_types), None)
        if rt is None and len(reading_types) == 1:
            rt = next(iter(reading_types.values()))
        up_href = next((u for u in usage_points if mr_href.startswith(u + "/")), None)
        up_id, title = usage_points.get(up_href, (mr_href.split("/MeterReading")[0].rsplit("/", 1)[-1], None))
        reason = _unusable(rt)
        if reason:
            skipped.append({"href": mr_href, "reason": reason})
            continue
        flow = "export" if _int(rt, "flowDirection", FLOW_IMPORT, where="ReadingType") == FLOW_EXPORT else "import"
        channels[mr_href] = Channel(up_id, title, mr_href, flow, _int(rt, "intervalLength", None, where="ReadingType"),
                                    _int(rt, "powerOfTenMultiplier", 0, where="ReadingType"))
    for href, up, block in blocks:
        owner = next((m for m in channels if href.startswith(m + "/") or (up or "").startswith(m + "/")), None)
        if owner is None and len(channels) == 1 and not any(s["href"] in href for s in skipped):
            owner = next(iter(channels))
        if owner is None:
            if not any(href.startswith(s["href"] + "/") for s in skipped):
                skipped.append({"href": href, "reason": "IntervalBlock belongs to no MeterReading in the file"})
            continue
        _read_block(channels[owner], href, block, skipped)
    return Feed(list(channels.values()), local_time, skipped, {i: t for i, t in usage_points.values()})


def _unusable(rt: Element | None) -> str | None:
    if rt is None:
        return "MeterReading has no ReadingType"
    uom = _int(rt, "uom", None, where="ReadingType")
    if uom != UOM_WH:
        return f"uom {uom} is not energy in Wh (72); only electricity interval energy is imported"
    acc = _int(rt, "accumulationBehaviour", DELTA_DATA, where="ReadingType")
    if acc not in (DELTA_DATA, 0):  # IEC 61968-9: 4 deltaData; 0 not given; 1, 3, 9 are register totals
        return f"accumulationBehaviour {acc} is a cumulative register, not interval values"
    flow = _int(rt, "flowDirection", FLOW_IMPORT, where="ReadingType")
    if flow not in (FLOW_IMPORT, FLOW_EXPORT):
        return f"flowDirection {flow} is neither delivered (1) nor received (19) energy"
    return None


def _read_block(ch: Channel, href: str, block: Element, skipped: list[dict]) -> None:
    interval = _child(block, "interval")
    t0 = _int(interval, "start", None, where=href)
    k = 0
    totals: dict[int, int] = {}  # duration -> readings: daily or monthly totals, not intervals
    for r in block:
        if _local(r.tag) != "IntervalReading":
            continue
        period = _child(r, "timePeriod")
        duration = _int(period, "duration", ch.interval_seconds, where=href)
        start = _int(period, "start", None, where=href)
        if start is None:  # readings without a period follow each other from the block's start
            start = None if t0 is None or duration is None else t0 + k * duration
        k += 1
        value = _int(r, "value", None, where=href)
        if start is None or duration is None or value is None:
            skipped.append({"href": f"{href}#{k}", "reason": "IntervalReading without start, duration or value"})
            continue
        quality = _int(_child(r, "ReadingQuality"), "quality", None, where=href)
        if quality == QUALITY_PROJECTED:
            skipped.append({"href": f"{href}#{k}", "reason": "projected reading (quality 12) is not a measurement"})
            continue
        if duration not in INTERVAL_SECONDS:
            # a day's (or month's) total stored as one interval would put all its energy in its first hour
            totals[duration] = totals.get(duration, 0) + 1
            continue
        ch.readings.append((start, duration, wh_of(value, ch.power_of_ten), quality))
    for duration, n in sorted(totals.items()):
        skipped.append({"href": href, "reason": f"{n} readings of {duration} s are totals, not interval data "
                                                f"(15, 30 or 60 minutes): not imported"})


class EspiReader:
    """The reader protocol (:mod:`grid.imports.readers`) over one Green Button file.

    Rows are :meth:`Feed.rows` in (usage point, start) order, numbered from 1; options: ``service_point_id``
    (every usage point is that service point) or ``usage_points`` (usage point id -> service point id, the
    Green Button registrations). A file the parser refuses (unsafe or malformed XML) is one rejected record,
    so the folder's other files go on; skipped channels and readings (other units, projections) are rejected
    records too, each with its reason.
    """

    def __init__(self, info, batch_rows: int = 50_000):
        self.info = info
        self.batch_rows = batch_rows

    def batches(self, after: dict | None = None):
        from grid.imports.readers import Batch, start_row

        stream = self.info.stream
        first = start_row(after, stream)
        o = self.info.options
        try:
            feed = parse(self.info.path.read_bytes())
            rows = feed.rows(o.get("service_point_id"), o.get("usage_points"))
        except InvalidInput as exc:
            yield Batch({"stream": stream, "offset": first - 1}, [],
                        rejected=[{"text": self.info.path.name, "reason": "malformed", "detail": exc.detail}])
            return
        rejected = [{"text": s["href"], "reason": "skipped", "detail": s["reason"]} for s in feed.skipped]
        if first > len(rows) and after is not None:
            return
        lo = first - 1
        while True:
            hi = _hour_end(rows, lo + self.batch_rows)
            part = rows[lo:hi]
            yield Batch({"stream": stream, "offset": lo + len(part)}, part,
                        rejected=rejected if lo == first - 1 else [])
            lo = hi
            if lo >= len(rows):
                return


def _hour_end(rows: list[dict], hi: int) -> int:
    """``hi`` moved on past the rest of its row's usage point and UTC hour: a batch never splits an hour, so
    15-minute readings of an hourly service point meet all their parts in one batch (grid.imports.usage_rows)."""
    while 0 < hi < len(rows) and (rows[hi]["usage_point"], rows[hi]["start"][:13]) == \
            (rows[hi - 1]["usage_point"], rows[hi - 1]["start"][:13]):
        hi += 1
    return min(hi, len(rows))
