"""Nested CV: out-of-fold predictions cover every sample once per repeat, are reproducible, and
the training job writes deterministic outputs."""

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_GRIDS
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from metasig.learn import metrics
from metasig.learn.nested_cv import final_fit, nested_cv

CV = {"outer_folds": 3, "outer_repeats": 2, "inner_folds": 3, "bootstrap": 200, "permuted_repeats": 1}


def _data(n=90, classes=2, seed=0):
    X, y = make_classification(
        n_samples=n, n_features=8, n_informative=4, n_classes=classes, n_clusters_per_class=1, random_state=seed
    )
    return pd.DataFrame(X, index=[f"s{i}" for i in range(n)], columns=[f"g{j}" for j in range(8)]), y


def _pipeline():
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000))])


def test_oof_covers_every_sample_once_per_repeat_and_is_deterministic():
    X, y = _data()
    grid = {"model__C": [0.1, 1.0]}
    pred = nested_cv(_pipeline(), grid, X, y, "binary", CV, seed=7)
    assert list(pred.columns) == ["repeat", "fold", "sample", "y_true", "score"]
    assert sorted(pred["repeat"].unique()) == [0, 1]
    for _, part in pred.groupby("repeat"):
        assert sorted(part["sample"]) == sorted(X.index)  # each sample exactly once
        assert sorted(part["fold"].unique()) == [0, 1, 2]
        truth = pd.Series(y, index=X.index).loc[part["sample"]].to_numpy()
        assert np.array_equal(part["y_true"].to_numpy(), truth)  # labels follow the sample IDs
    assert pred["score"].between(0, 1).all()
    # the two repeats split differently
    folds = pred.pivot(index="sample", columns="repeat", values="fold")
    assert (folds[0] != folds[1]).any()
    # same seed -> identical predictions; another seed -> other folds
    pd.testing.assert_frame_equal(pred, nested_cv(_pipeline(), grid, X, y, "binary", CV, seed=7))
    other = nested_cv(_pipeline(), grid, X, y, "binary", CV, seed=8)
    assert not other["sample"].equals(pred["sample"])
    auc = metrics.bootstrap_ci(pred, metrics.classification_metric_fn(["0", "1"]), 200, 0)["roc_auc"]
    assert auc["estimate"] > 0.8


@pytest.mark.parametrize("kind", ["xgboost", "random_forest", "elasticnet", "logistic", "svm"])
def test_outer_folds_in_parallel_give_the_same_predictions(kind):
    from metasig.learn.models import build

    X, y = _data(n=80, classes=3)
    pipeline, grid = build({"kind": kind, "search": SMALL_GRIDS[kind]}, "multiclass", {}, "none", 0)
    serial = nested_cv(pipeline, grid, X, y, "multiclass", CV, seed=3, n_jobs=1)
    parallel = nested_cv(pipeline, grid, X, y, "multiclass", CV, seed=3, n_jobs=3)
    pd.testing.assert_frame_equal(serial, parallel, check_exact=True)


@pytest.mark.parametrize("kind", ["elasticnet", "coxph"])
def test_outer_folds_in_worker_processes_give_the_same_predictions_and_logs(kind, monkeypatch, caplog):
    """Estimators that hold the GIL fit their outer folds in processes on big inputs (here forced
    on a small one): the same predictions as serial fits, and every fold's log line reaches the job."""
    import logging

    from metasig.learn import nested_cv as module
    from metasig.learn.models import build

    task = "survival" if kind == "coxph" else "binary"
    X, y = _data(n=80)
    if task == "survival":
        y = np.array(list(zip(y.astype(bool), 1.0 + np.arange(80) % 17)), dtype=[("event", bool), ("time", float)])
    pipeline, grid = build({"kind": kind, "search": SMALL_GRIDS[kind]}, task, {}, "none", 0)
    monkeypatch.setattr(module, "PROCESS_MIN_VALUES", 0)
    assert module.parallel_backend(pipeline, grid, X.shape, 2) == "loky"
    serial = nested_cv(pipeline, grid, X, y, task, CV, seed=3, n_jobs=1)
    caplog.clear()  # the serial run's records too, where an earlier test left INFO enabled
    with caplog.at_level(logging.INFO, logger="metasig.learn.nested_cv"):
        parallel = nested_cv(pipeline, grid, X, y, task, CV, seed=3, n_jobs=2)
    pd.testing.assert_frame_equal(serial, parallel, check_exact=True)
    folds = [r for r in caplog.records if r.name == "metasig.learn.nested_cv" and "outer repeat" in r.getMessage()]
    assert len(folds) == 6 and any(r.processName != "MainProcess" for r in folds)


