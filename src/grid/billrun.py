"""Bill runs: bill every active account of a shard for one month, reconcile against the legacy bills.

Runs inside each shard (``grid.scatter``) on its live columnar usage, one ``bill_intervals`` call per
(rate plan, interval length), so the kernel streams each month matrix once; then one reconciliation over the
whole shard. An account with several service points is billed on their interval-by-interval sum (totalized
metering). Mismatching bills are held, the others released: the outcome is stored on the shard
(``shard.bill_status[period]``) so later reads show it, and the mismatches come back with their lines for the
run's report. Callers merge per-shard partials with :func:`merge_reports`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grid.errors import InvalidInput
from grid.partitions import partition_of
from grid.timegrid import month_bounds
from kernels.billing import BillBatch, bill_intervals
from kernels.reconcile import LINE_STATUSES, OUTCOMES, reconcile_lines
from grid.tariffs import SHIPPED, TariffCatalogue

DEFAULT_TARIFF_DIR = str(SHIPPED)  # read-only; the gateway passes its data dir's catalogue (tariffs: grid.tariffs)


@lru_cache(maxsize=8)
def catalogue(directory: str) -> TariffCatalogue:
    return TariffCatalogue(directory)


@dataclass
class Group:
    """Active accounts of one (rate plan, interval length) on a shard, in usage-row order."""

    plan: str
    interval_minutes: int
    customers: list[str]
    accounts: list[str]
    sp_lists: list[list[str]]


@dataclass
class BillingIndex:
    """What a bill run needs from the context records, built once per state of the shard."""

    key: tuple
    groups: list[Group]
    accounts: pa.Array  # every grouped account id, in bill order (groups concatenated)
    position: dict[str, int]  # account id -> bill index


def billing_index(shard, partitions: set[int] | None) -> BillingIndex:
    """Cached while the shard's records and partitions do not change (the bill run's only Python loop)."""
    key = (shard.change_seq, len(shard.records), shard.owned.tobytes(),
           None if partitions is None else tuple(sorted(partitions)))
    cached = getattr(shard, "_billing_index", None)
    if cached is not None and cached.key == key:
        return cached
    by: dict[tuple[str, int], Group] = {}
    for cid, rec in shard.records.items():
        if partitions is not None and partition_of(cid) not in partitions:
            continue
        for a in rec["accounts"]:
            sps = a["service_points"]
            if a.get("status", "active") != "active" or not sps:
                continue
            k = (a["rate_plan_id"], int(sps[0]["interval_minutes"]))
            g = by.get(k)
            if g is None:
                g = by[k] = Group(k[0], k[1], [], [], [])
            g.customers.append(cid)
            g.accounts.append(a["account_id"])
            g.sp_lists.append([sp["service_point_id"] for sp in sps])
    groups = [by[k] for k in sorted(by)]
    accounts = [a for g in groups for a in g.accounts]
    index = BillingIndex(key, groups, pa.array(accounts, pa.string()), {a: i for i, a in enumerate(accounts)})
    shard._billing_index = index
    return index


def usage_matrix(store, month: str, sp_lists: list[list[str]]) -> tuple[np.ndarray, np.ndarray | None]:
    """Import/export matrices, one row per account (service points summed interval by interval).

    When the rows are one ascending run (the usual case after a load) the import matrix is a view of the
    shard's month matrix, not a copy: the kernel streams the shard's memory directly.
    """
    flat = [store.row_of.get(sp, -1) for sps in sp_lists for sp in sps]
    rows = np.array(flat, dtype=np.int64)
    block = store.months.get(month)
    if block is None or (rows < 0).any():
        return None, None
    n = len(rows)
    if n and rows[-1] - rows[0] == n - 1 and (np.diff(rows) == 1).all() and (store.export_row[rows] < 0).all():
        imp, exp = block.imp[rows[0]:rows[0] + n], None
    else:
        imp, exp = store.matrix(month, rows)
    if len(flat) != len(sp_lists):  # totalize accounts with several service points
        starts = np.cumsum([0] + [len(s) for s in sp_lists[:-1]])
        imp = np.add.reduceat(imp.astype(np.int64), starts, axis=0)
        exp = None if exp is None else np.add.reduceat(exp.astype(np.int64), starts, axis=0)
    return imp, exp


def bill_accounts(shard, period: str, tariff_dir: str = DEFAULT_TARIFF_DIR,
                  partitions: set[int] | None = None) -> tuple[BillingIndex, list[BillBatch]]:
    """Compute this shard's bills for ``period``; bill i is account ``index.accounts[i]``."""
    start, end = month_bounds(period)
    cat = catalogue(tariff_dir)
    index = billing_index(shard, partitions)
    batches: list[BillBatch] = []
    for g in index.groups:
        store = shard.usage.get(g.interval_minutes)
        tariff = cat.get(g.plan)
        if store is not None and tariff.timezone != store.timezone:
            raise InvalidInput(f"tariff {g.plan} schedules in {tariff.timezone}, usage is held in {store.timezone}",
                               field="timezone")
        imp, exp = usage_matrix(store, period, g.sp_lists) if store is not None else (None, None)
        if imp is None:  # no usage held for this month: zero usage still bills fixed and minimum charges
            from grid.timegrid import calendar
            imp = np.zeros((len(g.accounts), calendar(start, end, g.interval_minutes, tariff.timezone).n), np.int32)
        batches.append(bill_intervals(tariff, start, end, g.interval_minutes, imp, exp))
    return index, batches


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


