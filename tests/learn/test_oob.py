"""Forests tuned out of bag: one fit per candidate on its first trees, the best out-of-bag score
grown to the whole forest, no inner folds; the inner folds still tune them when samples are grouped
or the user turns oob_score off."""

import json
import logging
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from metasig.learn import nested_cv as ncv
from metasig.learn import oob
from metasig.learn.job import train, write_outputs
from metasig.learn.models import build
from metasig.learn.search import refit

FOREST = {
    "kind": "random_forest",
    "params": {"n_estimators": 40},
    "search": {"max_features": [3], "min_samples_leaf": [60, 20, 1]},  # the best is not the first
}


def data(task="binary", n=150, p=10, seed=3):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"g{i}" for i in range(p)])
    signal = X["g0"] + 0.5 * X["g1"] + rng.normal(scale=0.8, size=n)
    if task == "binary":
        return X, (signal > 0.5).astype(int).to_numpy()
    return X, np.array(["a", "b", "c"])[np.digitize(signal, [-0.5, 0.5])]


def test_applies_to_bootstrap_forests_keeping_their_oob_score_on_ungrouped_samples():
    pipeline, grid = build(FOREST, "binary", {}, "none", 0)
    assert oob.applies(pipeline, grid, None)
    assert not oob.applies(pipeline, grid, np.arange(10))  # grouped: a bootstrap draws samples, not patients
    off, off_grid = build({**FOREST, "params": {"oob_score": False}}, "binary", {}, "none", 0)
    assert not oob.applies(off, off_grid, None)
    mixed, mixed_grid = build({**FOREST, "search": {"bootstrap": [True, False]}}, "binary", {}, "none", 0)
    assert not oob.applies(mixed, mixed_grid, None)  # one candidate could not score itself
    xgb, xgb_grid = build({"kind": "xgboost"}, "binary", {}, "none", 0)
    assert not oob.applies(xgb, xgb_grid, None)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_search_returns_the_fitted_candidate_with_the_best_out_of_bag_score(task):
    X, y = data(task)
    pipeline, grid = build(FOREST, task, {}, "none", 0)
    model, best = oob.search(pipeline, grid, X, y, task)
    scores = {}
    for leaf in FOREST["search"]["min_samples_leaf"]:
        fitted = refit(pipeline, {"model__max_features": 3, "model__min_samples_leaf": leaf}, X, y)
        proba = fitted[-1].oob_decision_function_
        scores[leaf] = roc_auc_score(y, proba[:, 1]) if task == "binary" else roc_auc_score(y, proba, multi_class="ovr")
    assert max(scores, key=scores.get) != 60  # not the first candidate, so the choice means something
    assert len(set(scores.values())) == 3
    assert best == {"model__max_features": 3, "model__min_samples_leaf": max(scores, key=scores.get)}
    again = refit(pipeline, best, X, y)  # the returned model is that candidate fitted on all of X
    np.testing.assert_array_equal(model.predict_proba(X), again.predict_proba(X))


