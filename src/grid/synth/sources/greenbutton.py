"""Green Button files customers downloaded from the utility's portal: ``greenbutton/<usage point>.xml``.

A few service points per chunk (some with solar, so the file has a received-energy channel) get the last month
of the base's usage as an ESPI feed (:mod:`grid.imports.espi_export`, the exporter the gateway serves). The
portal names each meter by its own UsagePoint id, not the billing system's service point id, as real Data
Custodians do; the manifest keeps the registration (usage point -> service point) a Green Button source maps
with, and ``truth/greenbutton.csv`` the customer of each file.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np

from grid import timegrid
from grid.imports.espi_export import encode_usage
from grid.synth.sources.records import BaseChunk, Truth

FILES_PER_CHUNK = 4


def usage_point_id(service_point_id: str, seed: int) -> str:
    """The portal's id of a meter: stable per base, unrelated to the service point's number."""
    return "UP" + hashlib.sha256(f"{seed}:{service_point_id}".encode()).hexdigest()[:10].upper()


class GreenButtonFiles:
    """Writes ``greenbutton/*.xml`` and ``truth/greenbutton.csv``."""

    source = "greenbutton"

    def __init__(self, root: Path, manifest: dict, seed: int):
        self.dir = root / "greenbutton"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.truth = Truth(root, self.source)
        self.seed = seed
        self.month = manifest["months"][-1]
        self.timezone = manifest["timezone"]
        start, end = timegrid.month_bounds(self.month)
        cal = timegrid.calendar(start, end, int(manifest["interval_minutes"]), self.timezone)
        self.stamps = [dt.datetime.fromtimestamp(int(t), dt.timezone.utc).isoformat().replace("+00:00", "Z")
                       for t in cal.utc_start]
        self.usage_points: dict[str, str] = {}

    def add(self, chunk: BaseChunk, rng: np.random.Generator) -> None:
        active = {a["account_id"] for a in chunk.accounts if a["status"] == "active"}
        sps = [sp for sp in chunk.service_points if sp["account_id"] in active]
        solar = [sp for sp in sps if sp["has_solar"]]
        picked = {sp["service_point_id"]: sp for sp in
                  [solar[int(i)] for i in rng.permutation(len(solar))[:FILES_PER_CHUNK // 2]] +
                  [sps[int(i)] for i in rng.permutation(len(sps))[:FILES_PER_CHUNK]]}
        if not picked:
            return
        for u in chunk.usage(self.month):
            sp = picked.get(u["service_point_id"])
            if sp is None or len(self.usage_points) >= FILES_PER_CHUNK * (chunk.index + 1):
                continue
            up = usage_point_id(sp["service_point_id"], self.seed)
            exp = u["export_wh"] or [0] * len(u["import_wh"])
            items = [{"service_point_id": up, "start": s, "import_wh": int(i), "export_wh": int(e)}
                     for s, i, e in zip(self.stamps, u["import_wh"], exp)]
            data = {"customer_id": f"portal-{up}", "month": self.month, "resolution": "interval",
                    "timezone": self.timezone, "items": items}
            name = f"greenbutton/{up}.xml"
            (self.dir / f"{up}.xml").write_bytes(encode_usage(data))
            self.usage_points[up] = sp["service_point_id"]
            self.truth.record(name, None, up, sp["customer_id"])

    def close(self) -> dict:
        self.truth.close()
        return {"kind": "folder", "format": "espi", "folder": "greenbutton", "files": len(self.usage_points),
                "month": self.month, "usage_points": dict(sorted(self.usage_points.items())),
                "truth": f"truth/{self.source}.csv"}
