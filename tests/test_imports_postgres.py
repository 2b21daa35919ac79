"""The PostgreSQL system of record: snapshot + logical decoding (test_decoding) on a real server, the polling
fallback, and exactly-once delivery across restarts (a crash before the slot is advanced re-delivers, the
shard's stored offset skips what it has, nothing is lost or doubled).
"""
from __future__ import annotations

import psycopg
import pytest

from grid.imports.readers.postgres import (PollingReader, PostgresReader, lsn_int, lsn_text, parse_change,
                                           parse_tuple)
from grid.synth import generate_base
from grid.synth.sources import generate_sources
from grid.synth.sources.billing import load_dump
from postgres_server import new_database, postgres  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def feeds(tmp_path_factory):
    base = tmp_path_factory.mktemp("pgbase")
    generate_base(base, 60, seed=3, first_month="2026-10", months=1, chunk_customers=30)
    generate_sources(base, meter_days=1)
    return base / "feeds"


@pytest.fixture
def db(postgres, feeds):
    dsn = new_database(postgres)
    with psycopg.connect(dsn, autocommit=True) as c:
        counts = load_dump(c, feeds)
    return dsn, counts


class Shard:
    """What a shard does with import rows: skip offsets it holds, apply the rest, keep the position."""

    def __init__(self, key: str):
        self.key, self.rows, self.offsets, self.applied = key, {}, {}, 0

    def write(self, batch) -> None:
        stream = batch.position["stream"]
        done = self.offsets.get(stream, -1)
        for off, row in zip(batch.row_offsets(), batch.rows):
            if off <= done:
                continue
            self.applied += 1
            if row["_op"] == "delete" and "status" not in row:
                self.rows.pop(row[self.key], None)
            else:
                self.rows[row[self.key]] = {k: v for k, v in row.items() if not k.startswith("_")}
        self.offsets[stream] = int(batch.position["offset"])
        self.position = batch.position


def _table(dsn: str, table: str, key: str) -> dict:
    reader = PollingReader(dsn, table, key=key, change_column="updated_at")
    out = {}
    for b in reader.batches():
        for r in b.rows:
            out[r[key]] = {k: v for k, v in r.items() if not k.startswith("_")}
    return out


def test_test_decoding_tuples_parse_quotes_nulls_arrays_and_quoted_names():
    row = parse_tuple("a[text]:'it''s, ok' b[integer]:42 c[text]:null \"Odd Name\"[boolean]:true "
                      "tags[text[]]:'{x,y}' d[numeric]:12.50 j[jsonb]:'{\"k\": [1, 2]}' "
                      "t[timestamp with time zone]:'2026-04-03 16:15:16+00'")
    assert row == {"a": "it's, ok", "b": 42, "c": None, "Odd Name": True, "tags": "{x,y}", "d": "12.50",
                   "j": '{"k":[1,2]}', "t": "2026-04-03T16:15:16+00:00"}
    assert parse_change("BEGIN 5") is None
    assert parse_change("table public.t: DELETE: (no-tuple-data)") == ("public.t", "delete", {})
    upd = parse_change("table public.t: UPDATE: old-key: a[text]:'1' b[integer]:1 new-tuple: a[text]:'1' b[integer]:2")
    assert upd == ("public.t", "update", {"a": "1", "b": 2})
    assert lsn_int("0/16B3748") == 0x16B3748 and lsn_text(lsn_int("1A/2B")) == "1A/2B"


def test_snapshot_then_insert_update_delete_stream_in_commit_order(db):
    dsn, counts = db
    r = PostgresReader(dsn, "accounts", "s_accounts", batch_rows=50, on_delete={"status": "C"})
    shard = Shard("account_number")
    snap = list(r.batches())
    assert [b.position["stream"] for b in snap] == ["pg:s_accounts:snapshot"] * len(snap)
    assert snap[-1].position["done"] and not any(b.position["done"] for b in snap[:-1])
    assert sum(len(b) for b in snap) == counts["accounts"] and len(snap) == counts["accounts"] // 50 + 1
    for b in snap:
        shard.write(b)
    assert shard.rows == _table(dsn, "accounts", "account_number")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("INSERT INTO accounts VALUES ('A09999999', 'C0000001', 'A', 'RES-TOU', 1, 'x', '2026-11-01', now())")
        c.execute("UPDATE accounts SET rate_code = 'RES-TIERED', updated_at = now() WHERE account_number = 'A00000003'")
        with c.transaction():  # two changes, one transaction: one offset, one batch
            c.execute("DELETE FROM accounts WHERE account_number = 'A00000004'")
            c.execute("UPDATE accounts SET bill_cycle = 9 WHERE account_number = 'A09999999'")
        c.execute("INSERT INTO payments VALUES ('PZ', 'A00000003', '2026-11-20', 500, 'web', now())")  # other table
    changes = list(r.batches(shard.position))
    rows = [row for b in changes for row in b.rows]
    assert [(x["_op"], x["account_number"]) for x in rows] == [
        ("insert", "A09999999"), ("update", "A00000003"), ("delete", "A00000004"), ("update", "A09999999")]
    offs = [o for b in changes for o in b.row_offsets()]
    assert offs[0] < offs[1] < offs[2] == offs[3]
    assert rows[2]["status"] == "C" and rows[2]["customer_number"]  # the deleted row's old values, closed
    for b in changes:
        shard.write(b)
        r.confirm(b.position)
    want = _table(dsn, "accounts", "account_number")
    assert shard.rows["A00000004"]["status"] == "C" and "A00000004" not in want
    del shard.rows["A00000004"]
    assert shard.rows == want
    assert list(r.batches(shard.position)) == []  # confirmed: nothing new
    r.drop_slot()
    r.close()


