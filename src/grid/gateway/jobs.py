"""Long-running work started over HTTP (scaling, bill runs): an id to poll, with progress."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from grid.errors import ContextGridError, NotFound

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
    def __init__(self):
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task] = set()

    def start(self, kind: str, work: Callable[[Job], Awaitable[Any]], job_id: str | None = None,
              params: dict | None = None) -> Job:
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
