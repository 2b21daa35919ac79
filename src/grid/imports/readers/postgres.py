"""A system-of-record table in PostgreSQL: a consistent snapshot, then every committed change, by logical decoding.

How it reads (what Debezium does, through SQL since psycopg 3 speaks no replication protocol):

1. **Slot first.** A logical replication slot (``test_decoding``) is created; from its consistent point on, the
   server keeps every committed change for it until the slot is advanced.
2. **Snapshot.** The table is read in ``REPEATABLE READ``, in primary-key order, in batches (keyset paging, so
   a restart continues after the last key instead of from the top). A change committed between the slot's
   point and the snapshot is in both; replaying it is harmless (the same content: ``unchanged``), while the
   other order could lose it.
3. **Stream.** ``pg_logical_slot_peek_changes`` returns whole committed transactions after the slot's
   confirmed point; they are yielded as batches whose rows carry their transaction's commit LSN as offset.
   *Peek* does not consume: :meth:`confirm` advances the slot (``pg_replication_slot_advance``) only after the
   importer has made the batch durable on every shard, like Debezium's committed offsets. A crash in between
   re-delivers the transactions; the shards skip offsets they hold, so nothing is lost or doubled.

Positions (see :mod:`grid.imports.readers`): the snapshot is stream ``pg:<slot>:snapshot`` (offset = row
number, ``key`` = the last primary key, ``lsn`` = the slot's point, ``done``), the changes stream ``pg:<slot>``
(offset = commit LSN as an integer, ``lsn`` its text form). Rows are the table's columns (dates and times as
ISO text, ``jsonb`` as compact JSON text, numerics as text) plus ``_op`` (``snapshot``, ``insert``,
``update``, ``delete``), ``_table`` and ``_lsn``. A deleted row carries its old values (the tables have
``REPLICA IDENTITY FULL``) overridden by the source's ``on_delete`` values: the system of record deleting an
account means the context's account is closed, not that its history vanishes.

:class:`PollingReader` is the fallback for databases without logical decoding: rows whose change column
(``updated_at``) is newer than the position, oldest first. It cannot see deletes, and a transaction that
commits an older change-column value after a newer one was read is missed: prefer the slot.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Iterator

import psycopg
from psycopg import sql

from grid.errors import InvalidInput, ShardUnavailable
from grid.imports.readers import BATCH_ROWS, Batch

PLUGIN = "test_decoding"
_SLOT_NAME = re.compile(r"[^a-z0-9_]")


def lsn_int(lsn: str) -> int:
    """``'0/16B3748'`` -> 23803720: the LSN as the 64-bit integer it is."""
    hi, _, lo = lsn.partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def lsn_text(n: int) -> str:
    return f"{n >> 32:X}/{n & 0xFFFFFFFF:X}"


def slot_name(source: str) -> str:
    return "contextgrid_" + _SLOT_NAME.sub("_", source.lower())[:40]


def plain(value):
    """A database value as the raw text-like value rows carry (the same whichever path read it)."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


# -- test_decoding output ---------------------------------------------------------------------------------
_INT_TYPES = {"smallint", "integer", "bigint", "oid"}


def _typed(type_name: str, text: str | None):
    if text is None:
        return None
    if type_name in _INT_TYPES:
        return int(text)
    if type_name == "boolean":
        return text == "true"
    if type_name.startswith("timestamp"):
        return dt.datetime.fromisoformat(text).isoformat()
    if type_name in ("jsonb", "json"):
        return json.dumps(json.loads(text), separators=(",", ":"))
    return text


# name[type]:value, value quoted ('' doubles a quote) or bare; a type may end in [] (arrays) and hold spaces
_COLUMN = re.compile(r"""(?:"((?:[^"]|"")+)"|([^\s\[]+))\[((?:[^\[\]]|\[\])+)\]:(?:'((?:[^']|'')*)'|(\S+))""")


def parse_tuple(text: str) -> dict:
    """``a[text]:'x y' b[integer]:3 c[text]:null`` -> ``{"a": "x y", "b": 3, "c": None}``."""
    out = {}
    for m in _COLUMN.finditer(text):
        quoted_name, name, type_name, quoted, bare = m.groups()
        name = quoted_name.replace('""', '"') if quoted_name is not None else name
        if quoted is not None:
            raw = quoted.replace("''", "'")
        elif bare == "null":
            raw = None
        elif bare == "unchanged-toast-datum":
            continue  # not sent: the value did not change (and is not needed to upsert the row)
        else:
            raw = bare
        out[name] = _typed(type_name, raw)
    return out


