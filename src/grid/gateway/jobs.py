"""Long-running work started over HTTP (scaling, bill runs): an id to poll, with progress."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from grid.errors import Conflict, ContextGridError, NotFound

log = logging.getLogger(__name__)


@dataclass
class Job:
    job_id: str
    kind: str
    state: str = "running"  # running | done | failed
    done: int = 0
    total: int = 0
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    result: Any = None
    error: dict | None = None
    params: dict = field(default_factory=dict)  # what the job was started with (a bill run's period...)

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def view(self) -> dict:
        return {"job_id": self.job_id, "kind": self.kind, "state": self.state,
                "progress": {"done": self.done, "total": self.total,
                             "fraction": round(self.done / self.total, 4) if self.total else None},
                "started_at": self.started_at, "finished_at": self.finished_at, "params": self.params,
                "result": self.result, "error": self.error}


class Jobs:
    def __init__(self, keep_s: float = 3600.0):
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task] = set()
        self.keep_s = keep_s  # h3: a finished job is readable this long, then forgotten (memory stays bounded)

    def _evict(self) -> None:
        cutoff = time.time() - self.keep_s
        for jid in [j.job_id for j in self._jobs.values() if j.finished_at is not None and j.finished_at < cutoff]:
            del self._jobs[jid]

    def start(self, kind: str, work: Callable[[Job], Awaitable[Any]], job_id: str | None = None,
              params: dict | None = None, limit: int | None = None) -> Job:
        """Run ``work`` as a job; with ``limit``, 409 while that many jobs of ``kind`` are running (h3)."""
        self._evict()
        running = sum(j.state == "running" for j in self._jobs.values() if j.kind == kind)
        if limit is not None and running >= limit:
            raise Conflict(f"{running} {kind} job(s) already running (at most {limit}); retry when it is done",
                           field="body")
        job = Job(job_id or uuid.uuid4().hex[:16], kind, params=dict(params or {}))
        self._jobs[job.job_id] = job

        async def run():
            try:
                job.result = await work(job)
                job.state = "done"
            except ContextGridError as exc:
                job.state, job.error = "failed", exc.problem()
            except Exception as exc:  # noqa: BLE001 - reported on the job, logged with its traceback
                log.exception("job %s failed", job.job_id)
                job.state, job.error = "failed", {"title": "Internal error", "detail": type(exc).__name__}
            job.finished_at = time.time()

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def list(self, kind: str | None = None) -> list[Job]:
        """Every job (of ``kind``), oldest first."""
        return [j for j in self._jobs.values() if kind is None or j.kind == kind]

    def get(self, job_id: str, kind: str | None = None) -> Job:
        self._evict()
        job = self._jobs.get(job_id)
        if job is None or (kind is not None and job.kind != kind):
            raise NotFound(f"no job {job_id!r}", field="id")
        return job

    async def cancel_all(self, timeout: float) -> None:
        """Stop jobs still running (at shutdown), waiting at most ``timeout`` seconds."""
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def wait_all(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
