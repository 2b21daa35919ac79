"""The resolver on hand-built records: every deterministic key, every blocking key, a typo in each field, records
that must not link, and the rules file (plain classes, no Ray)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grid import context as ctx
from grid.errors import InvalidInput, RuleError
from grid.identity.batch import BatchResolver
from grid.identity.evidence import Evidence, decode_records
from grid.identity.members import keys_of, member_of_evidence
from grid.identity.resolver import query
from grid.identity.rules import DEFAULT_RULES_DIR, load_identity_rules

RULES = load_identity_rules(DEFAULT_RULES_DIR)


def _ctx(cid, name, kind="residential", address=None, billing=None, phone=None, email=None, tax_id=None,
         account=None, sp=None, meter=None, owner=None):
    body = {"name": name, "kind": kind, "accounts": [], "contacts": [], "ownership": []}
    if account:
        body["accounts"].append({"account_id": account, "rate_plan_id": "res", "billing_address": billing or "",
                                 "service_points": [{"service_point_id": sp, "meter_id": meter,
                                                     "premise_address": address, "interval_minutes": 60}]})
    channels = []
    if email:
        channels.append({"type": "email", "address": email})
    if phone:
        channels.append({"type": "sms", "address": phone})
    if channels:
        body["contacts"].append({"contact_id": "K1", "name": name, "roles": ["billing"], "channels": channels})
    if tax_id or owner:
        body["ownership"].append({"entity_id": "E" + cid, "legal_name": owner or name, "tax_id": tax_id,
                                  "mailing_address": billing or address})
    return ctx.validate_replacement(cid, body, "2026-01-01T00:00:00+00:00")


BASE = [
    _ctx("C1", "ACME HOLDINGS LLC", "commercial", address="100 Main St Ste 4, Springfield, IL 62701",
         billing="100 Main St Ste 4, Springfield, IL 62701", phone="(415) 555-0101", email="ops@acme.example",
         tax_id="41-2345678", account="A1", sp="S1", meter="M1"),
    _ctx("C2", "John Smith", address="12 Oak Ave, Fresno, CA 93701", phone="559-555-0102",
         email="jsmith@mail.example", account="A2", sp="S2", meter="M2"),
    _ctx("C4", "John Smith", address="48 Pine St, Sacramento, CA 95814", phone="916-555-0104",
         account="A4", sp="S4", meter="M4"),
    _ctx("C5", "Maria Garcia", address="7 Elm Dr, San Jose, CA 95112", phone="408-555-0199",
         email="maria.garcia@mail.example", account="A5", sp="S5", meter="M5"),
]


@pytest.fixture
def resolver():
    return BatchResolver(RULES, [dict(r) for r in BASE])


def one(resolver, write=False, **fields):
    return resolver.resolve([Evidence(source=fields.pop("source", "test"), **fields)], write=write)[0]


# -- deterministic keys -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("key,value", [("customer_id", "C5"), ("account_id", "A5"), ("service_point_id", "S5"),
                                       ("meter_id", "M5")])
def test_each_deterministic_key_links_alone(resolver, key, value):
    res = one(resolver, **{key: value})
    assert (res.outcome, res.customer_id, res.key, res.probability) == ("link", "C5", key, 1.0)


def test_verified_email_is_a_key_and_an_unverified_one_only_evidence(resolver):
    res = one(resolver, email="Maria.Garcia@mail.example", email_verified=True)
    assert (res.outcome, res.customer_id, res.key) == ("link", "C5", "email_verified")
    res = one(resolver, email="maria.garcia@mail.example")
    assert res.key is None and res.outcome != "link"  # one e-mail alone is not enough to link


def test_tax_id_links_when_it_names_one_customer(resolver):
    res = one(resolver, tax_id="412345678")
    assert (res.outcome, res.customer_id, res.key) == ("link", "C1", "tax_id")


def test_tax_id_placeholder_is_no_evidence(resolver):
    res = one(resolver, tax_id="12-3456789", name="Someone Else")
    assert res.outcome == "new" and not res.candidates


def test_keys_naming_two_customers_go_to_review(resolver):
    res = one(resolver, account_id="A1", meter_id="M5")
    assert res.outcome == "review" and res.review_id
    assert {c.customer_id for c in res.candidates} == {"C1", "C5"}


# -- probabilistic ----------------------------------------------------------------------------------------------
def test_key_accounts_spelling_links_by_name_and_address(resolver):
    res = one(resolver, source="key_accounts", name="Acme Holdings",
              address="100 Main Street, Suite 4, Springfield, Illinois 62701")
    assert (res.outcome, res.customer_id) == ("link", "C1")
    levels = {c.field: c.level for c in res.comparisons}
    assert levels == {"name": "exact", "address": "exact"}
    assert res.score == pytest.approx(RULES.prior_weight + sum(c.weight for c in res.comparisons), abs=0.01)


TYPOS = [
    ("name", dict(name="Maria Garcai", address="7 Elm Dr, San Jose, CA 95112", phone="408-555-0199")),
    ("address", dict(name="Maria Garcia", address="7 Elm Drv, San Jsoe, CA 95112", phone="408-555-0199")),
    ("zip", dict(name="Maria Garcia", address="7 Elm Dr, San Jose, CA 95121", phone="408-555-0199")),
    ("house", dict(name="Maria Garcia", address="17 Elm Dr, San Jose, CA 95112", phone="408-555-0199",
                   email="maria.garcia@mail.example")),
    ("phone", dict(name="Maria Garcia", address="7 Elm Dr, San Jose, CA 95112", phone="408-555-0919")),
    ("email", dict(name="Maria Garcia", email="maria.garica@mail.example", phone="408-555-0199")),
    ("reordered name", dict(name="GARCIA, MARIA", address="7 Elm Drive, San Jose CA 95112")),
]


@pytest.mark.parametrize("field,fields", TYPOS, ids=[t[0] for t in TYPOS])
def test_a_typo_in_each_field_still_links(resolver, field, fields):
    res = one(resolver, **fields)
    assert (res.outcome, res.customer_id) == ("link", "C5"), (res.score, res.comparisons)


BLOCKS = [
    ("phone", dict(phone="+1 408 555 0199")),
    ("email", dict(email="maria.garcia@mail.example")),
    ("zip_house", dict(address="7 Elmm Dr, San Jose, CA 95112")),
    ("house_street", dict(address="7 Elm Dr, San Jose")),
    ("name_zip", dict(name="Maria Garcia", address="9 Other St, San Jose, CA 95112")),
    ("name", dict(name="Maria Garcia")),
]


@pytest.mark.parametrize("block,fields", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_each_blocking_key_alone_finds_the_customer(resolver, block, fields):
    ev = Evidence(source="test", **fields)
    _, keys = query(RULES, ev)
    assert block in {k for k, _ in keys}
    res = resolver.resolve([ev], write=False)[0]
    assert "C5" in [c.customer_id for c in res.candidates]


def test_blocking_keys_of_a_context_cover_every_kind():
    kinds = {k for k, _ in keys_of(member_of_evidence(Evidence(
        source="t", name="Maria Garcia", address="7 Elm Dr, San Jose, CA 95112", phone="408-555-0199",
        email="m@x.example", email_verified=True, tax_id="41-2345678", account_id="A", meter_id="M",
        service_point_id="S", record_id="r1")))}
    assert kinds == {"record", "account_id", "service_point_id", "meter_id", "tax_id", "email_verified", "phone",
                     "email", "zip_house", "house_street", "name_zip", "name"}


# -- must not link ----------------------------------------------------------------------------------------------
def test_same_name_other_city_does_not_link(resolver):
    res = one(resolver, name="John Smith", address="301 Harbor Blvd, Long Beach, CA 90802")
    assert res.outcome == "new", (res.score, res.comparisons)


def test_father_and_son_at_one_address_do_not_link(resolver):
    res = one(resolver, name="John Smith Jr", address="12 Oak Ave, Fresno, CA 93701", phone="559-555-0102")
    assert res.outcome != "link"
    best = next(c for c in res.candidates if c.customer_id == "C2")
    assert {c.field: c.level for c in best.comparisons}["name"] == "generation_differs"


def test_same_name_picks_the_customer_at_the_address(resolver):
    res = one(resolver, name="John Smith", address="48 Pine Street, Sacramento, CA 95814")
    assert (res.outcome, res.customer_id) == ("link", "C4")


# -- writes in batch mode ---------------------------------------------------------------------------------------
def test_a_new_record_makes_a_customer_and_its_copy_links_to_it(resolver):
    a = one(resolver, write=True, source="web_form", record_id="w1", name="Lee Chen", phone="650-555-0177",
            address="5 Bay St, Palo Alto, CA 94301")
    assert a.outcome == "new" and a.customer_id.startswith("CN")
    b = one(resolver, write=True, source="web_form", record_id="w2", name="Lee Chen", phone="650-555-0177",
            address="5 Bay Street, Palo Alto CA 94301")
    assert (b.outcome, b.customer_id) == ("link", a.customer_id)
    again = one(resolver, write=True, source="web_form", record_id="w1", name="whatever")
    assert (again.outcome, again.customer_id, again.key) == ("link", a.customer_id, "record")


def test_bad_records_name_the_field():
    with pytest.raises(InvalidInput) as e:
        decode_records([{"source": "s"}, {"source": "s", "phone": 5}])
    assert e.value.field == "records[1].phone"
    with pytest.raises(InvalidInput) as e:
        decode_records([{"source": "s", "colour": "red"}])
    assert e.value.field == "records[0].colour"
    with pytest.raises(InvalidInput) as e:
        decode_records([{"name": "x"}])
    assert e.value.field == "records[0].source"


# -- rules file -------------------------------------------------------------------------------------------------
def test_rules_file_errors_name_the_field(tmp_path):
    d = tmp_path / "rules"
    (d / "schema").mkdir(parents=True)
    shutil.copy(Path(DEFAULT_RULES_DIR) / "schema" / "identity.schema.json", d / "schema")
    text = (Path(DEFAULT_RULES_DIR) / "identity.yaml").read_text()
    (d / "identity.yaml").write_text(text.replace("{level: last_7, m: 0.05", "{level: last_8, m: 0.05"))
    with pytest.raises(RuleError) as e:
        load_identity_rules(d)
    assert "comparisons[2].levels" in str(e.value) and "last_8" in str(e.value)
    (d / "identity.yaml").write_text(text.replace("link: 8.0", "link: high"))
    with pytest.raises(RuleError) as e:
        load_identity_rules(d)
    assert e.value.field == "thresholds.link"


def test_a_mistyped_key_that_everything_else_contradicts_goes_to_review(resolver):
    res = one(resolver, account_id="A5", name="Robert Nguyen", address="55 Cedar Ct, Visalia, CA 93277",
              phone="559-555-0147")
    assert (res.outcome, res.customer_id, res.key) == ("review", "C5", "account_id")
    assert sum(c.weight for c in res.comparisons) < 0
    # the same key with agreeing (or no) other evidence still links at once
    assert one(resolver, account_id="A5", name="Maria Garcia").outcome == "link"
    assert one(resolver, account_id="A5").outcome == "link"


def test_an_index_built_in_slices_with_writes_between_equals_one_built_at_once():
    from grid.identity.index import IdentityIndex

    records = {r["customer_id"]: dict(r) for r in BASE}
    whole = IdentityIndex()
    whole.ensure_built(records)
    sliced = IdentityIndex()
    assert not sliced.build_step(records, 1)
    # a write to an indexed customer, one to a pending one, a new customer and a removal, mid-build
    done = next(c for c in records if c in sliced._seen)
    records[done] = dict(records[done], name="Renamed Person", accounts=list(records[done]["accounts"]))
    sliced.on_changed(done, records[done])
    new = _ctx("C9", "Newcomer Nine", address="9 Nine St, Napa, CA 94558", account="A9", sp="S9", meter="M9")
    records["C9"] = new
    sliced.on_changed("C9", new)
    gone = next(c for c in records if c not in sliced._seen)
    del records[gone]
    sliced.on_changed(gone, None)
    while not sliced.build_step(records, 1):
        pass
    fresh = IdentityIndex()
    fresh.ensure_built(records)
    assert {k: dict(v) for k, v in sliced.keys.items()} == {k: dict(v) for k, v in fresh.keys.items()}
    assert set(sliced.members) == set(records)
    assert whole.built and sliced.built
