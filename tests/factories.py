"""Small hand-made contexts for grid and gateway tests (generated bases are tested in test_load.py)."""
from __future__ import annotations


def context(i: int, kind: str = "residential", solar: bool = False) -> tuple[str, dict]:
    cid = f"C{i:07d}"
    return cid, {
        "name": f"Customer {i}",
        "kind": kind,
        "segment": "mass" if kind == "residential" else "sme",
        "attributes": {"tenure_years": i % 7},
        "accounts": [{
            "account_id": f"A{i:08d}", "rate_plan_id": "res-tou", "status": "active",
            "billing_address": f"{i} Main St, Springfield",
            "programs": [{"code": "BUDGET_BILLING", "enrolled": "2025-01-01"}] if i % 2 else [],
            "service_points": [{"service_point_id": f"S{i:08d}", "premise_address": f"{i} Main St",
                                "meter_id": f"M{i:08d}", "interval_minutes": 60, "has_solar": solar,
                                "load_priority": "critical" if i % 10 == 0 else "normal"}],
        }],
        "contacts": [{"contact_id": f"K{i}", "name": f"Pat {i}", "roles": ["billing"],
                      "channels": [{"type": "email", "address": f"pat{i}@example.com", "preference": 1,
                                    "quiet_hours": None}]}],
    }


def populate(grid, n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        cid, body = context(i, kind="commercial" if i % 5 == 0 else "residential", solar=i % 4 == 0)
        grid.replace(cid, body)
        ids.append(cid)
    return ids
