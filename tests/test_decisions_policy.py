"""Each decision stage on hand-built contexts (plain shard, no Ray): engagement policies, arbitration, contact
policy over a sequence of events, channel choice with quiet hours, and learning from responses."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from factories import context

from grid.decisions import catalogue as cat_mod
from grid.decisions import events as ev
from grid.decisions.service import decide_now, event_ops
from grid.errors import Conflict, RuleError
from grid.partitions import PARTITIONS
from grid.shard import Shard, from_snapshot, to_snapshot

LA = ZoneInfo("America/Los_Angeles")
DAY = 86_400
NOON = int(dt.datetime(2026, 6, 3, 12, 0, tzinfo=LA).timestamp())
NIGHT = int(dt.datetime(2026, 6, 3, 22, 30, tzinfo=LA).timestamp())

POLICY = """
policy:
  max_offers_per_channel_per_week: 2
  suppress_after_rejections: 2
  suppression_days: 30
  complaint_cooloff_days: 14
  prior: {accepted: 1000, rejected: 1000}   # strong: samples stay near 0.5, so value and lever decide
"""
UNCAPPED = POLICY.replace("max_offers_per_channel_per_week: 2", "max_offers_per_channel_per_week: 10000")


def catalogue(actions: str, policy: str = POLICY) -> cat_mod.Catalogue:
    return cat_mod.parse(f"schema: contextgrid/actions/1\n{policy}\nactions:\n{actions}".encode(), "test.yaml")


STAGES = catalogue("""
  - id: tune_up
    eligibility: {field: kind, op: eq, value: residential}
    applicability: {field: events.call.7d, op: ge, value: 1}
    suitability: {field: attr.tenure_years, op: ge, value: 2}
    value: {cents: 1000}
    channels: [email, web]
""")

TWO = """
  - id: small
    applicability: {field: events.web_visit.7d, op: ge, value: 1}
    value: {cents: 100}
    lever: {lever_small}
    channels: [email, sms, web]
  - id: big
    applicability: {field: events.web_visit.7d, op: ge, value: 1}
    value: {cents: 1000}
    channels: [email, sms, web]
