"""Watched folders: one asyncio task per folder source imports every file that lands or changes there.

A file is read only once it is complete: its size and mtime must stay the same for ``settle_ms`` (default
300 ms, ``options.settle_ms``) after the last ``watchfiles`` event, so a half-written file (a copy in progress,
an export still being appended to) is not read until it stops changing; an appended file is read on from
where it stood. A source whose files are only appended to (``options.tail: true``: a meter feed, a log) is
read as it grows instead: at each event, the lines that end with a line break (a half-written row has none
yet), and a last line without one only once the file has settled. A file written without pause never
settles, so without ``tail`` its rows wait; with it they land within an event (~50 ms) of their line break. At start the task imports every file already there, each resuming from its position in the
shards, so a restart catches up with what arrived meanwhile. The sources folder itself is watched too:
adding, changing or removing a source file starts, restarts or stops its folder task.
"""
from __future__ import annotations

import asyncio
import fnmatch
import logging
from pathlib import Path

import watchfiles

from grid.errors import ContextGridError, NotReady, ShardUnavailable, TooManyRequests
from grid.imports.follow import BACKOFF_S
from grid.imports.importer import Importer
from grid.imports.sources import Source

log = logging.getLogger(__name__)
SETTLE_MS = 300


async def _settled(path: Path, settle_s: float) -> bool:
    """Wait until ``path`` stops changing; False if it disappeared."""
    last = None
    while True:
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        stamp = (st.st_size, st.st_mtime_ns)
        if stamp == last:
            return True
        last = stamp
        await asyncio.sleep(settle_s)


async def watch_folder(importer: Importer, src: Source, stop: asyncio.Event) -> None:
    folder = src.folder(importer.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    settle = int(src.options.get("settle_ms", SETTLE_MS)) / 1000

    def wanted(p: Path) -> bool:
        return p.is_file() and fnmatch.fnmatch(p.name, src.pattern) and not p.name.startswith(".")

    tail = bool(src.options.get("tail")) and src.format in ("csv", "fixed", "jsonl", "auto")
    settling: dict[Path, asyncio.Task] = {}

    async def settle_then_take(p: Path) -> None:
        await take(p)
        settling.pop(p, None)

    async def take(p: Path, complete_lines: bool = False) -> None:
        if not complete_lines and not await _settled(p, settle):
            return
        failures = 0
        while True:
            try:
                await importer.import_file(src, p, complete_lines=complete_lines)
                return
            except (ShardUnavailable, TooManyRequests, NotReady) as exc:
                # passing (a shard recovering, moving or too busy to answer in time): the file would otherwise
                # wait for its next change, which a finished export never has; resume from the position, later
                prog = importer._progress(src.name)
                prog.state, prog.last_error = "retrying", f"{p.name}: {exc.detail}"
                log.warning("import %s of %s: %s; retrying", src.name, p.name, exc.detail)
                delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return  # stopping
                except asyncio.TimeoutError:
                    continue
            except ContextGridError as exc:  # recorded in the source's progress; the next change retries
                # a file the reader refuses fails before any batch is committed: say which, in GET /v1/imports
                prog = importer._progress(src.name)
                prog.state, prog.last_error = "failed", f"{p.name}: {exc.detail}"
                log.warning("import %s of %s failed: %s", src.name, p.name, exc.detail)
                return
            except Exception as exc:  # noqa: BLE001 - a watcher must outlive one bad file
                importer._progress(src.name).last_error = f"{type(exc).__name__}: {exc}"
                importer._progress(src.name).state = "failed"
                log.exception("import %s of %s failed", src.name, p.name)
                return

    async def changed(p: Path) -> None:
        if not tail:
            await take(p)
            return
        await take(p, complete_lines=True)
        if p not in settling:  # and, once the file rests, a last line written without a line break
            settling[p] = asyncio.create_task(settle_then_take(p))

    for p in sorted(folder.iterdir()):
        if wanted(p):
            await changed(p)
    try:
        async for changes in watchfiles.awatch(folder, stop_event=stop, debounce=50, step=20, recursive=False,
                                               force_polling=False):
            for _, name in sorted(changes, key=lambda c: c[1]):
                p = Path(name)
                if wanted(p):
                    await changed(p)
    finally:
        for task in settling.values():
            task.cancel()


class Watchers:
    """Folder tasks for the folder sources of one importer, kept in step with the sources folder."""

    def __init__(self, importer: Importer):
        self.importer = importer
        self.tasks: dict[str, tuple[str, asyncio.Task, asyncio.Event]] = {}
        self._stop = asyncio.Event()
        self._sources_task: asyncio.Task | None = None

    def sync(self) -> None:
        reg = self.importer.registry
        reg.reload()
        for name, (digest, task, stop) in list(self.tasks.items()):
            src = reg.sources.get(name)
            if src is None or src.digest != digest or task.done():
                stop.set()
                task.cancel()
                del self.tasks[name]
        for name, src in reg.sources.items():
            if src.kind == "folder" and name not in self.tasks:
                stop = asyncio.Event()
                self.tasks[name] = (src.digest, asyncio.create_task(watch_folder(self.importer, src, stop)), stop)
            elif src.kind == "postgres" and name not in self.tasks:  # a database source: follow its commits
                from grid.imports.follow import follow_database

                stop = asyncio.Event()
                self.tasks[name] = (src.digest, asyncio.create_task(follow_database(self.importer, src, stop)), stop)

    async def start(self) -> None:
        self.sync()
        folder = self.importer.registry.directory
        folder.mkdir(parents=True, exist_ok=True)

        async def follow():
            async for _ in watchfiles.awatch(folder, stop_event=self._stop, debounce=100, recursive=False):
                self.sync()

        self._sources_task = asyncio.create_task(follow())

    async def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        tasks = [t for _, t, _ in self.tasks.values()] + ([self._sources_task] if self._sources_task else [])
        for _, t, ev in self.tasks.values():
            ev.set()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
