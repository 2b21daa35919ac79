"""``generate_sources``: the messy world beside a generated base, written chunk by chunk, with its truth.

Each writer reads the clean base one chunk at a time (:class:`~grid.synth.sources.records.BaseChunk`) and
draws its defects from its own random stream keyed by (seed, source, chunk), so adding a source or changing
how one source is spoilt leaves the others' bytes alone, and the same base and seed give the same files.
``manifest.json`` is written last: a feeds folder without one is incomplete.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from grid.base import read_entities, read_manifest
from grid.errors import InvalidInput
from grid.synth.plan import stream
from grid.synth.sources.billing import BillingDump
from grid.synth.sources.greenbutton import GreenButtonFiles
from grid.synth.sources.meters import MeterExport
from grid.synth.sources.records import BaseChunk
from grid.synth.sources.sheets import KeyAccounts
from grid.synth.sources.taxroll import TaxRoll
from grid.synth.sources.webforms import WebContacts

FORMAT = "contextgrid-feeds/1"
STREAM_SOURCES = 3  # after grid.synth.plan's STREAM_PLAN, STREAM_WEATHER, STREAM_CHUNK
SOURCES = ("billing", "meter_reads", "key_accounts", "tax_roll", "web_contacts", "greenbutton")


def generate_sources(base_dir: str | Path, out_dir: str | Path | None = None, seed: int | None = None, *,
                     meter_days: int = 7) -> dict:
    """Write the sources a utility really has for the base at ``base_dir``; return the feeds manifest.

    Parameters
    ----------
    base_dir : path
        A base written by :func:`grid.synth.generate_base`.
    out_dir : path, optional
        Where to write; ``base_dir/feeds`` by default. Replaced whole if it holds an earlier feeds manifest.
    seed : int, optional
        The defects' seed; the base's own seed by default.
    meter_days : int
        Days of interval reads in the meter export (the last days of the base's window).

    Returns
    -------
    dict
        The manifest also written to ``out_dir/manifest.json``: per source its files, row counts and truth.
    """
    base = Path(base_dir)
    manifest = read_manifest(base)
    if isinstance(meter_days, bool) or not isinstance(meter_days, int) or meter_days < 1:
        raise InvalidInput(f"meter_days must be an integer >= 1, got {meter_days!r}", field="meter_days")
    seed = int(manifest["seed"] if seed is None else seed)
    out = Path(out_dir) if out_dir is not None else base / "feeds"
    if (out / "manifest.json").exists():
        shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()):
        raise InvalidInput(f"{out} is not empty and holds no feeds manifest; refusing to overwrite it",
                           field="out_dir")
    out.mkdir(parents=True, exist_ok=True)
    writers = [BillingDump(out, manifest), MeterExport(out, manifest, meter_days), KeyAccounts(out, manifest),
               TaxRoll(out, manifest), WebContacts(out, manifest), GreenButtonFiles(out, manifest, seed)]
    entities = read_entities(base)
    for c in range(int(manifest["chunks"])):
        chunk = BaseChunk.read(base, c, entities)
        for w in writers:
            w.add(chunk, stream(seed, STREAM_SOURCES, SOURCES.index(w.source), c))
    feeds = {"format": FORMAT, "base_seed": manifest["seed"], "seed": seed, "customers": manifest["customers"],
             "timezone": manifest["timezone"], "sources": {w.source: w.close() for w in writers}}
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(feeds, indent=2) + "\n")
    tmp.replace(out / "manifest.json")
    return feeds
