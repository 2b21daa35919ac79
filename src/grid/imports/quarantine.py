"""A source's quarantine: rows that could not be mapped, linked or applied, with the field and the reason.

One JSON-lines file per source under ``<data-dir>/imports/quarantine/``. An entry is appended and fsynced
*before* the position that passes its row is written to the shards, so a crash can repeat an entry (entries
carry an id, ``stream:offset``, and readers keep the last of each id) but never lose one. Replay rewrites the
file without the entries that went through (temp file, fsync, rename, fsync of the directory).
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

REASONS = ("malformed", "invalid", "unresolved", "review", "refused", "mapping")


def _jsonable(v):
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


class Quarantine:
    """Durable refused rows of every source of one data dir."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, source: str) -> Path:
        return self.directory / f"{source}.jsonl"

    def add(self, source: str, entries: list[dict]) -> None:
        """Append entries ({stream, offset, row, field, reason, detail}) durably."""
        if not entries:
            return
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        lines = []
        for e in entries:
            e = dict(e)
            e.setdefault("id", f"{e.get('stream')}:{e.get('offset')}")
            e.setdefault("at", now)
            lines.append(json.dumps(_jsonable(e), separators=(",", ":")))
        with open(self._path(source), "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def entries(self, source: str) -> list[dict]:
        """Current entries of a source, oldest first, one per id (a repeated id keeps its latest)."""
        p = self._path(source)
        if not p.exists():
            return []
        by_id: dict[str, dict] = {}
        with open(p, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    e = json.loads(line)
                except ValueError:  # a line torn by a crash mid-append: the entry is re-added on resume
                    continue
                by_id.pop(e["id"], None)
                by_id[e["id"]] = e
        return list(by_id.values())

    def resolve(self, source: str, ids: list[str]) -> None:
        """Remember that these entries were replayed (shards keep their own list of refused rows; a replayed
        one must not come back from there)."""
        if ids:
            with open(self.directory / f"{source}.resolved", "a", encoding="utf-8") as f:
                f.write("".join(f"{i}\n" for i in ids))
                f.flush()
                os.fsync(f.fileno())

    def resolved(self, source: str) -> set[str]:
        p = self.directory / f"{source}.resolved"
        return set(p.read_text(encoding="utf-8").split()) if p.exists() else set()

    def count(self, source: str) -> int:
        return len(self.entries(source))

    def replace(self, source: str, entries: list[dict]) -> None:
        """Keep exactly ``entries`` (after a replay), atomically."""
        p = self._path(source)
        tmp = p.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for e in entries:
                f.write(json.dumps(_jsonable(e), separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
