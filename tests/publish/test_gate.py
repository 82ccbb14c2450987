import pandas as pd
import pytest

from metasig.config import gate_defaults
from metasig.publish.gate import decide, gate_task

REFERENCE = {"metric": "accuracy", "bound": "estimate", "min": 0.4, "beat_permuted": False}


def doc(metric="roc_auc", est=0.8, lo=0.7, hi=0.9, p_est=0.5, p_lo=0.4, p_hi=0.6, group="g", model="m", permuted=True):
    d = {
        "dataset": "d",
        "task": "t",
        "group": group,
        "model": model,
        "kind": "binary",
        "metrics": {metric: {"estimate": est, "ci_low": lo, "ci_high": hi}},
    }
    if permuted:
        d["permuted"] = {metric: {"estimate": p_est, "ci_low": p_lo, "ci_high": p_hi}}
    return d


def test_min_boundary_is_inclusive():
    gate = {"metric": "roc_auc", "bound": "ci_low", "min": 0.6, "beat_permuted": False}
    assert decide(doc(lo=0.6), gate)[0]
    passed, reason = decide(doc(lo=0.512), gate)
    assert not passed and reason == "roc_auc ci_low 0.512 < 0.6"


def test_short_numbers_do_not_hide_a_difference():
    gate = {"metric": "roc_auc", "bound": "ci_low", "min": 0.6, "beat_permuted": False}
    passed, reason = decide(doc(lo=0.59996), gate)
    assert not passed and "0.59996 < 0.6" in reason


def test_bound_estimate_vs_ci_low():
    d = doc(est=0.7, lo=0.55)
    assert decide(d, {"metric": "roc_auc", "bound": "estimate", "min": 0.6, "beat_permuted": False})[0]
    assert not decide(d, {"metric": "roc_auc", "bound": "ci_low", "min": 0.6, "beat_permuted": False})[0]


def test_beat_permuted():
    gate = gate_defaults("binary")
    passed, reason = decide(doc(lo=0.97, p_hi=0.55), gate)
    assert passed and reason == "passed: roc_auc ci_low 0.97 >= 0.6 and > permuted ci_high 0.55"
    passed, reason = decide(doc(lo=0.65, p_hi=0.65), gate)  # equal is not "exceeds"
    assert not passed
    assert reason == (
        "roc_auc ci_low 0.65 does not exceed the permuted control's ci_high 0.65 (no signal beyond chance)"
    )
    passed, reason = decide(doc(lo=0.58, p_hi=0.61), gate)  # both conditions fail: both reported
    assert not passed and "0.58 < 0.6" in reason and "ci_high 0.61" in reason


def test_missing_permuted_or_metric_fails_with_reason():
    passed, reason = decide(doc(permuted=False), gate_defaults("binary"))
    assert not passed and "no permuted control" in reason
    passed, reason = decide(doc(metric="f1"), gate_defaults("binary"))
    assert not passed and "roc_auc was not reported" in reason and "f1" in reason
    passed, reason = decide(doc(lo=float("nan")), gate_defaults("binary"))
    assert not passed and "NaN" in reason


def test_reference_gate_lets_constant_predictor_through_default_does_not():
    # A majority-class predictor on NSCLC: accuracy = 0.647, ROC-AUC 0.5; the permuted control is the same.
    const = {
        "dataset": "nsclc",
        "task": "status",
        "group": "metagene_19",
        "model": "lr",
        "kind": "binary",
        "metrics": {
            "accuracy": {"estimate": 0.647, "ci_low": 0.56, "ci_high": 0.73},
            "roc_auc": {"estimate": 0.5, "ci_low": 0.5, "ci_high": 0.5},
        },
        "permuted": {
            "accuracy": {"estimate": 0.647, "ci_low": 0.56, "ci_high": 0.73},
            "roc_auc": {"estimate": 0.5, "ci_low": 0.5, "ci_high": 0.5},
        },
    }
    passed, reason = decide(const, REFERENCE)
    assert passed and "permuted control not required" in reason and "no signal beyond chance" in reason
    passed, reason = decide(const, gate_defaults("binary"))
    assert not passed and "0.5 < 0.6" in reason