def test_restart_resumes_at_the_lsn_with_nothing_lost_or_doubled(db):
    """Crash mid-snapshot and again after a batch was durable but before the slot advanced."""
    dsn, counts = db
    shard = Shard("customer_number")
    r = PostgresReader(dsn, "customers", "s_customers", batch_rows=16)
    gen = r.batches()
    shard.write(next(gen))  # one snapshot batch durable, then the importer dies
    gen.close()
    r.close()
    with psycopg.connect(dsn, autocommit=True) as c:  # the source keeps changing meanwhile
        c.execute("UPDATE customers SET name = 'Renamed During Snapshot', updated_at = now() "
                  "WHERE customer_number = 'C0000060'")
        c.execute("INSERT INTO customers (customer_number, name, customer_type, updated_at) "
                  "VALUES ('C7000001', 'New Person', 'R', now())")
    r = PostgresReader(dsn, "customers", "s_customers", batch_rows=16)
    for b in r.batches(shard.position):
        shard.write(b)
        r.confirm(b.position)
    assert shard.rows == _table(dsn, "customers", "customer_number")
    applied_before, before = shard.applied, dict(shard.position)
    with psycopg.connect(dsn, autocommit=True) as c:
        for i in range(5):
            c.execute("INSERT INTO customers (customer_number, name, customer_type, updated_at) "
                      "VALUES (%s, %s, 'R', now())", (f"C800000{i}", f"Person {i}"))
    r.close()
    r = PostgresReader(dsn, "customers", "s_customers", batch_rows=16)
    for b in r.batches(shard.position):  # durable on the shard, but the process dies before confirm()
        shard.write(b)
    r.close()
    assert shard.applied == applied_before + 5
    r = PostgresReader(dsn, "customers", "s_customers", batch_rows=16)
    assert r.slot_lsn() < shard.offsets["pg:s_customers"]  # the server still holds those changes
    again = list(r.batches(before))  # resumed from a lagging position: the slot delivers them again...
    assert sum(len(b) for b in again) == 5
    for b in again:
        shard.write(b)  # ...and the shard's offsets skip every one
    assert shard.applied == applied_before + 5
    assert list(r.batches(shard.position)) == []  # from the shard's own position: nothing, and the slot catches up
    assert r.slot_lsn() == shard.offsets["pg:s_customers"]
    assert shard.rows == _table(dsn, "customers", "customer_number")
    r.drop_slot()
    r.close()


def test_polling_fallback_reads_changes_by_the_change_column_and_groups_equal_stamps(db):
    dsn, counts = db
    r = PollingReader(dsn, "bills", key="bill_id", batch_rows=7)
    shard = Shard("bill_id")
    batches = list(r.batches())
    assert sum(len(b) for b in batches) == counts["bills"] > 14
    for b in batches:
        offs = b.row_offsets()
        assert offs == sorted(offs) and b.position["offset"] == offs[-1]
        shard.write(b)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("UPDATE bills SET total_cents = total_cents + 1, updated_at = now() "
                  "WHERE bill_id IN (SELECT bill_id FROM bills ORDER BY bill_id LIMIT 9)")
    later = list(r.batches(shard.position))
    assert sum(len(b) for b in later) == 9 and len(later) == 1  # one stamp: one batch even past batch_rows
    for b in later:
        shard.write(b)
    assert shard.rows == _table(dsn, "bills", "bill_id")


def test_a_table_without_a_primary_key_is_refused_naming_the_option(db):
    from grid.errors import InvalidInput

    dsn, _ = db
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE loose (a text, b text)")
    with pytest.raises(InvalidInput) as exc:
        PostgresReader(dsn, "loose", "s_loose")
    assert exc.value.field == "options.key"
