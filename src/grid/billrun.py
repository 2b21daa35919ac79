"""Bill runs: bill every active account of a shard for one month, reconcile against the legacy bills.

Runs inside each shard (``ShardServer.bill_run``) on its live columnar usage, one ``bill_intervals`` call per
(rate plan, interval length), so the kernel streams each month matrix once; then one reconciliation over the
whole shard. An account with several service points is billed on their interval-by-interval sum (totalized
metering). Accounts that cannot be billed (rate plan not in the catalogue, usage not held) get their own
outcome instead of failing the run. Mismatching bills are held, the others released: the outcomes are a
``bill_outcomes`` write on the shard (logged, snapshotted: ``grid.bill_outcomes``) so later reads show them, and
the mismatches come back with their lines for the run's report. Callers merge per-shard partials with
:func:`merge_reports`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grid.bill_outcomes import NO_TARIFF, NO_USAGE, RUN_OUTCOMES, to_ipc
from grid.billing_index import BillingIndex, billing_index, group_rows, has_usage, indexes, usage_matrix
from grid.errors import NotFound
from grid.tariffs import SHIPPED, TariffCatalogue
from grid.timegrid import month_bounds
from kernels.billing import BillBatch, bill_intervals
from kernels.reconcile import LINE_STATUSES, OUTCOMES, reconcile_lines

DEFAULT_TARIFF_DIR = str(SHIPPED)  # read-only; the gateway passes its data dir's catalogue (tariffs: grid.tariffs)


@lru_cache(maxsize=8)
def catalogue(directory: str) -> TariffCatalogue:
    return TariffCatalogue(directory)


def _tariff(cat, plan: str, timezone: str):
    """The compiled tariff of ``plan``, or None when the catalogue has none that can bill this usage."""
    try:
        tariff = cat.get(plan)
    except NotFound:
        return None  # deleted or renamed after accounts were put on it: those accounts are `no_tariff`
    return tariff if tariff.timezone == timezone else None


def bill_accounts(shard, period: str, tariff_dir: str = DEFAULT_TARIFF_DIR, chunk: tuple[int, int] | None = None
                  ) -> tuple[BillingIndex, int, np.ndarray, np.ndarray, list[BillBatch]]:
    """Compute this shard's bills for ``period``.

    Returns ``(index, lo, outcome, billed, batches)``: ``index`` is the shard's (or chunk ``(i, k)`` of it,
    starting at position ``lo`` of the whole); ``outcome`` (int8, one per account of ``index``) is
    ``NO_TARIFF`` or ``NO_USAGE`` for accounts that could not be billed and 0 otherwise; ``billed`` are the
    positions (into ``index``) of the billed accounts, in the order of the bills of ``batches``.
    """
    start, end = month_bounds(period)
    cat = catalogue(tariff_dir)
    index, lo = billing_index(shard, chunk)
    outcome = np.zeros(index.n, dtype=np.int8)
    billed: list[np.ndarray] = []
    batches: list[BillBatch] = []
    offset = 0
    for g in index.groups:
        pos = np.arange(offset, offset + len(g.accounts), dtype=np.int64)
        offset += len(g.accounts)
        store = shard.usage.get(g.interval_minutes)
        tariff = _tariff(cat, g.plan, store.timezone if store is not None else shard.timezone)
        if tariff is None:
            outcome[pos] = NO_TARIFF
            continue
        rows = group_rows(store, g) if store is not None else None
        has = has_usage(store, period, g.sp_lists, rows)
        outcome[pos[~has]] = NO_USAGE
        if not has.any():
            continue
        if has.all():
            imp, exp = usage_matrix(store, period, g.sp_lists, rows)
        else:
            imp, exp = usage_matrix(store, period, [s for s, h in zip(g.sp_lists, has) if h])
        batches.append(bill_intervals(tariff, start, end, g.interval_minutes, imp, exp))
        billed.append(pos[has])
    return index, lo, outcome, (np.concatenate(billed) if billed else np.zeros(0, np.int64)), batches


def _computed_lines(batches, codes: dict[str, int]):
    bill_idx, code_idx, amounts, quantities = [], [], [], []
    offset = 0
    for b in batches:
        ids = np.array([codes.setdefault(c, len(codes)) for c in b.codes], dtype=np.int32)
        mask = (b.quantity != 0) | (b.amount_cents != 0)
        i, j = np.nonzero(mask)
        bill_idx.append(i + offset)
        code_idx.append(ids[j])
        amounts.append(b.amount_cents[i, j])
        quantities.append(b.quantity[i, j])
        offset += b.n_bills
    cat = (lambda xs, t: np.concatenate(xs).astype(t) if xs else np.zeros(0, t))
    return cat(bill_idx, np.int64), cat(code_idx, np.int32), cat(amounts, np.int64), cat(quantities, np.int64)


@dataclass
class LegacyLines:
    """A period's legacy bills against the shard's full billing index (bill = account position)."""

    table: pa.Table | None  # the period's legacy bills (None: the legacy system has not billed it)
    bill_of_row: np.ndarray  # int64 per row of ``table``: account position, -1 if not in the index
    bill: np.ndarray  # int64 per line: account position
    code_names: list[str]
    code: np.ndarray  # int32 per line, into ``code_names``
    amount: np.ndarray  # int64 per line, cents


def _legacy_full(shard, start: dt.date, full: BillingIndex) -> LegacyLines:
    t = shard.bills.table
    t = t.filter(pc.equal(t.column("period_start"), pa.scalar(start, pa.date32())))
    z = np.zeros(0, np.int64)
    if t.num_rows == 0:  # a month not billed yet by the legacy system: every bill is `missing_bill`
        return LegacyLines(None, z, z, [], np.zeros(0, np.int32), z)
    pos = pc.index_in(t.column("account_id"), value_set=full.accounts)
    bill_of_row = pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    lines = t.column("lines").combine_chunks()
    parent = pc.list_parent_indices(lines).to_numpy()
    flat = pc.list_flatten(lines)
    enc = pc.dictionary_encode(flat.field("code")).combine_chunks() if isinstance(flat.field("code"), pa.ChunkedArray) \
        else pc.dictionary_encode(flat.field("code"))
    bill = bill_of_row[parent]
    keep = bill >= 0  # legacy bills of accounts this run does not bill (closed, moved away) are not ours
    return LegacyLines(t, bill_of_row, bill[keep], enc.dictionary.to_pylist(),
                       enc.indices.to_numpy(zero_copy_only=False).astype(np.int32)[keep],
                       flat.field("amount_cents").to_numpy(zero_copy_only=False).astype(np.int64)[keep])


def _legacy_lines(shard, start: dt.date, index: BillingIndex, lo: int, codes: dict[str, int]):
    """Legacy bill lines of ``start``'s period for the accounts of ``index`` (bill = position in ``index``,
    which starts at position ``lo`` of the full index); the period's lines are cached per bills table."""
    cached = indexes(shard)
    key = (start, id(shard.bills.table), shard.bills.table.num_rows)
    full = cached.legacy.get(key)
    if full is None:
        cached.legacy = {k: v for k, v in cached.legacy.items() if k[1:] == key[1:]}
        full = cached.legacy[key] = _legacy_full(shard, start, cached.full)
    hi = lo + index.n
    sel = (full.bill >= lo) & (full.bill < hi)
    remap = np.array([codes.setdefault(c, len(codes)) for c in full.code_names], dtype=np.int32)
    code_ids = remap[full.code[sel]] if len(remap) else np.zeros(0, np.int32)
    rows = (full.bill_of_row >= lo) & (full.bill_of_row < hi)
    bill_of_row = np.where(rows, full.bill_of_row - lo, -1)
    present = np.zeros(index.n, dtype=bool)
    present[bill_of_row[rows]] = True
    return full.bill[sel] - lo, code_ids, full.amount[sel], present, full.table, bill_of_row


