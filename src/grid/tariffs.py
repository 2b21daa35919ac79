"""The tariff catalogue of a grid: one ``<id>.json`` per tariff under ``<data dir>/tariffs``.

User data lives in the data directory, never in the source tree: on first start the catalogue is seeded from
the tariffs shipped in ``rules/tariffs`` (:data:`SHIPPED`), and from then on ``PUT``/``DELETE /v1/tariffs``
change only the data directory's copy. Compiling (``kernels.tariffs.compile_tariff``) is pure; storing is here.

Compiled tariffs are cached per file version (mtime and size), so edits on disk are picked up and repeated
``get`` calls cost a ``stat``. ``put`` validates by compiling before it writes and writes with
:func:`grid.durable.durable_write`, so a reader never sees half a tariff and an acknowledged upload survives a
crash.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from grid.durable import durable_write, fsync_dir
from grid.errors import InvalidInput, NotFound, TariffError
from kernels.tariffs import TARIFF_ID, CompiledTariff, compile_tariff, dumps, loads_exact

SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "tariffs"  # read-only seed of a new catalogue
SEEDED_MARK = ".seeded"  # present once a catalogue was seeded: a deleted shipped tariff stays deleted


class TariffCatalogue:
    """The tariffs of ``directory`` (file stem = tariff id); see the module docstring.

    ``timezone`` is the grid's zone: a tariff that names none is billed in it (and stored saying so).
    """

    def __init__(self, directory: str | Path, timezone: str | None = None):
        self.directory = Path(directory)
        self.timezone = timezone
        self._cache: dict[str, tuple[tuple[int, int], CompiledTariff]] = {}
        self._lock = threading.Lock()

    def _path(self, tariff_id: str) -> Path:
        if not isinstance(tariff_id, str) or not TARIFF_ID.match(tariff_id):
            raise InvalidInput(f"tariff id must match {TARIFF_ID.pattern}, got {tariff_id!r}", field="tariff_id")
        return self.directory / f"{tariff_id}.json"

    def _compile(self, urdb: dict, tariff_id: str) -> CompiledTariff:
        return compile_checked(urdb, tariff_id, self.timezone)

    def ids(self) -> list[str]:
        """Every tariff id, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.json") if TARIFF_ID.match(p.stem))

    def _read(self, tariff_id: str) -> tuple[Path, bytes, tuple[int, int]]:
        path = self._path(tariff_id)
        try:
            st = path.stat()
            return path, path.read_bytes(), (st.st_mtime_ns, st.st_size)
        except FileNotFoundError as exc:
            raise NotFound(f"no tariff {tariff_id!r}", resource="tariff", id=tariff_id) from exc

    def get(self, tariff_id: str) -> CompiledTariff:
        """The compiled tariff ``tariff_id``; NotFound if the catalogue has none."""
        path = self._path(tariff_id)
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise NotFound(f"no tariff {tariff_id!r}", resource="tariff", id=tariff_id) from exc
        with self._lock:
            hit = self._cache.get(tariff_id)
        if hit is not None and hit[0] == (st.st_mtime_ns, st.st_size):
            return hit[1]
        _, raw, version = self._read(tariff_id)
        compiled = self._compile(loads_exact(raw, path.name), tariff_id)
        with self._lock:
            self._cache[tariff_id] = (version, compiled)
        return compiled

    def get_json(self, tariff_id: str) -> dict:
        """The stored URDB JSON of ``tariff_id`` (plain JSON types: each float's repr is the stored text)."""
        path, raw, _ = self._read(tariff_id)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise TariffError(f"{path.name} is not valid JSON: {exc}", field="$") from exc

    def put(self, tariff_id: str, urdb: dict) -> CompiledTariff:
        """Validate ``urdb`` (compile it), then store it as ``tariff_id`` durably; returns the compiled form.

        A tariff that names no time zone gets the catalogue's (the grid's), written into the stored
        ``contextgrid.timezone`` so that every process bills it the same way (see :func:`names_timezone`).
        """
        path = self._path(tariff_id)
        if not isinstance(urdb, dict):
            raise TariffError(f"a tariff must be a JSON object, got {type(urdb).__name__}", field="$")
        ext = urdb.get("contextgrid")
        if self.timezone is not None and not names_timezone(urdb) and (ext is None or isinstance(ext, dict)):
            urdb = {**urdb, "contextgrid": {**(ext or {}), "timezone": self.timezone}}
        compiled = self._compile(urdb, tariff_id)
        durable_write(path, dumps(urdb).encode("utf-8"))
        st = path.stat()
        with self._lock:
            self._cache[tariff_id] = ((st.st_mtime_ns, st.st_size), compiled)
        return compiled

    def delete(self, tariff_id: str) -> None:
        """Remove ``tariff_id`` (the caller checks first that no account bills under it)."""
        path = self._path(tariff_id)
        try:
            path.unlink()
        except FileNotFoundError as exc:
            raise NotFound(f"no tariff {tariff_id!r}", resource="tariff", id=tariff_id) from exc
        fsync_dir(self.directory)
        with self._lock:
            self._cache.pop(tariff_id, None)

    def __contains__(self, tariff_id: str) -> bool:
        try:
            return self._path(tariff_id).is_file()
        except InvalidInput:
            return False