def test_a_worker_fold_reaches_the_jobs_log_when_it_finishes_not_at_the_end(tmp_path):
    """The last task waits (up to 2 minutes) for the first task's log record to reach the job:
    replayed only when the pool returns, it would never see it."""
    import logging
    import time

    from metasig.learn.nested_cv import run_tasks

    seen = tmp_path / "seen"

    def first():
        logging.getLogger("metasig.test_progress").info("first fold done")
        return "first"

    def last():
        deadline = time.monotonic() + 120
        while not seen.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return seen.exists()

    handler = logging.Handler()
    handler.emit = lambda record: seen.touch() if record.getMessage() == "first fold done" else None
    logger = logging.getLogger("metasig.test_progress")
    logger.addHandler(handler)
    try:
        assert run_tasks([first, last], "loky", n_jobs=2) == ["first", True]
    finally:
        logger.removeHandler(handler)


def test_models_that_release_the_gil_keep_their_outer_folds_in_threads():
    from metasig.learn import nested_cv as module
    from metasig.learn.models import build

    for kind in ("xgboost", "random_forest", "logistic", "svm"):
        pipeline, grid = build({"kind": kind}, "binary", {}, "none", 0)
        assert module.parallel_backend(pipeline, grid, (1000, 20000), 2) == "threading"
    pipeline, grid = build({"kind": "linear_sweep"}, "binary", {}, "none", 0)
    assert module.parallel_backend(pipeline, grid, (1000, 20000), 2) == "loky"
    assert module.parallel_backend(pipeline, grid, (1000, 20000), 1) == "threading"
    assert module.parallel_backend(pipeline, grid, (100, 30), 2) == "threading"


@pytest.mark.parametrize(
    "kind, search, compiles",
    [("elasticnet", {"C": [1.0]}, True), ("elasticnet", {"l1_ratio": [0.0]}, False), ("logistic", None, False)],
)
def test_a_fit_compiles_the_solver_before_it_copies_any_fold(kind, search, compiles, monkeypatch):
    """skglm's solver, compiled beside a fold's copies, raised a worker's peak memory: each fit
    compiles it first, where its estimators use it, and only then touches the data."""
    from metasig.learn import linear
    from metasig.learn import nested_cv as module
    from metasig.learn.models import build

    events = []
    monkeypatch.setattr(linear, "compile_solver", lambda: events.append("compile"))
    original = module.search

    def search_spy(*args, **kwargs):
        events.append("search")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "search", search_spy)
    X, y = _data(n=60)
    pipeline, grid = build({"kind": kind, "search": search or SMALL_GRIDS[kind]}, "binary", {}, "none", 0)
    final_fit(pipeline, {**grid, "model__C": [0.1, 1.0]}, X, y, "binary", CV, 0)  # two candidates: a search
    assert events[-1] == "search"
    assert set(events[:-1]) == ({"compile"} if compiles else set())


def test_multiclass_probability_columns():
    X, y = _data(n=120, classes=3, seed=1)
    labels = np.array(["alpha", "beta", "gamma"])[y]
    pred = nested_cv(_pipeline(), {}, X, labels, "multiclass", {**CV, "outer_repeats": 1}, seed=0)
    cols = ["proba_alpha", "proba_beta", "proba_gamma"]
    assert list(pred.columns) == ["repeat", "fold", "sample", "y_true"] + cols
    assert np.allclose(pred[cols].sum(axis=1), 1.0)
    assert set(pred["y_true"]) == set(labels)


