"""Which stream a file is, and what a changed file already held.

A file seen for the first time becomes the stream ``"<name>@<digest>"``. While it only grows (its first
``size`` bytes hash as before: a meter export appended to) it keeps that stream, so reading resumes after the
rows already applied. A file rewritten in place becomes a new stream; its rows whose raw content the old
version already held (row digests, recorded after each batch is durable) count as unchanged and are not
written again. Re-dropping a file with the same content is the same stream, already at its end: a no-op.

The ledger (``<data-dir>/imports/files.json``, digests beside it as ``.npy``) is a speed-up, not the source of
truth: positions live in the shards' WAL. Losing it makes a file a new stream again, whose rows re-apply as
no-ops (upserts compare, readings overwrite, payments/events/bills are keyed by id or row digest).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np
import polars as pl
import polars_hash as plh

from grid.imports.readers import file_digest


def row_hashes(rows) -> np.ndarray:
    """64-bit digests of raw rows (a row's columns and values count, its place in the file does not).

    The digest is the standard XXH64 (seed 0; ``polars-hash``, vectorized) of the row's canonical text: for each
    column with a value, in column-name order, ``name \\x1f value \\x1e`` (UTF-8). It depends on nothing but
    the row, so it stays the same across polars versions and machines: an upgrade cannot make a rewritten file
    look new and write all of it again (polars' own ``hash_rows`` is stable only within one version).
    A value's text is the text the reader gave; typed cells (spreadsheets, Parquet) are written the one way
    :func:`cell_text` writes them, never by a library's display format.
    """
    n = rows.num_rows if hasattr(rows, "num_rows") else len(rows)
    frame = _text_frame(rows)
    if frame.width and frame.null_count().sum_horizontal().item() == 0:
        # no empty cell (text as a CSV reader gives it): the same text in one concatenation, ~40% faster
        parts = [p for c in sorted(frame.columns) for p in (pl.lit(f"{c}\x1f"), pl.col(c), pl.lit("\x1e"))]
    else:
        parts = [pl.lit(f"{c}\x1f") + pl.col(c) + pl.lit("\x1e") for c in sorted(frame.columns)]
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    if not parts:  # rows without columns are all the same row
        frame, parts = pl.DataFrame({"_": [None] * n}, schema={"_": pl.String}), [pl.col("_")]
    canon = pl.concat_str(parts, ignore_nulls=True).fill_null("").alias("_canon")
    return frame.select(canon).select(plh.col("_canon").nchash.xxhash64()).to_series().to_numpy().astype(np.uint64)


def cell_text(v) -> str | None:
    """A typed cell as text, the same in every library version (Python's shortest float repr, ISO dates)."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dt.date, dt.time)):  # a datetime is a date
        return v.isoformat()
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str, sort_keys=True, separators=(",", ":"))
    return str(v)


def _text_frame(rows) -> pl.DataFrame:
    """The rows as text columns: text as read, integers by their digits, any other type through cell_text."""
    if hasattr(rows, "to_pylist"):  # an Arrow batch
        frame = pl.from_arrow(rows)
        cols = {}
        for name, dtype in frame.schema.items():
            s = frame.get_column(name)
            if dtype == pl.String:
                cols[name] = s
            elif dtype.is_integer():
                cols[name] = s.cast(pl.String)
            else:
                cols[name] = pl.Series(name, [cell_text(v) for v in s.to_list()], dtype=pl.String)
        return pl.DataFrame(list(cols.values()))
    names = sorted({k for r in rows for k in r})
    return pl.DataFrame({k: [cell_text(r.get(k)) for r in rows] for k in names}, schema={k: pl.String for k in names})


def _key(source: str, path: Path) -> str:
    return f"{source}|{path.resolve()}"


class FileLedger:
    """See the module docstring."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.entries: dict[str, dict] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self._digests: dict[str, list[np.ndarray]] = {}
        # sources import in executor threads at once (one lock per source, not per ledger): one writer of the
        # ledger file at a time, or two saves race on the one temp file (seen in make run: FileNotFoundError)
        self._lock = threading.RLock()

    def _save(self) -> None:
        with self._lock:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.entries))
            os.replace(tmp, self.path)

    def _npy(self, stream: str) -> Path:
        return self.path.parent / "digests" / (hashlib.sha1(stream.encode()).hexdigest()[:20] + ".npy")

    def stream_for(self, source: str, path: Path) -> tuple[str, str | None]:
        """(stream to read ``path`` as, the stream of its previous version if it was rewritten)."""
        # a key is only ever read by its own source's import (the importer locks per source), so the file is
        # hashed outside the ledger's lock; only the change of the shared entries and their save are inside
        e = self.entries.get(_key(source, path))
        size = path.stat().st_size
        if e is not None and size >= e["size"] and file_digest(path, e["size"]) == e["head"]:
            if size != e["size"]:
                head = file_digest(path)
                with self._lock:
                    e["size"], e["head"] = size, head
                    self._save()
            return e["stream"], None
        digest = file_digest(path)
        stream = f"{path.name}@{digest}"
        previous = e["stream"] if e is not None and e["stream"] != stream else None
        with self._lock:
            self.entries[_key(source, path)] = {"stream": stream, "size": size, "head": digest,
                                                "previous": previous}
            self._save()
        return stream, previous

    def old_digests(self, source: str, path: Path, previous: str | None) -> np.ndarray | None:
        """Row digests of the previous version of a rewritten file (None: nothing to compare against)."""
        if previous is None:
            e = self.entries.get(_key(source, path)) or {}
            previous = e.get("previous")
        if previous is None:
            return None
        p = self._npy(previous)
        return np.load(p) if p.exists() else None

    def add_digests(self, source: str, path: Path, stream: str, hashes: np.ndarray) -> None:
        """Record the digests (:func:`row_hashes`) of rows now durable in the shards (kept until :meth:`finish`)."""
        self._digests.setdefault(stream, []).append(hashes)

    def finish(self, source: str, path: Path, stream: str) -> None:
        parts = self._digests.pop(stream, [])
        if not parts:
            return
        p = self._npy(stream)
        p.parent.mkdir(parents=True, exist_ok=True)
        old = [np.load(p)] if p.exists() else []
        tmp = p.with_suffix(".tmp.npy")
        np.save(tmp, np.concatenate(old + parts))
        os.replace(tmp, p)
