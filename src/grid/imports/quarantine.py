"""A source's quarantine: rows that could not be mapped, linked or applied, with the field and the reason.

One JSON-lines file per source under ``<data-dir>/imports/quarantine/``. An entry is appended and fsynced
*before* the position that passes its row is written to the shards, so a crash can repeat an entry (entries
carry an id, ``stream:offset``, and readers keep the last of each id) but never lose one. Replay rewrites the
file without the entries that went through (temp file, fsync, rename, fsync of the directory).

Rows a shard refuses (checks that need its state) are known only once the shard has applied the batch, so
their entry is written after the shard's acknowledgement; an importer that dies in between loses that write,
but the shard keeps the refusal (``ImportState.rejected``, in the same WAL record as the batch). The row comes
back from one of two places (:func:`recover`): a batch whose rows cannot be read again at the source (a push,
a replay, a database change stream) carries its raw rows in the ``import_rows`` op (:func:`raw_texts`), and the
shard keeps the refused row's text with its refusal; a file's rows are read again at their position, as long as
the file still holds that stream. Either way the entry is written here and replays like any other.
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


def _cell(v):
    """A cell JSON has no type for (a date, a decimal, bytes) as text, the way :func:`_jsonable` writes it."""
    return v.isoformat() if isinstance(v, (dt.datetime, dt.date, dt.time)) else str(v)


def raw_texts(rows: list[dict]) -> list[str]:
    """Raw rows as the compact JSON text an ``import_rows`` op carries (dates and other cells as text).

    json's C encoder takes the common cells (text, numbers, None) itself; only the rest go through ``_cell``."""
    dumps = json.JSONEncoder(separators=(",", ":"), default=_cell).encode
    return [dumps(r) for r in rows]


def recover(quarantine: Quarantine, files, src, views: list[dict]) -> list[dict]:
    """The source's entries, plus the shard refusals whose entry the importer did not write (it died between
    the shard's acknowledgement and its own write), each with its row: from the refusal, else re-read from the
    file at its position. Recovered entries are written (durable, replayable); one whose row is nowhere to be
    had (the file was changed or removed) shows with ``row: null``."""
    entries = quarantine.entries(src.name)
    ids = {e["id"] for e in entries} | quarantine.resolved(src.name)
    lost = []
    for view in views:
        for r in view["rejected"]:
            rid = f"{r['stream']}:{r['offset']}"
            if rid not in ids:
                ids.add(rid)
                lost.append(r)
    if not lost:
        return entries
    again = _reread(files, src, [r for r in lost if r.get("row") is None])
    found = [{"id": f"{r['stream']}:{r['offset']}", "stream": r["stream"], "offset": r["offset"],
              "row": json.loads(r["row"]) if r.get("row") is not None else again.get((r["stream"], r["offset"])),
              "field": r["field"], "reason": "refused", "detail": r["reason"]} for r in lost]
    quarantine.add(src.name, [e for e in found if e["row"] is not None])
    return entries + found


def _reread(files, src, refusals: list[dict]) -> dict[tuple[str, int], dict]:
    """(stream, offset) -> raw row, read again from the files that still hold those streams."""
    from grid.imports.readers import file_digest, open_file

    wanted: dict[str, set[int]] = {}
    for r in refusals:
        wanted.setdefault(r["stream"], set()).add(int(r["offset"]))
    out = {}
    for key, e in list(files.entries.items()):
        name, _, path = key.partition("|")
        offsets = wanted.get(e["stream"])
        if name != src.name or not offsets:
            continue
        path = Path(path)
        # a file that only grew still holds its stream's rows at their offsets; a rewritten one does not
        if not path.is_file() or file_digest(path, e["size"]) != e["head"]:
            continue
        # from the top: a row's byte position is not kept (readers resume at batch ends), and this runs only
        # after a crash lost a write; the reader streams, so a big file is not held in memory
        reader = open_file(path, src.format, src.options, stream=e["stream"])
        for batch in reader.batches(None):
            offs = batch.row_offsets()
            rows = batch.rows.to_pylist() if hasattr(batch.rows, "to_pylist") else list(batch.rows)
            for off, row in zip(offs, rows):
                if off in offsets:
                    out[(e["stream"], off)] = row
            if offs and offs[-1] >= max(offsets):
                break
    return out
