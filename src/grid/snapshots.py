"""Snapshots of a shard's state: Arrow IPC tables and raw blobs under a checksummed manifest.

Design
------
A snapshot through WAL seq S is the directory ``snap-<S:020d>`` holding one Arrow IPC file per table
(``<name>.arrow``), one file per blob (``<name>.bin``) and ``manifest.json``::

    {"format": 1, "seq": S, "created_at": "<UTC ISO 8601>",
     "files": {"<file name>": {"sha256": "<hex>", "bytes": <size>}, ...}}

It is written into a temporary directory, every file fsynced (the hash computed while writing, so nothing
is read back), then renamed into place in one step and the parent directory fsynced: a crash leaves either
the whole snapshot or a temporary directory that the next start removes. ``latest`` verifies sizes and
hashes before it trusts a snapshot and falls back to the previous one when that fails; the WAL must
therefore be kept back to ``oldest_kept_seq`` so that the older snapshot plus the longer WAL still
rebuild the same state.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from grid.durable import fsync_dir as _fsync_dir  # a created/renamed entry is durable once its dir is
from grid.errors import InvalidInput, ShardUnavailable

__all__ = ["Snapshot", "SnapshotStore"]

_log = logging.getLogger(__name__)
_FORMAT = 1
_MANIFEST = "manifest.json"
_PREFIX = "snap-"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_TABLE, _BLOB = ".arrow", ".bin"


@dataclass
class Snapshot:
    """A verified snapshot: the shard's state through WAL seq ``seq``."""

    seq: int
    path: Path
    tables: dict[str, pa.Table]
    blobs: dict[str, bytes]


class _Corrupt(Exception):
    """A snapshot failed verification (internal: ``latest`` logs it and falls back)."""


class _HashingWriter:
    """File-like sink for ``pa.PythonFile`` that hashes and counts what passes through it."""

    def __init__(self, raw):
        self.raw, self.sha, self.size, self.closed = raw, hashlib.sha256(), 0, False

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.closed = True  # the caller closes ``raw`` after its fsync


def _write_file(path: Path, fill) -> dict:
    """Create ``path``, let ``fill(writer)`` write it, fsync; return its manifest entry."""
    with open(path, "xb") as raw:
        writer = _HashingWriter(raw)
        fill(writer)
        raw.flush()
        os.fsync(raw.fileno())
    return {"sha256": writer.sha.hexdigest(), "bytes": writer.size}


def _write_table(table: pa.Table):
    def fill(writer: _HashingWriter) -> None:
        with pa.PythonFile(writer, mode="w") as sink, pa.ipc.new_file(sink, table.schema) as ipc:
            ipc.write_table(table)
    return fill


def _check_names(kind: str, items: dict, types: tuple) -> None:
    if not isinstance(items, dict):
        raise InvalidInput(f"{kind} must be a dict of name -> value, got {type(items).__name__}", field=kind)
    for name, value in items.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInput(f"{kind} name must match {_NAME.pattern}, got {name!r}", field=kind)
        if not isinstance(value, types):
            raise InvalidInput(f"{kind}[{name!r}] must be {' or '.join(t.__name__ for t in types)}, "
                               f"got {type(value).__name__}", field=kind)