def _legacy_of(t, bill_of_row, positions) -> tuple[dict, dict]:
    """Legacy totals and bill ids of the given account positions only (the held bills)."""
    if t is None or not len(positions):
        return {}, {}
    rows = np.flatnonzero(np.isin(bill_of_row, np.asarray(positions, dtype=np.int64)))
    totals = t.column("total_cents")
    ids = t.column("bill_id")
    return ({int(bill_of_row[r]): totals[int(r)].as_py() for r in rows},
            {int(bill_of_row[r]): ids[int(r)].as_py() for r in rows})


def compute_period(shard, period: str, tariff_dir: str = DEFAULT_TARIFF_DIR, tolerance_cents: int = 0,
                   chunk: tuple[int, int] | None = None) -> tuple[dict, dict]:
    """Bill and reconcile this shard's accounts for ``period``, changing nothing.

    Every active account with a service point gets one outcome of :data:`RUN_OUTCOMES`: the reconciliation's
    (``match``, ``amount_mismatch``, ``missing_line``, ``missing_bill``) when it was billed, ``no_tariff`` when
    its rate plan is not in the catalogue, ``no_usage`` when the month's usage is not held. Only ``match`` is
    released.

    Returns
    -------
    (report, outcomes)
        The shard's partial report (merge with :func:`merge_reports`), and the body of the ``bill_outcomes``
        write that records every account's outcome on the shard (see ``grid.bill_outcomes``).
    """
    start, _ = month_bounds(period)
    index, lo, outcome, billed, batches = bill_accounts(shard, period, tariff_dir, chunk)
    n, nb = index.n, len(billed)
    codes: dict[str, int] = {}
    cb, cc, ca, _ = _computed_lines(batches, codes)
    lb, lc, la, present, legacy_table, bill_of_row = _legacy_lines(shard, start, index, lo, codes)
    if nb != n:  # legacy lines are by account position; the kernel wants billed-bill indexes
        to_billed = np.full(n, -1, dtype=np.int64)
        to_billed[billed] = np.arange(nb)
        lb = to_billed[lb]
        keep = lb >= 0
        lb, lc, la, present_b = lb[keep], lc[keep], la[keep], present[billed]
    else:
        present_b = present
    rec = reconcile_lines(cb, cc, ca, lb, lc, la, nb, present_b, tolerance_cents)
    outcome[billed] = rec.outcome
    diff = np.zeros(n, np.int64)
    diff[billed] = rec.diff_cents
    totals = np.zeros(n, np.int64)
    if batches:
        totals[billed] = np.concatenate([b.total_cents for b in batches])
    names = {v: k for k, v in codes.items()}
    bad = np.flatnonzero(outcome != 0)
    line_of = np.full(n, -1, dtype=np.int64)  # account position -> billed bill index
    line_of[billed] = np.arange(nb)
    legacy_total, legacy_ids = _legacy_of(legacy_table, bill_of_row, bad)
    customers = [c for g in index.groups for c in g.customers] if len(bad) else []
    accounts = [a for g in index.groups for a in g.accounts] if len(bad) else []
    mismatches = []
    for b in bad.tolist():
        k = int(line_of[b])
        lines = []
        if k >= 0:
            s, e = np.searchsorted(rec.line_bill, k), np.searchsorted(rec.line_bill, k, side="right")
            lines = [{"code": names[int(rec.line_code[j])], "computed_cents": int(rec.line_computed[j]),
                      "legacy_cents": int(rec.line_legacy[j]), "status": LINE_STATUSES[rec.line_status[j]]}
                     for j in range(s, e) if rec.line_status[j] != 0]
        mismatches.append({
            "customer_id": customers[b], "account_id": accounts[b], "period": period,
            "legacy_bill_id": legacy_ids.get(b), "outcome": RUN_OUTCOMES[outcome[b]], "diff_cents": int(diff[b]),
            "computed_total_cents": int(totals[b]) if k >= 0 else None,
            "legacy_total_cents": legacy_total.get(b), "lines": lines})
    counts = np.bincount(outcome.astype(np.intp), minlength=len(RUN_OUTCOMES))
    report = {"period": period, "bills": n, "counts": {name: int(c) for name, c in zip(RUN_OUTCOMES, counts)},
              "diff_cents": int(diff.sum()), "billed_cents": int(totals.sum()), "held": int(len(bad)),
              "released": int(n - len(bad)), "mismatches": mismatches}
    table = pa.table({"account_id": index.accounts, "outcome": pa.array(outcome), "diff_cents": pa.array(diff)})
    return report, {"period": period, "chunk": list(chunk) if chunk is not None else None,
                    "table": to_ipc(table)}