BILLING_KEYS = ("energyratestructure", "demandratestructure", "flatdemandstructure", "fixedchargefirstmeter",
                "mincharge")


def compile_checked(urdb: Any, tariff_id: str, timezone: str | None = None) -> CompiledTariff:
    """``kernels.tariffs.compile_tariff`` plus what a catalogue or a what-if needs beyond a valid shape: the tariff
    must bill something (``{}`` compiles to a tariff of no lines), and URDB's list wrapper ``{"items": [...]}``
    is named as such. ``timezone`` is the zone for a tariff that names none (the grid's)."""
    if isinstance(urdb, dict) and isinstance(urdb.get("items"), list) and not any(k in urdb for k in BILLING_KEYS):
        raise TariffError('this is a URDB list response ({"items": [...]}); send one of its tariffs', field="items")
    t = compile_tariff(urdb, tariff_id=tariff_id) if timezone is None else \
        compile_tariff(urdb, tariff_id=tariff_id, default_timezone=timezone)
    charges = (t.n_periods, t.n_demand_periods, t.n_flat_periods, t.fixed_unit, t.min_unit, t.riders)
    if not any(charges):  # taxes alone tax nothing
        raise TariffError("the tariff bills nothing: it has no energy, demand, fixed, minimum or rider charge ("
                          + ", ".join(BILLING_KEYS) + ")", field="energyratestructure")
    return t


def names_timezone(urdb: dict) -> bool:
    """Whether a URDB tariff names its own time zone (``contextgrid.timezone``)."""
    ext = urdb.get("contextgrid") if isinstance(urdb, dict) else None
    return isinstance(ext, dict) and bool(ext.get("timezone"))


def seed(directory: str | Path, source: str | Path = SHIPPED) -> Path:
    """Create the catalogue at ``directory`` from the shipped tariffs the first time (never again: a tariff
    the operator deleted or changed stays so across restarts)."""
    directory = Path(directory)
    if (directory / SEEDED_MARK).exists():
        return directory
    if directory.is_dir() and any(directory.glob("*.json")):
        # an operator's own catalogue (``--tariffs DIR``): it is theirs as it is; shipped tariffs are never
        # added to it (a tariff they removed would come back)
        durable_write(directory / SEEDED_MARK, b"an existing catalogue, not seeded\n")
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    for f in sorted(Path(source).glob("*.json")):
        if not (directory / f.name).exists():
            durable_write(directory / f.name, f.read_bytes())
    durable_write(directory / SEEDED_MARK, f"seeded from {source}\n".encode())
    return directory


__all__ = ["SHIPPED", "TariffCatalogue", "compile_checked", "names_timezone", "seed"]
