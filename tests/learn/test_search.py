"""The inner-fold search picks what GridSearchCV picks, on the same splits, and refits the same model."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from metasig.learn.models import build
from metasig.learn.nested_cv import strata
from metasig.learn.search import refit, search

SCORING = {"binary": "roc_auc", "multiclass": "roc_auc_ovr", "survival": None}
GRIDS = {
    "xgboost": {"n_estimators": [10, 30], "max_depth": [1, 2]},
    "elasticnet": {"C": [0.01, 0.1, 1.0], "l1_ratio": [0.2, 0.8]},
    "linear_sweep": {"C": [0.01, 1.0], "alpha": [1e-3, 1e-1]},
    "random_forest": {"max_features": ["sqrt", 0.5], "min_samples_leaf": [1, 8]},
    "svm": {"kernel": ["linear", "rbf"], "C": [0.1, 1.0]},
    "logistic": {"C": [0.01, 1.0]},
    "coxph": {"penalizer": [0.05, 0.5], "l1_ratio": [0.0, 0.5]},
    "xgboost_cox": {"n_estimators": [10, 30], "max_depth": [1, 2]},
}


def data(task, n=120, p=12, seed=1):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"g{i}" for i in range(p)])
    signal = X["g0"] - 0.7 * X["g1"] + rng.normal(scale=1.2, size=n)
    if task == "binary":
        return X, (signal > 0.8).astype(int).to_numpy()
    if task == "multiclass":
        return X, np.array(["a", "b", "c"])[np.digitize(signal, [-0.5, 0.5])]
    y = np.empty(n, dtype=[("event", bool), ("time", float)])
    time, censor = rng.exponential(np.exp(-signal)), rng.exponential(2.0, size=n)
    y["event"], y["time"] = time <= censor, np.minimum(time, censor)
    return X, y


def splits(X, y, task):
    return list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, strata(y, task)))


def output(model, X, task):
    return model.predict(X) if task == "survival" else model.predict_proba(X)


KINDS = ["xgboost", "elasticnet", "linear_sweep", "random_forest", "svm", "logistic"]
CASES = [(k, t) for k in KINDS for t in ("binary", "multiclass")]
CASES += [("coxph", "survival"), ("xgboost_cox", "survival")]


def halved_choice(reference):
    """GridSearchCV's choice among the candidates successive halving scores (metasig.learn.halving):
    every depth at the smallest n_estimators, then only the best of those depths at the larger."""
    params, means = reference.cv_results_["params"], reference.cv_results_["mean_test_score"]
    smallest = min(p["model__n_estimators"] for p in params)
    first = [i for i, p in enumerate(params) if p["model__n_estimators"] == smallest]
    depth = params[max(first, key=lambda i: (means[i], -i))]["model__max_depth"]
    scored = [i for i, p in enumerate(params) if i in first or p["model__max_depth"] == depth]
    return params[max(scored, key=lambda i: (means[i], -i))]


@pytest.mark.parametrize("kind,task", CASES)
def test_search_chooses_and_refits_like_grid_search(kind, task):
    X, y = data(task)
    pipeline, grid = build({"kind": kind, "search": GRIDS[kind]}, task, {"select_k": 6}, "none", 0)
    folds = splits(X, y, task)
    reference = GridSearchCV(pipeline, grid, scoring=SCORING[task], cv=folds).fit(X, y)
    model, best = search(pipeline, grid, X, y, task, folds)
    if kind.startswith("xgboost"):
        assert best == halved_choice(reference)
        reference.best_estimator_ = clone(pipeline).set_params(**best).fit(X, y)
    else:
        assert best == reference.best_params_
    np.testing.assert_allclose(output(model, X, task), output(reference.best_estimator_, X, task), rtol=1e-6)


@pytest.mark.parametrize("as_frame", [True, False])
def test_search_scales_its_own_row_copies_in_place_never_the_callers_data(as_frame):
    X, y = data("binary")
    X = X if as_frame else X.to_numpy()
    before = np.array(X, copy=True)
    pipeline, grid = build({"kind": "logistic", "search": GRIDS["logistic"]}, "binary", {}, "none", 0)
    model, _ = search(pipeline, grid, X, y, "binary", splits(X, y, "binary"))
    assert np.array_equal(np.asarray(X), before)
    assert model.named_steps["scale"].copy  # the refitted pipeline keeps the caller-safe default


def test_preprocessing_settings_in_the_grid_are_searched_too():
    X, y = data("binary")
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())])
    grid = {"scale": [StandardScaler(), "passthrough"], "model__C": [0.001, 1.0]}
    folds = splits(X, y, "binary")
    reference = GridSearchCV(pipeline, grid, scoring="roc_auc", cv=folds).fit(X, y)
    before = X.copy()
    _, best = search(pipeline, grid, X, y, "binary", folds)
    assert best == reference.best_params_
    assert grid["scale"][0].copy  # the grid's own scaler is not switched to in-place
    pd.testing.assert_frame_equal(X, before)


def test_the_refitted_model_owns_its_estimator_never_the_grids():
    """A swapped-in estimator is copied before the refit: outer folds fit in threads, and two of
    them refitting the grid's one object would each predict with the other's coefficients."""
    X, y = data("binary")
    pipeline, grid = build({"kind": "linear_sweep", "search": GRIDS["linear_sweep"]}, "binary", {}, "none", 0)
    members = [entry["model"][0] for entry in grid]
    model, best = search(pipeline, grid, X, y, "binary", splits(X, y, "binary"))
    assert repr(model[-1]) == repr(best["model"]) and all(model[-1] is not m for m in members)
    assert not any(hasattr(m, "coef_") for m in members)


class Failing(ClassifierMixin, BaseEstimator):
    def __init__(self, fail=True):
        self.fail = fail

    def fit(self, X, y):
        if self.fail:
            raise ValueError("cannot fit")
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return np.column_stack([1 - X[:, 0], X[:, 0]])


def test_a_failing_candidate_loses_and_all_failing_is_an_error():
    X, y = data("binary")
    pipeline = Pipeline([("model", Failing())])
    folds = splits(X, y, "binary")
    with pytest.warns(RuntimeWarning, match="fit failed"):
        _, best = search(pipeline, {"model__fail": [True, False]}, X.to_numpy(), y, "binary", folds)
    assert best == {"model__fail": False}
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="every one of the 1 candidates failed"):
        search(pipeline, {"model__fail": [True]}, X.to_numpy(), y, "binary", folds)


class Counting(LogisticRegression):
    """Records grid_predictions calls, so the test sees the estimator was asked once per split."""

    calls = []

    def grid_predictions(self, X, y, X_valid, candidates):
        Counting.calls.append(len(candidates))
        return [LogisticRegression(**{**self.get_params(), **c}).fit(X, y).predict_proba(X_valid) for c in candidates]


def test_grid_predictions_is_asked_once_per_split_for_all_candidates():
    X, y = data("binary")
    pipeline = Pipeline([("scale", StandardScaler()), ("model", Counting())])
    grid = {"model__C": [0.001, 0.01, 1.0]}
    folds = splits(X, y, "binary")
    Counting.calls = []
    _, best = search(pipeline, grid, X, y, "binary", folds)
    assert Counting.calls == [3, 3, 3]
    reference = GridSearchCV(Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]), grid,
                             scoring="roc_auc", cv=folds).fit(X, y)  # fmt: skip
    assert best == reference.best_params_


def test_refit_may_overwrite_only_when_told_and_then_copies_again():
    X, y = data("binary")
    X = X.copy()  # pandas' own column-major layout, as an outer fold's rows (statistics depend on it)
    pipeline, _ = build({"kind": "logistic"}, "binary", {}, "none", 0)
    kept = X.to_numpy(copy=True)
    safe = refit(pipeline, {"model__C": 1.0}, X, y)
    assert np.array_equal(X.to_numpy(), kept)
    owned = X.copy()
    fast = refit(pipeline, {"model__C": 1.0}, owned, y, overwrite_X=True)
    assert not np.array_equal(owned.to_numpy(), kept)  # scaled in place: the caller's copy is spent
    np.testing.assert_array_equal(fast.predict_proba(X), safe.predict_proba(X))
    assert fast.named_steps["scale"].copy and np.array_equal(X.to_numpy(), kept)


@pytest.mark.parametrize("kind,task", [("elasticnet", "multiclass"), ("xgboost", "binary"), ("coxph", "survival")])
def test_search_on_rows_of_a_larger_table_equals_search_on_their_copy(kind, task):
    """`rows`: the training part is given as positions of the whole table (an outer fold's), its
    inner splits copied from the table directly; the model and choice are those of a search on a
    copy of the part, bit for bit, and the table is left untouched."""
    X, y = data(task, n=150)
    rows = np.sort(np.random.default_rng(3).choice(len(X), 100, replace=False))
    before = X.copy()
    pipeline, grid = build({"kind": kind, "search": GRIDS[kind]}, task, {"select_k": 6}, "none", 0)
    part = X.iloc[rows]
    folds = splits(part, y[rows], task)
    on_copy, best_copy = search(pipeline, grid, part, y[rows], task, folds)
    on_rows, best_rows = search(pipeline, grid, X, y[rows], task, folds, rows=rows)
    assert best_rows == best_copy
    assert np.array_equal(output(on_rows, X, task), output(on_copy, X, task))
    pd.testing.assert_frame_equal(X, before)
