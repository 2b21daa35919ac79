"""One context model: the structs of grid.model, held equal to api/openapi.yaml, strict and default-filling."""
from __future__ import annotations

import msgspec
import pytest
import yaml
from conftest import auth

from grid import context, model
from grid.errors import InvalidInput
from grid.gateway.validation import OPENAPI_PATH

H = auth("operator")
AT = "2026-03-01T12:00:00+00:00"


# -- the structs and the contract cannot drift ------------------------------------------------------------------
def _spec_schemas() -> dict:
    return yaml.safe_load(OPENAPI_PATH.read_text())["components"]["schemas"]


def _model_schemas() -> dict:
    _, comps = msgspec.json.schema_components(list(model.SCHEMAS.values()),
                                              ref_template="#/components/schemas/{name}")
    return comps


def shape(node: dict, schemas: dict, seen: tuple = ()) -> object:
    """A schema reduced to what must agree: types (null included), enums, bounds, formats, patterns, object
    fields with their required set and strictness; ``$ref`` followed; defaults and prose ignored."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return ("ref", name)
        return shape(schemas[name], schemas, seen + (name,))
    alts = node.get("anyOf") or node.get("oneOf")
    if alts:
        out = set()
        for a in alts:
            s = shape(a, schemas, seen)
            out |= s if isinstance(s, frozenset) else {s}
        return frozenset(out)
    types = node.get("type")
    types = set(types) if isinstance(types, list) else {types} if types else set()
    if "enum" in node:
        types = {"enum"}
    parts = []
    for t in sorted(types):
        if t == "null":
            parts.append(("null",))
            continue
        keys = {k: node[k] for k in ("minimum", "maximum", "minLength", "maxLength", "pattern", "format",
                                     "minItems", "maxItems", "maxProperties") if k in node}
        desc: tuple = (t, tuple(sorted(keys.items())))
        if t == "enum":
            desc += (frozenset(node["enum"]),)
        if t == "array":
            desc += (shape(node.get("items", {}), schemas, seen),)
        if t == "object":
            props = node.get("properties")
            if props is not None:
                desc += (tuple(sorted((k, shape(v, schemas, seen)) for k, v in props.items())),
                         frozenset(node.get("required", [])), node.get("additionalProperties", True) is False)
            if "propertyNames" in node:
                desc += (("names", shape(node["propertyNames"] | {"type": "string"}, schemas, seen)),)
        parts.append(desc)
    return frozenset(parts) if len(parts) != 1 else parts[0]


@pytest.mark.parametrize("name", sorted(model.SCHEMAS))
def test_struct_equals_openapi_schema(name):
    spec, mine = _spec_schemas(), _model_schemas()
    assert name in spec, f"api/openapi.yaml has no schema {name}"
    assert shape(mine[name], mine, (name,)) == shape(spec[name], spec, (name,))


def test_shape_tells_a_drift_apart():
    """The comparison itself notices a dropped field, a changed bound and an added enum value."""
    spec = _spec_schemas()
    base = shape(spec["ServicePoint"], spec)
    for change in (lambda s: s["properties"].pop("has_solar"),
                   lambda s: s["properties"]["meter_id"].update(maxLength=41),
                   lambda s: s["properties"]["interval_minutes"]["enum"].append(5),
                   lambda s: s["required"].remove("interval_minutes")):
        changed = yaml.safe_load(OPENAPI_PATH.read_text())["components"]["schemas"]
        change(changed["ServicePoint"])
        assert shape(changed["ServicePoint"], changed) != base


def test_every_request_body_of_the_context_routes_is_a_model_struct():
    spec = yaml.safe_load(OPENAPI_PATH.read_text())
    body = lambda path, method: spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    assert body("/v1/customers/{id}", "put") == {"$ref": "#/components/schemas/ContextIn"}
    assert body("/v1/customers/{id}", "patch") == {"$ref": "#/components/schemas/CustomerPatch"}
    assert body("/v1/customers/{id}/usage", "post") == {"$ref": "#/components/schemas/UsageReadings"}


# -- decoding: strict, the field named, defaults once -----------------------------------------------------------
MINIMAL = {"name": "Ada", "kind": "commercial",
           "accounts": [{"account_id": "A1", "rate_plan_id": "com-flat",
                         "service_points": [{"service_point_id": "SP-1", "interval_minutes": 15}]}]}


def test_defaults_are_filled_once_at_decode():
    rec = context.validate_replacement("X0000001", MINIMAL, AT)
    sp = rec["accounts"][0]["service_points"][0]
    assert sp == {"service_point_id": "SP-1", "premise_address": "", "meter_id": "", "interval_minutes": 15,
                  "has_solar": False, "load_priority": "normal"}
    a = rec["accounts"][0]
    assert (a["status"], a["bill_cycle_day"], a["programs"]) == ("active", 1, [])
    assert rec["segment"] == "commercial" and rec["created_at"] == AT
    assert rec["supplemental"] == {"projects": []} and rec["classification"] == {}
    assert set(rec) == set(model.CustomerContext.__struct_fields__)
    msgspec.convert(rec, model.CustomerContext)  # the stored record is itself a valid context


def test_program_without_date_is_enrolled_on_the_day_of_the_write():
    body = {**MINIMAL, "accounts": [{**MINIMAL["accounts"][0], "programs": [{"code": "EV_RATE"}]}]}
    rec = context.validate_replacement("X0000001", body, AT)
    assert rec["accounts"][0]["programs"] == [{"code": "EV_RATE", "enrolled": "2026-03-01"}]


@pytest.mark.parametrize("change, field", [
    (lambda b: b.update(nickname="x"), "nickname"),
    (lambda b: b["accounts"][0].update(tariff="x"), "accounts[0].tariff"),
    (lambda b: b["accounts"][0].pop("rate_plan_id"), "accounts[0].rate_plan_id"),
    (lambda b: b["accounts"][0]["service_points"][0].update(interval_minutes=5),
     "accounts[0].service_points[0].interval_minutes"),
    (lambda b: b["accounts"][0]["service_points"][0].update(has_solar="yes"),
     "accounts[0].service_points[0].has_solar"),
    (lambda b: b.update(payments=[{"payment_id": "P1", "date": "2026-02-30", "amount_cents": 5}]),
     "payments[0].date"),
    (lambda b: b.update(events=[{"ts": "2026-01-01T00:00:00", "type": "call"}]), "events[0].ts"),
    (lambda b: b.update(attributes={"big": 2**70}), "attributes.big"),
    (lambda b: b["accounts"].append(dict(b["accounts"][0], account_id="A2")),
     "accounts[1].service_points[0].service_point_id"),
])
def test_bad_context_names_the_field(change, field):
    body = msgspec.json.decode(msgspec.json.encode(MINIMAL))
    change(body)
    with pytest.raises(InvalidInput) as exc:
        context.validate_replacement("X0000001", body, AT)
    assert exc.value.field == field


def test_patch_upsert_keeps_what_it_leaves_out():
    rec = context.validate_replacement("X0000001", {**MINIMAL, "contacts": [
        {"contact_id": "K1", "name": "Ada", "roles": ["billing"], "channels": [{"type": "sms", "address": "+1"}]}]},
        AT)
    new = context.apply_patch(rec, {"contacts": {"upsert": [{"contact_id": "K1", "roles": ["outage"]}]}}, "w", AT)
    assert new["contacts"] == [{"contact_id": "K1", "name": "Ada", "roles": ["outage"],
                                "channels": [{"type": "sms", "address": "+1", "preference": 1,
                                              "quiet_hours": None}]}]
    assert rec["contacts"][0]["roles"] == ["billing"]  # the old record is untouched
    with pytest.raises(InvalidInput) as exc:
        context.apply_patch(rec, {"contacts": {"upsert": [{"contact_id": "K1", "nick": "A"}]}}, "w", AT)
    assert exc.value.field == "contacts.upsert[0].nick"


# -- regression: a PUT without has_solar / load_priority broke every filtered listing ---------------------------
async def test_put_without_solar_or_priority_keeps_filtered_listings_working(api):
    body = {"name": "Sparse Ltd", "kind": "commercial",
            "accounts": [{"account_id": "A-SPARSE-1", "rate_plan_id": "com-demand",
                          "service_points": [{"service_point_id": "SP-SPARSE-1", "interval_minutes": 30}]}]}
    r = await api.put("/v1/customers/X0000101", json=body, headers=H)
    assert r.status == 200, await r.text()
    sp = (await r.json())["accounts"][0]["service_points"][0]
    assert (sp["has_solar"], sp["load_priority"]) == (False, "normal")
    for query in ("has_solar=false", "has_solar=true", "load_priority=normal", "load_priority=critical"):
        r = await api.get(f"/v1/customers?{query}&limit=1000", headers=H)
        assert r.status == 200, (query, await r.text())
        ids = [c["customer_id"] for c in (await r.json())["items"]]
        assert ("X0000101" in ids) == (query in ("has_solar=false", "load_priority=normal")), query


def test_every_generated_context_is_a_valid_model_context(base_dir):
    """Regression: the generator gave contacts a role (``facilities``) the model refused, so a context read back
    with GET could not be PUT again."""
    import numpy as np

    from grid.base import read_chunk, read_entities, read_manifest
    from grid.partitions import PARTITIONS

    manifest = read_manifest(base_dir)
    part = read_chunk(base_dir, 0, np.ones(PARTITIONS, bool), read_entities(base_dir), manifest["months"])
    assert part.records
    for rec in part.records:
        msgspec.convert(rec, model.CustomerContext)
        body = {k: v for k, v in rec.items() if k not in ("version", "customer_id")}
        assert context.validate_replacement(rec["customer_id"], body, AT)["accounts"] == rec["accounts"]


def test_bulk_load_keeps_no_spare_usage_rows(base_dir):
    """Regression (bench_memory): growing blocks by doubling during a load left up to 2x the usage a shard
    needs; after the load every month block holds exactly its service points' rows."""
    from grid.base import read_manifest
    from grid.partitions import PARTITIONS
    from grid.shard import Shard

    shard = Shard(0, list(range(PARTITIONS)))
    for chunk in range(int(read_manifest(base_dir)["chunks"])):
        shard.load_chunk(str(base_dir), chunk)
    before = {(iv, m): shard.usage[iv].series(0, m)[0].copy() for iv in shard.usage for m in shard.usage[iv].months}
    shard.finish_load()
    for iv, store in shard.usage.items():
        for month, block in store.months.items():
            assert block.imp.shape[0] == store.n_rows and block.exp.shape[0] == max(store.n_export, 1)
            assert (store.series(0, month)[0] == before[(iv, month)]).all()
