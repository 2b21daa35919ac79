"""Messages rendered from jinja2 templates per message type, channel and language.

Files live beside this module: ``templates/<language>/<type>.<channel>.j2``; a language without a template
for the type falls back to English. Email templates start with a ``Subject:`` line and a blank line.
``StrictUndefined``: a template naming a variable the event does not carry fails loudly in tests, not with a
blank in a customer's message.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import jinja2

from grid.timegrid import DEFAULT_TIMEZONE

FALLBACK_LANGUAGE = "en"


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    body: str


def _cents(v: int | None) -> str:
    if v is None:
        return ""
    sign = "-" if v < 0 else ""
    return f"{sign}${abs(int(v)) // 100:,}.{abs(int(v)) % 100:02d}"


class Templates:
    """The template set; ``render(type, channel, language, variables)``."""

    def __init__(self, timezone: str = DEFAULT_TIMEZONE, directory: str | None = None):
        loader = (jinja2.FileSystemLoader(directory) if directory
                  else jinja2.PackageLoader("grid.contacts", "templates"))
        # text messages, not HTML: no autoescape (email is sent as text/plain)
        # auto_reload off: templates ship with the code; a stat per message was a tenth of rendering's cost
        self.env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, autoescape=False,
                                      keep_trailing_newline=False, trim_blocks=False, auto_reload=False)
        self._chosen: dict[tuple[str, str, str], jinja2.Template] = {}  # compiled once per (type, channel, language)
        # no default globals (range, dict, lipsum, cycler, joiner, namespace: no message uses them): jinja copies
        # the globals into every render's context, a third of what rendering a short message costs
        self.env.globals.clear()
        tz = ZoneInfo(timezone)
        self.env.filters["cents"] = _cents
        # an outage's few times are formatted once, not once per recipient
        self.env.filters["local"] = lru_cache(maxsize=4096)(lambda iso: _local(iso, tz))

    def render(self, message_type: str, channel: str, language: str, variables: dict) -> Rendered:
        template = self._chosen.get((message_type, channel, language))
        if template is None:
            names = [f"{language}/{message_type}.{channel}.j2", f"{FALLBACK_LANGUAGE}/{message_type}.{channel}.j2"]
            template = self._chosen[(message_type, channel, language)] = self.env.select_template(names)
        text = template.render(**variables).strip()
        subject = None
        if text.startswith("Subject:"):
            first, _, rest = text.partition("\n")
            subject, text = first[len("Subject:"):].strip(), rest.strip()
        return Rendered(subject, text)


def _local(iso: str | None, tz: ZoneInfo) -> str:
    """An RFC 3339 time as the utility's local wall clock, e.g. ``Tue 1 Dec 03:10``."""
    if not iso:
        return ""
    t = dt.datetime.fromisoformat(str(iso).replace("Z", "+00:00")).astimezone(tz)
    return f"{t:%a} {t.day} {t:%b %H:%M}"