def test_survival_predictions():
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    rng = np.random.default_rng(3)
    n = 120
    X = pd.DataFrame(rng.normal(size=(n, 4)), index=[f"p{i}" for i in range(n)], columns=list("abcd"))
    t = rng.exponential(10 * np.exp(-X["a"].to_numpy()))
    c = rng.exponential(15, n)
    y = Surv.from_arrays(t <= c, np.minimum(t, c) + 0.01)
    pipe = Pipeline([("scale", StandardScaler()), ("model", CoxPHSurvivalAnalysis())])
    pred = nested_cv(pipe, {"model__alpha": [0.1, 10.0]}, X, y, "survival", {**CV, "outer_repeats": 1}, seed=0)
    assert list(pred.columns[:6]) == ["repeat", "fold", "sample", "time", "event", "risk"]
    cols, grid = metrics.surv_columns(pred)
    assert len(grid) >= 2 and ((pred[cols] >= 0) & (pred[cols] <= 1)).all().all()
    # survival probabilities fall with time
    assert (np.diff(pred[cols].to_numpy(), axis=1) <= 1e-12).all()
    out = metrics.bootstrap_ci(pred, metrics.survival_metric_fn(), 200, 0)
    assert out["c_index"]["estimate"] > 0.65
    assert 0 < out["ibs"]["estimate"] < 0.25


def test_final_fit_tunes_on_inner_folds():
    X, y = _data()
    model, best = final_fit(_pipeline(), {"model__C": [0.001, 1.0]}, X, y, "binary", CV, seed=0)
    assert best["model__C"] in (0.001, 1.0)
    assert model.named_steps["model"].C == best["model__C"]
    assert model.predict_proba(X).shape == (len(X), 2)


# ---- the training job ------------------------------------------------------------------------


def test_train_writes_deterministic_outputs(tmp_path):
    pytest.importorskip("metasig.learn.artifacts")
    from metasig.learn.job import train, write_outputs

    X, y = _data(n=80)
    task = {"type": "binary", "label": "status", "positive": "malignant"}
    model = {"kind": "elasticnet", "search": {"C": [0.1, 1.0], "l1_ratio": [0.5]}}
    cv = {**CV, "outer_repeats": 1, "n_jobs": 1}
    identity = {
        "dataset": "d",
        "task": "t",
        "group": "ALL",
        "model": "enet",
        "kind": "binary",
        "model_kind": "elasticnet",
    }
    written = []
    for run in range(2):
        result = train(X, y, task, model, cv, {"scale": True}, "none", seed=3)
        write_outputs(result, tmp_path / str(run), identity, list(X.columns))
        written.append((tmp_path / str(run) / "metrics.json").read_bytes())
    assert written[0] == written[1]
    doc = pd.read_json(tmp_path / "0" / "metrics.json", typ="series")
    assert doc["classes"] == ["not malignant", "malignant"]
    assert doc["features"] == list(X.columns) and doc["n_features"] == 8 and doc["n_samples"] == 80
    assert set(doc["metrics"]) == set(metrics.CLASSIFICATION_METRICS) == set(doc["permuted"])
    assert doc["cv"] == {k: CV[k] for k in ("outer_folds", "inner_folds", "bootstrap", "permuted_repeats")} | {
        "outer_repeats": 1
    }
    assert doc["metrics"]["roc_auc"]["ci_low"] > doc["permuted"]["roc_auc"]["ci_high"]
    pred = pd.read_csv(tmp_path / "0" / "predictions.tsv", sep="\t")
    assert list(pred.columns) == ["control", "repeat", "fold", "sample", "y_true", "score"]
    assert pred["control"].value_counts().to_dict() == {"real": 80, "permuted": 80}
    # the permuted control keeps the class balance but breaks the sample-label link
    perm = pred[pred["control"] == "permuted"].set_index("sample")["y_true"]
    real = pred[pred["control"] == "real"].set_index("sample")["y_true"]
    assert perm.sum() == real.sum() and (perm.loc[real.index] != real).any()
    # real and permuted ROC-AUC: the same estimator, the mean of the per-fold values
    for control, block in (("real", "metrics"), ("permuted", "permuted")):
        part = pred[pred["control"] == control]
        per_fold = [roc_auc_score(p["y_true"], p["score"]) for _, p in part.groupby(["repeat", "fold"])]
        pooled = np.mean([roc_auc_score(p["y_true"], p["score"]) for _, p in part.groupby("repeat")])
        assert doc[block]["roc_auc"]["estimate"] == pytest.approx(np.mean(per_fold), abs=1e-6)
        assert doc[block]["roc_auc"]["pooled"] == pytest.approx(pooled, abs=1e-6)
        assert doc[block]["roc_auc"]["folds_used"] == doc[block]["roc_auc"]["folds"] == 3
    imp = pd.read_csv(tmp_path / "0" / "importance.tsv", sep="\t")
    assert sorted(imp["feature"]) == sorted(X.columns) and imp["importance"].is_monotonic_decreasing
    assert "fit_seconds" in pd.read_json(tmp_path / "0" / "timing.json", typ="series")
    assert (tmp_path / "0" / "model").is_dir()
    with pytest.raises(ValueError, match="features differ"):
        write_outputs(result, tmp_path / "x", identity, list(reversed(X.columns)))


