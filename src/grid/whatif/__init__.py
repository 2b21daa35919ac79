"""What-ifs on one customer's live context, run inside the owning shard (``Grid.acurrent_bill`` and its
siblings call the shard's named methods, which call these).

Each function takes the shard (``grid.shard.Shard``) first and bills with the same kernel as the bill run
(``kernels.billing.bill_intervals``), so a what-if on the current plan equals the real bill:

* :func:`current_bill` (``current.py``): bill-to-date of the open period and the projected period bill;
* :func:`scenarios` (``scenarios.py``): candidate rate plans and load changes (``changes.py``), ranked;
* :func:`forecast` (``forecast.py``): monthly budget forecast with an uncertainty band, levelized amounts;
* :func:`green` (``green.py``): solar and green-program shares, export, avoided CO2.

``loads.py`` reads an account's load over any period, ``plans.py`` resolves catalogue and inline tariffs once per
process, ``solar.py`` holds generation profiles, ``periods.py`` the bill periods.
"""
from grid.whatif.current import current_bill
from grid.whatif.forecast import forecast
from grid.whatif.green import DEFAULT_FACTORS, green
from grid.whatif.plans import PlanCatalogue
from grid.whatif.scenarios import scenarios

__all__ = ["current_bill", "scenarios", "forecast", "green", "PlanCatalogue", "DEFAULT_FACTORS"]
