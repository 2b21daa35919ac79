"""Churn risk: features of a live context, a calibrated gradient-boosted model, explanations, versioned files.

Features (:data:`FEATURES`) are computed in the owning shard from the context (its event history, accounts,
tenure) plus the live event counters of :mod:`grid.decisions.events`, by one function used for training,
whole-base scoring and re-scoring on each event, so the three agree exactly. No feature reads account status
(a churner's accounts are closed: that is the label, not a signal).

The model is scikit-learn's ``HistGradientBoostingClassifier`` (shallow trees) calibrated by Platt scaling over
3 folds (``CalibratedClassifierCV``; isotonic calibration's steps tied scores and cost ranking on small bases);
the churn risk is a probability. Each score is explained by its top contributing
features: the drop in risk when one feature is set to its training median, all features at once in one
batched prediction.

A model file is a pickle under ``<data_dir>/models/churn-<version>.pkl`` (version = digest of the bytes) with
the model, the feature names, the medians and the training metrics; ``churn-latest`` names the newest.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import pickle
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grid.durable import durable_write
from grid.errors import InvalidInput, NotFound
from grid.partitions import PARTITIONS

FEATURES = ("complaints", "high_bills", "missed_payments", "competitor_offers", "rate_comparison_visits",
            "high_bill_calls", "calls", "web_visits", "outages", "offers_accepted", "tenure_years", "n_accounts",
            "residential", "programs")
TOP = 3  # contributing features kept per customer
LATEST = "churn-latest"

# live event type -> feature it adds to (the generated history names outages "outage")
_LIVE = {"complaint": "complaints", "high_bill": "high_bills", "payment_missed": "missed_payments",
         "competitor_offer": "competitor_offers", "call": "calls", "web_visit": "web_visits",
         "outage_experienced": "outages"}
_HISTORY = {"complaint": "complaints", "high_bill": "high_bills", "payment_missed": "missed_payments",
            "competitor_offer": "competitor_offers", "call": "calls", "web_visit": "web_visits",
            "outage": "outages", "offer_accepted": "offers_accepted"}


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


def customer_features(shard, customer_id: str) -> np.ndarray:
    """float64 (len(FEATURES),) of one customer; see the module docstring."""
    rec = shard.record(customer_id)
    f = dict.fromkeys(FEATURES, 0.0)
    latest = None
    for e in rec.get("events") or ():
        name = _HISTORY.get(e["type"])
        if name:
            f[name] += 1
        detail = e.get("detail") or {}
        if e["type"] == "web_visit" and detail.get("page") == "rate-comparison":
            f["rate_comparison_visits"] += 1
        if e["type"] == "call" and detail.get("reason") == "high bill":
            f["high_bill_calls"] += 1
        latest = e["ts"] if latest is None or e["ts"] > latest else latest
    live = shard.decisions.events.get(customer_id)
    ref_ts = _epoch(latest) if latest else None
    if live:
        for kind, n in live["total"].items():
            if kind in _LIVE:
                f[_LIVE[kind]] += n
        for ts, kind, payload, _ in live["raw"]:
            if kind == "web_visit" and payload.get("page") == "rate-comparison":
                f["rate_comparison_visits"] += 1
            if kind == "call" and payload.get("reason") == "high bill":
                f["high_bill_calls"] += 1
        if live["last"]:
            ref_ts = max(ref_ts or 0, max(live["last"].values()))
    if ref_ts is None:  # no events at all: tenure as of now
        ref_ts = dt.datetime.now(dt.timezone.utc).timestamp()
    try:
        f["tenure_years"] = max(0.0, (ref_ts - _epoch(rec["created_at"])) / (365.25 * 86_400))
    except (KeyError, ValueError):
        f["tenure_years"] = 0.0
    f["n_accounts"] = len(rec["accounts"])
    f["residential"] = float(rec["kind"] == "residential")
    f["programs"] = sum(len(a["programs"]) for a in rec["accounts"])
    return np.array([f[k] for k in FEATURES], dtype=np.float64)


def feature_matrix(shard, customer_ids: list[str]) -> np.ndarray:
    out = np.empty((len(customer_ids), len(FEATURES)), dtype=np.float64)
    for i, c in enumerate(customer_ids):
        out[i] = customer_features(shard, c)
    return out


@dataclass
class ChurnModel:
    """A trained, calibrated churn model with what scoring and explaining need."""

    model: object
    features: tuple[str, ...]
    medians: np.ndarray
    metrics: dict = field(default_factory=dict)
    version: str = ""
    trained_at: str = ""

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Churn probability per row, float64 (n,)."""
        if X.shape[0] == 0:
            return np.zeros(0)
        return self.model.predict_proba(X)[:, 1]

    def score(self, X: np.ndarray) -> tuple[np.ndarray, list[list[dict]]]:
        """(probabilities, top contributing features per row: ``{feature, value, contribution}``)."""
        n, k = X.shape
        if n == 0:
            return np.zeros(0), []
        # row r with feature j set to its median sits at n + r * k + j: one prediction call for the rows and
        # every variant (the per-call overhead dominates when an event re-scores one customer)
        variants = np.repeat(X, k, axis=0)
        j = np.tile(np.arange(k), n)
        variants[np.arange(n * k), j] = self.medians[j]
        both = self.predict(np.concatenate([X, variants]))
        p = both[:n]
        contrib = p[:, None] - both[n:].reshape(n, k)
        order = np.argsort(-contrib, axis=1, kind="stable")[:, :TOP]
        tops = []
        for r in range(n):
            tops.append([{"feature": self.features[c], "value": float(X[r, c]),
                          "contribution": round(float(contrib[r, c]), 4)}
                         for c in order[r] if contrib[r, c] > 0])
        return p, tops


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def hand_rule(X: np.ndarray) -> np.ndarray:
    """A rule a retention team might write: one point per complaint, competitor offer, missed payment, shock."""
    i = {f: n for n, f in enumerate(FEATURES)}
    return (X[:, i["complaints"]] + X[:, i["competitor_offers"]] + (X[:, i["missed_payments"]] >= 1)
            + (X[:, i["high_bills"]] >= 1))


