"""Rule files: the shipped set loads; invalid files give RuleError naming file, rule and field; reload is atomic."""
from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from grid.errors import RuleError
from grid.rules import ActiveRules, classify_accounts, load_ruleset

RULES = Path(__file__).resolve().parents[1] / "rules"


@pytest.fixture
def rules_dir(tmp_path) -> Path:
    out = tmp_path / "rules"
    out.mkdir()
    for name in ("portfolios.yaml", "key_accounts.yaml", "load_priority.yaml", "cost_to_serve.yaml"):
        shutil.copy(RULES / name, out / name)
    shutil.copytree(RULES / "schema", out / "schema")
    (out / "prices").mkdir()
    shutil.copy(RULES / "prices" / "wholesale_hourly.csv", out / "prices" / "wholesale_hourly.csv")
    return out


def edit(directory: Path, name: str, change) -> None:
    path = directory / name
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_shipped_rules_load():
    rules = load_ruleset(RULES)
    assert len(rules.version) == 16
    assert [r.id for r in rules.links] == ["same_customer", "shared_tax_id", "common_root", "owner_name_address",
                                          "parcel_owner"]
    assert rules.load_priority.levels == ("normal", "priority", "critical")
    assert rules.key_accounts.account_rules and rules.key_accounts.portfolio_rules
    assert rules.prices.months[0] == "2025-11" and len(rules.prices.months) == 12
    assert rules.prices.micro_per_kwh.shape == (8760,)


def test_version_is_a_digest_of_the_contents(rules_dir, tmp_path):
    a = load_ruleset(rules_dir)
    copy = shutil.copytree(rules_dir, tmp_path / "copy")
    assert load_ruleset(copy).version == a.version  # same bytes elsewhere: same version
    path = copy / "load_priority.yaml"
    path.write_text(path.read_text() + "\n# a comment\n")
    assert load_ruleset(copy).version != a.version


def _set_rule(section, i, key, value):
    def change(doc):
        doc[section][i][key] = value
    return change


def _when(section, i, when):
    return _set_rule(section, i, "when", when)


CASES = [
    # (file, change, expected rule, expected field, words in the message)
    ("key_accounts.yaml", _set_rule("account_rules", 0, "whenn", {"field": "kind", "op": "exists"}),
     "spend_12m", "account_rules[0].whenn", "unknown field 'whenn'"),
    ("key_accounts.yaml", _when("account_rules", 1, {"field": "peak_demand_w", "op": "gte", "value": 5}),
     "peak_demand", "account_rules[1].when.op", "'gte' is not one of"),
    ("key_accounts.yaml", _when("account_rules", 0, {"field": "spend_12m_cents", "op": "ge", "value": "a lot"}),
     "spend_12m", "account_rules[0].when.value", "type mismatch"),
    ("key_accounts.yaml", _when("portfolio_rules", 1, {"field": "peak_kw", "op": "ge", "value": 5}),
     "portfolio_demand", "portfolio_rules[1].when.field", "unknown column 'peak_kw'"),
    ("key_accounts.yaml", _when("portfolio_rules", 0, {"field": "segment", "op": "eq", "value": "office"}),
     "portfolio_spend_12m", "portfolio_rules[0].when.field", "unknown column 'segment'"),
    ("key_accounts.yaml", _when("account_rules", 4, {"all": [{"field": "kind", "op": "eq", "value": "publik"}]}),
     "critical_public_service", "account_rules[4].when.all[0].value", "not a value of kind"),
    ("key_accounts.yaml", _set_rule("account_rules", 1, "id", "spend_12m"),
     "spend_12m", "account_rules[1].id", "used twice"),
    ("portfolios.yaml", _set_rule("links", 1, "key", "tax_idz"),
     "shared_tax_id", "links[1].key", "unknown column 'tax_idz'"),
    ("portfolios.yaml", _set_rule("links", 2, "key", "peak_demand_w"),
     "common_root", "links[2].key", "type mismatch"),
    ("portfolios.yaml", _set_rule("links", 3, "where", {"field": "kind", "op": "ne", "value": 7}),
     "owner_name_address", "links[3].where.value", "type mismatch"),
    ("load_priority.yaml", _set_rule("rules", 2, "level", "urgent"),
     "life_support", "rules[2].level", "not one of the levels"),
    ("load_priority.yaml", _when("rules", 0, {"field": "sp_load_priority", "op": "in", "value": ["critical", "hi"]}),
     "service_point_critical", "rules[0].when.value", "not a value of sp_load_priority"),
]


@pytest.mark.parametrize("name, change, rule, field, words", CASES)
def test_invalid_rule_files_raise_and_change_nothing(rules_dir, name, change, rule, field, words):
    active = ActiveRules(rules_dir)
    before = active.current
    edit(rules_dir, name, change)
    with pytest.raises(RuleError) as info:
        active.reload()
    err = info.value
    assert err.extra["file"] == name
    assert err.extra.get("rule") == rule
    assert err.field == field
    assert words in err.detail, err.detail
    assert name in err.detail and field in err.detail
    assert active.current is before  # the old rule set stays in force
    assert active.version == before.version


