"""The gate: decide, per trained model, whether its held-out metrics are good enough to register.

A gate is {"metric", "bound": "estimate"|"ci_low", "min", "beat_permuted"} (see
`metasig.config.gate_settings`). A model passes when

    metrics[metric][bound] >= min
    and (not beat_permuted or metrics[metric]["ci_low"] > permuted[metric]["ci_high"])
    and (not beat_random or random-gene-set p-value <= random_p)

The random-gene-set control (`metasig.learn.random_sets`) asks whether the model's gene group beats
gene sets of its size drawn at random: p = (1 + #random >= model) / (1 + K) on the gate metric's
estimate. `gate.beat_random` (default off) requires it; the config check makes sure every gated model
then has random sets, enough to reach `random_p`.

The default gate asks for a lower confidence bound above the permuted-label control, so a model that
only predicts the majority class cannot pass. The reference notebooks' gate ("accuracy > 0.4", no
control) is expressible as {"metric": "accuracy", "bound": "estimate", "min": 0.4,
"beat_permuted": False}; `min` is inclusive (>=), which differs from "> 0.4" only for an estimate of
exactly 0.4.

For ROC-AUC, PR-AUC and the C-index, `estimate` and the CI are the per-fold means of
`metasig.learn.metrics.bootstrap_ci`, for the real labels and the permuted control alike; their pooled
value (`pooled`) is informative only and never gated on.

Independently of the decision, `no_signal` says whether the real CI of the gate metric overlaps the
permuted control's CI (real ci_low <= permuted ci_high): the report uses it to say plainly that a
gene group carries no signal, even when a lenient gate let the model through.
"""

import math

import pandas as pd

from metasig.config import LOWER_IS_BETTER
from metasig.learn.metrics_file import interval
from metasig.learn.random_sets import compare
from metasig.learn.random_sets_file import metric_values
from metasig.publish.gate_table import GATE_COLUMNS, ID_COLUMNS, RANDOM_COLUMNS


def _fmt(value, other=None):
    """Short number for a sentence; more digits when the short form would hide a difference."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    if other is not None and not math.isnan(other) and value != other:
        if text == f"{other:.3f}".rstrip("0").rstrip("."):
            text = f"{value:.6g}"
    return text


# Metrics whose chance level does not depend on the data.
CHANCE_LEVEL = {"roc_auc": 0.5, "c_index": 0.5, "mcc": 0.0}


def no_signal(metrics_doc: dict, metric: str):
    """True if the real CI reaches down to the permuted control's CI or to the metric's chance
    level (one permutation can land well below chance on small cohorts); for a lower-is-better
    metric, if it reaches up to the permuted CI. None if unavailable."""
    real = interval(metrics_doc.get("metrics"), metric)
    perm = interval(metrics_doc.get("permuted"), metric)
    if math.isnan(real["ci_low"]) or math.isnan(perm["ci_high"]):
        return None
    if metric in LOWER_IS_BETTER:  # never a gate metric (config refuses it); the report plots it
        return bool(real["ci_high"] >= perm["ci_low"])
    return bool(real["ci_low"] <= max(perm["ci_high"], CHANCE_LEVEL.get(metric, -math.inf)))


def random_control(metrics_doc: dict, metric: str, random_sets):
    """The model's `metric` against its random gene sets (a random_sets.tsv frame, or None):
    `metasig.learn.random_sets.compare`'s dict, or None without random sets."""
    if random_sets is None:
        return None
    estimate = interval(metrics_doc.get("metrics"), metric)["estimate"]
    return compare(estimate, metric_values(random_sets, metric))


def _random_failure(metric, random, gate):
    """Why the model does not beat its random gene sets (None if it does)."""
    if not random or not random["random_sets"]:
        return f"{metric} has no random gene sets to compare with (gate requires beating them)"
    if not random["random_p"] <= float(gate["random_p"]):
        return (
            f"{metric} does not beat {random['random_sets']} random gene sets of its size: p = "
            f"{_fmt(random['random_p'])} > {_fmt(float(gate['random_p']))} (random median "
            f"{_fmt(random['random_median'])}, 95th percentile {_fmt(random['random_p95'])})"
        )
    return None


