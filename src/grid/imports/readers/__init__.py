"""Readers: turn a source's raw data into batches of rows, each batch with the position it reaches.

The reader protocol (every reader, file or database, honours it)
----------------------------------------------------------------
A reader is an iterable (or async iterable, for streaming sources) of :class:`Batch`::

    for batch in reader.batches(after=position):   # after=None: from the beginning
        batch.position   # {"stream": str, "offset": int, ...}: JSON-able, where this batch ends
        batch.rows       # list[dict] of raw column -> value, or a pyarrow Table/RecordBatch of the same
        batch.offsets    # per-row offsets (ints), or None: consecutive, ending at position["offset"]
        batch.rejected   # records that could not be split into columns: [{"text", "reason", "detail"}]

* ``position["stream"]`` names an independent sequence of rows: a file's identity (``"<path>@<digest>"``), a
  replication slot, ``"push"``. ``position["offset"]`` is an integer that never decreases within a stream
  (a file's row number, a PostgreSQL commit LSN as an int, a push batch id). Readers may add more JSON-able
  keys (a byte offset to reopen the file at, an LSN's text form); the framework stores them and hands the whole
  dict back as ``after``.
* Row offsets: row ``i`` of a batch has offset ``offsets[i]``; ``None`` means ``position["offset"] - len(rows)
  + 1 + i`` (file readers). Rows that share an offset (one database transaction) must be in one batch.
* Exactly once: the framework writes ``position`` in the same WAL record as the changes its rows cause, on
  every shard. A shard skips rows whose offset is ``<=`` the offset it holds for that stream, so a reader
  restarted ``after`` any earlier position never doubles a row; it must only never skip one.
* ``batches(after=p)`` yields the rows *after* ``p`` (for a file: from row ``p["offset"] + 1``). A reader
  never holds more than one batch in memory (a 10M-row export streams).
* Values are raw: strings from text formats, typed Python/Arrow values from Parquet, spreadsheets and
  databases. Mapping (``grid.imports.mapping``) turns them into context fields.

File readers live beside this module (``delimited``, ``fixed``, ``jsonl``, ``parquet``, ``spreadsheet``);
:func:`open_file` picks one by the source's ``format`` (or the file's extension when it is ``auto``).
Database and ESPI readers (``postgres``, ``grid.imports.espi``) follow the same protocol.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol, runtime_checkable

import numpy as np

from grid.errors import InvalidInput

BATCH_ROWS = 50_000  # rows per batch: one WAL record per shard per batch; big enough to amortise the round trip


@dataclass
class Batch:
    """Rows read from a source and the position after the last of them; see the module docstring."""

    position: dict
    rows: Any  # list[dict] | pyarrow.Table | pyarrow.RecordBatch
    offsets: list[int] | None = None
    # raw records the reader could not even split into columns ({"text", "reason", "detail"}), for quarantine
    rejected: list[dict] = field(default_factory=list)

    def __iter__(self):  # ``position, rows = batch`` reads naturally
        return iter((self.position, self.rows))

    def __len__(self) -> int:
        return self.rows.num_rows if hasattr(self.rows, "num_rows") else len(self.rows)

    def row_offsets(self) -> list[int]:
        return self.offset_array().tolist()

    def offset_array(self) -> np.ndarray:
        """The rows' offsets as int64 (a 250k-row batch: no list of Python ints on the hot path)."""
        if self.offsets is not None:
            return np.asarray(self.offsets, dtype=np.int64)
        end = int(self.position["offset"])
        return np.arange(end - len(self) + 1, end + 1, dtype=np.int64)


@runtime_checkable
class Reader(Protocol):
    """What the importer asks of any reader."""

    def batches(self, after: dict | None = None) -> Iterator[Batch]:
        """Batches after ``after`` (a position this reader yielded before; None = from the start)."""
        ...