def test_train_survival_permutes_time_and_event_together(tmp_path):
    pytest.importorskip("metasig.learn.artifacts")
    from metasig.learn.job import train

    rng = np.random.default_rng(4)
    n = 90
    X = pd.DataFrame(rng.normal(size=(n, 3)), index=[f"p{i}" for i in range(n)], columns=["a", "b", "c"])
    y = np.empty(n, dtype=[("event", bool), ("time", float)])
    y["time"] = rng.exponential(10 * np.exp(-X["a"].to_numpy())) + 0.1
    y["event"] = rng.random(n) < 0.7
    result = train(
        X,
        y,
        {"type": "survival", "time": "t", "event": "e"},
        {"kind": "coxph", "search": {"penalizer": [0.1], "l1_ratio": [0.0]}},
        {**CV, "outer_repeats": 1},
        {"scale": True},
        "none",
        seed=0,
    )
    assert result.classes is None and set(result.metrics) == {"c_index", "ibs"}
    perm = result.predictions[result.predictions["control"] == "permuted"]
    pairs = set(zip(y["time"], y["event"].astype(int)))
    assert set(zip(perm["time"], perm["event"])) == pairs  # (time, event) pairs kept intact
    assert result.metrics["c_index"]["estimate"] > 0.6
    assert any(c.startswith("surv_") for c in result.predictions.columns)


@pytest.mark.parametrize("permuted_repeats", [1, 2])
def test_train_runs_its_parts_in_one_pool_with_the_results_of_each_run_alone(monkeypatch, permuted_repeats):
    """The real folds, the permuted control's folds and the final fit run in one pool of worker
    processes; each part's result is what nested_cv / final_fit give run alone, in this process."""
    from metasig.learn import nested_cv as ncv
    from metasig.learn.job import job_pipeline, train
    from metasig.learn.splits import permute

    X, y = _data(n=72, classes=3, seed=5)
    X = pd.DataFrame(X, columns=[f"g{i}" for i in range(X.shape[1])])
    task, model = {"type": "multiclass"}, {"kind": "elasticnet", "search": {"C": [0.1, 1.0], "l1_ratio": [0.5]}}
    cv = {**CV, "permuted_repeats": permuted_repeats}
    monkeypatch.setattr(ncv, "PROCESS_MIN_VALUES", 0)  # elasticnet's folds go to worker processes
    pipeline, grid = job_pipeline(X, "multiclass", model, {"scale": True}, "none", 3)
    assert ncv.parallel_backend(pipeline, grid, X.shape, 2) == "loky"
    pooled = train(X, y, task, model, cv, {"scale": True}, "none", seed=3, n_jobs=2)

    predictions = pooled.predictions.drop(columns="control")
    real = predictions[pooled.predictions["control"] == "real"].reset_index(drop=True)
    pd.testing.assert_frame_equal(real, nested_cv(pipeline, grid, X, y, "multiclass", cv, seed=3))
    permuted = predictions[pooled.predictions["control"] == "permuted"].reset_index(drop=True)
    alone = [
        nested_cv(pipeline, grid, X, permute(y, 3 + r), "multiclass", {**cv, "outer_repeats": 1}, 3 + r).assign(
            repeat=r
        )
        for r in range(permuted_repeats)
    ]
    pd.testing.assert_frame_equal(permuted, pd.concat(alone, ignore_index=True))
    final, best = final_fit(pipeline, grid, X, y, "multiclass", cv, seed=3)
    assert pooled.best_params == best and np.array_equal(pooled.final[-1].coef_, final[-1].coef_)
    assert all(pooled.timing[f"{part}_seconds"] > 0 for part in ("nested_cv", "permuted", "final_fit"))
    assert pooled.timing["n_jobs"] == 2
