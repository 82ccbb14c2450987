"""grid_predictions of the XGBoost models: one shared matrix, one booster per n_estimators group,
each candidate scored on its prefix; it must give exactly what separate fits give."""

import json

import numpy as np
import pytest
import xgboost as xgb
from sklearn.base import clone
from sklearn.model_selection import ParameterGrid
from sklearn.utils.class_weight import compute_sample_weight

from metasig.learn import xgb as xgb_module
from metasig.learn.survival import XGBoostCox
from metasig.learn.xgb import XGBoostClassifier

GRID = list(ParameterGrid({"max_depth": [2, 3], "n_estimators": [7, 3, 12], "learning_rate": [0.3]}))
SUBSAMPLED = {"subsample": 0.7, "colsample_bytree": 0.6}


def data(n=150, p=25, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.lognormal(size=(n, p))
    y_binary = (X[:, 0] + X[:, 1] + rng.normal(size=n) > 3.6).astype(int)
    y_multi = np.array(["b", "a", "c"])[np.digitize(X[:, 2] + 0.3 * rng.normal(size=n), [1.0, 2.0])]
    time = rng.exponential(np.exp(-np.log(X[:, 3])))
    y_surv = np.empty(n, dtype=[("event", bool), ("time", float)])
    y_surv["event"], y_surv["time"] = time < 1.5, np.minimum(time, 1.5)
    return (
        X[:100],
        X[100:],
        {
            "binary": (y_binary[:100], XGBoostClassifier),
            "multiclass": (y_multi[:100], XGBoostClassifier),
            "survival": (y_surv[:100], XGBoostCox),
        },
    )


def separate(est, X, y, X_valid, candidate):
    fitted = clone(est).set_params(**candidate).fit(X, y)
    return fitted.predict(X_valid) if isinstance(est, XGBoostCox) else fitted.predict_proba(X_valid)


@pytest.mark.parametrize("task", ["binary", "multiclass", "survival"])
@pytest.mark.parametrize("extra", [{}, SUBSAMPLED], ids=["full", "subsampled"])
def test_grid_predictions_equal_separate_fits(task, extra):
    X, X_valid, targets = data()
    y, cls = targets[task]
    est = cls(random_state=3, **extra)
    outputs = est.grid_predictions(X, y, X_valid, GRID)
    assert len(outputs) == len(GRID)
    for candidate, out in zip(GRID, outputs):
        np.testing.assert_array_equal(out, separate(est, X, y, X_valid, candidate))
    # the prefixes really differ (the test would pass trivially if n_estimators were ignored)
    assert not np.array_equal(outputs[0], outputs[1])
    if task != "survival":
        assert outputs[0].shape == (len(X_valid), len(np.unique(y)))


def test_grid_predictions_trains_one_booster_per_group(monkeypatch):
    X, X_valid, targets = data()
    y, _ = targets["binary"]
    boosters, matrices = [], []
    real_start, real_matrix = xgb_module.start_booster, xgb_module._train_matrix
    monkeypatch.setattr(xgb_module, "start_booster", lambda *a: boosters.append(real_start(*a)) or boosters[-1])
    monkeypatch.setattr(xgb_module, "_train_matrix", lambda *a: matrices.append(1) or real_matrix(*a))
    XGBoostClassifier().grid_predictions(X, y, X_valid, GRID)
    assert [b.num_boosted_rounds() for b in boosters] == [12, 12] and len(matrices) == 1


def test_a_booster_grown_in_steps_is_the_one_grown_in_one_go():
    """The grid grows a booster only as far as the candidates asked for so far need (7 rounds,
    then 12), with subsampling drawing new rows and genes every round."""
    X, X_valid, targets = data()
    y, _ = targets["multiclass"]
    est = XGBoostClassifier(max_depth=3, random_state=3, **SUBSAMPLED)
    grid = est.grid_session(X, y, X_valid, [{"n_estimators": 7}, {"n_estimators": 12}])
    first = grid.output(0)
    np.testing.assert_array_equal(grid.output(1), separate(est, X, y, X_valid, {"n_estimators": 12}))
    np.testing.assert_array_equal(first, separate(est, X, y, X_valid, {"n_estimators": 7}))


def test_fit_matches_xgboost_sklearn_wrapper():
    """fit trains exactly what XGBClassifier / XGBRegressor would (the models before grid_predictions)."""
    X, X_valid, targets = data()
    for task in ("binary", "multiclass"):
        y, _ = targets[task]
        est = XGBoostClassifier(n_estimators=9, **SUBSAMPLED).fit(X, y)
        y_enc = np.searchsorted(est.classes_, y)
        weight = None if task == "binary" else compute_sample_weight("balanced", y_enc)
        ref = xgb.XGBClassifier(**est.xgb_params_).fit(X.astype(np.float32), y_enc, sample_weight=weight)
        np.testing.assert_array_equal(est.predict_proba(X_valid), ref.predict_proba(X_valid.astype(np.float32)))
    y, _ = targets["survival"]
    cox = XGBoostCox(n_estimators=9, **SUBSAMPLED).fit(X, y)
    ref = xgb.XGBRegressor(objective="survival:cox", **cox.get_params())
    ref.fit(X.astype(np.float32), np.where(y["event"], y["time"], -y["time"]))
    np.testing.assert_array_equal(cox.predict(X_valid), ref.predict(X_valid.astype(np.float32), output_margin=True))


def test_grid_predictions_keep_class_balancing():
    X, X_valid, targets = data()
    y, _ = targets["binary"]
    candidates = [{"n_estimators": 5}, {"n_estimators": 5, "scale_pos_weight": None}]
    balanced, plain = XGBoostClassifier().grid_predictions(X, y, X_valid, candidates)
    assert balanced[:, 1].mean() > plain[:, 1].mean()  # a minority positive class gains weight
    y, _ = targets["multiclass"]
    balanced, plain = XGBoostClassifier().grid_predictions(X, y, X_valid, candidates)
    np.testing.assert_array_equal(balanced, separate(XGBoostClassifier(), X, y, X_valid, candidates[0]))
    np.testing.assert_array_equal(plain, separate(XGBoostClassifier(), X, y, X_valid, candidates[1]))
    assert not np.array_equal(balanced, plain)


@pytest.mark.parametrize("cls", [XGBoostClassifier, XGBoostCox])
def test_n_jobs_is_xgboost_nthread(cls, monkeypatch):
    X, X_valid, targets = data()
    y, _ = targets["survival" if cls is XGBoostCox else "binary"]
    seen = []
    real_start = xgb_module.start_booster

    def start(params, dtrain):
        booster = real_start(params, dtrain)
        seen.append(json.loads(booster.save_config())["learner"]["generic_param"]["nthread"])
        return booster

    monkeypatch.setattr(xgb_module, "start_booster", start)
    for name in ("DMatrix", "QuantileDMatrix"):
        real = getattr(xgb, name)
        monkeypatch.setattr(xgb, name, lambda *a, _real=real, **kw: seen.append(kw["nthread"]) or _real(*a, **kw))
    cls(n_estimators=3, n_jobs=2).grid_predictions(X, y, X_valid, [{}])
    assert seen == [2, 2, "2"]  # validation matrix, training matrix, booster
    seen.clear()
    monkeypatch.setattr(xgb_module, "start_booster", real_start)
    fitted = cls(n_estimators=3, n_jobs=2).fit(X, y)
    fitted.predict(X_valid)
    assert len(seen) >= 2 and set(seen) == {2}  # training matrix, prediction matrices
    assert json.loads(fitted.booster_.save_config())["learner"]["generic_param"]["nthread"] == "2"


def test_grid_predictions_reject_zero_rounds():
    X, X_valid, targets = data()
    with pytest.raises(ValueError, match="n_estimators"):
        XGBoostClassifier().grid_predictions(X, targets["binary"][0], X_valid, [{"n_estimators": 0}])


@pytest.mark.parametrize("n_classes", [2, 5])
def test_predictions_do_not_depend_on_n_jobs(n_classes):
    """XGBoost estimates the intercept with a sum in thread order; the balanced fits fix it, so the
    multiclass fit below (whose 7th digit differed on 1 and 2 threads before) is the same."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 50)).astype(np.float32)
    y = (X[:, :5] @ rng.standard_normal((5, n_classes)) + rng.gumbel(size=(200, n_classes))).argmax(axis=1)
    one, two = (
        XGBoostClassifier(n_estimators=10, n_jobs=n).fit(X[:133], y[:133]).predict_proba(X[133:]) for n in (1, 2)
    )
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("task", ["multiclass", "survival"])
def test_grid_over_max_bin_bins_each_candidate_as_a_separate_fit_does(task):
    """max_bin decides the training matrix: candidates with other bins may not share one."""
    X, X_valid, targets = data()
    y, cls = targets[task]
    grid = list(ParameterGrid({"max_bin": [8, 64], "n_estimators": [3, 7]}))
    outputs = cls(random_state=3).grid_predictions(X, y, X_valid, grid)
    for candidate, out in zip(grid, outputs):
        np.testing.assert_array_equal(out, separate(cls(random_state=3), X, y, X_valid, candidate))
    assert not np.array_equal(outputs[1], outputs[3])  # 8 bins and 64 give other trees
    coarse = cls(n_estimators=7, max_bin=8).fit(X, y)
    if task == "multiclass":
        y_enc = np.searchsorted(coarse.classes_, y)
        ref = xgb.XGBClassifier(**coarse.xgb_params_)
        ref.fit(X.astype(np.float32), y_enc, sample_weight=compute_sample_weight("balanced", y_enc))
        np.testing.assert_array_equal(coarse.predict_proba(X_valid), ref.predict_proba(X_valid.astype(np.float32)))


@pytest.mark.parametrize("task", ["binary", "survival"])
def test_auto_bins_follow_the_training_rows(task):
    """max_bin "auto": a bin per 5 training rows, 64 to 256; the fit is the one with that number."""
    rows = (100, 320, 649, 974, 1280, 5000)
    assert [xgb_module.auto_max_bin("auto", n) for n in rows] == [64, 64, 129, 194, 256, 256]
    assert xgb_module.auto_max_bin(32, 5000) == 32  # a number is kept
    rng = np.random.default_rng(1)
    X = rng.standard_normal((1000, 20))
    y = (X[:, 0] + rng.normal(size=1000) > 0).astype(int) if task == "binary" else None
    if task == "survival":
        y = np.empty(1000, dtype=[("event", bool), ("time", float)])
        y["event"], y["time"] = rng.random(1000) < 0.6, np.exp(X[:, 0] + rng.normal(size=1000))
    cls = XGBoostClassifier if task == "binary" else XGBoostCox

    def output(max_bin):
        model = cls(n_estimators=5, max_bin=max_bin).fit(X, y)
        return model.predict_proba(X) if task == "binary" else model.predict(X)

    np.testing.assert_array_equal(output("auto"), output(200))
    assert not np.array_equal(output("auto"), output(64))
