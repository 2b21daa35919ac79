"""A customer's usage as a Green Button (NAESB ESPI) file: "Download My Data".

Written the way utilities' Data Custodian servers lay it out, so :func:`grid.imports.espi.parse` (and any Green
Button reader) reads it back to the same Wh: per service point one UsagePoint (its id is the href's last
segment, its title the service point id), one MeterReading per channel (delivered energy; received energy when
the service point exports) with a ReadingType of ``uom`` 72 (Wh) and ``powerOfTenMultiplier`` 0, the readings
in one IntervalBlock per 24 hours, and the utility's LocalTimeParameters derived from its IANA time zone.
"""
from __future__ import annotations

import datetime as dt
import uuid
from xml.sax.saxutils import escape

from grid import timegrid
from grid.errors import InvalidInput, UnsupportedFormat
from grid.imports.espi import ATOM_NS, ESPI_NS, FLOW_EXPORT, FLOW_IMPORT, UOM_WH, LocalTime

BASE = "/espi/1_1/resource"
NAMESPACE = uuid.UUID("5b0c6bb4-8f1e-4d5e-9c1a-0e5f7c1d2a3b")  # ids are uuid5 under this: stable per content


def _rule(when: dt.datetime) -> int:
    """The ESPI ``DstRuleType`` of a transition at local wall time ``when`` (see ``decode_dst_rule``)."""
    last = (dt.date(when.year + (when.month == 12), when.month % 12 + 1, 1) - dt.timedelta(days=1)).day
    nth = (when.day - 1) // 7 + 1
    op, dom = (7, 0) if when.day + 7 > last else (nth + 1, 0)
    seconds = when.hour * 3600 + when.minute * 60 + when.second
    return (when.month << 28) | (op << 25) | (dom << 20) | (when.isoweekday() << 17) | \
        ((seconds // 3600) << 12) | (seconds % 3600)


def local_time_for(zone_name: str, year: int) -> LocalTime:
    """LocalTimeParameters equivalent to ``zone_name``'s rules in ``year`` (found from its hourly offsets)."""
    z = timegrid.zone(zone_name)
    t0 = int(dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    offsets = [(t, int(dt.datetime.fromtimestamp(t, z).utcoffset().total_seconds()))
               for t in range(t0, t0 + 366 * 86400, 3600)]
    std, high = min(o for _, o in offsets), max(o for _, o in offsets)
    if std == high:
        return LocalTime(std)
    start = end = 0
    for (_, a), (t, b) in zip(offsets, offsets[1:]):
        if b > a:  # wall clock reads standard time just before DST starts
            start = _rule(dt.datetime.fromtimestamp(t + std, dt.timezone.utc).replace(tzinfo=None))
        elif b < a:  # and daylight time just before it ends
            end = _rule(dt.datetime.fromtimestamp(t + high, dt.timezone.utc).replace(tzinfo=None))
    return LocalTime(std, high - std, start, end)


def _entry(out: list[str], href: str, title: str, up: str, related: list[str], resource: str, body: str) -> None:
    """One Atom entry around an ESPI resource; ``body`` is the resource's inner XML, already escaped."""
    links = "".join(f'<link rel="related" href="{_attr(r)}"/>' for r in related)
    out.append(f'<entry><id>urn:uuid:{uuid.uuid5(NAMESPACE, href)}</id><link rel="self" href="{_attr(href)}"/>'
               f'<link rel="up" href="{_attr(up)}"/>{links}<title>{escape(title)}</title>'
               f'<content><espi:{resource}>{body}</espi:{resource}></content></entry>\n')


def _attr(value: str) -> str:
    """Text for a double-quoted attribute."""
    return escape(value, {'"': "&quot;"})


def _values(values: dict) -> str:
    return "".join(f"<espi:{k}>{escape(str(v))}</espi:{k}>" for k, v in values.items())


def _stamp(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def encode_usage(data: dict, root: str = "usage") -> bytes:
    """An ESPI Atom feed of a usage response (``Shard.customer_usage``: interval resolution only).

    ``data["timezone"]`` (an IANA name) gives the LocalTimeParameters; the project's default zone otherwise.
    """
    if root != "usage" or not isinstance(data, dict) or "items" not in data:
        raise UnsupportedFormat("the espi format serves interval usage only (GET /v1/customers/{id}/usage)",
                                field="format")
    if data.get("resolution", "interval") != "interval":
        raise InvalidInput("Green Button files hold interval readings; ask for resolution=interval",
                           field="resolution")
    cid = str(data.get("customer_id", "customer"))
    by_sp: dict[str, list[tuple[int, int, int]]] = {}
    for it in data["items"]:
        ts = int(dt.datetime.fromisoformat(it["start"].replace("Z", "+00:00")).timestamp())
        by_sp.setdefault(it["service_point_id"], []).append((ts, int(it["import_wh"]), int(it.get("export_wh", 0))))
    month = data.get("month", "")
    first = min((r[0][0] for r in by_sp.values() if r), default=0)
    last = max((r[-1][0] for r in by_sp.values() if r), default=0)
    # Written as text, not through ElementTree: a month of 15-minute readings is ~3000 elements per channel and
    # serializing them as elements cost 0.15 s per service point; every value here is an int or escaped text.
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n',
           f'<feed xmlns="{ATOM_NS}" xmlns:espi="{ESPI_NS}">',
           f"<id>urn:uuid:{uuid.uuid5(NAMESPACE, f'{cid}/{first}/{last}')}</id>",
           f"<title>{escape(f'Green Button usage of {cid} ({month})')}</title>",
           f"<updated>{_stamp(last)}</updated>\n"]
    lt = local_time_for(data.get("timezone") or timegrid.DEFAULT_TIMEZONE,
                        dt.datetime.fromtimestamp(first, dt.timezone.utc).year)
    lt_href = f"{BASE}/LocalTimeParameters/1"
    _entry(out, lt_href, "Local time", f"{BASE}/LocalTimeParameters", [], "LocalTimeParameters",
           _values({"dstEndRule": f"{lt.dst_end_rule:08X}", "dstOffset": lt.dst_offset,
                    "dstStartRule": f"{lt.dst_start_rule:08X}", "tzOffset": lt.tz_offset}))
    rt_number = 0
    for sp, rows in by_sp.items():
        rows.sort()
        step = rows[1][0] - rows[0][0] if len(rows) > 1 else 3600  # interval length, from the readings
        up_href = f"{BASE}/RetailCustomer/{cid}/UsagePoint/{sp}"
        _entry(out, up_href, sp, f"{BASE}/RetailCustomer/{cid}/UsagePoint", [f"{up_href}/MeterReading", lt_href],
               "UsagePoint", "<espi:ServiceCategory><espi:kind>0</espi:kind></espi:ServiceCategory>")
        flows = [(FLOW_IMPORT, 1)] + ([(FLOW_EXPORT, 2)] if any(r[2] for r in rows) else [])
        for flow, column in flows:
            rt_number += 1
            mr_href = f"{up_href}/MeterReading/{column}"
            rt_href = f"{BASE}/ReadingType/{rt_number}"
            _entry(out, mr_href, "Delivered energy" if flow == FLOW_IMPORT else "Received energy",
                   f"{up_href}/MeterReading", [f"{mr_href}/IntervalBlock", rt_href], "MeterReading", "")
            _entry(out, rt_href, "Energy (Wh)", f"{BASE}/ReadingType", [], "ReadingType",
                   _values({"accumulationBehaviour": 4, "commodity": 1, "dataQualifier": 12, "flowDirection": flow,
                            "intervalLength": step, "kind": 12, "powerOfTenMultiplier": 0, "uom": UOM_WH}))
            per_block = max(1, 86400 // step)
            for b in range(0, len(rows), per_block):
                chunk = rows[b:b + per_block]
                readings = "".join(
                    f"<espi:IntervalReading><espi:timePeriod><espi:duration>{step}</espi:duration>"
                    f"<espi:start>{ts}</espi:start></espi:timePeriod><espi:value>{imp if column == 1 else exp}"
                    f"</espi:value></espi:IntervalReading>" for ts, imp, exp in chunk)
                _entry(out, f"{mr_href}/IntervalBlock/{b // per_block + 1}", "", f"{mr_href}/IntervalBlock", [],
                       "IntervalBlock", f"<espi:interval><espi:duration>{len(chunk) * step}</espi:duration>"
                       f"<espi:start>{chunk[0][0]}</espi:start></espi:interval>{readings}")
    out.append("</feed>\n")
    return "".join(out).encode("utf-8")
