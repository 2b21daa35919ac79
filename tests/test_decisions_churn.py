"""Churn risk: planted churners with truth, a calibrated model better than its baselines, whole-base scoring
through the grid equal to per-customer scoring, re-scoring on events, and the listing filter."""
from __future__ import annotations

import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import auth

from grid.decisions import churn
from grid.decisions.events import iso

H = auth("operator")
CUSTOMERS = 5000


@pytest.fixture(scope="session")
def churn_base(tmp_path_factory):
    from grid.synth import generate_base

    out = tmp_path_factory.mktemp("churn-base")
    generate_base(out, CUSTOMERS, seed=11, months=1, chunk_customers=2500, churn_rate=0.1)
    return out


@pytest.fixture(scope="session")
def trained(churn_base):
    churn.single_threaded()  # as in the shards: oversubscribed OpenMP threads make predictions crawl
    ids, X, y = churn.base_training_set(churn_base)
    model, metrics = churn.train(X, y, seed=0)
    return ids, X, y, model, metrics


def test_planted_churners_close_after_their_signals(churn_base):
    truth = pq.read_table(churn_base / "truth" / "churn.parquet").to_pandas()
    assert len(truth) == CUSTOMERS
    assert 0.07 < truth["churned"].mean() < 0.13
    accounts = pq.read_table(churn_base / "accounts").to_pandas()
    closed = accounts.groupby("customer_id")["status"].apply(lambda s: (s == "closed").all())
    churned = set(truth.loc[truth["churned"], "customer_id"])
    assert all(closed[c] for c in churned)
    # the signals the truth names are in the customers' events
    customers = pq.read_table(churn_base / "customers", columns=["customer_id", "events"]).to_pandas()
    events = dict(zip(customers["customer_id"], customers["events"]))
    competitors = truth.loc[truth["competitor_offer"], "customer_id"]
    assert all('"competitor_offer"' in events[c] for c in competitors)
    # and signals raise the churn rate (what the model must find)
    assert truth.loc[truth["bill_shock"] & (truth["complaints"] > 0), "churned"].mean() > 2 * truth["churned"].mean()


def test_generator_without_churn_rate_plants_nothing(base_dir):
    assert not (base_dir / "truth" / "churn.parquet").exists()


def test_model_beats_logistic_regression_and_the_hand_rule_and_is_calibrated(trained):
    *_, metrics = trained
    m, lr = metrics["model"], metrics["logistic"]
    assert m["auc"] > lr["auc"], metrics
    assert m["auc"] > metrics["hand_rule_auc"], metrics
    assert m["ece"] < 0.04, metrics                     # calibrated: predicted rates match observed ones
    assert abs(m["brier"]) < m["base_rate"]              # better than always predicting 0
    assert m["lift_top_decile"] > 3


def test_explanations_name_the_signals(trained):
    ids, X, y, model, _ = trained
    p, tops = model.score(X[:200])
    assert np.all((0 <= p) & (p <= 1))
    top_row = int(np.argmax(p))
    assert tops[top_row] and tops[top_row][0]["contribution"] > 0
    assert {t["feature"] for t in tops[top_row]} <= set(churn.FEATURES)


def test_train_cli_writes_a_versioned_model(churn_base, tmp_path):
    from grid.cli import main

    assert main(["train-churn", "--base", str(churn_base), "--data-dir", str(tmp_path)]) == 0
    files = list((tmp_path / "models").glob("churn-*.pkl"))
    assert len(files) == 1
    model = churn.load(tmp_path)
    assert files[0].name == f"churn-{model.version}.pkl"


@pytest.mark.slow
async def test_whole_base_score_equals_per_customer_score(ray_session, keystore, churn_base, trained, tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    from grid.cluster import Grid
    from grid.gateway.app import create_app

    ids, X, _, model, _ = trained
    churn.save(model, tmp_path)
    g = Grid.start(data_dir=str(tmp_path), shards=2, namespace="cg-churn-score")
    try:
        g.load(str(churn_base))
        async with TestClient(TestServer(create_app(g, keys=keystore))) as api:
            r = await api.post("/v1/admin/churn/score", headers=H)
            assert r.status == 200, await r.text()
            assert sum(i["scored"] for i in (await r.json())["items"]) == CUSTOMERS
            expected = dict(zip(ids, model.predict(X).tolist()))
            sample = ids[:: CUSTOMERS // 40]
            for cid in sample:
                ctx = await (await api.get(f"/v1/customers/{cid}", headers=H)).json()
                assert ctx["classification"]["churn_risk"] == pytest.approx(expected[cid], abs=1e-12)
            high = [c for c, p in expected.items() if p >= 0.7]
            page = await (await api.get("/v1/customers?churn_risk_gte=0.7&limit=1000", headers=H)).json()
            assert sorted(i["customer_id"] for i in page["items"]) == sorted(high)
            # an event re-scores its customer at once, with the same model
            low = min(expected, key=expected.get)
            r = await api.post("/v1/events", json={"events": [
                {"customer_id": low, "type": t, "time": iso(int(time.time()))}
                for t in ("competitor_offer", "complaint", "complaint", "high_bill")]}, headers=H)
            assert r.status == 200, await r.text()
            view = await (await api.get(f"/v1/customers/{low}/events", headers=H)).json()
            assert view["churn"]["churn_risk"] > expected[low]
            assert view["churn"]["model_version"] == model.version
            ctx = await (await api.get(f"/v1/customers/{low}", headers=H)).json()
            assert ctx["classification"]["churn_risk"] == view["churn"]["churn_risk"]
            d = await (await api.get(f"/v1/customers/{low}/next-best-action", headers=H)).json()
            assert d["versions"]["churn_model"] == model.version
            assert d["inputs"]["churn_risk_pct"] == round(100 * view["churn"]["churn_risk"])
    finally:
        g.shutdown()