@dataclass
class FileInfo:
    """A file to read and the stream its positions carry.

    ``stream`` defaults to ``"<name>@<digest of the content>"``; the importer keeps a file's first stream
    while the file only grows (a meter export appended to), so reading resumes after the rows already applied.
    """

    path: Path
    size: int
    digest: str  # sha256 of the content (hex, first 16 chars)
    options: dict = field(default_factory=dict)
    stream: str = ""
    # a file still being appended to: read only the lines that end with a line break (a tail source)
    complete_lines: bool = False

    def __post_init__(self):
        if not self.stream:
            self.stream = f"{self.path.name}@{self.digest}"


def file_digest(path: Path, limit: int | None = None) -> str:
    """sha256 (hex, 16 chars) of a file's first ``limit`` bytes (all of it when None), streamed."""
    h = hashlib.sha256()
    left = limit
    with open(path, "rb") as f:
        while left is None or left > 0:
            chunk = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()[:16]


FORMATS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".psv": "csv", ".dat": "fixed", ".jsonl": "jsonl",
           ".ndjson": "jsonl", ".parquet": "parquet", ".xlsx": "spreadsheet", ".xls": "spreadsheet",
           ".xlsm": "spreadsheet", ".ods": "spreadsheet", ".xml": "espi"}


def format_of(path: Path, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInput(f"cannot tell the format of {path.name}; set format in the source", field="format")
    return fmt


def open_file(path: str | Path, fmt: str = "auto", options: dict | None = None,
              batch_rows: int = BATCH_ROWS, stream: str | None = None, complete_lines: bool = False) -> Reader:
    """A reader for one file of a file source (``fmt`` and ``options`` as in the source YAML; ``complete_lines``
    as in :class:`FileInfo`)."""
    path = Path(path)
    options = dict(options or {})
    fmt = format_of(path, fmt)
    # the digest only names a stream not given (a pass over the file: 0.3 s for 350 MB)
    info = FileInfo(path, path.stat().st_size, "" if stream else file_digest(path), options, stream or "",
                    complete_lines)
    if fmt == "csv":
        from grid.imports.readers.delimited import DelimitedReader as cls
    elif fmt == "fixed":
        from grid.imports.readers.fixed import FixedWidthReader as cls
    elif fmt == "jsonl":
        from grid.imports.readers.jsonl import JsonLinesReader as cls
    elif fmt == "parquet":
        from grid.imports.readers.parquet import ParquetReader as cls
    elif fmt == "spreadsheet":
        from grid.imports.readers.spreadsheet import SpreadsheetReader as cls
    elif fmt == "espi":  # Green Button files (grid.imports.espi)
        from grid.imports.espi import EspiReader as cls
    else:
        raise InvalidInput(f"unknown file format {fmt!r}", field="format")
    return cls(info, batch_rows=batch_rows)


def line_batches(f, parse, stream: str, row: int, batch_rows: int, complete_lines: bool = False) -> Iterator[Batch]:
    """Batches of a line-per-record file open at the first line to read (the fixed-width and JSON-lines readers).

    ``parse(line: bytes)`` returns ``(row, None)``, ``(None, rejected)`` for a malformed record or
    ``(None, None)`` to skip the line; positions carry the byte offset after the batch, to resume at.
    ``complete_lines``: a last line without its line break is left for the next read (see FileInfo).
    """
    rows, bad = [], []
    while True:
        at = f.tell()
        raw = f.readline()
        if raw and complete_lines and not raw.endswith(b"\n"):
            f.seek(at)
            raw = b""
        if raw:
            rec, rejected = parse(raw)
            if rec is not None:
                rows.append(rec)
            elif rejected is not None:
                bad.append(rejected)
        if (not raw and (rows or bad)) or len(rows) >= batch_rows:
            row += len(rows)
            yield Batch({"stream": stream, "offset": row, "byte": f.tell()}, rows, rejected=bad)
            rows, bad = [], []
        if not raw:
            return


def start_row(after: dict | None, stream: str) -> int:
    """First row number (1-based) to yield given a resume position (another stream's position: from 1)."""
    if after is None or after.get("stream") != stream:
        return 1
    return int(after["offset"]) + 1
