"""Metrics against scikit-learn / scikit-survival, and the bootstrap's properties."""

import time
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize
from sksurv.metrics import concordance_index_censored, integrated_brier_score
from sksurv.util import Surv

from metasig.learn import metrics as mm


def _sk_binary(y, s):
    pred = (s >= 0.5).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "roc_auc": skm.roc_auc_score(y, s),
            "pr_auc": skm.average_precision_score(y, s),
            "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
            "f1": skm.f1_score(y, pred),
            "mcc": skm.matthews_corrcoef(y, pred),
            "accuracy": skm.accuracy_score(y, pred),
        }


def test_binary_known_values():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.6, 0.35, 0.8])
    out = mm.classification_metrics(y, s, ["neg", "pos"])
    assert out["roc_auc"] == pytest.approx(0.75)  # 3 of 4 positive/negative pairs ordered right
    assert out["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)  # precision at each positive: 1, 2/3
    assert out["accuracy"] == pytest.approx(0.5)  # predictions 0,1,0,1
    assert out["balanced_accuracy"] == pytest.approx(0.5)
    assert out["f1"] == pytest.approx(0.5)
    assert out["mcc"] == pytest.approx(0.0)
    # a constant predictor has MCC 0 (as sklearn), not NaN
    assert mm.classification_metrics(y, np.full(4, 0.2), ["n", "p"])["mcc"] == 0.0


def test_binary_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(6, 50))
        y = np.r_[0, 1, rng.integers(0, 2, n - 2)]
        s = np.round(rng.random(n), 1)  # many ties
        out = mm.classification_metrics(y, s, ["a", "b"])
        for name, ref in _sk_binary(y, s).items():
            assert out[name] == pytest.approx(ref, abs=1e-12), name
    # string labels: positive is classes[1]
    labels = np.array(["no", "yes", "yes", "no"])
    out = mm.classification_metrics(labels, np.array([0.2, 0.9, 0.25, 0.3]), ["no", "yes"])
    assert out["roc_auc"] == pytest.approx(0.75)