def parse_change(data: str) -> tuple[str, str, dict] | None:
    """``table public.t: UPDATE: ...`` -> ``("public.t", "update", row)``; None for BEGIN/COMMIT."""
    if not data.startswith("table "):
        return None
    head, _, rest = data[6:].partition(": ")
    op, _, values = rest.partition(": ")
    op = op.lower()
    if "new-tuple: " in values:  # an update with an old key: the new row is what counts
        values = values.split("new-tuple: ", 1)[1]
    elif values.startswith("old-key: "):
        values = values[len("old-key: "):]
    return head, op, ({} if values.startswith("(no-tuple-data)") else parse_tuple(values))


class PostgresReader:
    """Snapshot + logical-decoding change stream of one table; see the module docstring."""

    def __init__(self, dsn: str, table: str, slot: str, *, schema: str = "public", key: str | None = None,
                 batch_rows: int = BATCH_ROWS, on_delete: dict | None = None, connect_timeout: float = 10):
        self.dsn, self.table, self.schema, self.slot = dsn, table, schema, slot
        self.batch_rows = int(batch_rows)
        self.on_delete = dict(on_delete or {})
        self.connect_timeout = connect_timeout
        self._conn: psycopg.Connection | None = None
        self.key = key or self._primary_key()

    @property
    def snapshot_stream(self) -> str:
        return f"pg:{self.slot}:snapshot"

    @property
    def changes_stream(self) -> str:
        return f"pg:{self.slot}"

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=self.connect_timeout)
            except psycopg.OperationalError as exc:
                raise ShardUnavailable(f"PostgreSQL source unreachable: {exc}".strip(), retry_after=2) from exc
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _primary_key(self) -> str:
        row = self._connection().execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
            (f"{self.schema}.{self.table}",)).fetchall()
        if len(row) != 1:
            raise InvalidInput(f"table {self.schema}.{self.table} needs a one-column primary key (or options.key)",
                               field="options.key")
        return row[0][0]

    # -- slot -------------------------------------------------------------------------------------------------
    def slot_lsn(self) -> int | None:
        row = self._connection().execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)).fetchone()
        return lsn_int(row[0]) if row and row[0] else None

    def create_slot(self) -> int:
        """(Re)create the slot; its consistent point as an integer LSN."""
        c = self._connection()
        if self.slot_lsn() is not None:
            c.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
        lsn = c.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s)",
                        (self.slot, PLUGIN)).fetchone()[0]
        return lsn_int(lsn)

    def drop_slot(self) -> None:
        if self.slot_lsn() is not None:
            self._connection().execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))

    def confirm(self, position: dict) -> None:
        """The batch at ``position`` is durable in the grid: let the server forget the changes up to it."""
        if position.get("stream") != self.changes_stream:
            return
        target = int(position["offset"])
        current = self.slot_lsn()
        if current is not None and target > current:
            self._connection().execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
                                       (self.slot, lsn_text(target)))

    # -- reading ----------------------------------------------------------------------------------------------
    def batches(self, after: dict | None = None) -> Iterator[Batch]:
        """Snapshot batches (unless ``after`` is past it), then the changes committed so far; then it returns.

        A follower calls it again with the last position (after :meth:`confirm`) to get what came since.
        """
        if after is None or (after.get("stream") == self.snapshot_stream and self.slot_lsn() is None):
            start = self.create_slot()  # nothing durable yet (or the slot was lost): a fresh consistent point
            offset = int(after["offset"]) if after else 0  # continue numbering: shards skip what they hold
            yield from self._snapshot(start, offset, None)
            after = {"stream": self.changes_stream, "offset": start}
        elif after.get("stream") == self.snapshot_stream:
            if not after.get("done"):
                yield from self._snapshot(int(after["lsn"]), int(after["offset"]), after.get("key"))
            after = {"stream": self.changes_stream, "offset": int(after["lsn"])}
        elif after.get("stream") != self.changes_stream:
            raise InvalidInput(f"position {after!r} is not from slot {self.slot}", field="position")
        # ``after`` is durable in the grid (the importer resumes from what the shards hold): a slot left behind
        # by a crash before confirm() moves up to it, so the server stops keeping (and re-decoding) that WAL
        self.confirm(after)
        yield from self._changes(int(after["offset"]))

    def _snapshot(self, slot_point: int, offset: int, last_key) -> Iterator[Batch]:
        c = self._connection()
        table = sql.Identifier(self.schema, self.table)
        key = sql.Identifier(self.key)
        with c.transaction():
            c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            while True:
                q = sql.SQL("SELECT * FROM {t} {w} ORDER BY {k} LIMIT %s").format(
                    t=table, k=key, w=sql.SQL("WHERE {k} > %s").format(k=key) if last_key is not None else sql.SQL(""))
                cur = c.execute(q, ((last_key,) if last_key is not None else ()) + (self.batch_rows,))
                names = [d.name for d in cur.description]
                rows = [{**{n: plain(v) for n, v in zip(names, r)}, "_op": "snapshot", "_table": self.table,
                         "_lsn": lsn_text(slot_point)} for r in cur.fetchall()]
                done = len(rows) < self.batch_rows
                if rows:
                    last_key = rows[-1][self.key]
                first, offset = offset + 1, offset + len(rows)
                yield Batch({"stream": self.snapshot_stream, "offset": offset, "key": last_key,
                             "lsn": slot_point, "done": done}, rows, offsets=list(range(first, offset + 1)))
                if done:
                    return

    def _changes(self, after_lsn: int) -> Iterator[Batch]:
        want = f"{self.schema}.{self.table}"
        last = after_lsn
        while True:
            got = self._connection().execute(
                "SELECT lsn::text, data FROM pg_logical_slot_peek_changes(%s, NULL, %s, 'include-xids', '0', "
                "'skip-empty-xacts', '1')", (self.slot, self.batch_rows)).fetchall()
            rows, offsets, txn, end = [], [], [], last
            prefix = f"table {want}: "
            for lsn, data in got:
                if data.startswith("COMMIT"):
                    commit = lsn_int(lsn)
                    if commit > last:  # at or below: delivered before (read ahead) or durable already
                        for change_lsn, text in txn:  # parsed only now: a re-peeked transaction costs no parse
                            _, op, row = parse_change(text)
                            if op == "delete":
                                row = {**row, **self.on_delete}
                            rows.append({**row, "_op": op, "_table": self.table, "_lsn": change_lsn})
                            offsets.append(commit)
                        end = commit
                    txn = []
                elif data.startswith(prefix):
                    txn.append((lsn, data))
            if end == last:
                return  # caught up (or only transactions already delivered): the follower asks again later
            last = end
            yield Batch({"stream": self.changes_stream, "offset": end, "lsn": lsn_text(end)}, rows, offsets=offsets)