def test_gate_task_rows_and_no_signal():
    docs = [doc(group="b", lo=0.9, p_hi=0.6), doc(group="a", lo=0.55, p_hi=0.6), doc(group="c", permuted=False)]
    frame = gate_task(docs, gate_defaults("binary"))
    assert list(frame["group"]) == ["a", "b", "c"]
    assert list(frame["passed"]) == [False, True, False]
    assert frame["no_signal"].iloc[0] is True or frame["no_signal"].iloc[0] == True  # noqa: E712
    assert frame["no_signal"].iloc[1] == False  # noqa: E712
    assert pd.isna(frame["no_signal"].iloc[2])
    assert frame.loc[1, "value"] == pytest.approx(0.9)
    assert frame["reason"].str.len().gt(0).all()


def test_gate_task_roundtrips_through_tsv(tmp_path):
    frame = gate_task([doc(), doc(group="x", lo=0.5)], gate_defaults("binary"))
    path = tmp_path / "gate.tsv"
    frame.to_csv(path, sep="\t", index=False)
    back = pd.read_csv(path, sep="\t")
    assert list(back["passed"]) == list(frame["passed"])
    assert list(back["reason"]) == list(frame["reason"])


def test_no_signal_when_the_interval_reaches_chance_even_if_the_permutation_fell_low():
    from metasig.publish.gate import no_signal

    low_permutation = doc(est=0.54, lo=0.44, hi=0.65, p_est=0.33, p_lo=0.25, p_hi=0.42)
    assert no_signal(low_permutation, "roc_auc") is True
    assert no_signal(doc(est=0.9, lo=0.8, hi=0.95), "roc_auc") is False


def test_gate_and_permuted_control_use_the_per_fold_estimate():
    # fold models on different scales: pooled ROC-AUC well below the per-fold mean
    import numpy as np

    from metasig.learn.metrics import bootstrap_ci, classification_metric_fn

    rng = np.random.default_rng(0)
    n, parts = 200, []
    y = rng.permutation(np.arange(n) % 2)
    for r in range(2):
        fold = rng.permutation(np.arange(n) % 4)
        parts.append(
            pd.DataFrame(
                {
                    "repeat": r,
                    "fold": fold,
                    "sample": range(n),
                    "y_true": y,
                    "score": 0.5 * y + rng.random(n) + 5.0 * (fold == 0),
                }
            )
        )
    real = pd.concat(parts, ignore_index=True)
    permuted = real.assign(y_true=rng.permutation(y)[real["sample"]])  # labels shuffled, same folds
    fn = classification_metric_fn(["0", "1"])
    d = {
        "dataset": "d",
        "task": "t",
        "group": "g",
        "model": "m",
        "kind": "binary",
        "metrics": bootstrap_ci(real, fn, 300, 0),
        "permuted": bootstrap_ci(permuted, fn, 300, 0),
    }
    auc = d["metrics"]["roc_auc"]
    middle = round((auc["pooled"] + auc["estimate"]) / 2, 3)
    assert auc["pooled"] < middle - 0.02 and auc["estimate"] > middle + 0.02
    assert d["permuted"]["roc_auc"]["folds_used"] == 8 and abs(d["permuted"]["roc_auc"]["estimate"] - 0.5) < 0.1
    # a gate between the two values passes: it reads the per-fold estimate, not the pooled value
    passed, reason = decide(d, {"metric": "roc_auc", "bound": "estimate", "min": middle, "beat_permuted": True})
    assert passed and f"estimate {auc['estimate']:.3f}".rstrip("0") in reason
    row = gate_task([d], gate_defaults("binary")).iloc[0]
    assert row["ci_low"] == auc["ci_low"] and row["permuted_ci_high"] == d["permuted"]["roc_auc"]["ci_high"]