def merge_reports(parts: list[dict]) -> dict:
    """One report from per-shard (or per-batch) partials."""
    out = {"period": parts[0]["period"] if parts else None, "bills": 0, "counts": dict.fromkeys(RUN_OUTCOMES, 0),
           "diff_cents": 0, "billed_cents": 0, "held": 0, "released": 0, "mismatches": []}
    for p in parts:
        for k in ("bills", "diff_cents", "billed_cents", "held", "released"):
            out[k] += p[k]
        for k, v in p["counts"].items():
            out["counts"][k] = out["counts"].get(k, 0) + v
        out["mismatches"].extend(p["mismatches"])
    out["mismatches"].sort(key=lambda m: (m["customer_id"], m["account_id"]))
    return out


def report_lines(report: dict) -> list[dict]:
    """The report as one flat row per differing line (for CSV and Parquet)."""
    rows = []
    for m in report["mismatches"]:
        for line in m["lines"] or [{"code": None, "computed_cents": None, "legacy_cents": None, "status": None}]:
            rows.append({"customer_id": m["customer_id"], "account_id": m["account_id"], "period": m["period"],
                         "legacy_bill_id": m["legacy_bill_id"], "outcome": m["outcome"],
                         "bill_diff_cents": m["diff_cents"], "computed_total_cents": m["computed_total_cents"],
                         "legacy_total_cents": m["legacy_total_cents"], "code": line["code"],
                         "computed_cents": line["computed_cents"], "legacy_cents": line["legacy_cents"],
                         "line_status": line["status"]})
    return rows