def test_multiclass_matches_sklearn():
    rng = np.random.default_rng(1)
    classes = ["a", "b", "c", "d"]
    for _ in range(20):
        n = 40
        yi = np.r_[0, 1, 2, 3, rng.integers(0, 4, n - 4)]
        scores = np.round(rng.random((n, 4)), 1) + 1e-3
        scores /= scores.sum(1, keepdims=True)
        y, pred = np.array(classes)[yi], np.array(classes)[scores.argmax(1)]
        out = mm.classification_metrics(y, scores, classes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = {
                "roc_auc": skm.roc_auc_score(y, scores, multi_class="ovr", average="macro", labels=classes),
                "pr_auc": skm.average_precision_score(label_binarize(y, classes=classes), scores, average="macro"),
                "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
                "f1": skm.f1_score(y, pred, average="macro"),
                "mcc": skm.matthews_corrcoef(y, pred),
                "accuracy": skm.accuracy_score(y, pred),
            }
        for name, value in ref.items():
            assert out[name] == pytest.approx(value, abs=1e-12), name


def test_survival_matches_sksurv():
    rng = np.random.default_rng(2)
    n = 60
    time_ = np.round(rng.exponential(10, n)) + 1  # tied times
    event = rng.random(n) < 0.6
    risk = np.round(rng.normal(size=n), 1)  # tied risks
    grid = np.array([3.0, 5.0, 8.0, 12.0])
    surv = np.exp(-np.outer(np.exp(risk), grid) / 20)
    out = mm.survival_metrics(time_, event, risk, surv, grid)
    assert out["c_index"] == pytest.approx(concordance_index_censored(event, time_, risk)[0], abs=1e-12)
    y = Surv.from_arrays(event, time_)
    assert out["ibs"] == pytest.approx(integrated_brier_score(y, y, surv, grid), abs=1e-12)
    assert np.isnan(mm.survival_metrics(time_, event, risk)["ibs"])  # no survival function


def _flat(result):
    return {(m, k): v for m, ci in result.items() for k, v in ci.items()}


def _binary_frames(n, repeats=3, seed=0, signal=0.3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    ids = [f"s{i}" for i in range(n)]
    return [
        pd.DataFrame({"sample": ids, "y_true": y, "score": np.clip(signal * y + (1 - signal) * rng.random(n), 0, 1)})
        for _ in range(repeats)
    ]


def _materialised(fn):
    """fn(frame) -> {metric: float} in the weighted protocol, by materialising each resample: the
    slow reference the weighted metric functions must agree with."""

    def weighted(frame, weights):
        rows = [fn(frame.iloc[np.repeat(np.arange(len(frame)), w.astype(int))]) for w in weights]
        return {k: np.array([r[k] for r in rows], dtype=float) for k in rows[0]}

    return weighted


def test_weighted_form_equals_materialised_resamples():
    frames = _binary_frames(80, repeats=1)
    fn = mm.classification_metric_fn(["0", "1"])
    slow = _materialised(lambda f: mm.classification_metrics(f["y_true"].to_numpy(), f["score"].to_numpy(), ["0", "1"]))
    assert _flat(mm.bootstrap_ci(frames, fn, 200, 3)) == pytest.approx(
        _flat(mm.bootstrap_ci(frames, slow, 200, 3)), nan_ok=True
    )


def test_ci_contains_estimate_and_narrows_with_more_samples():
    fn = mm.classification_metric_fn(["0", "1"])
    small = mm.bootstrap_ci(_binary_frames(60), fn, 500, 0)
    large = mm.bootstrap_ci(_binary_frames(1500), fn, 500, 0)
    for name in mm.CLASSIFICATION_METRICS:
        for ci in (small[name], large[name]):
            assert ci["ci_low"] <= ci["estimate"] <= ci["ci_high"], name
        assert large[name]["ci_high"] - large[name]["ci_low"] < 0.6 * (
            small[name]["ci_high"] - small[name]["ci_low"]
        ), name


def test_estimate_is_mean_over_repeats_and_rows_aligned_by_sample():
    frames = _binary_frames(100, repeats=3, seed=4)
    fn = mm.classification_metric_fn(["0", "1"])
    out = mm.bootstrap_ci(frames, fn, 200, 0)
    per_repeat = [
        mm.classification_metrics(f["y_true"].to_numpy(), f["score"].to_numpy(), ["0", "1"])["roc_auc"] for f in frames
    ]
    assert out["roc_auc"]["estimate"] == pytest.approx(np.mean(per_repeat))
    # row order inside a repeat does not matter: rows are matched by sample ID
    shuffled = [frames[0], frames[1].sample(frac=1, random_state=0), frames[2]]
    assert _flat(mm.bootstrap_ci(shuffled, fn, 200, 0)) == pytest.approx(_flat(out))
    # one frame with a `repeat` column is the same input
    stacked = pd.concat([f.assign(repeat=i) for i, f in enumerate(frames)])
    assert _flat(mm.bootstrap_ci(stacked, fn, 200, 0)) == pytest.approx(_flat(out))
    with pytest.raises(ValueError, match="different samples"):
        mm.bootstrap_ci([frames[0], frames[1].iloc[:-1]], fn, 10, 0)


def test_undefined_resamples_are_skipped():
    # one positive among 8: about a third of resamples miss it and have no ROC-AUC
    frame = pd.DataFrame(
        {
            "sample": list("abcdefgh"),
            "y_true": [1, 0, 0, 0, 0, 0, 0, 0],
            "score": [0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.95],
        }
    )
    fn = mm.classification_metric_fn(["0", "1"])
    out = mm.bootstrap_ci([frame], fn, 400, 0)
    assert np.isfinite(out["roc_auc"]["ci_low"]) and np.isfinite(out["roc_auc"]["ci_high"])
    assert 0 <= out["roc_auc"]["ci_low"] <= out["roc_auc"]["ci_high"] <= 1
    # same CI as computing each materialised resample and dropping the undefined ones by hand
    draws = np.random.default_rng(0).integers(0, 8, size=(400, 8))
    values = []
    for d in draws:
        y, s = frame["y_true"].to_numpy()[d], frame["score"].to_numpy()[d]
        if len(set(y)) == 2:
            values.append(skm.roc_auc_score(y, s))
    assert 50 < len(values) < 350
    assert [out["roc_auc"]["ci_low"], out["roc_auc"]["ci_high"]] == pytest.approx(np.percentile(values, [2.5, 97.5]))
    # a metric that is never defined gives NaN, not an error
    never = mm.bootstrap_ci([frame], lambda f, w: {"x": np.full(len(w), np.nan)}, 50, 0)
    assert np.isnan(never["x"]["ci_low"]) and np.isnan(never["x"]["estimate"])


def test_survival_bootstrap_and_speed():
    rng = np.random.default_rng(5)
    n = 600
    t = rng.exponential(10, n) + 0.1
    e = rng.random(n) < 0.6
    risk = -np.log(t) + rng.normal(size=n)
    grid = np.percentile(t[e], [10, 30, 50, 80])
    surv = np.exp(-np.outer(np.exp(risk - risk.mean()), grid) / 10)
    frame = pd.DataFrame(
        {
            "sample": range(n),
            "time": t,
            "event": e.astype(int),
            "risk": risk,
            **{f"surv_{g:g}": surv[:, j] for j, g in enumerate(grid)},
        }
    )
    out = mm.bootstrap_ci([frame], mm.survival_metric_fn(), 200, 0)
    assert 0.6 < out["c_index"]["ci_low"] <= out["c_index"]["estimate"] <= out["c_index"]["ci_high"]
    assert 0 < out["ibs"]["ci_low"] <= out["ibs"]["ci_high"] < 0.5
    # 1000 resamples x 3 repeats x 600 samples stays cheap
    started = time.perf_counter()
    mm.bootstrap_ci(_binary_frames(600), mm.classification_metric_fn(["0", "1"]), 1000, 0)
    assert time.perf_counter() - started < 5


# ---- ranking metrics: mean over outer folds ---------------------------------------------------


def _folded_binary(n=300, repeats=3, folds=5, seed=6, shift=10.0):
    """Out-of-fold predictions where fold 2's model scores on another scale (+shift): each fold
    ranks its own samples well, but pooled, fold 2's negatives outrank every other fold's positives."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    parts = []
    for r in range(repeats):
        fold = rng.permutation(np.arange(n) % folds)
        score = 0.8 * y + rng.random(n) + shift * (fold == 2)
        parts.append(
            pd.DataFrame(
                {"repeat": r, "fold": fold, "sample": [f"s{i}" for i in range(n)], "y_true": y, "score": score}
            )
        )
    return pd.concat(parts, ignore_index=True)


def _per_fold_mean(pred, fn):
    return np.mean([fn(part) for _, part in pred.groupby(["repeat", "fold"])])


def test_ranking_estimate_is_the_mean_of_per_fold_metrics():
    pred = _folded_binary()
    out = mm.bootstrap_ci(pred, mm.classification_metric_fn(["0", "1"]), 300, 0)
    auc = _per_fold_mean(pred, lambda p: skm.roc_auc_score(p["y_true"], p["score"]))
    ap = _per_fold_mean(pred, lambda p: skm.average_precision_score(p["y_true"], p["score"]))
    pooled = np.mean([skm.roc_auc_score(p["y_true"], p["score"]) for _, p in pred.groupby("repeat")])
    assert out["roc_auc"]["estimate"] == pytest.approx(auc, abs=1e-12)
    assert out["pr_auc"]["estimate"] == pytest.approx(ap, abs=1e-12)
    assert out["roc_auc"]["pooled"] == pytest.approx(pooled, abs=1e-12)
    assert pooled < auc - 0.1  # the scale shift drags the pooled value down, not the per-fold one
    assert out["roc_auc"]["folds_used"] == out["roc_auc"]["folds"] == 15
    for name in ("roc_auc", "pr_auc"):
        assert out[name]["ci_low"] < out[name]["estimate"] < out[name]["ci_high"]
    assert out["roc_auc"]["ci_low"] > pooled  # the interval is about the per-fold estimate
    # threshold metrics stay on the pooled predictions
    acc = np.mean([skm.accuracy_score(p["y_true"], p["score"] >= 0.5) for _, p in pred.groupby("repeat")])
    assert out["accuracy"]["estimate"] == pytest.approx(acc)
    assert "pooled" not in out["accuracy"]


def test_c_index_estimate_is_the_mean_of_per_fold_lifelines_concordance():
    from lifelines.utils import concordance_index

    rng = np.random.default_rng(7)
    n, parts = 240, []
    t = rng.exponential(10, n) + rng.random(n) * 1e-3  # no tied times
    e = rng.random(n) < 0.7
    for r in range(2):
        fold = rng.permutation(np.arange(n) % 4)
        risk = -np.log(t) + rng.normal(size=n) + 10.0 * (fold == 1)
        parts.append(
            pd.DataFrame(
                {"repeat": r, "fold": fold, "sample": range(n), "time": t, "event": e.astype(int), "risk": risk}
            )
        )
    pred = pd.concat(parts, ignore_index=True)
    out = mm.bootstrap_ci(pred, mm.survival_metric_fn(), 200, 0)
    # lifelines: higher predicted value = longer survival, hence -risk
    ref = _per_fold_mean(pred, lambda p: concordance_index(p["time"], -p["risk"], p["event"]))
    pooled = np.mean([concordance_index(p["time"], -p["risk"], p["event"]) for _, p in pred.groupby("repeat")])
    assert out["c_index"]["estimate"] == pytest.approx(ref, abs=1e-12)
    assert out["c_index"]["pooled"] == pytest.approx(pooled, abs=1e-12)
    assert pooled < ref - 0.05
    assert out["c_index"]["ci_low"] < out["c_index"]["estimate"] < out["c_index"]["ci_high"]
    assert np.isnan(out["ibs"]["estimate"]) and "pooled" not in out["ibs"]


def test_per_fold_ci_matches_materialised_within_fold_resamples():
    # the vectorised CI equals drawing the cohort with replacement (shared by the repeats), taking
    # each fold's test set from that resample, and averaging sklearn's per-fold ROC-AUC
    pred = _folded_binary(n=60, repeats=2, folds=3, seed=8, shift=1.0)
    out = mm.bootstrap_ci(pred, mm.classification_metric_fn(["0", "1"]), 150, 4)
    frames = [p.sort_values("sample").reset_index(drop=True) for _, p in pred.groupby("repeat")]
    values = []
    for d in np.random.default_rng(4).integers(0, 60, size=(150, 60)):
        per_fold = []
        for f in frames:
            rows = f.iloc[d]
            for _, part in rows.groupby("fold"):
                if part["y_true"].nunique() == 2:  # a fold left with one class is skipped
                    per_fold.append(skm.roc_auc_score(part["y_true"], part["score"]))
        values.append(np.mean(per_fold))
    assert [out["roc_auc"]["ci_low"], out["roc_auc"]["ci_high"]] == pytest.approx(np.percentile(values, [2.5, 97.5]))


def test_per_fold_ci_narrows_with_larger_folds():
    small = mm.bootstrap_ci(_folded_binary(n=100), mm.classification_metric_fn(["0", "1"]), 400, 0)["roc_auc"]
    large = mm.bootstrap_ci(_folded_binary(n=2000), mm.classification_metric_fn(["0", "1"]), 400, 0)["roc_auc"]
    assert large["ci_high"] - large["ci_low"] < 0.4 * (small["ci_high"] - small["ci_low"])


def test_single_class_folds_are_left_out_and_counted(caplog):
    pred = _folded_binary(n=100, repeats=1, folds=4, shift=0.0)
    pred.loc[(pred["fold"] == 3), "y_true"] = 0  # fold 3 holds negatives only: no ROC-AUC there
    fn = mm.classification_metric_fn(["0", "1"])
    out = mm.bootstrap_ci(pred, fn, 200, 0)
    defined = pred[pred["fold"] != 3]
    assert out["roc_auc"]["estimate"] == pytest.approx(
        _per_fold_mean(defined, lambda p: skm.roc_auc_score(p["y_true"], p["score"]))
    )
    assert (out["roc_auc"]["folds_used"], out["roc_auc"]["folds"]) == (3, 4)
    assert out["roc_auc"]["ci_low"] <= out["roc_auc"]["estimate"] <= out["roc_auc"]["ci_high"]
    # every fold with one class: the pooled value, said in a warning
    one_class = pred.assign(y_true=(pred["fold"] % 2).astype(int))
    with caplog.at_level("WARNING", logger="metasig.learn.metrics"):
        out = mm.bootstrap_ci(one_class, fn, 200, 0)
    assert out["roc_auc"]["folds_used"] == 0
    assert (
        out["roc_auc"]["estimate"]
        == out["roc_auc"]["pooled"]
        == pytest.approx(skm.roc_auc_score(one_class["y_true"], one_class["score"]))
    )
    assert np.isfinite(out["roc_auc"]["ci_low"])
    assert "roc_auc is undefined in every one of 4 folds" in caplog.text