def _legacy_lines(shard, start: dt.date, index: BillingIndex, codes: dict[str, int]):
    t = shard.bills.table
    t = t.filter(pc.equal(t.column("period_start"), pa.scalar(start, pa.date32())))
    present = np.zeros(len(index.position), dtype=bool)
    legacy_total = {}
    if t.num_rows == 0:
        z = np.zeros(0, np.int64)
        return z, np.zeros(0, np.int32), z, present, legacy_total, {}
    pos = pc.index_in(t.column("account_id"), value_set=index.accounts)
    bill_of_row = pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    lines = t.column("lines").combine_chunks()
    parent = pc.list_parent_indices(lines).to_numpy()
    flat = pc.list_flatten(lines)
    enc = pc.dictionary_encode(flat.field("code")).combine_chunks() if isinstance(flat.field("code"), pa.ChunkedArray) \
        else pc.dictionary_encode(flat.field("code"))
    remap = np.array([codes.setdefault(c, len(codes)) for c in enc.dictionary.to_pylist()], dtype=np.int32)
    code_ids = remap[enc.indices.to_numpy(zero_copy_only=False)] if len(remap) else np.zeros(0, np.int32)
    amount = flat.field("amount_cents").to_numpy(zero_copy_only=False).astype(np.int64)
    bill = bill_of_row[parent]
    keep = bill >= 0  # legacy bills of accounts this run does not bill (closed, other partitions) are not ours
    ok_rows = bill_of_row >= 0
    present[bill_of_row[ok_rows]] = True
    return bill[keep], code_ids[keep], amount[keep], present, t, bill_of_row


def _legacy_of(t, bill_of_row, bills) -> tuple[dict, dict]:
    """Legacy totals and bill ids of the given bill indexes only (the mismatches)."""
    want = set(int(b) for b in bills)
    rows = [r for r in np.flatnonzero(np.isin(bill_of_row, list(want)))] if want else []
    totals = t.column("total_cents")
    ids = t.column("bill_id")
    return ({int(bill_of_row[r]): totals[int(r)].as_py() for r in rows},
            {int(bill_of_row[r]): ids[int(r)].as_py() for r in rows})


