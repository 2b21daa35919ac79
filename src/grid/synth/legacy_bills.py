"""Legacy bills: what the system of record billed, computed with the real bill kernel, with injected errors.

Every legacy bill is the kernel's bill (same lines, same cents) except a ``bill_error_rate`` share that carries
one injected error, recorded in ``truth/bill_errors.parquet`` so reconciliation can be scored for misses and
false alarms. An error is only injected where it changes the bill: no ``dropped_rider`` on a tariff without
riders, no ``wrong_tier_rate`` where the other tier costs the same, no ``wrong_rate_plan`` for a kind with one
plan; a bill with no applicable kind gets none. The total always equals the sum of the bill's lines.

Bills are computed in batches, all active accounts of a chunk on one tariff for one month in one kernel call;
lines stay in the kernel's ``(n_bills, n_lines)`` matrices until the Arrow table is built, so the cost per bill
is a few array operations, not a Python dict.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa

from grid.errors import InvalidInput
from grid.synth.plan import account_id
from grid.synth.rate_plans import RatePlans
from grid.synth.writer import LINE, SCHEMAS

ERROR_KINDS = ("wrong_tier_rate", "missing_fixed_charge", "rounding_slip", "dropped_rider", "wrong_rate_plan")
NANO_PER_CENT = 10**7  # Wh x micro-$/kWh = nano-dollars


def round_half_away(num: int, den: int) -> int:
    """``num / den`` rounded half away from zero (the project's half-up for money, negatives mirrored)."""
    q, r = divmod(abs(num), den)
    q += 2 * r >= den
    return q if num >= 0 else -q


@dataclass
class BillPiece:
    """Bills of one kernel batch (one tariff, one month) after injection; lines are the ``present`` cells."""

    rows: np.ndarray  # int64 (n,) chunk-local account rows
    month: int  # index into the base's months
    codes: tuple[str, ...]
    units: tuple[str, ...]
    quantity: np.ndarray  # int64 (n, L)
    amount: np.ndarray  # int64 (n, L) cents
    present: np.ndarray  # bool (n, L): the kernel's rule, a line with quantity == 0 and amount == 0 is omitted

    @classmethod
    def from_batch(cls, batch, rows: np.ndarray, month: int) -> "BillPiece":
        q = np.array(batch.quantity, dtype=np.int64)
        a = np.array(batch.amount_cents, dtype=np.int64)
        return cls(rows, month, tuple(batch.codes), tuple(batch.units), q, a, (q != 0) | (a != 0))

    def take(self, keep: np.ndarray) -> "BillPiece":
        return BillPiece(self.rows[keep], self.month, self.codes, self.units, self.quantity[keep],
                         self.amount[keep], self.present[keep])

    def same_lines(self, i: int, other: "BillPiece", k: int) -> bool:
        """Would reconciliation (lines by code, amounts in cents) see bill ``i`` and ``other``'s ``k`` as equal?

        Quantities are not compared: a wrong-plan bill that differs only there would be an error nobody can
        find, so it must not be recorded as one.
        """
        mine = sorted((c, int(a)) for c, a, p in zip(self.codes, self.amount[i], self.present[i]) if p)
        theirs = sorted((c, int(a)) for c, a, p in zip(other.codes, other.amount[k], other.present[k]) if p)
        return mine == theirs


def _energy_lines(codes: tuple[str, ...]) -> list[tuple[int, int, int]]:
    """(line index, period, tier) of every ``ENERGY_P{p}_T{t}`` line."""
    out = []
    for j, code in enumerate(codes):
        if code.startswith("ENERGY_P"):
            p, t = code[len("ENERGY_P"):].split("_T")
            out.append((j, int(p), int(t)))
    return out


class LegacyBiller:
    """Bills a chunk month by month and injects errors; holds the compiled tariffs it uses."""

    def __init__(self, rates: RatePlans, catalogue, error_rate: float, timezone: str,
                 bill_fn: Callable | None = None):
        if bill_fn is None:
            from kernels.billing import bill_intervals as bill_fn
        self.rates = rates
        self.catalogue = catalogue
        self.error_rate = float(error_rate)
        self.timezone = timezone
        self.bill_fn = bill_fn
        self._tariffs: dict[str, object] = {}

    @property
    def plans_billed(self) -> set[str]:
        """Every tariff a bill was computed under (account plans and wrong-plan targets)."""
        return set(self._tariffs)

    def tariff(self, plan_id: str):
        t = self._tariffs.get(plan_id)
        if t is None:
            t = self._tariffs[plan_id] = self.catalogue.get(plan_id)
            if t.timezone != self.timezone:
                raise InvalidInput(f"tariff {plan_id} schedules are in {t.timezone} but the base is generated in "
                                   f"{self.timezone}: usage and schedules would disagree", field="timezone")
        return t

    def _batch(self, plan_id: str, start: dt.date, end: dt.date, imp: np.ndarray, exp: np.ndarray | None):
        return self.bill_fn(self.tariff(plan_id), start, end, 60, imp, exp)

    def bill_month(self, plans: list[str], kinds: list[str], active: np.ndarray, month: int, start: dt.date,
                   end: dt.date, imp: np.ndarray, exp: np.ndarray, solar: np.ndarray,
                   rng: np.random.Generator) -> tuple[list[BillPiece], list[tuple[int, int, str]]]:
        """Bills of every active account for ``[start, end)``.

        ``plans``/``kinds``/``active``/``solar`` are per account row; ``imp``/``exp`` the month's usage matrices
        in the same row order. Returns the bill pieces and the injected errors as (row, month, kind).
        """
        pieces: list[BillPiece] = []
        errors: list[tuple[int, int, str]] = []
        plan_arr = np.array(plans, dtype=object)
        for plan_id in sorted(set(plan_arr[active].tolist())):
            rows = np.flatnonzero(active & (plan_arr == plan_id))
            e = exp[rows] if solar[rows].any() else None
            piece = BillPiece.from_batch(self._batch(plan_id, start, end, imp[rows], e), rows, month)
            inject = np.flatnonzero(rng.random(rows.size) < self.error_rate)
            swaps: dict[str, list[int]] = {}
            tariff = self.tariff(plan_id)
            for i in inject.tolist():
                alternatives = self.rates.alternatives(plan_id, kinds[rows[i]])
                kind = self._inject(piece, i, tariff, bool(alternatives), rng)
                if kind == "wrong_rate_plan":
                    swaps.setdefault(alternatives[int(rng.integers(len(alternatives)))], []).append(i)
                elif kind is not None:
                    errors.append((int(rows[i]), month, kind))
            replaced = np.zeros(rows.size, dtype=bool)
            for alt, idx in sorted(swaps.items()):
                idx_arr = np.array(idx, dtype=np.int64)
                sub_rows = rows[idx_arr]
                e = exp[sub_rows] if solar[sub_rows].any() else None
                other = BillPiece.from_batch(self._batch(alt, start, end, imp[sub_rows], e), sub_rows, month)
                differs = np.array([not piece.same_lines(i, other, k) for k, i in enumerate(idx)])
                for k, i in enumerate(idx):
                    if differs[k]:
                        replaced[i] = True
                        errors.append((int(rows[i]), month, "wrong_rate_plan"))
                    else:  # the other plan happens to bill the same: slip a cent instead
                        errors.append((int(rows[i]), month, self._rounding_slip(piece, i, rng)))
                if differs.any():
                    pieces.append(other.take(differs))
            pieces.append(piece.take(~replaced))
        return pieces, errors

    def _inject(self, piece: BillPiece, i: int, tariff, can_swap: bool, rng: np.random.Generator) -> str | None:
        present, amount, quantity = piece.present[i], piece.amount[i], piece.quantity[i]
        options: list[str] = []
        tier_moves = []
        for j, p, t in _energy_lines(piece.codes):
            if not present[j] or quantity[j] == 0:
                continue
            for t2 in range(int(tariff.energy_ntiers[p])):
                if t2 == t:
                    continue
                wrong = round_half_away(int(quantity[j]) * int(tariff.energy_price[p, t2]), NANO_PER_CENT)
                if wrong != amount[j]:
                    tier_moves.append((j, wrong))
        if tier_moves:
            options.append("wrong_tier_rate")
        fixed = [j for j, c in enumerate(piece.codes) if c == "FIXED" and present[j] and amount[j] != 0]
        if fixed:
            options.append("missing_fixed_charge")
        if present.any():
            options.append("rounding_slip")
        riders = [j for j, c in enumerate(piece.codes) if c.startswith("RIDER_") and present[j] and amount[j] != 0]
        if riders:
            options.append("dropped_rider")
        if can_swap:
            options.append("wrong_rate_plan")
        if not options:
            return None
        kind = options[int(rng.integers(len(options)))]
        if kind == "wrong_tier_rate":
            j, wrong = tier_moves[int(rng.integers(len(tier_moves)))]
            piece.amount[i, j] = wrong
        elif kind == "missing_fixed_charge":
            piece.present[i, fixed[0]] = False
        elif kind == "rounding_slip":
            return self._rounding_slip(piece, i, rng)
        elif kind == "dropped_rider":
            piece.present[i, riders[int(rng.integers(len(riders)))]] = False
        return kind

    @staticmethod
    def _rounding_slip(piece: BillPiece, i: int, rng: np.random.Generator) -> str:
        candidates = np.flatnonzero(piece.present[i] & (piece.amount[i] != 0))
        if candidates.size == 0:
            candidates = np.flatnonzero(piece.present[i])
        j = int(candidates[int(rng.integers(candidates.size))])
        piece.amount[i, j] += 1 if rng.random() < 0.5 else -1
        return "rounding_slip"


@dataclass
class BillRows:
    """Per-bill facts the payment step needs, in the table's row order."""

    row: np.ndarray  # int64 account row
    month: np.ndarray  # int64 month index
    total: np.ndarray  # int64 cents
    bill_id: list[str]


def bills_table(pieces: list[BillPiece], account_number: np.ndarray, account_customer_id: list[str],
                months: list[str], bounds: list[tuple[dt.date, dt.date]]) -> tuple[pa.Table, BillRows]:
    """The chunk's bills as one table, sorted by account then period."""
    tables, keys = [], []
    for piece in pieces:
        n = piece.rows.size
        if n == 0:
            continue
        counts = piece.present.sum(axis=1)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        _, line_idx = np.nonzero(piece.present)  # row-major: bill by bill, lines in the kernel's code order
        codes = np.array(piece.codes, dtype=object)[line_idx]
        units = np.array(piece.units, dtype=object)[line_idx]
        struct = pa.StructArray.from_arrays(
            [pa.array(codes, pa.string()), pa.array(piece.quantity[piece.present], pa.int64()),
             pa.array(units, pa.string()), pa.array(piece.amount[piece.present], pa.int64())], fields=list(LINE))
        lines = pa.ListArray.from_arrays(pa.array(offsets), struct)
        total = np.where(piece.present, piece.amount, 0).sum(axis=1)
        numbers = account_number[piece.rows]
        tag = months[piece.month].replace("-", "")
        start, end = bounds[piece.month]
        tables.append(pa.Table.from_arrays([
            pa.array([f"B{a:08d}-{tag}" for a in numbers.tolist()], pa.string()),
            pa.array([account_id(a) for a in numbers.tolist()], pa.string()),
            pa.array([account_customer_id[r] for r in piece.rows.tolist()], pa.string()),
            pa.array(np.full(n, (start - dt.date(1970, 1, 1)).days, dtype=np.int32), pa.date32()),
            pa.array(np.full(n, (end - dt.date(1970, 1, 1)).days, dtype=np.int32), pa.date32()),
            lines, pa.array(total, pa.int64()),
        ], schema=SCHEMAS["bills"]))
        keys.append(np.stack([piece.rows, np.full(n, piece.month, dtype=np.int64), total], axis=1))
    if not tables:
        empty = SCHEMAS["bills"].empty_table()
        return empty, BillRows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), [])
    tbl = pa.concat_tables(tables)
    k = np.concatenate(keys)
    order = np.lexsort((k[:, 1], k[:, 0]))
    tbl = tbl.take(pa.array(order))
    k = k[order]
    return tbl, BillRows(k[:, 0], k[:, 1], k[:, 2], tbl.column("bill_id").to_pylist())


def errors_table(errors: list[tuple[int, int, str]], account_number: np.ndarray, months: list[str],
                 bounds: list[tuple[dt.date, dt.date]]) -> pa.Table:
    errors = sorted(errors)
    numbers = [int(account_number[r]) for r, _, _ in errors]
    return pa.Table.from_arrays([
        pa.array([f"B{a:08d}-{months[m].replace('-', '')}" for a, (_, m, _) in zip(numbers, errors)], pa.string()),
        pa.array([account_id(a) for a in numbers], pa.string()),
        pa.array([bounds[m][0] for _, m, _ in errors], pa.date32()),
        pa.array([k for _, _, k in errors], pa.string()),
    ], schema=SCHEMAS["bill_errors"])

