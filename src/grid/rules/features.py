"""Account features: one row per account of a shard, the columns rules are evaluated on.

Records are Python dicts, so gathering their fields is a pass over the records; everything numeric (spend over
bills, peak demand and energy over the usage matrices) is computed column-wise. The columns and their meaning
are listed in :data:`grid.rules.columns.ACCOUNT_COLUMNS`; free-form attributes are added as ``attr.<name>``
columns (nested maps flattened with dots), typed by :func:`grid.rules.predicates.python_column`.
"""
from __future__ import annotations

import gc
import hashlib
import re
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grid.normalize import normalize_address, normalize_name
from grid.rules.columns import ATTR_PREFIX, SP_LOAD_PRIORITIES
from grid.rules.predicates import python_column
from kernels.aggregate import group_partials

__all__ = ["account_features", "FEATURE_SCHEMA", "key64", "site_key", "cached_owner_key", "gc_paused"]

SPEND_BILLS = 12  # "spend over the last 12 months" = the account's last 12 bills

FEATURE_SCHEMA = pa.schema([
    ("customer_id", pa.string()), ("account_id", pa.string()), ("customer_name", pa.string()),
    ("kind", pa.string()), ("segment", pa.string()), ("status", pa.string()), ("rate_plan_id", pa.string()),
    ("spend_12m_cents", pa.int64()), ("bills_12m", pa.int64()), ("peak_demand_w", pa.int64()),
    ("usage_wh", pa.int64()), ("n_service_points", pa.int64()), ("n_sites", pa.int64()),
    ("has_solar", pa.bool_()), ("sp_load_priority", pa.string()), ("programs", pa.list_(pa.string())),
    ("entity_id", pa.string()), ("root_entity_id", pa.string()), ("ownership_depth", pa.int64()),
    ("tax_id", pa.string()), ("tax_ids", pa.list_(pa.string())), ("owner_key", pa.string()),
    ("owner_keys", pa.list_(pa.string())), ("site_keys", pa.list_(pa.int64())),
])
_RANK = {level: i for i, level in enumerate(SP_LOAD_PRIORITIES)}
_WORDS = re.compile(r"[0-9a-z]+")


@contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while building many small dicts and lists (none of them cyclic):
    collections triggered by the allocations themselves otherwise cost some 40% of the build."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def key64(text: str) -> int:
    """A stable signed 64-bit digest of ``text`` (BLAKE2b), the same in every process and on every shard."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


def site_key(premise_address: str) -> int:
    """Identity of a site: its premise address with case, punctuation and spacing folded, as :func:`key64`.

    Premise addresses come from the utility's own service-point records, keyed once per premise, so folding
    case and punctuation is enough to see two meters at one site; the full mailing-address normalizer (some
    80 us an address) is kept for owner matching, where clerks type addresses every which way.
    """
    return key64(" ".join(_WORDS.findall(premise_address.casefold())))


@lru_cache(maxsize=1 << 20)
def cached_owner_key(name: str | None, address: str | None) -> str | None:
    """``normalized name | normalized address``, or None when either part is empty (an empty part must not link).

    Cached: chains share parents, and re-classifying after a write recomputes the same keys.
    """
    if not name or not address:
        return None
    n, a = normalize_name(name), normalize_address(address)
    if not n or not a:
        return None
    return f"{n}|{a}"


def _flatten(attrs: dict, prefix: str, out: dict) -> None:
    for k, v in attrs.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            _flatten(v, name + ".", out)
        else:
            out[name] = v


def _spend(bills: pa.Table, accounts: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """(sum of the last 12 bills' total_cents, number of bills summed) per account id."""
    if bills.num_rows == 0:
        return {}, {}
    t = bills.select(["account_id", "period_start", "bill_id", "total_cents"])
    if len(accounts) < 64:  # a few customers re-classified after a write: do not sort the whole shard
        t = t.filter(pc.is_in(t.column("account_id"), value_set=pa.array(accounts, pa.string())))
        if t.num_rows == 0:
            return {}, {}
    t = t.sort_by([("account_id", "ascending"), ("period_start", "descending"), ("bill_id", "descending")])
    enc = pc.dictionary_encode(t.column("account_id")).combine_chunks()
    group = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    n = group.shape[0]
    first = np.empty(n, dtype=bool)
    first[0] = True
    first[1:] = group[1:] != group[:-1]
    starts = np.flatnonzero(first)
    pos = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
    keep = pos < SPEND_BILLS
    cents = t.column("total_cents").to_numpy().astype(np.int64)
    parts = group_partials(group[keep], cents[keep])
    names = enc.dictionary.to_pylist()
    ids = [names[k] for k in parts.keys.tolist()]
    return dict(zip(ids, parts.sum.tolist())), dict(zip(ids, parts.count.tolist()))


def _usage(shard, sp_ids: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(peak W, import Wh) per service point over every month held; zeros where nothing is held."""
    peak = np.zeros(len(sp_ids), dtype=np.int64)
    energy = np.zeros(len(sp_ids), dtype=np.int64)
    by_store: dict[int, tuple[list[int], list[int]]] = {}
    for i, (sp, iv) in enumerate(sp_ids):
        store = shard.usage.get(iv)
        row = store.row_of.get(sp) if store is not None else None
        if row is not None:
            pos, rows = by_store.setdefault(iv, ([], []))
            pos.append(i)
            rows.append(row)
    for iv, (pos, rows) in by_store.items():
        store = shard.usage[iv]
        pos_a, rows_a = np.array(pos, dtype=np.int64), np.array(rows, dtype=np.int64)
        # Most rows wanted: reduce the matrix in place and pick rows after; a few (re-classifying after a write):
        # gather those rows first rather than reduce a whole shard's month.
        gather_first = rows_a.shape[0] * 8 < store.n_rows
        for block in store.months.values():
            if block.imp.shape[1] == 0:
                continue
            # A month matrix grows only when that month is written: service points added since (a PUT with a
            # new meter) have rows past its end, and no usage in that month.
            held = rows_a < block.imp.shape[0]
            p_a, r_a = (pos_a, rows_a) if held.all() else (pos_a[held], rows_a[held])
            if r_a.shape[0] == 0:
                continue
            if gather_first:
                imp = block.imp[r_a]
                row_max, row_sum = imp.max(axis=1), imp.sum(axis=1, dtype=np.int64)
            else:
                imp = block.imp[: min(store.n_rows, block.imp.shape[0])]
                row_max, row_sum = imp.max(axis=1)[r_a], imp.sum(axis=1, dtype=np.int64)[r_a]
            # W = Wh x 60 / interval minutes: an exact integer for 15, 30 and 60-minute intervals
            np.maximum.at(peak, p_a, row_max.astype(np.int64) * (60 // iv))
            np.add.at(energy, p_a, row_sum)
    return peak, energy


def account_features(shard, customer_ids: list[str] | None = None) -> pa.Table:
    """One row per account of ``shard`` (or of ``customer_ids`` only), in customer then account order.

    Parameters
    ----------
    shard : grid.shard.Shard
        Reads ``records`` (accounts, service points, ownership chain, attributes), ``bills.table`` (legacy
        bills: spend over the last 12) and ``usage`` (peak demand and energy over the months held).
    customer_ids : list of str, optional
        Only these customers (re-classification after a write); unknown ids are skipped.

    Returns
    -------
    pyarrow.Table
        The columns of :data:`FEATURE_SCHEMA` (see :data:`grid.rules.columns.ACCOUNT_COLUMNS`; ``site_keys``
        holds :func:`site_key` of each service point's premise, for distinct site counts across shards), then
        one ``attr.<name>`` column per free-form attribute present.
    """
    with gc_paused():
        return _features(shard, customer_ids)


def _features(shard, customer_ids: list[str] | None) -> pa.Table:
    ids = sorted(shard.records) if customer_ids is None else sorted(c for c in set(customer_ids)
                                                                    if c in shard.records)
    cols: dict[str, list] = {f.name: [] for f in FEATURE_SCHEMA}
    attr_rows: list[dict] = []
    sp_list: list[tuple[str, int]] = []
    sp_account: list[int] = []
    for cid in ids:
        rec = shard.records[cid]
        chain = rec.get("ownership") or []
        owner = chain[0] if chain else {}
        tax_ids = list(dict.fromkeys(e["tax_id"] for e in chain if e.get("tax_id")))
        owner_keys = [k for k in (cached_owner_key(e.get("legal_name"), e.get("mailing_address")) for e in chain)
                      if k is not None]
        attrs: dict = {}
        _flatten(rec.get("attributes") or {}, ATTR_PREFIX, attrs)
        for acc in rec.get("accounts") or []:
            row = len(cols["account_id"])
            sps = acc.get("service_points") or []
            ranks = [_RANK.get(sp.get("load_priority"), -1) for sp in sps]
            best = max(ranks, default=-1)
            sites = list(dict.fromkeys(site_key(sp.get("premise_address") or sp["service_point_id"]) for sp in sps))
            for sp in sps:
                sp_list.append((sp["service_point_id"], int(sp.get("interval_minutes", 60))))
                sp_account.append(row)
            cols["customer_id"].append(cid)
            cols["account_id"].append(acc["account_id"])
            cols["customer_name"].append(rec.get("name"))
            cols["kind"].append(rec.get("kind"))
            cols["segment"].append(rec.get("segment"))
            cols["status"].append(acc.get("status", "active"))
            cols["rate_plan_id"].append(acc.get("rate_plan_id"))
            cols["n_service_points"].append(len(sps))
            cols["n_sites"].append(len(sites))
            cols["site_keys"].append(sites)
            cols["has_solar"].append(any(bool(sp.get("has_solar")) for sp in sps))
            cols["sp_load_priority"].append(SP_LOAD_PRIORITIES[best] if best >= 0 else None)
            cols["programs"].append(list(dict.fromkeys(p["code"] for p in acc.get("programs") or [])))
            cols["entity_id"].append(owner.get("entity_id"))
            cols["root_entity_id"].append(chain[-1].get("entity_id") if chain else None)
            cols["ownership_depth"].append(len(chain) - 1 if chain else None)
            cols["tax_id"].append(owner.get("tax_id") or None)
            cols["tax_ids"].append(tax_ids)
            cols["owner_key"].append(cached_owner_key(owner.get("legal_name"), owner.get("mailing_address")))
            cols["owner_keys"].append(owner_keys)
            attr_rows.append(attrs)
    n = len(cols["account_id"])
    spend, n_bills = _spend(shard.bills.table, cols["account_id"])
    cols["spend_12m_cents"] = [spend.get(a, 0) for a in cols["account_id"]]
    cols["bills_12m"] = [n_bills.get(a, 0) for a in cols["account_id"]]
    sp_peak, sp_energy = _usage(shard, sp_list)
    peak = np.zeros(n, dtype=np.int64)
    energy = np.zeros(n, dtype=np.int64)
    if sp_list:
        owner_row = np.array(sp_account, dtype=np.int64)
        np.maximum.at(peak, owner_row, sp_peak)
        np.add.at(energy, owner_row, sp_energy)
    arrays = {f.name: (pa.array(cols[f.name], type=f.type) if f.name not in ("peak_demand_w", "usage_wh")
                       else None) for f in FEATURE_SCHEMA}
    arrays["peak_demand_w"] = pa.array(peak)
    arrays["usage_wh"] = pa.array(energy)
    names = sorted({k for a in attr_rows for k in a})
    for name in names:
        arrays[name] = python_column([a.get(name) for a in attr_rows])
    return pa.table(arrays)