def customer_period(shard, customer_id: str, period: str, tariff_dir: str = DEFAULT_TARIFF_DIR) -> list[dict]:
    """Computed bill beside the legacy bill and their comparison, per account of one customer (what-if path:
    the same kernel as the bill run). An account that cannot be billed (closed, no service point, no tariff,
    no usage for the month) has ``computed`` None."""
    rec = shard.record(customer_id)
    start, end = month_bounds(period)
    cat = catalogue(tariff_dir)
    legacy = {b["account_id"]: b for b in shard.customer_bills(customer_id, period)}
    out = []
    for a in rec["accounts"]:
        sps = a["service_points"]
        item = {"account_id": a["account_id"], "period": period, "rate_plan_id": a["rate_plan_id"],
                "legacy": legacy.get(a["account_id"]), "computed": None, "comparison": None,
                "status": None}
        if sps and a.get("status", "active") == "active":
            iv = int(sps[0].get("interval_minutes", 60))
            store = shard.usage.get(iv)
            tariff = _tariff(cat, a["rate_plan_id"], store.timezone if store is not None else shard.timezone)
            sp_lists = [[sp["service_point_id"] for sp in sps]]
            if tariff is not None and has_usage(store, period, sp_lists)[0]:
                imp, exp = usage_matrix(store, period, sp_lists)
                batch = bill_intervals(tariff, start, end, iv, imp, exp)
                item["computed"] = batch.bill(0)
                item["comparison"] = compare(item["computed"], item["legacy"])
        outcome = shard.bill_outcomes.status(period, a["account_id"])
        item["status"] = None if outcome is None else ("released" if outcome == "match" else "held")
        out.append(item)
    return out


def compare(computed: dict, legacy: dict | None, tolerance_cents: int = 0) -> dict:
    """One bill's comparison, by the reconciliation kernel."""
    codes: dict[str, int] = {}
    cc = np.array([codes.setdefault(l["code"], len(codes)) for l in computed["lines"]], np.int32)
    ca = np.array([l["amount_cents"] for l in computed["lines"]], np.int64)
    ll = legacy["lines"] if legacy else []
    lc = np.array([codes.setdefault(l["code"], len(codes)) for l in ll], np.int32)
    la = np.array([l["amount_cents"] for l in ll], np.int64)
    rec = reconcile_lines(np.zeros(len(cc), np.int64), cc, ca, np.zeros(len(lc), np.int64), lc, la, 1,
                          np.array([legacy is not None]), tolerance_cents)
    names = {v: k for k, v in codes.items()}
    return {"outcome": OUTCOMES[rec.outcome[0]], "diff_cents": int(rec.diff_cents[0]),
            "lines": [{"code": names[int(rec.line_code[k])], "computed_cents": int(rec.line_computed[k]),
                       "legacy_cents": int(rec.line_legacy[k]), "status": LINE_STATUSES[rec.line_status[k]]}
                      for k in range(len(rec.line_code))]}