class SnapshotStore:
    """The snapshots of one shard, newest ``keep`` kept.

    Parameters
    ----------
    directory : str or Path
        Where the ``snap-*`` directories live; created if missing. Leftovers of an interrupted write or
        prune are removed here, so only one store may use a directory at a time (the shard's).
    keep : int
        How many snapshots survive a prune; more than one lets a corrupt newest snapshot fall back.
    """

    def __init__(self, directory: str | Path, *, keep: int = 3):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise InvalidInput(f"keep must be an int >= 1, got {keep!r}", field="keep")
        self.directory = Path(directory)
        self.keep = keep
        self._lock = threading.Lock()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for leftover in self.directory.glob(".*-snap-*"):  # .tmp-snap-* and .old-snap-*
                _log.info("snapshots: removing leftover %s", leftover)
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError as exc:
            raise ShardUnavailable(f"cannot open snapshot directory {self.directory}: {exc}") from exc

    def _snapshot_dirs(self) -> list[tuple[int, Path]]:
        """``(seq, path)`` of every snapshot directory, oldest first."""
        try:
            found = [(int(p.name[len(_PREFIX):]), p) for p in self.directory.iterdir()
                     if p.name.startswith(_PREFIX) and p.name[len(_PREFIX):].isdigit()]
        except OSError as exc:
            raise ShardUnavailable(f"cannot list snapshots in {self.directory}: {exc}") from exc
        return sorted(found)

    def write(self, seq: int, tables: dict[str, pa.Table], blobs: dict[str, bytes]) -> Snapshot:
        """Write the state through WAL seq ``seq`` as a new snapshot, atomically, then prune.

        Parameters
        ----------
        seq : int
            Last WAL seq whose write the state includes. The WAL must be durable through it (``sync``)
            before the snapshot is written.
        tables : dict of str to pyarrow.Table
            Stored as Arrow IPC files; names are file-name safe (letters, digits, ``_.-``).
        blobs : dict of str to bytes
            Stored as they are (for small state that is not tabular, such as idempotency keys).

        Raises
        ------
        InvalidInput
            A bad seq, name or value, or a table Arrow cannot write.
        ShardUnavailable
            The disk refused the write; no partial snapshot is left behind.
        """
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise InvalidInput(f"seq must be an int >= 0, got {seq!r}", field="seq")
        _check_names("tables", tables, (pa.Table,))
        _check_names("blobs", blobs, (bytes, bytearray, memoryview))
        blobs = {name: bytes(blob) for name, blob in blobs.items()}
        final = self.directory / f"{_PREFIX}{seq:020d}"
        tmp = self.directory / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        with self._lock:
            existing = self._snapshot_dirs()
            if existing and seq < existing[-1][0]:
                raise InvalidInput(f"seq {seq} is older than the newest snapshot ({existing[-1][0]})",
                                   field="seq")
            try:
                tmp.mkdir()
                files = {}
                for name, table in tables.items():
                    files[name + _TABLE] = _write_file(tmp / (name + _TABLE), _write_table(table))
                for name, blob in blobs.items():
                    files[name + _BLOB] = _write_file(tmp / (name + _BLOB), lambda w, b=blob: w.write(b))
                manifest = {"format": _FORMAT, "seq": seq,
                            "created_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                            "files": files}
                text = json.dumps(manifest, indent=1, sort_keys=True).encode()
                _write_file(tmp / _MANIFEST, lambda w: w.write(text))
                _fsync_dir(tmp)
                self._install(tmp, final)
            except OSError as exc:  # before ArrowException: Arrow's I/O errors are OSErrors too
                shutil.rmtree(tmp, ignore_errors=True)
                raise ShardUnavailable(f"cannot write snapshot {final.name}: {exc}") from exc
            except pa.ArrowException as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise InvalidInput(f"cannot write table as Arrow IPC: {exc}", field="tables") from exc
            self._prune()
        _log.info("snapshots: wrote %s (%d tables, %d blobs, %d bytes)", final.name, len(tables),
                  len(blobs), sum(f["bytes"] for f in files.values()))
        return Snapshot(seq, final, dict(tables), blobs)

    def _install(self, tmp: Path, final: Path) -> None:
        old = None
        if final.exists():  # a second snapshot at the same seq (no write since): replace the first
            old = self.directory / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            os.rename(final, old)
        os.rename(tmp, final)
        _fsync_dir(self.directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _prune(self) -> None:
        for seq, path in self._snapshot_dirs()[:-self.keep]:
            # Rename first (atomic) so that a crash mid-delete never leaves a half snapshot that looks
            # like a real one; the next start removes the leftover.
            trash = self.directory / f".old-{path.name}-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(path, trash)
                shutil.rmtree(trash)
            except OSError as exc:
                _log.warning("snapshots: cannot remove %s: %s", path, exc)

    def latest(self) -> Snapshot | None:
        """The newest snapshot that verifies; a corrupt one is logged and skipped.

        Returns ``None`` when there is none. If snapshots exist but none verifies, that is logged as an
        error: recovery then depends on the WAL still reaching back to seq 1 (``WriteAheadLog.first_seq``).
        """
        candidates = self._snapshot_dirs()
        for seq, path in reversed(candidates):
            try:
                return self._load(seq, path)
            except _Corrupt as exc:
                _log.warning("snapshots: %s is corrupt (%s); falling back to an older one", path.name, exc)
        if candidates:
            _log.error("snapshots: none of %d snapshots in %s verifies", len(candidates), self.directory)
        return None

    def count(self) -> int:
        """How many snapshots are kept (verified or not)."""
        return len(self._snapshot_dirs())

    def oldest_kept_seq(self) -> int:
        """Seq of the oldest snapshot kept (0 if none): the WAL may be truncated only through it."""
        dirs = self._snapshot_dirs()
        return dirs[0][0] if dirs else 0

    @staticmethod
    def _load(seq: int, path: Path) -> Snapshot:
        try:
            manifest = json.loads((path / _MANIFEST).read_bytes())
            files = manifest["files"]
            if manifest["format"] != _FORMAT or manifest["seq"] != seq or not isinstance(files, dict):
                raise _Corrupt(f"manifest does not describe a format-{_FORMAT} snapshot at seq {seq}")
            tables, blobs = {}, {}
            for fname, entry in files.items():
                stem, ext = os.path.splitext(fname)
                if not _NAME.fullmatch(stem) or ext not in (_TABLE, _BLOB):
                    raise _Corrupt(f"manifest names an unexpected file {fname!r}")
                if os.stat(path / fname).st_size != entry["bytes"]:
                    raise _Corrupt(f"{fname} is not {entry['bytes']} bytes")
                if ext == _BLOB:
                    data = (path / fname).read_bytes()
                else:
                    data = pa.memory_map(str(path / fname)).read_buffer()
                if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                    raise _Corrupt(f"{fname} fails its sha256")
                if ext == _BLOB:
                    blobs[stem] = data
                else:
                    tables[stem] = pa.ipc.open_file(data).read_all()  # zero-copy over the mapping
        except _Corrupt:
            raise
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
            raise _Corrupt(f"{type(exc).__name__}: {exc}") from exc
        return Snapshot(seq, path, tables, blobs)

    def __repr__(self) -> str:
        return f"SnapshotStore({str(self.directory)!r}, keep={self.keep})"