"""


def shard(*customers: tuple[int, dict]) -> Shard:
    sh = Shard(0, list(range(PARTITIONS)))
    for i, changes in customers:
        cid, body = context(i)
        body.update(changes)
        sh.write({"kind": "replace", "customer_id": cid, "body": body, "write_id": f"r{i}"})
    return sh


def event(sh: Shard, cid: str, kind: str, ts: int) -> None:
    op = event_ops({"customer_id": cid, "type": kind, "time": ev.iso(ts)}, f"{cid}-{kind}-{ts}", ts)[0]
    op["at"] = ev.iso(ts)
    sh.write(op)


def decide(sh, cid, cat, ts, channel=None, wid=None):
    return decide_now(sh, [cid], {"catalogue": cat, "channel": channel, "now_ts": ts,
                                  "write_id": wid or f"d-{cid}-{ts}-{channel}"})[0]


def respond(sh, cid, d, outcome, ts):
    op = {"kind": "response", "customer_id": cid, "write_id": f"resp-{d['decision_id']}", "at": ev.iso(ts),
          "body": {"decision_id": d["decision_id"], "outcome": outcome}}
    return sh.write(op)


def stage(d, action_id):
    return next(a for a in d["actions"] if a["action_id"] == action_id)


# -- engagement policies ---------------------------------------------------------------------------------------
def test_each_stage_filters_and_says_so():
    # C3: tenure 3 (suitable), C1: tenure 1 (not suitable), C5 commercial (not eligible: factories make i%5==0
    # commercial only through populate, so set kind here)
    sh = shard((3, {}), (1, {}), (4, {"kind": "commercial"}))
    for cid in ("C0000003", "C0000001", "C0000004"):
        event(sh, cid, "call", NOON - DAY)
    d3, d1, d4 = (decide(sh, c, STAGES, NOON) for c in ("C0000003", "C0000001", "C0000004"))
    assert d3["chosen"]["action_id"] == "tune_up"
    assert set(d3["rules_fired"]) == {"tune_up:eligibility", "tune_up:applicability", "tune_up:suitability"}
    assert (stage(d1, "tune_up")["eligible"], stage(d1, "tune_up")["applicable"],
            stage(d1, "tune_up")["suitable"]) == (True, True, False)
    assert d1["chosen"] is None and "no action" in d1["reason"]
    assert stage(d4, "tune_up")["eligible"] is False and d4["chosen"] is None
    # no call in the last 7 days: not applicable
    d = decide(sh, "C0000003", STAGES, NOON + 8 * DAY)
    assert stage(d, "tune_up")["applicable"] is False and d["chosen"] is None


def test_arbitration_ranks_propensity_value_and_lever():
    sh = shard((3, {}))
    event(sh, "C0000003", "web_visit", NOON)
    d = decide(sh, "C0000003", catalogue(TWO.replace("{lever_small}", "1")), NOON)
    assert d["chosen"]["action_id"] == "big"
    small, big = stage(d, "small"), stage(d, "big")
    assert big["priority"] == pytest.approx(big["propensity"]["sample"] * 1000)
    assert small["priority"] == pytest.approx(small["propensity"]["sample"] * 100)
    d = decide(sh, "C0000003", catalogue(TWO.replace("{lever_small}", "20")), NOON + 1)
    assert d["chosen"]["action_id"] == "small"  # 100 x 20 beats 1000 x 1


def test_the_decision_records_inputs_and_versions():
    sh = shard((3, {}))
    event(sh, "C0000003", "call", NOON)
    d = decide(sh, "C0000003", STAGES, NOON)
    assert d["inputs"]["events.call.7d"] == 1 and d["inputs"]["kind"] == "residential"
    assert d["versions"]["actions"] == STAGES.version
    assert sh.decisions.audit["C0000003"][-1] == d


# -- contact policy ---------------------------------------------------------------------------------------------
def test_weekly_cap_per_channel_over_a_sequence_of_events():
    sh = shard((3, {}))  # one contact, email only
    cat = catalogue(TWO.replace("{lever_small}", "1"))
    chosen = []
    for k in range(4):
        ts = NOON + k * 3600
        event(sh, "C0000003", "web_visit", ts)
        d = decide(sh, "C0000003", cat, ts)
        chosen.append(d["chosen"] and d["chosen"]["channel"])
    assert chosen == ["email", "email", None, None]
    assert "2 offers this week" in stage(d, "big")["policy"]
    # inbound web is its own channel with its own cap
    assert decide(sh, "C0000003", cat, NOON + 5 * 3600, channel="web")["chosen"]["channel"] == "web"
    # a week after the first offers, email is open again
    event(sh, "C0000003", "web_visit", NOON + 7 * DAY + 3600)
    assert decide(sh, "C0000003", cat, NOON + 7 * DAY + 3600)["chosen"]["channel"] == "email"


def test_suppression_after_repeated_rejections():
    sh = shard((3, {}))
    cat = catalogue(TWO.replace("{lever_small}", "1"), UNCAPPED)
    event(sh, "C0000003", "web_visit", NOON)
    for k in range(2):
        d = decide(sh, "C0000003", cat, NOON + k, channel="web")
        assert d["chosen"]["action_id"] == "big"
        respond(sh, "C0000003", d, "rejected", NOON + k)
    d = decide(sh, "C0000003", cat, NOON + 10, channel="web")
    assert stage(d, "big")["policy"].startswith("suppressed: rejected 2 times")
    assert d["chosen"]["action_id"] == "small"
    event(sh, "C0000003", "web_visit", NOON + 31 * DAY)
    assert decide(sh, "C0000003", cat, NOON + 31 * DAY, channel="web")["chosen"]["action_id"] == "big"


def test_complaint_cool_off_blocks_offers_not_service():
    cat = catalogue("""
  - id: offer
    value: {cents: 5000}
    channels: [web]
  - id: help
    kind: service
    value: {cents: 10}
    channels: [web]
