"""Write-ahead log of one shard: ordered, checksummed msgpack frames with group commit.

Design
------
A frame is ``[u32 length][u64 seq][u32 crc32(seq bytes + payload)][msgpack payload]`` (little-endian).
Frames live in segment files named by the seq of their first frame (``00000000000000000001.wal``); within
a segment seqs are consecutive, so truncating the log past a snapshot deletes whole files.

``submit`` runs on the shard actor's event loop: it encodes the record, takes the next seq and queues the
frame under one short lock, so WAL order is the order in which the loop applied the writes. One flusher
thread owns the file: it writes the queued frames with one ``write`` and, under ``batch``, one ``fsync``
(group commit) before their waiters resolve. Before flushing it waits until as many frames are queued as
the last batch held (the writers it just released, coming back), but never past ``max_wait_ms`` after the
oldest was submitted nor beyond ``max_batch`` frames: steady concurrent writers share each fsync without
a fixed delay, and a lone writer waits for nobody.

A torn or corrupt frame (short, CRC mismatch, seq out of order) in the newest segment is where a crash
left a torn tail: the segment is cut back to the last good frame (opening checks it; so does ``replay``).
Anywhere else - a closed segment, segments that overlap or leave seqs out - it is damage to acknowledged
writes: ``replay`` raises :class:`~grid.errors.DataCorrupt` naming the file and deletes nothing, so an
operator can restore it (the shard stays stopped rather than start from partial state). An emptied
segment file is kept: its name still records where numbering goes on.

A failed ``write`` or ``fsync`` poisons the log: after a failed fsync Linux may drop the dirty pages and
report the error only once, so a retry could acknowledge data that is not on disk. Pending and later
writes fail with :class:`~grid.errors.ShardUnavailable` until the shard reopens the directory.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import msgpack

from grid.durable import fsync_dir as _fsync_dir  # a created/renamed entry is durable once its dir is
from grid.errors import DataCorrupt, InvalidInput, ShardUnavailable

__all__ = ["FSYNC_POLICIES", "WriteAheadLog"]

FSYNC_POLICIES = ("always", "batch", "off")

_log = logging.getLogger(__name__)
_HEAD = struct.Struct("<IQI")  # payload length, seq, crc32 over (seq bytes + payload)
_SEQ = struct.Struct("<Q")
_SUFFIX = ".wal"


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{_SUFFIX}"


def _encode(seq: int, payload: bytes) -> bytes:
    return _HEAD.pack(len(payload), seq, zlib.crc32(payload, zlib.crc32(_SEQ.pack(seq)))) + payload


def _scan(data: bytes, first_seq: int) -> Iterator[tuple[int, int, memoryview]]:
    """Yield ``(end_offset, seq, payload)`` per good frame; stop silently at the first bad one."""
    view = memoryview(data)
    size, pos, expect = len(view), 0, first_seq
    while pos + _HEAD.size <= size:
        length, seq, crc = _HEAD.unpack_from(view, pos)
        end = pos + _HEAD.size + length
        if end > size or seq != expect:
            return
        payload = view[pos + _HEAD.size:end]
        if zlib.crc32(payload, zlib.crc32(view[pos + 4:pos + 12])) != crc:
            return
        yield end, seq, payload
        pos, expect = end, seq + 1


def _settle(waiters: list, error: BaseException | None) -> None:
    """Resolve asyncio waiters on their own loop (one ``call_soon_threadsafe`` per batch, not per write)."""
    for seq, waiter in waiters:
        if not waiter.done():
            waiter.set_exception(error) if error is not None else waiter.set_result(seq)


def locked_by_another(directory: str | Path) -> bool:
    """Whether a writer holds the WAL in ``directory`` now (its ``LOCK`` flocked): a probe for a friendly
    refusal before starting shard actors on a data directory a running grid owns; the lock stays the guard."""
    try:
        fd = os.open(Path(directory) / "LOCK", os.O_RDWR)
    except OSError:
        return False  # no WAL there yet
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)  # drops the probe's own lock, if it took one


class WriteAheadLog:
    """Append-only, segmented, checksummed log with group commit.

    Parameters
    ----------
    directory : str or Path
        The shard's WAL directory; created if missing and locked (``flock``) against a second writer.
    fsync : {"always", "batch", "off"}
        ``always``: each frame is fsynced alone before it resolves. ``batch``: one fsync covers every
        frame queued when the flusher runs. ``off``: frames reach the OS before they resolve (they survive a
        process kill, not a power loss) and are fsynced only by ``close``.
    max_wait_ms : float
        Longest wait, counted from a frame's submission, that ``batch`` spends gathering more frames.
    max_batch : int
        Most frames one write (and fsync) covers; a full batch ends the wait at once.
    segment_bytes : int
        A new segment starts when the next frame would take the current one past this size.
    """

    def __init__(self, directory: str | Path, *, fsync: str = "batch", max_wait_ms: float = 2.0,
                 max_batch: int = 512, segment_bytes: int = 64 << 20):
        for field, value, ok, expected in (
                ("fsync", fsync, fsync in FSYNC_POLICIES, f"one of {FSYNC_POLICIES}"),
                ("max_wait_ms", max_wait_ms, max_wait_ms >= 0, ">= 0"),
                ("max_batch", max_batch, max_batch >= 1, ">= 1"),
                ("segment_bytes", segment_bytes, segment_bytes >= 1, ">= 1")):
            if not ok:
                raise InvalidInput(f"{field} must be {expected}, got {value!r}", field=field)
        self.directory = Path(directory)
        self.fsync = fsync
        self._max_wait = max_wait_ms / 1000.0
        self._max_batch = max_batch
        self._segment_bytes = segment_bytes
        # _io_lock guards the files and segment list; _cond the queue, seq counter and durable seq.
        # Lock order: _io_lock, then _cond.
        self._io_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[tuple[int, bytes, object, float]] = []  # seq, frame, waiter, submitted at
        self._closing = False
        self._error: ShardUnavailable | None = None
        self._segments: list[int] = []  # first seq of each segment, ascending; the last one is active
        self._fd: int | None = None     # active segment, opened for append
        self._seg_size = 0              # bytes written to the active segment
        self._seg_next = 0              # seq the active segment takes next
        self._rotate = False            # start a new segment before the next frame
        self._unsynced: list[int] = []  # under "off": segments closed without fsync, for close() to sync
        self._durable_seq = 0
        self._target = 1                # frames the next batch waits for: as many as the last one had
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ShardUnavailable(f"cannot open WAL directory {self.directory}: {exc}") from exc
        try:  # a restarted actor whose predecessor still runs must not interleave frames with it
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise ShardUnavailable(f"WAL directory {self.directory} is in use by another writer") from exc
        try:
            self._open_newest()
        except OSError as exc:
            self._release()
            raise ShardUnavailable(f"cannot recover WAL in {self.directory}: {exc}") from exc
        self._recovered_seq = self._durable_seq
        self._next_seq = self._durable_seq + 1
        self._thread = threading.Thread(target=self._flusher, daemon=True,
                                        name=f"wal-flusher:{self.directory.name}")
        self._thread.start()

    # ------------------------------------------------------------------ recovery
    def _open_newest(self) -> None:
        self._segments = sorted(int(p.name[:-len(_SUFFIX)]) for p in self.directory.iterdir()
                                if p.name.endswith(_SUFFIX) and p.name[:-len(_SUFFIX)].isdigit())
        if not self._segments:
            return
        first = self._segments[-1]
        path = self.directory / _segment_name(first)
        data = path.read_bytes()
        end, last = 0, first - 1
        for end, last, _ in _scan(data, first):
            pass
        if end < len(data):
            _log.warning("WAL %s: torn or corrupt frame at byte %d after seq %d; cutting %d bytes",
                         path, end, last, len(data) - end)
            os.truncate(path, end)
        self._activate(first, end, last + 1)
        self._durable_seq = last

    def _activate(self, first: int, size: int, next_seq: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.directory / _segment_name(first), os.O_WRONLY | os.O_APPEND)
        self._seg_size, self._seg_next = size, next_seq

    def _cut(self, first: int, good_end: int, last_good: int, reason: str) -> None:
        """End the log after ``last_good``: truncate segment ``first`` at ``good_end``, drop later ones."""
        with self._io_lock:
            if first not in self._segments:
                return  # cut or truncated meanwhile
            path = self.directory / _segment_name(first)
            later = [s for s in self._segments if s > first]
            _log.warning("WAL %s: %s after seq %d; cutting it at byte %d and removing %d later segment(s)",
                         path, reason, last_good, good_end, len(later))
            try:
                os.truncate(path, good_end)
                for s in later:
                    (self.directory / _segment_name(s)).unlink(missing_ok=True)
                self._segments = [s for s in self._segments if s <= first]
                self._activate(first, good_end, last_good + 1)
            except OSError as exc:
                raise ShardUnavailable(f"cannot cut WAL segment {path}: {exc}") from exc
            with self._cond:
                if self._next_seq - 1 == self._recovered_seq:
                    # Nothing submitted since opening: numbering goes on from the cut (recovery then
                    # calls skip_to with its snapshot's seq). Otherwise no seq is handed out twice.
                    self._recovered_seq, self._next_seq = last_good, last_good + 1
                else:
                    _log.error("WAL %s: records written since opening were cut", path)
                self._durable_seq = min(self._durable_seq, last_good)

    # ------------------------------------------------------------------ writing
    def _enqueue(self, record: dict, waiter) -> int:
        if not isinstance(record, dict):
            raise InvalidInput(f"record must be a dict, got {type(record).__name__}", field="record")
        try:
            payload = msgpack.packb(record, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInput(f"record cannot be encoded as msgpack: {exc}", field="record") from exc
        if len(payload) > 0xFFFFFFFF:
            raise InvalidInput(f"record is {len(payload)} bytes, over the 4 GiB frame limit", field="record")
        with self._cond:
            if self._error is not None:
                raise ShardUnavailable(self._error.detail) from self._error.__cause__
            if self._closing:
                raise ShardUnavailable(f"WAL {self.directory} is closed")
            seq = self._next_seq
            self._next_seq = seq + 1
            self._queue.append((seq, _encode(seq, payload), waiter, time.monotonic()))
            n = len(self._queue)
            if n == 1 or n == self._target or n == self._max_batch:
                self._cond.notify_all()
        return seq

    def submit(self, record: dict) -> tuple[int, concurrent.futures.Future]:
        """Queue ``record``; return ``(seq, future)``, the future giving ``seq`` once durable per policy.

        Cheap and thread-safe (it only encodes and queues), so it may run on the actor's event loop; seqs
        follow the order of the calls.

        Raises
        ------
        InvalidInput
            ``record`` is not a dict msgpack can encode (no seq is used up).
        ShardUnavailable
            The log is closed or a write failed.
        """
        future: concurrent.futures.Future = concurrent.futures.Future()
        return self._enqueue(record, future), future

    def submit_awaitable(self, record: dict) -> tuple[int, asyncio.Future]:
        """Like ``submit``, but the waiter is a future of the running event loop.

        The flusher settles all of a batch's loop futures with one ``call_soon_threadsafe``; wrapping
        ``submit``'s futures (``asyncio.wrap_future``) costs one wake-up of the loop per write instead.
        """
        waiter = asyncio.get_running_loop().create_future()
        return self._enqueue(record, waiter), waiter

    async def append_async(self, record: dict) -> int:
        """Submit ``record`` and wait, without blocking the event loop, until it is durable; return its seq."""
        seq, waiter = self.submit_awaitable(record)
        await waiter
        return seq

    def append(self, record: dict) -> int:
        """Submit ``record`` and block until it is durable; return its seq (not on the event loop)."""
        seq, future = self.submit(record)
        future.result()
        return seq

    def sync(self) -> int:
        """Block until every record submitted so far is durable per policy; return the last such seq.

        A snapshot through seq S must not be written before the WAL is durable through S (see ``skip_to``).
        """
        with self._cond:
            target = self._next_seq - 1
            while self._durable_seq < target and self._error is None and self._thread.is_alive():
                self._cond.wait(0.1)
            if self._error is not None:
                raise ShardUnavailable(self._error.detail) from self._error.__cause__
        return target

    def skip_to(self, seq: int) -> None:
        """Number the next record ``seq + 1`` or later.

        Recovery calls this with its snapshot's seq after replay: if the WAL lost its tail (power loss
        under ``off``, a corrupt newest segment), it must not hand out seqs the snapshot covers, or a later
        replay after that snapshot would skip new acknowledged writes.
        """
        with self._cond:
            self._next_seq = max(self._next_seq, seq + 1)

    def _flusher(self) -> None:
        try:
            self._flush_until_closed()
        except BaseException as exc:  # a dead flusher must fail writers, never leave them hanging
            self._fail([], exc)
            raise

    def _flush_until_closed(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                if self.fsync == "batch" and not self._closing:
                    deadline = self._queue[0][3] + self._max_wait
                    while len(self._queue) < self._target and not self._closing:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._cond.wait(remaining)
                batch = self._queue[:self._max_batch]
                del self._queue[:self._max_batch]
                self._target = len(batch)
            try:
                with self._io_lock:
                    self._write(batch)
            except Exception as exc:  # OSError mostly; anything else is as fatal to durability
                self._fail(batch, exc)
            else:
                if self.fsync != "always":
                    self._resolve(batch, None)

    def _write(self, batch: list) -> None:
        buf = bytearray()
        for item in batch:
            seq, frame = item[0], item[1]
            if (self._fd is None or self._rotate or seq != self._seg_next
                    or (self._seg_size > 0 and self._seg_size + len(buf) + len(frame) > self._segment_bytes)):
                self._write_out(buf)
                self._new_segment(seq)
            buf += frame
            self._seg_next = seq + 1
            if self.fsync == "always":
                self._write_out(buf)
                os.fsync(self._fd)
                self._resolve([item], None)
        self._write_out(buf)
        if self.fsync == "batch":
            os.fsync(self._fd)
        with self._cond:
            self._durable_seq = batch[-1][0]
            self._cond.notify_all()  # wakes sync(); the flusher itself is not waiting now

    def _write_out(self, buf: bytearray) -> None:
        written = 0
        while written < len(buf):  # a regular file takes it all in one write, barring ENOSPC or signals
            written += os.write(self._fd, buf[written:] if written else buf)
        self._seg_size += written
        buf.clear()

    def _new_segment(self, first: int) -> None:
        durable = self.fsync != "off"
        if self._fd is not None:
            if self._seg_size == 0:  # an empty segment only held the numbering, which moves on now
                os.close(self._fd)
                (self.directory / _segment_name(self._segments.pop())).unlink(missing_ok=True)
            else:
                if durable:
                    os.fsync(self._fd)
                else:
                    self._unsynced.append(self._segments[-1])
                os.close(self._fd)
            self._fd = None
        self._fd = os.open(self.directory / _segment_name(first),
                           os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        self._segments.append(first)
        self._seg_size, self._seg_next, self._rotate = 0, first, False
        if durable:
            _fsync_dir(self.directory)

    def _resolve(self, batch: list, error: BaseException | None) -> None:
        by_loop: dict = {}
        for seq, _, waiter, _ in batch:
            if isinstance(waiter, concurrent.futures.Future):
                try:
                    waiter.set_exception(error) if error is not None else waiter.set_result(seq)
                except concurrent.futures.InvalidStateError:
                    pass  # cancelled by its caller; the record is in the log all the same
            else:
                by_loop.setdefault(waiter.get_loop(), []).append((seq, waiter))
        for loop, waiters in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, waiters, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def _fail(self, batch: list, exc: BaseException) -> None:
        error = ShardUnavailable(f"WAL {self.directory} cannot be written: {exc}")
        error.__cause__ = exc
        _log.error("WAL %s: write failed; the log refuses further writes: %s", self.directory, exc)
        with self._cond:
            self._error = error
            batch, self._queue = batch + self._queue, []
            self._cond.notify_all()
        self._resolve(batch, error)

    # ------------------------------------------------------------------ reading and truncation
    def replay(self, after_seq: int = 0) -> Iterator[tuple[int, dict]]:
        """Yield ``(seq, record)`` for every frame with ``seq > after_seq``, in seq order.

        Reads what was written when the call started. A torn or corrupt frame in the newest segment ends the
        log there: the segment is cut back to the last good frame (logged); the frames before it are yielded.

        Raises
        ------
        DataCorrupt
            A closed (not the newest) segment holds a bad frame, or segments overlap or leave seqs out: the
            frames yielded so far are good, nothing is cut or deleted, and the error names the file.
        """
        with self._io_lock:
            segments, active_size = list(self._segments), self._seg_size
        prev = None  # (first, size, last seq) of the previous segment read
        for i, first in enumerate(segments):
            nxt = segments[i + 1] if i + 1 < len(segments) else None
            if nxt is not None and nxt - 1 <= after_seq:
                continue  # every frame here is covered
            path = self.directory / _segment_name(first)
            # seqs skipped over a snapshot (skip_to) leave a gap the caller's snapshot covers; any other gap or
            # an overlap means frames of acknowledged writes are gone or doubled
            if prev is not None and (first <= prev[2] or (first > prev[2] + 1 and first - 1 > after_seq)):
                what = f"overlaps seq {prev[2]}" if first <= prev[2] else f"leaves seqs {prev[2] + 1}..{first - 1} out"
                raise self._damaged(path, f"segment {what} of the one before it")
            try:
                with open(path, "rb") as f:
                    data = f.read(active_size if nxt is None else -1)
            except OSError as exc:
                if isinstance(exc, FileNotFoundError) and first not in self._segments:
                    continue  # truncated meanwhile
                raise ShardUnavailable(f"cannot read WAL segment {path}: {exc}") from exc
            end, last = 0, first - 1
            for frame_end, seq, payload in _scan(data, first):
                if seq > after_seq:
                    try:
                        record = msgpack.unpackb(payload, raw=False, strict_map_key=False)
                    except (ValueError, TypeError, msgpack.UnpackException) as exc:
                        if nxt is not None:
                            raise self._damaged(path, f"undecodable frame at byte {end} after seq {last}") from exc
                        self._cut(first, end, last, f"undecodable frame ({exc})")
                        return
                    yield seq, record
                end, last = frame_end, seq
            if end < len(data):
                if nxt is not None:
                    raise self._damaged(path, f"torn or corrupt frame at byte {end} after seq {last}")
                self._cut(first, end, last, f"torn or corrupt frame at byte {end}")
                return
            prev = (first, end, last)

    def _damaged(self, path: Path, what: str) -> DataCorrupt:
        msg = (f"WAL segment {path} is damaged: {what}. It holds acknowledged writes, so the shard will not "
               f"start without them: restore the file from a backup (or move it and every later segment aside to "
               f"accept losing those writes), then restart the shard")
        _log.critical(msg)
        return DataCorrupt(msg, file=str(path))

    def truncate_through(self, seq: int) -> None:
        """Delete the segments whose frames all have seq <= ``seq`` (after a snapshot through ``seq``).

        The active segment is kept (its name carries the numbering); if it is wholly covered, the next
        frame starts a new segment so that a later call can delete it.
        """
        removed = 0
        with self._io_lock:
            # Segment i holds seqs below the next one's first seq; the active (last) one is never covered.
            covered = [first for first, nxt in zip(self._segments, self._segments[1:]) if nxt - 1 <= seq]
            for first in covered:
                try:
                    (self.directory / _segment_name(first)).unlink(missing_ok=True)
                except OSError as exc:
                    raise ShardUnavailable(f"cannot delete WAL segment: {exc}") from exc
                self._segments.remove(first)
                removed += 1
            if self._seg_size > 0 and self._seg_next - 1 <= seq:
                self._rotate = True
        if removed:
            _log.info("WAL %s: removed %d segment(s) through seq %d", self.directory, removed, seq)

    @property
    def last_seq(self) -> int:
        """Seq of the newest record submitted (right after opening: the newest on disk); 0 when empty."""
        with self._cond:
            return self._next_seq - 1

    @property
    def durable_seq(self) -> int:
        """Seq through which every record is written (and fsynced, per policy)."""
        return self._durable_seq

    @property
    def first_seq(self) -> int:
        """Lowest seq still on disk (``last_seq + 1`` when no frame is)."""
        with self._io_lock:
            if len(self._segments) > 1 or self._seg_size > 0:
                return self._segments[0]
        return self.last_seq + 1

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Write and fsync everything queued (under every policy: ``off`` syncs every segment it wrote
        and their directory here), stop the flusher, unlock the directory."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        try:
            with self._io_lock:
                if self._fd is not None and self._error is None:
                    os.fsync(self._fd)
                    for first in self._unsynced:
                        if first in self._segments:
                            fd = os.open(self.directory / _segment_name(first), os.O_RDONLY)
                            try:
                                os.fsync(fd)
                            finally:
                                os.close(fd)
                    if self.fsync == "off":
                        _fsync_dir(self.directory)
        except OSError as exc:
            raise ShardUnavailable(f"cannot fsync WAL {self.directory} on close: {exc}") from exc
        finally:
            self._release()

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        os.close(self._lock_fd)  # closing the descriptor drops the flock

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
