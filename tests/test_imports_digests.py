"""Changed-file row digests (grid.imports.files.row_hashes) are standard XXH64 over a canonical text of the row:
pinned to a known value and held equal to a from-the-spec implementation, so no library upgrade can change them
(a changed digest would make a rewritten file look new and write all of it again)."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st
from reference_digest import xxh64

from grid.imports.files import row_hashes

ROW = {"meter_id": "M00000001", "read_start": "2026-01-10T00:00:00-08:00", "kwh_delivered": "1.250"}


def _canonical(row: dict) -> bytes:
    return "".join(f"{k}\x1f{row[k]}\x1e" for k in sorted(row) if row[k] is not None).encode()


def test_reference_is_xxh64():
    # the specification's own check values
    assert xxh64(b"") == 0xEF46DB3751D8E999
    assert xxh64(b"abc") == 0x44BC2CF5AD770999


def test_known_row_has_its_known_digest():
    # pinned: if this number changes, every changed-file import after an upgrade re-writes whole files
    assert int(row_hashes([ROW])[0]) == 5454732542770721375
    assert int(row_hashes(pa.Table.from_pylist([ROW]))[0]) == 5454732542770721375
    assert xxh64(_canonical(ROW)) == 5454732542770721375


def test_columns_and_values_count_not_their_order_and_a_null_is_an_absent_value():
    a = row_hashes([ROW, dict(reversed(list(ROW.items()))), {**ROW, "kwh_delivered": "1.251"},
                    {**ROW, "note": None}, {**ROW, "meter": ROW["meter_id"]}])
    assert a[0] == a[1] == a[3]
    assert len({int(a[0]), int(a[2]), int(a[4])}) == 3
    # a value cannot pass for another column's: names are in the text
    assert row_hashes([{"a": "1", "b": ""}])[0] != row_hashes([{"a": "", "b": "1"}])[0]


def test_typed_cells_digest_the_same_from_arrow_and_from_rows():
    rows = [{"read": dt.date(2026, 3, 1), "at": dt.datetime(2026, 3, 1, 6, 30), "kwh": 1.5, "n": 7, "ok": True,
             "text": "x"}, {"read": None, "at": None, "kwh": None, "n": None, "ok": False, "text": None}]
    table = pa.Table.from_pylist(rows)
    assert row_hashes(table).tolist() == row_hashes(rows).tolist()
    assert int(row_hashes(rows)[0]) == xxh64(_canonical(
        {"read": "2026-03-01", "at": "2026-03-01T06:30:00", "kwh": "1.5", "n": "7", "ok": "true", "text": "x"}))


def test_empty_batch():
    assert row_hashes([]).size == 0 and row_hashes(pa.table({"a": pa.array([], pa.string())})).size == 0


@given(st.lists(st.dictionaries(st.sampled_from(["sp", "ts", "wh", "Meter #", "é"]),
                                st.one_of(st.none(), st.text(max_size=70)), min_size=1), min_size=1, max_size=20))
def test_digests_equal_the_reference(rows):
    assert row_hashes(rows).tolist() == [xxh64(_canonical(r)) for r in rows]
