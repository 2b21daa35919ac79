"""Prometheus metrics of the gateway (text format at ``/metrics``).

Request counters are kept as requests pass. The grid's own state - each shard's status, customers, WAL
position and failure counts, jobs by kind and state, classification and the latest bill run - is read when
``/metrics`` is scraped (:meth:`Metrics.refresh`, one stats call per shard), so a scrape alone tells an
operator the truth, without a health call first.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

SHARD_STATUSES = ("ok", "stopped", "unavailable")
JOB_STATES = ("running", "done", "failed")


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("contextgrid_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=r)
        self.latency = Histogram("contextgrid_http_request_seconds", "HTTP request latency", ["method", "route"],
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5),
                                 registry=r)
        self.cache = Counter("contextgrid_near_cache_total", "Near-cache lookups", ["result"], registry=r)
        self.shard_customers = Gauge("contextgrid_shard_customers", "Customers per shard", ["shard"], registry=r)
        self.shard_status = Gauge("contextgrid_shard_status", "1 for the shard's current status (ok: serving; "
                                  "stopped: damaged data, see the shard's error; unavailable: not answering)",
                                  ["shard", "status"], registry=r)
        self.wal_seq = Gauge("contextgrid_shard_wal_seq", "Seq of the newest write in the shard's WAL", ["shard"],
                             registry=r)
        self.apply_failures = Gauge("contextgrid_shard_apply_failures", "Logged writes whose apply (or replay) "
                                    "failed since the shard started", ["shard"], registry=r)
        self.reclassify_failures = Gauge("contextgrid_shard_reclassify_failures", "Per-write re-classifications "
                                         "that failed since the shard started", ["shard"], registry=r)
        self.jobs = Gauge("contextgrid_jobs", "Jobs (bill runs, classification, scaling) by kind and state",
                          ["kind", "state"], registry=r)
        self.classifying = Gauge("contextgrid_classification_running", "1 while the base is being classified",
                                 registry=r)
        self.classify_failures = Gauge("contextgrid_classification_failures", "Whole-base classifications that "
                                       "failed since the gateway started", registry=r)
        self.bill_run = Gauge("contextgrid_last_bill_run_bills", "Bills of the latest finished bill run by outcome",
                              ["period", "outcome"], registry=r)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def shards(self, stats: list[dict]) -> None:
        """Set the per-shard gauges from ``Grid.astats()``."""
        for s in stats:
            shard = str(s["shard"])
            status = s.get("status", "ok")
            for name in SHARD_STATUSES:
                self.shard_status.labels(shard, name).set(1 if name == status else 0)
            if "customers" in s:
                self.shard_customers.labels(shard).set(s["customers"])
            if s.get("wal_seq") is not None:
                self.wal_seq.labels(shard).set(s["wal_seq"])
            for gauge, key in ((self.apply_failures, "apply_failures"),
                               (self.reclassify_failures, "classification_failures")):
                if key in s:
                    gauge.labels(shard).set(s[key])

    async def refresh(self, grid, jobs) -> None:
        """Read the grid's state into the gauges (at scrape time)."""
        self.shards(await grid.astats())
        counts: dict[tuple[str, str], int] = {}
        latest = None
        for job in jobs.list():
            counts[(job.kind, job.state)] = counts.get((job.kind, job.state), 0) + 1
            if job.kind == "bill-run" and job.state == "done" and (latest is None or
                                                                    job.finished_at > latest.finished_at):
                latest = job
        for kind in {k for k, _ in counts} | {"bill-run", "classify", "scale"}:
            for state in JOB_STATES:
                self.jobs.labels(kind, state).set(counts.get((kind, state), 0))
        self.classifying.set(1 if grid.classifying else 0)
        self.classify_failures.set(grid.classify_failures)
        if latest is not None:
            self.bill_run.clear()
            for outcome, n in latest.result["counts"].items():
                self.bill_run.labels(latest.result["period"], outcome).set(n)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