def decide(metrics_doc: dict, gate: dict, random=None):
    """Return (passed, reason); the reason is a sentence with the numbers it was decided on.
    `random`: the model's random-gene-set comparison (`random_control`), needed when the gate has
    `beat_random`: p-value <= `random_p`."""
    metric = gate["metric"]
    bound = gate.get("bound", "ci_low")
    minimum = float(gate["min"])
    beat_permuted = bool(gate.get("beat_permuted", True))
    if bound not in ("estimate", "ci_low"):
        raise ValueError(f"gate bound must be 'estimate' or 'ci_low', not {bound!r}")

    if metric not in (metrics_doc.get("metrics") or {}):
        reported = sorted(metrics_doc.get("metrics") or {})
        return False, f"{metric} was not reported for this model (reported: {', '.join(reported) or 'none'})"
    real = interval(metrics_doc["metrics"], metric)
    value = real[bound]
    if math.isnan(value):
        return False, f"{metric} {bound} is not available (NaN)"

    failures = []
    if not value >= minimum:
        failures.append(f"{metric} {bound} {_fmt(value, minimum)} < {_fmt(minimum)}")

    perm = interval(metrics_doc.get("permuted"), metric)
    beats = None  # unknown when there is no permuted control
    if not (math.isnan(real["ci_low"]) or math.isnan(perm["ci_high"])):
        beats = real["ci_low"] > perm["ci_high"]
    if beat_permuted:
        if beats is None:
            failures.append(f"{metric} has no permuted control to compare with (gate requires beating it)")
        elif not beats:
            failures.append(
                f"{metric} ci_low {_fmt(real['ci_low'], perm['ci_high'])} does not exceed the permuted "
                f"control's ci_high {_fmt(perm['ci_high'])} (no signal beyond chance)"
            )
    beat_random = bool(gate.get("beat_random", False))
    if beat_random and (failure := _random_failure(metric, random, gate)):
        failures.append(failure)
    if failures:
        return False, "; ".join(failures)
    passed, reason = _passed(metric, bound, value, minimum, real, perm, beat_permuted, beats)
    if beat_random:
        reason += f"; beats {random['random_sets']} random gene sets (p = {_fmt(random['random_p'])})"
    return passed, reason


def _passed(metric, bound, value, minimum, real, perm, beat_permuted, beats):
    """(True, the sentence of a passing model's threshold and permuted-control checks)."""
    head = f"passed: {metric} {bound} {_fmt(value, minimum)} >= {_fmt(minimum)}"
    if beat_permuted:
        if bound == "ci_low":
            return True, f"{head} and > permuted ci_high {_fmt(perm['ci_high'])}"
        return True, (
            f"{head} and ci_low {_fmt(real['ci_low'], perm['ci_high'])} > permuted ci_high {_fmt(perm['ci_high'])}"
        )
    head += " (permuted control not required)"
    if beats is False:
        head += (
            f"; warning: no signal beyond chance (ci_low {_fmt(real['ci_low'], perm['ci_high'])} "
            f"<= permuted ci_high {_fmt(perm['ci_high'])})"
        )
    return True, head


def gate_task(metrics_docs, gate: dict, random_sets=None) -> pd.DataFrame:
    """One row per (group, model) of a task: the gate decision, its inputs and `no_signal`, and the
    random-gene-set control of the gate metric where the model has one.

    `random_sets`: {(dataset, task, group, model): random_sets.tsv frame}, or None.
    `no_signal` uses the nullable boolean dtype: <NA> when there is no permuted control.
    """
    rows = []
    random_sets = random_sets or {}
    for doc in metrics_docs:
        metric = gate["metric"]
        bound = gate.get("bound", "ci_low")
        key = tuple(str(doc.get(k)) for k in ID_COLUMNS)
        random = random_control(doc, metric, random_sets.get(key))
        passed, reason = decide(doc, gate, random)
        real = interval(doc.get("metrics"), metric)
        perm = interval(doc.get("permuted"), metric)
        rows.append(
            {
                "dataset": doc.get("dataset"),
                "task": doc.get("task"),
                "group": doc.get("group"),
                "model": doc.get("model"),
                "kind": doc.get("kind"),
                "metric": metric,
                "bound": bound,
                "min": float(gate["min"]),
                "beat_permuted": bool(gate.get("beat_permuted", True)),
                "value": real.get(bound, math.nan),
                "ci_low": real["ci_low"],
                "ci_high": real["ci_high"],
                "permuted_ci_low": perm["ci_low"],
                "permuted_ci_high": perm["ci_high"],
                "beat_random": bool(gate.get("beat_random", False)),
                "random_p_max": float(gate.get("random_p", 0.05)) if gate.get("beat_random") else math.nan,
                **(random or {"random_sets": 0, **dict.fromkeys(RANDOM_COLUMNS[1:], math.nan)}),
                "passed": bool(passed),
                "no_signal": no_signal(doc, metric),
                "reason": reason,
            }
        )
    frame = pd.DataFrame(rows, columns=GATE_COLUMNS)
    frame["passed"] = frame["passed"].astype(bool)
    frame["beat_permuted"] = frame["beat_permuted"].astype(bool)
    frame["beat_random"] = frame["beat_random"].astype(bool)
    frame["random_sets"] = frame["random_sets"].astype(int)
    frame["no_signal"] = frame["no_signal"].astype("boolean")
    return frame.sort_values(["dataset", "task", "group", "model"], kind="stable").reset_index(drop=True)