""")
    sh = shard((3, {}))
    assert decide(sh, "C0000003", cat, NOON, channel="web")["chosen"]["action_id"] == "offer"
    event(sh, "C0000003", "complaint", NOON + 60)
    d = decide(sh, "C0000003", cat, NOON + 120, channel="web")
    assert d["chosen"]["action_id"] == "help" and "cool-off" in stage(d, "offer")["policy"]
    assert decide(sh, "C0000003", cat, NOON + 15 * DAY, channel="web")["chosen"]["action_id"] == "offer"


# -- channel choice ------------------------------------------------------------------------------------------------
SMS_FIRST = {"contacts": [{"contact_id": "K1", "name": "Pat", "roles": ["billing"], "channels": [
    {"type": "sms", "address": "+15555550100", "preference": 1, "quiet_hours": {"start": "21:00", "end": "07:00"}},
    {"type": "email", "address": "pat@example.com", "preference": 2, "quiet_hours": None}]}]}
ONE = catalogue("""
  - id: offer
    value: {cents: 500}
    channels: [sms, email]
""", UNCAPPED)


def test_channel_follows_preference_and_quiet_hours():
    sh = shard((3, SMS_FIRST))
    assert decide(sh, "C0000003", ONE, NOON)["chosen"]["channel"] == "sms"
    night = decide(sh, "C0000003", ONE, NIGHT)
    assert night["chosen"]["channel"] == "email"
    assert stage(night, "offer")["channels"] == ["email"]
    # asked for sms at night: nothing can go out now
    d = decide(sh, "C0000003", ONE, NIGHT + 1, channel="sms")
    assert d["chosen"] is None and "sms: quiet hours" in stage(d, "offer")["policy"]


def test_channel_follows_observed_responses():
    sh = shard((3, SMS_FIRST))
    for k in range(6):  # sms offers keep being ignored, email ones accepted
        d = decide(sh, "C0000003", ONE, NOON + k, channel="sms" if k % 2 == 0 else "email")
        respond(sh, "C0000003", d, "ignored" if k % 2 == 0 else "accepted", NOON + k)
    assert decide(sh, "C0000003", ONE, NOON + 100)["chosen"]["channel"] == "email"
    assert sh.decisions.contact["C0000003"]["channels"] == {"sms": [0, 3], "email": [3, 3]}


# -- learning -----------------------------------------------------------------------------------------------------
def test_propensity_moves_with_responses_and_survives_a_snapshot():
    sh = shard((3, {}), (1, {}))
    cat = catalogue(TWO.replace("{lever_small}", "1"), UNCAPPED.replace("1000, rejected: 1000", "1, rejected: 1"))
    event(sh, "C0000003", "web_visit", NOON)
    outcomes = []
    for k in range(6):
        d = decide(sh, "C0000003", cat, NOON + k, channel="web", wid=f"w{k}")
        respond(sh, "C0000003", d, "accepted" if k % 3 else "rejected", NOON + k)
        outcomes.append(d["chosen"]["action_id"])
    key_counts = {k: v for k, v in sh.decisions.propensity.items()}
    assert sum(a + r for a, r in key_counts.values()) == 6
    assert sum(a for a, _ in key_counts.values()) == 4
    seg = sh.records["C0000003"]["segment"]
    alpha, beta = sh.decisions.posterior(outcomes[-1], seg, (1.0, 1.0))
    assert alpha + beta > 2  # the posterior moved off the prior
    restored = from_snapshot(*to_snapshot(sh))
    assert restored.decisions.propensity == sh.decisions.propensity
    assert restored.decisions.posterior(outcomes[-1], seg, (1.0, 1.0)) == (alpha, beta)


def test_thompson_sampling_explores_then_exploits():
    """A well-rewarded action wins most decisions; the other is still tried now and then."""
    cat = catalogue("""
  - id: good
    value: {cents: 100}
    channels: [web]
  - id: poor
    value: {cents: 100}
    channels: [web]
