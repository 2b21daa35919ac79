"""Bill lines carry readable names from their tariff ("Summer peak energy, tier 2", not ENERGY_P1_T1), in the
API answer of the bill routes, so the portal and the console show the same words."""
import json
from pathlib import Path

from conftest import auth

from grid.linenames import line_label, period_names

TARIFFS = Path(__file__).resolve().parents[1] / "rules" / "tariffs"
H = auth("operator")


def test_period_names_derived_from_the_schedule_and_prices():
    urdb = json.loads((TARIFFS / "res-tou.json").read_text())
    # periods 0/1 run June-September (summer), 2/3 the rest; within each season the dearer one is the peak
    assert period_names(urdb)["energy"] == ["Summer off-peak energy", "Summer peak energy",
                                            "Winter off-peak energy", "Winter peak energy"]
    assert line_label("ENERGY_P1_T1", urdb) == "Summer peak energy, tier 2"
    assert line_label("TAX_UUT", urdb) == "UUT tax 7.5 %"
    assert line_label("FIXED", urdb) == "Customer charge"
    flat = json.loads((TARIFFS / "public-flat.json").read_text())
    assert line_label("ENERGY_P0_T0", flat) == "Energy"


def test_period_names_given_by_the_tariff_win():
    urdb = json.loads((TARIFFS / "res-tou.json").read_text())
    urdb["contextgrid"]["period_names"] = {"energy": ["Sommer Neben", "Sommer Spitze", "Winter Neben",
                                                      "Winter Spitze"]}
    assert line_label("ENERGY_P3_T0", urdb) == "Winter Spitze, tier 1"


async def test_bill_routes_answer_a_label_beside_each_code(base_api):
    r = await base_api.get("/v1/customers?limit=20", headers=H)
    ids = [c["customer_id"] for c in (await r.json())["items"]]
    seen = legacy = 0
    for cid in ids:
        r = await base_api.get(f"/v1/customers/{cid}/bills?period=2025-11", headers=H)
        assert r.status == 200
        for item in (await r.json())["items"]:
            for bill in (item["computed"], item["legacy"]):
                for line in (bill or {}).get("lines", []):
                    seen += 1
                    assert line["label"] and "period" not in line["label"].lower(), line
                    if line["code"].startswith("ENERGY_"):
                        assert line["label"].split(",")[0].split(" (")[0].endswith("energy"), line  # "... energy (12:00-18:00)" too
        r = await base_api.get(f"/v1/customers/{cid}/bills", headers=H)
        for bill in (await r.json())["items"]:
            for line in bill.get("lines", []):
                legacy += 1
                assert line["label"] and line["label"] != line["code"], line
    assert seen > 0 and legacy > 0


def test_no_shipped_tariff_names_two_lines_alike():
    """Regression: com-demand (PG&E A-10) priced summer part-peak and peak alike, so both read "Summer peak
    energy" on a bill. Every line a shipped tariff can put on a bill must read differently from the others."""
    from grid.tariffs import SHIPPED, compile_checked

    shipped = sorted(SHIPPED.glob("*.json"))
    assert len(shipped) >= 5
    for path in shipped:
        urdb = json.loads(path.read_text())
        names = period_names(urdb)
        for charge, got in names.items():
            assert len(set(got)) == len(got), f"{path.name}: two {charge} periods named alike: {got}"
        codes = compile_checked(urdb, path.stem).codes
        labels = [line_label(c, urdb, names) for c in codes]
        twins = sorted({lb for lb in labels if labels.count(lb) > 1})
        assert not twins, f"{path.name}: lines {twins} each stand for more than one code of {codes}"
    assert period_names(json.loads((SHIPPED / "com-demand.json").read_text()))["energy"][3:] == [
        "Summer part-peak energy", "Summer peak energy"]


def test_periods_priced_alike_get_the_hours_they_apply():
    # what com-demand's URDB record alone gives (no period_names): summer part-peak and peak at one price
    urdb = json.loads((TARIFFS / "com-demand.json").read_text())
    del urdb["contextgrid"]["period_names"]
    assert period_names(urdb)["energy"] == [
        "Winter off-peak energy", "Winter peak energy", "Summer off-peak energy",
        "Summer peak energy (08:00-12:00 and 18:00-21:00)", "Summer peak energy (12:00-18:00)"]
    assert line_label("ENERGY_P4_T0", urdb) == "Summer peak energy (12:00-18:00)"
    # a period used only at weekends says so
    two = {"energyratestructure": [[{"rate": 0.2}], [{"rate": 0.2}]], "energyweekdayschedule": [[0] * 24] * 12,
           "energyweekendschedule": [[1] * 6 + [0] * 18] * 12}
    assert period_names(two)["energy"] == ["Energy (00:00-24:00)", "Energy (00:00-06:00 weekends)"]
