"""``durable_write(path, data)``: replace a small file so that a crash leaves the old bytes or the new, never a mix.

The one routine every small state file uses (partition table, a shard's owned partitions, tariffs, keys):
write a temporary file in the same directory, fsync it, rename it over the target (atomic on POSIX), then fsync
the directory so the rename itself survives a power loss. Without the last step ext4 and XFS may forget the
rename after a crash and bring back the old file, or none, although the call returned. The write-ahead log and
snapshots have their own protocols (grid.wal, grid.snapshots) but share :func:`fsync_dir`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from grid.errors import ShardUnavailable


def fsync_dir(path: str | Path) -> None:
    """Make the entries of directory ``path`` (creations, renames, deletions) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_write(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically and durably; ``mode`` (e.g. ``0o600``) is set before the rename.

    Raises
    ------
    ShardUnavailable
        The disk refused the write (full, read-only, I/O error); the old file is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ShardUnavailable(f"cannot write {path}: {exc.strerror or exc}", retry_after=5) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        _discard(tmp)
        raise ShardUnavailable(f"cannot write {path}: {exc.strerror or exc}", retry_after=5) from exc
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