""", UNCAPPED.replace("suppress_after_rejections: 2", "suppress_after_rejections: 1000")
        .replace("1000, rejected: 1000", "1, rejected: 1"))
    sh = shard((3, {}))
    picks = []
    for k in range(200):
        d = decide(sh, "C0000003", cat, NOON + k, channel="web", wid=f"t{k}")
        a = d["chosen"]["action_id"]
        picks.append(a)
        # "good" is accepted 60 % of the time, "poor" 10 % (fixed pattern, no randomness in the test)
        ok = (k % 10 < 6) if a == "good" else (k % 10 == 0)
        respond(sh, "C0000003", d, "accepted" if ok else "rejected", NOON + k)
    late = picks[100:]
    assert late.count("good") > 80
    assert "poor" in picks[:100]


def test_one_response_per_decision():
    sh = shard((3, {}))
    d = decide(sh, "C0000003", ONE, NOON)
    respond(sh, "C0000003", d, "accepted", NOON)
    with pytest.raises(Conflict):
        sh.write({"kind": "response", "customer_id": "C0000003", "write_id": "other", "at": ev.iso(NOON),
                  "body": {"decision_id": d["decision_id"], "outcome": "rejected"}})


# -- the catalogue -------------------------------------------------------------------------------------------------
def test_shipped_catalogue_loads():
    cat = cat_mod.load()
    ids = {a.id for a in cat.actions}
    assert {"budget_billing", "cheaper_rate_plan", "payment_arrangement", "efficiency_programme",
            "demand_response", "paperless_billing", "retention_offer"} <= ids
    assert len(cat.version) == 16


@pytest.mark.parametrize("actions, field", [
    ("  - id: x\n    channels: [fax]\n", "actions[0].channels[0]"),
    ("  - id: x\n    channels: [web]\n    eligibility: {field: nope, op: eq, value: 1}\n",
     "actions[0].eligibility.field"),
    ("  - id: x\n    channels: [web]\n    suitability: {field: rate_plan_saving_cents, op: ge, value: 1}\n",
     "actions[0].plans"),
    ("  - id: x\n    channels: [web]\n  - id: x\n    channels: [web]\n", "actions[1].id"),
])
def test_bad_catalogues_name_the_field(actions, field):
    with pytest.raises(RuleError) as err:
        catalogue(actions)
    assert err.value.extra.get("field") == field


# -- the rate-plan saving, priced by the what-if kernel on the live context --------------------------------------------
def test_cheaper_rate_plan_is_valued_by_the_what_if(base_dir):
    from grid.base import read_manifest
    from grid.decisions.inputs import rate_plan_saving
    from grid.whatif.scenarios import scenarios

    sh = Shard(0, list(range(PARTITIONS)), read_manifest(str(base_dir))["timezone"])
    for chunk in range(read_manifest(str(base_dir))["chunks"]):
        sh.load_chunk(str(base_dir), chunk)
    plans = ("res-tiered", "res-tou", "res-tou-nem")
    cat = catalogue(f"""
  - id: cheaper_rate_plan
    eligibility: {{field: kind, op: eq, value: residential}}
    suitability: {{field: rate_plan_saving_cents, op: ge, value: 1}}
    value: {{rate_plan_saving: true}}
    plans: [{", ".join(plans)}]
    channels: [web]
""", UNCAPPED)
    savings = {}
    for cid in sorted(sh.records):
        if sh.records[cid]["kind"] != "residential":
            continue
        want = scenarios(sh, cid, {"plans": list(plans)})
        diffs = [i["difference_cents"] for i in want["items"]]
        savings[cid] = max(0, -min(diffs))
        assert rate_plan_saving(sh, cid, plans) == savings[cid]
        if len(savings) >= 12:
            break
    saver = max(savings, key=savings.get)
    assert savings[saver] > 0  # some customer of the base is on a plan its load does not suit
    d = decide(sh, saver, cat, NOON, channel="web")
    assert d["chosen"]["action_id"] == "cheaper_rate_plan"
    assert d["inputs"]["rate_plan_saving_cents"] == savings[saver] == d["chosen"]["value_cents"]
    commercial = next(c for c in sorted(sh.records) if sh.records[c]["kind"] != "residential")
    d = decide(sh, commercial, cat, NOON, channel="web")
    assert "rate_plan_saving_cents" not in d["inputs"]  # not eligible: the what-if never ran
