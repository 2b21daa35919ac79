"""The columns a rule may name, with their types: what rule files are checked against before use.

Account rules and portfolio-link rules read the per-account feature table (:mod:`grid.rules.features`);
portfolio rules read the per-portfolio totals (:mod:`grid.rules.classify`). Free-form customer attributes are
columns named ``attr.<name>`` (nested maps flattened with dots); their type is not known in advance, so a rule
may compare them with any scalar and a row whose value has another type simply does not match.
"""
from __future__ import annotations

from dataclasses import dataclass

ATTR_PREFIX = "attr."

STRING, INT, BOOL, STRINGS, ANY = "string", "int", "bool", "list<string>", "any"

KINDS = ("residential", "commercial", "industrial", "public")
STATUSES = ("active", "closed")
SP_LOAD_PRIORITIES = ("normal", "priority", "critical")


@dataclass(frozen=True)
class Column:
    """One column a rule can name: its type and, for closed vocabularies, the values it can hold."""

    type: str
    doc: str
    values: tuple[str, ...] | None = None


ACCOUNT_COLUMNS: dict[str, Column] = {
    "customer_id": Column(STRING, "the account's customer"),
    "account_id": Column(STRING, "the account"),
    "customer_name": Column(STRING, "the customer's name"),
    "kind": Column(STRING, "customer kind", KINDS),
    "segment": Column(STRING, "customer segment (office, hospital, single_family, ...)"),
    "status": Column(STRING, "account status", STATUSES),
    "rate_plan_id": Column(STRING, "the account's tariff id"),
    "spend_12m_cents": Column(INT, "sum of the account's last 12 legacy bills, cents"),
    "bills_12m": Column(INT, "number of bills summed in spend_12m_cents (at most 12)"),
    "peak_demand_w": Column(INT, "largest interval demand over the usage held, W (Wh x 60 / interval minutes)"),
    "usage_wh": Column(INT, "import energy over the usage held, Wh"),
    "n_service_points": Column(INT, "service points of the account"),
    "n_sites": Column(INT, "distinct premise addresses of the account's service points"),
    "has_solar": Column(BOOL, "any service point has on-site generation"),
    "sp_load_priority": Column(STRING, "highest load_priority of the account's service points", SP_LOAD_PRIORITIES),
    "programs": Column(STRINGS, "program codes the account is enrolled in"),
    "entity_id": Column(STRING, "owning legal entity"),
    "root_entity_id": Column(STRING, "last entity up the owning entity's parent chain"),
    "ownership_depth": Column(INT, "parents above the owning entity (0: it is its own root)"),
    "tax_id": Column(STRING, "the owning entity's tax id"),
    "tax_ids": Column(STRINGS, "every tax id along the ownership chain"),
    "owner_key": Column(STRING, "normalized name + mailing address of the owning entity (grid.normalize.owner_key)"),
    "owner_keys": Column(STRINGS, "owner keys of every entity along the ownership chain"),
}

PORTFOLIO_COLUMNS: dict[str, Column] = {
    "portfolio_id": Column(STRING, "the portfolio"),
    "n_accounts": Column(INT, "accounts in the portfolio"),
    "n_customers": Column(INT, "distinct customers in the portfolio"),
    "n_sites": Column(INT, "distinct premise addresses across the portfolio"),
    "spend_12m_cents": Column(INT, "sum of the accounts' spend_12m_cents"),
    "max_account_spend_12m_cents": Column(INT, "largest single account's spend_12m_cents"),
    "peak_demand_w": Column(INT, "sum of the accounts' peak demands (non-coincident), W"),
    "max_account_peak_demand_w": Column(INT, "largest single account's peak demand, W"),
    "usage_wh": Column(INT, "import energy over the usage held, Wh"),
    "programs": Column(STRINGS, "program codes any account is enrolled in"),
    "kinds": Column(STRINGS, "customer kinds present"),
    "n_key_accounts": Column(INT, "accounts that are key accounts on their own (needs partials built with rules)"),
    "load_priority": Column(STRING, "highest load priority of any account (needs partials built with rules)"),
}

# Portfolio columns that exist only when the partials were computed with the account rules.
NEEDS_ACCOUNT_RULES = frozenset({"n_key_accounts", "load_priority"})


def lookup(name: str, catalogue: dict[str, Column]) -> Column | None:
    """The column ``name`` of ``catalogue``; free-form ``attr.*`` columns are of type ``any``; None if unknown."""
    col = catalogue.get(name)
    if col is not None:
        return col
    if catalogue is ACCOUNT_COLUMNS and name.startswith(ATTR_PREFIX) and len(name) > len(ATTR_PREFIX):
        return Column(ANY, "free-form customer attribute")
    return None