class PollingReader:
    """Rows whose ``change_column`` moved past the position, oldest first (no logical decoding needed)."""

    def __init__(self, dsn: str, table: str, *, change_column: str = "updated_at", key: str, schema: str = "public",
                 batch_rows: int = BATCH_ROWS, connect_timeout: float = 10):
        self.dsn, self.table, self.schema, self.key = dsn, table, schema, key
        self.change_column, self.batch_rows = change_column, int(batch_rows)
        self.connect_timeout = connect_timeout
        self.stream = f"poll:{schema}.{table}"

    def batches(self, after: dict | None = None) -> Iterator[Batch]:
        """Rows changed after ``after`` (offset: the change column in epoch microseconds; rows sharing a value
        share the offset and are yielded in one batch)."""
        since = int(after["offset"]) if after and after.get("stream") == self.stream else -1
        t, k, col = (sql.Identifier(self.schema, self.table), sql.Identifier(self.key),
                     sql.Identifier(self.change_column))
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=self.connect_timeout) as c:
            while True:
                cur = c.execute(sql.SQL(
                    "SELECT *, (extract(epoch FROM {c}) * 1000000)::bigint AS _changed FROM {t} "
                    "WHERE (extract(epoch FROM {c}) * 1000000)::bigint > %s ORDER BY {c}, {k} LIMIT %s").format(
                        c=col, t=t, k=k), (since, self.batch_rows))
                names = [d.name for d in cur.description]
                got = [dict(zip(names, r)) for r in cur.fetchall()]
                if not got:
                    return
                if len(got) == self.batch_rows:  # finish the last change value: its rows share one offset
                    cur = c.execute(sql.SQL(
                        "SELECT *, (extract(epoch FROM {c}) * 1000000)::bigint AS _changed FROM {t} "
                        "WHERE (extract(epoch FROM {c}) * 1000000)::bigint = %s AND {k} > %s ORDER BY {k}").format(
                            c=col, t=t, k=k), (got[-1]["_changed"], got[-1][self.key]))
                    got += [dict(zip(names, r)) for r in cur.fetchall()]
                offsets = [int(r.pop("_changed")) for r in got]
                rows = [{**{n: plain(v) for n, v in r.items()}, "_op": "upsert", "_table": self.table} for r in got]
                since = offsets[-1]
                yield Batch({"stream": self.stream, "offset": since}, rows, offsets=offsets)
