"""The golden record: per field, the surviving value among a customer's records, and where it came from.

Rule (DOMAIN.md section 8): the value of the highest-priority source (``sources.priority`` in
``rules/identity.yaml``; the context itself is a source named ``context``), then the most recent record of that
source. Every field lists the values it beat, so a reader sees what else the sources said.
"""
from __future__ import annotations

__all__ = ["golden_record", "FIELDS"]

FIELDS = ("name", "kind", "address", "mailing_address", "phone", "email", "tax_id", "account_id",
          "service_point_id", "meter_id")


def golden_record(rules, view: dict) -> dict:
    """``{field: {value, source, record_key, at, others: [...]}}`` from an identity view (grid.identity.reads)."""
    offers: dict[str, list[dict]] = {}
    ctx_at = view.get("created_at") or ""
    for f, v in (view.get("context") or {}).items():
        offers.setdefault(f, []).append({"value": v, "source": "context", "record_key": "context", "at": ctx_at})
    for link in view.get("links") or []:
        m = link["member"]
        at = m.get("at") or link.get("at") or ""
        for f, v in (m.get("values") or {}).items():
            offers.setdefault(f, []).append({"value": v, "source": m["source"], "record_key": link["record_key"],
                                             "at": at})
    out = {}
    for f in FIELDS:
        cands = offers.get(f)
        if not cands:
            continue
        # priority ascending, then the most recent first (RFC 3339 UTC strings order as times)
        cands = sorted(cands, key=lambda c: c["record_key"])
        cands.sort(key=lambda c: c["at"], reverse=True)
        cands.sort(key=lambda c: rules.priority(c["source"]))
        best = dict(cands[0])
        best["others"] = [{"value": c["value"], "source": c["source"], "record_key": c["record_key"]}
                          for c in cands[1:] if c["value"] != best["value"]]
        out[f] = best
    return out