@pytest.mark.parametrize("name, text, field, words", [
    ("key_accounts.yaml", "schema: contextgrid/key_accounts/1\naccount_rules: [\n", None, "invalid YAML (line"),
    ("key_accounts.yaml", "schema: contextgrid/key_accounts/1\naccount_rules: []\naccount_rules: []\n"
                          "portfolio_rules: []\n", None, "duplicate key 'account_rules'"),
    ("key_accounts.yaml", "schema: contextgrid/key_accounts/1\naccount_rules: []\nportfolio_rules: []\n"
                          "colour: blue\n", "colour", "unknown field 'colour'"),
    ("key_accounts.yaml", "schema: contextgrid/key_accounts/2\naccount_rules: []\nportfolio_rules: []\n",
     "schema", "contextgrid/key_accounts/1"),
    ("load_priority.yaml", "schema: contextgrid/load_priority/1\nlevels: [low, high]\ndefault: normal\nrules: []\n",
     "default", "not one of the levels"),
])
def test_invalid_yaml_and_top_level_fields(rules_dir, name, text, field, words):
    active = ActiveRules(rules_dir)
    before = active.current
    (rules_dir / name).write_text(text)
    with pytest.raises(RuleError) as info:
        active.reload()
    assert info.value.extra["file"] == name
    assert info.value.field == field
    assert words in info.value.detail, info.value.detail
    assert active.current is before


@pytest.mark.parametrize("change, field, words", [
    (lambda d: d["service_cost_per_account_month"].update(commercial="lots"),
     "service_cost_per_account_month.commercial", "does not match"),
    (lambda d: d["service_cost_per_account_month"].update(commercial="1.0000001"),
     "service_cost_per_account_month.commercial", ""),
    (lambda d: d["service_cost_per_account_month"].pop("public"),
     "service_cost_per_account_month", "'public' is a required property"),
    (lambda d: d.update(energy_losses_percent="75"), "energy_losses_percent", "below 50"),
    (lambda d: d.update(timezone="Mars/Olympus_Mons"), "timezone", "unknown time zone"),
    (lambda d: d.update(price_curve="prices/nothing.csv"), None, "missing"),
])
def test_invalid_cost_file(rules_dir, change, field, words):
    active = ActiveRules(rules_dir)
    edit(rules_dir, "cost_to_serve.yaml", change)
    with pytest.raises(RuleError) as info:
        active.reload()
    assert info.value.field == field
    assert words in info.value.detail


@pytest.mark.parametrize("mutate, field, words", [
    (lambda lines: lines.__setitem__(5, lines[5].rsplit(",", 1)[0] + ",12.3456"), "line 6.price_usd_per_mwh",
     "more decimals"),
    (lambda lines: lines.__setitem__(5, lines[5].rsplit(",", 1)[0] + ",abc"), "line 6.price_usd_per_mwh",
     "decimal number"),
    (lambda lines: lines.pop(100), "line 101.hour_start_utc", "consecutive"),
    (lambda lines: lines.pop(), "hour_start_utc", "local midnight"),
    (lambda lines: lines.__setitem__(0, "hour,price"), "hour_start_utc", "missing column"),
])
def test_invalid_price_curve(rules_dir, mutate, field, words):
    active = ActiveRules(rules_dir)
    before = active.current
    path = rules_dir / "prices" / "wholesale_hourly.csv"
    lines = path.read_text().splitlines()
    mutate(lines)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RuleError) as info:
        active.reload()
    assert info.value.extra["file"] == "prices/wholesale_hourly.csv"
    assert info.value.field == field
    assert words in info.value.detail, info.value.detail
    assert active.current is before


def test_missing_file(rules_dir):
    (rules_dir / "load_priority.yaml").unlink()
    with pytest.raises(RuleError) as info:
        load_ruleset(rules_dir)
    assert info.value.extra["file"] == "load_priority.yaml"


def test_reload_puts_new_rules_in_force_and_results_carry_the_version(rules_dir):
    active = ActiveRules(rules_dir)
    features = pa.table({"account_id": ["A1", "A2"], "customer_id": ["C1", "C2"], "status": ["active", "active"],
                         "kind": ["commercial", "commercial"], "spend_12m_cents": [30_000_000, 100]})
    first = classify_accounts(features, active.current)
    assert [r["key_account"] for r in first] == [True, False]
    assert {r["rules_version"] for r in first} == {active.version}

    edit(rules_dir, "key_accounts.yaml",
         _when("account_rules", 0, {"field": "spend_12m_cents", "op": "ge", "value": 50}))
    old = active.version
    new = active.reload()
    assert new is active.current and new.version != old
    second = classify_accounts(features, active.current)
    assert [r["key_account"] for r in second] == [True, True]
    assert {r["rules_version"] for r in second} == {new.version}


def test_error_survives_pickling(rules_dir):
    """Shard actors raise RuleError across Ray: file, rule and field must survive the trip."""
    import pickle

    edit(rules_dir, "key_accounts.yaml", _when("account_rules", 1, {"field": "nope", "op": "exists"}))
    with pytest.raises(RuleError) as info:
        load_ruleset(rules_dir)
    back = pickle.loads(pickle.dumps(info.value))
    assert (back.extra, back.detail) == (info.value.extra, info.value.detail)
    assert back.problem()["rule"] == "peak_demand"