def evaluate(y: np.ndarray, p: np.ndarray) -> dict:
    """AUC, Brier score, expected calibration error (10 bins), precision in the top decile and its lift."""
    order = np.argsort(-p, kind="stable")
    top = order[: max(1, len(p) // 10)]
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(abs(p[bins == b].mean() - y[bins == b].mean()) * (bins == b).mean() for b in range(10) if (bins == b).any())
    precision = float(y[top].mean())
    return {"auc": _auc(y, p), "brier": float(np.mean((p - y) ** 2)), "ece": float(ece),
            "precision_top_decile": precision, "lift_top_decile": precision / max(float(y.mean()), 1e-12),
            "base_rate": float(y.mean()), "n": int(len(y))}


def train(X: np.ndarray, y: np.ndarray, seed: int = 0, holdout: float = 0.3,
          threads: int | None = 1) -> tuple[ChurnModel, dict]:
    """Fit the calibrated model on a split of ``(X, y)``; returns it with held-out metrics beside a logistic
    regression baseline and the hand rule (the model is then refitted on everything)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    y = np.asarray(y, dtype=np.int64)
    if y.min() == y.max():
        raise InvalidInput("the base has no churners (or only churners); generate it with a churn rate",
                           field="churn")

    def make():
        # shallow trees, few of them: the generated bases are small and a deep forest overfits their noise
        hgb = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.05, max_depth=3, min_samples_leaf=40,
                                             random_state=seed)
        return CalibratedClassifierCV(hgb, method="sigmoid", cv=3, ensemble=False)

    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=holdout, random_state=seed, stratify=y)
    # one OpenMP thread: at these sizes threads cost more than they give, and the machine is shared
    with threadpool_limits(limits=threads):
        model = make().fit(Xtr, ytr)
        logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(Xtr, ytr)
        metrics = {"model": evaluate(yte, model.predict_proba(Xte)[:, 1]),
                   "logistic": evaluate(yte, logistic.predict_proba(Xte)[:, 1]),
                   "hand_rule_auc": _auc(yte, hand_rule(Xte))}
        final = make().fit(X, y)
    cm = ChurnModel(final, FEATURES, np.median(X, axis=0), metrics,
                    trained_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    return cm, metrics


def save(model: ChurnModel, data_dir: str | Path) -> Path:
    """Write ``model`` as ``<data_dir>/models/churn-<version>.pkl`` (durably) and point ``churn-latest`` at it."""
    model.version = ""
    blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    version = hashlib.sha256(blob).hexdigest()[:12]
    model.version = version
    blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    folder = Path(data_dir) / "models"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"churn-{version}.pkl"
    durable_write(path, blob)
    durable_write(folder / LATEST, path.name.encode())
    return path


def single_threaded() -> None:
    """One OpenMP thread for scoring in this process: a shard scores one customer per event, and with the
    default thread pool a one-row prediction took seconds on a shared 2-core machine (oversubscription)
    against about 3 ms on one thread."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


_cache: dict[str, ChurnModel] = {}
_lock = threading.Lock()


def model_file(path: str | Path) -> Path:
    """``path`` itself, or for a data dir the model file its ``models/churn-latest`` names."""
    path = Path(path)
    if path.is_dir():
        pointer = path / "models" / LATEST
        if not pointer.exists():
            raise NotFound(f"no churn model under {path}; run contextgrid train-churn", field="model")
        path = path / "models" / pointer.read_text().strip()
    return path.resolve()


def load(path: str | Path) -> ChurnModel:
    """The model in ``path`` (a model file, or a data dir whose ``models/churn-latest`` names one)."""
    path = model_file(path)
    key = str(path.resolve())
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    single_threaded()
    try:
        model = pickle.loads(path.read_bytes())  # noqa: S301 - our own file under the data dir
    except OSError as exc:
        raise NotFound(f"cannot read churn model {path}: {exc.strerror}", field="model") from exc
    with _lock:
        _cache[key] = model
    return model


def remember(model: ChurnModel, path: str) -> None:
    """Cache a model this process already holds (an ObjectRef's value) under its file path."""
    single_threaded()
    with _lock:
        _cache[str(Path(path).resolve())] = model


def base_training_set(base_dir: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(customer ids, features, churned) of a generated base with planted churners, its features computed by
    the same function the shards score with (the base is loaded into one plain shard)."""
    import pyarrow.parquet as pq

    from grid.base import read_manifest
    from grid.shard import Shard

    base_dir = Path(base_dir)
    truth_path = base_dir / "truth" / "churn.parquet"
    if not truth_path.exists():
        raise NotFound(f"{base_dir} has no truth/churn.parquet; generate it with a churn rate", field="base")
    manifest = read_manifest(str(base_dir))
    shard = Shard(0, list(range(PARTITIONS)), manifest["timezone"])
    for chunk in range(int(manifest["chunks"])):
        shard.load_chunk(str(base_dir), chunk)
    truth = pq.read_table(truth_path, columns=["customer_id", "churned"]).to_pydict()
    label = dict(zip(truth["customer_id"], truth["churned"]))
    ids = sorted(c for c in shard.records if c in label)
    return ids, feature_matrix(shard, ids), np.array([label[c] for c in ids], dtype=np.int64)


def train_on_base(base_dir: str | Path, data_dir: str | Path, seed: int = 0) -> tuple[Path, dict]:
    """Train on a generated base and write the model file; returns its path and the held-out metrics."""
    _, X, y = base_training_set(base_dir)
    model, metrics = train(X, y, seed=seed)
    return save(model, data_dir), metrics