def test_candidates_are_ranked_on_their_first_trees_and_only_the_best_grows_the_rest(monkeypatch):
    """Successive halving: each candidate grows SCREEN_TREES trees, the best out-of-bag score among
    them grows the rest by a warm start, into the forest a fit from scratch gives."""
    X, y = data(n=200)
    X.iloc[::7, 2] = np.nan  # an imputer to share, besides the scaler
    forest = {**FOREST, "params": {"n_estimators": 45}}
    pipeline, grid = build(forest, "binary", {"scale": True}, "none", 0)
    monkeypatch.setattr(oob, "SCREEN_TREES", 15)
    first = {}
    for leaf in forest["search"]["min_samples_leaf"]:
        params = {"model__max_features": 3, "model__min_samples_leaf": leaf, "model__n_estimators": 15}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a sample or two in none of the 15 trees' out-of-bag sets
            fitted = refit(pipeline, params, X, y)
        left_out = fitted[-1].oob_decision_function_.sum(axis=1) > 0  # scored as oob.search scores
        first[leaf] = roc_auc_score(y[left_out], fitted[-1].oob_decision_function_[left_out, 1])
    grown, preprocessed = [], []
    real_fit, real_scale = RandomForestClassifier.fit, StandardScaler.fit
    monkeypatch.setattr(
        RandomForestClassifier, "fit", lambda self, *a, **k: grown.append(self.n_estimators) or real_fit(self, *a, **k)
    )
    monkeypatch.setattr(
        StandardScaler, "fit", lambda self, *a, **k: preprocessed.append(1) or real_scale(self, *a, **k)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to tell the user: the warm start fits the same data
        model, best = oob.search(pipeline, grid, X, y, "binary")
    assert grown == [15, 15, 15, 45]
    assert len(preprocessed) == 1  # the imputer and scaler fitted once for every candidate
    assert best == {"model__max_features": 3, "model__min_samples_leaf": max(first, key=first.get)}
    monkeypatch.undo()
    from_scratch = refit(pipeline, best, X, y)
    assert len(model[-1].estimators_) == 45 and model[-1].warm_start is False
    np.testing.assert_array_equal(model.predict_proba(X), from_scratch.predict_proba(X))
    np.testing.assert_array_equal(model[-1].oob_decision_function_, from_scratch[-1].oob_decision_function_)


@pytest.mark.parametrize(
    "class_weight, positives, rung",
    # "balanced" weights 200 / (2 x positives) draw the bootstrap; a positive is out of bag in a tree
    # with probability (1 - weight / 200) ** 200: 0.37 (100), 0.081 (40: 2 / 0.081 -> 25 trees),
    # 0.0063 (20: all 45). "balanced_subsample" (the default) draws uniformly: 0.37 for any class.
    [("balanced", 100, 15), ("balanced", 40, 25), ("balanced", 20, 45), ("balanced_subsample", 20, 15)],
)
def test_the_first_rung_grows_until_the_rarest_class_is_left_out_of_two_trees(
    monkeypatch, class_weight, positives, rung
):
    X, _ = data(n=200)
    y = (np.arange(200) < positives).astype(int)
    params = {"n_estimators": 45, "class_weight": class_weight}
    pipeline, grid = build({**FOREST, "params": params}, "binary", {}, "none", 0)
    monkeypatch.setattr(oob, "SCREEN_TREES", 15)
    grown, real_fit = [], RandomForestClassifier.fit
    monkeypatch.setattr(
        RandomForestClassifier, "fit", lambda self, *a, **k: grown.append(self.n_estimators) or real_fit(self, *a, **k)
    )
    oob.search(pipeline, grid, X, y, "binary")
    assert grown == [rung] * 3 + ([45] if rung < 45 else [])


def test_a_grid_over_the_forest_size_fits_every_candidate_whole(monkeypatch):
    X, y = data(n=200)
    forest = {**FOREST, "search": {"n_estimators": [20, 45], "max_features": [3], "min_samples_leaf": [1, 20]}}
    pipeline, grid = build(forest, "binary", {}, "none", 0)
    monkeypatch.setattr(oob, "SCREEN_TREES", 15)
    grown, real_fit = [], RandomForestClassifier.fit
    monkeypatch.setattr(
        RandomForestClassifier, "fit", lambda self, *a, **k: grown.append(self.n_estimators) or real_fit(self, *a, **k)
    )
    oob.search(pipeline, grid, X, y, "binary")
    assert sorted(grown) == [20, 20, 45, 45]  # each scored on all its trees, not on a shared first 15


def test_samples_without_an_out_of_bag_prediction_are_not_scored(caplog):
    """A class-balanced bootstrap draws a rare class's samples into most trees: with few trees some
    have no out-of-bag prediction (a row of zeros), which would count as a confident miss."""
    X, y = data("multiclass", n=150)
    y = y.astype(object)
    y[:12] = "rare"
    params = {"n_estimators": 20, "class_weight": "balanced"}
    pipeline, grid = build({**FOREST, "params": params}, "multiclass", {}, "none", 0)
    scores = {}
    for leaf in FOREST["search"]["min_samples_leaf"]:
        params = {"model__max_features": 3, "model__min_samples_leaf": leaf, "model__n_estimators": 20}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            output = refit(pipeline, params, X, y)[-1].oob_decision_function_
        left_out = output.sum(axis=1) > 0
        assert 0 < (~left_out).sum() and set(y[left_out]) == set(y)  # some unscored, every class scored
        scores[leaf] = roc_auc_score(y[left_out], output[left_out], multi_class="ovr")
    caplog.set_level(logging.INFO, logger="metasig.learn.oob")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, best = oob.search(pipeline, grid, X, y, "multiclass")
    assert best["model__min_samples_leaf"] == max(scores, key=scores.get)
    unscored = (~left_out).sum()  # the same samples for every candidate: their trees share seeds
    assert f"{unscored} of 150 training samples" in caplog.text and "of class rare" in caplog.text


def test_a_class_no_tree_leaves_out_is_a_clear_error():
    X, y = data("multiclass", n=150)
    y = y.astype(object)
    y[:3] = "rare"  # weight 150 / (4 x 3): each of its samples is drawn about 12 times into every tree
    pipeline, grid = build(
        {**FOREST, "params": {"n_estimators": 40, "class_weight": "balanced"}}, "multiclass", {}, "none", 0
    )
    with pytest.raises(ValueError, match="no tree left out a sample of class rare.*oob_score: false"):
        oob.search(pipeline, grid, X, y, "multiclass")


_real_search, _real_oob = ncv.search, oob.search


def test_nested_cv_tunes_forests_out_of_bag_and_grouped_ones_on_inner_folds(monkeypatch):
    X, y = data()
    pipeline, grid = build(FOREST, "binary", {}, "none", 0)
    cv = {"outer_folds": 3, "outer_repeats": 1, "inner_folds": 3}
    inner, bagged = [], []
    monkeypatch.setattr(ncv, "search", lambda *a, **k: inner.append(1) or _real_search(*a, **k))
    monkeypatch.setattr(oob, "search", lambda *a, **k: bagged.append(1) or _real_oob(*a, **k))
    ncv.nested_cv(pipeline, grid, X, y, "binary", cv, seed=0)
    assert (len(inner), len(bagged)) == (0, 3)
    groups = np.repeat(np.arange(len(y) // 2), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 40-tree forests: some sample would be in none's out-of-bag set
        ncv.nested_cv(pipeline, grid, X, y, "binary", {**cv, "group_by": "g"}, seed=0, groups=groups)
    assert (len(inner), len(bagged)) == (3, 3)
    final, _ = ncv.final_fit(pipeline, grid, X, y, "binary", {**cv, "group_by": "g"}, seed=0, groups=groups)
    assert final[-1].oob_score is False and not hasattr(final[-1], "oob_score_")  # no leaky score kept
    assert pipeline[-1].oob_score is True  # the caller's pipeline is left as it was


def test_a_forest_on_permuted_labels_tuned_out_of_bag_stays_at_chance():
    X, y = data(n=240)
    y = np.random.default_rng(0).permutation(y)
    pipeline, grid = build(FOREST, "binary", {}, "none", 0)
    cv = {"outer_folds": 4, "outer_repeats": 2, "inner_folds": 3}
    pred = ncv.nested_cv(pipeline, grid, X, y, "binary", cv, seed=0)
    auc = np.mean([roc_auc_score(p["y_true"], p["score"]) for _, p in pred.groupby(["repeat", "fold"])])
    assert 0.4 <= auc <= 0.6


def test_metrics_json_says_how_the_forest_was_tuned(tmp_path):
    X, y = data(n=90)
    X.index = [f"s{i}" for i in range(len(y))]
    task = {"type": "binary", "label": "y", "positive": "1"}
    cv = {"outer_folds": 3, "outer_repeats": 1, "inner_folds": 3, "bootstrap": 50, "permuted_repeats": 1}
    tuning = {}
    for name, model, groups, extra in [
        ("bagged", FOREST, None, {}),
        ("grouped", FOREST, np.repeat(np.arange(45), 2).astype(str), {"group_by": "patient"}),
        ("boosted", {"kind": "xgboost", "search": {"n_estimators": [5, 10]}}, None, {}),
    ]:
        result = train(X, y, task, model, {**cv, **extra}, {}, "none", seed=0, groups=groups)
        identity = {"dataset": "d", "task": "t", "group": "ALL", "model": name, "model_kind": model["kind"]}
        write_outputs(result, tmp_path / name, identity, list(X.columns))
        tuning[name] = json.loads((tmp_path / name / "metrics.json").read_text())["cv"].get("tuning")
    assert tuning == {"bagged": "out_of_bag", "grouped": None, "boosted": None}