def run_period(shard, period: str, tariff_dir: str = DEFAULT_TARIFF_DIR, tolerance_cents: int = 0,
               partitions: list[int] | None = None) -> dict:
    """Bill and reconcile this shard's accounts for ``period``; store outcomes; return the partial report."""
    start, _ = month_bounds(period)
    index, batches = bill_accounts(shard, period, tariff_dir, set(partitions) if partitions is not None else None)
    n = len(index.position)
    codes: dict[str, int] = {}
    cb, cc, ca, _ = _computed_lines(batches, codes)
    lb, lc, la, present, legacy_table, bill_of_row = _legacy_lines(shard, start, index, codes)
    rec = reconcile_lines(cb, cc, ca, lb, lc, la, n, present, tolerance_cents)
    names = {v: k for k, v in codes.items()}
    totals = np.concatenate([b.total_cents for b in batches]) if batches else np.zeros(0, np.int64)
    runs = [st for st in shard.bill_status.get(period, []) if st.position is not index.position]
    shard.bill_status[period] = runs[-64:] + [BillStatus(index.position, rec.outcome.copy(), rec.diff_cents.copy())]
    mismatches = []
    bad = np.flatnonzero(rec.outcome != 0)
    line_starts = np.searchsorted(rec.line_bill, bad)
    line_ends = np.searchsorted(rec.line_bill, bad, side="right")
    legacy_total, legacy_ids = _legacy_of(legacy_table, bill_of_row, bad) if len(bad) else ({}, {})
    customers = [c for g in index.groups for c in g.customers] if len(bad) else []
    accounts = [a for g in index.groups for a in g.accounts] if len(bad) else []
    for b, s, e in zip(bad, line_starts, line_ends):
        cid, acct = customers[b], accounts[b]
        mismatches.append({
            "customer_id": cid, "account_id": acct, "period": period, "legacy_bill_id": legacy_ids.get(int(b)),
            "outcome": OUTCOMES[rec.outcome[b]], "diff_cents": int(rec.diff_cents[b]),
            "computed_total_cents": int(totals[b]), "legacy_total_cents": legacy_total.get(int(b)),
            "lines": [{"code": names[int(rec.line_code[k])], "computed_cents": int(rec.line_computed[k]),
                       "legacy_cents": int(rec.line_legacy[k]), "status": LINE_STATUSES[rec.line_status[k]]}
                      for k in range(s, e) if rec.line_status[k] != 0],
        })
    counts = rec.counts()
    return {"period": period, "bills": n, "counts": counts, "diff_cents": int(rec.diff_cents.sum()),
            "billed_cents": int(totals.sum()), "held": int(len(bad)), "released": int(n - len(bad)),
            "mismatches": mismatches}


@dataclass
class BillStatus:
    """Outcomes of one run batch on a shard: bill i is the account at ``position``'s index i."""

    position: dict[str, int]
    outcome: np.ndarray
    diff_cents: np.ndarray


def status_of(shard, period: str, account_id: str) -> str | None:
    """The latest run's outcome for an account's bill (held unless ``match``); None if never run."""
    for st in reversed(shard.bill_status.get(period, [])):
        i = st.position.get(account_id)
        if i is not None:
            return OUTCOMES[st.outcome[i]]
    return None


def merge_reports(parts: list[dict]) -> dict:
    """One report from per-shard (or per-batch) partials."""
    out = {"period": parts[0]["period"] if parts else None, "bills": 0, "counts": dict.fromkeys(OUTCOMES, 0),
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
    the same kernel as the bill run)."""
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
            store = shard.usage.get(int(sps[0]["interval_minutes"]))
            imp, exp = usage_matrix(store, period, [[sp["service_point_id"] for sp in sps]]) if store else (None, None)
            if imp is not None:
                batch = bill_intervals(cat.get(a["rate_plan_id"]), start, end, int(sps[0]["interval_minutes"]), imp, exp)
                item["computed"] = batch.bill(0)
                item["comparison"] = compare(item["computed"], item["legacy"])
        outcome = status_of(shard, period, a["account_id"])
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
