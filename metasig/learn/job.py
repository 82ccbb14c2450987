"""One training job: nested CV with bootstrap CIs, the permuted-label control, the final tuned fit,
feature importance, and the job's output folder (metrics.json, timing.json, predictions.tsv,
importance.tsv, model/).

metrics.json is deterministic (identical bytes for identical inputs): sorted keys, floats rounded
to 6 decimals, NaN written as null, no timings or paths; timings go to timing.json.
"""

import functools
import logging
import time as clock
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from metasig import io
from metasig.config import schema_defaults
from metasig.learn import oob
from metasig.learn.metrics import bootstrap_ci, metric_fn_for
from metasig.learn.metrics_file import write_metrics
from metasig.learn.nested_cv import final_fit, outer_fold_tasks, parallel_backend, run_tasks
from metasig.learn.splits import KFOLD, constant_within, effective, permute, scheme

log = logging.getLogger("metasig.learn.job")
CV_KEYS = ("outer_folds", "outer_repeats", "inner_folds", "bootstrap", "permuted_repeats")


@dataclass
class TrainResult:
    metrics: dict  # {metric: {"estimate", "ci_low", "ci_high"}} of the real labels
    permuted: dict  # the same for the permuted-label control
    predictions: pd.DataFrame  # out-of-fold predictions, `control` = "real" | "permuted"
    final: object  # pipeline fitted on all samples with the inner-CV best parameters
    best_params: dict
    importance: pd.DataFrame  # feature, importance (descending)
    classes: list | None  # binary: [negative, positive] names; multiclass: labels; survival: None
    fit_seconds: float  # wall time of the whole job (nested CV + control + final fit)
    kind: str = "binary"
    features: list = field(default_factory=list)
    n_samples: int = 0
    n_features: int = 0  # features the model uses (with in-fold VST, fewer than its inputs)
    seed: int = 0
    cv: dict = field(default_factory=dict)
    positive: str | None = None
    timing: dict = field(default_factory=dict)


def train(
    X: pd.DataFrame,
    y,
    task_cfg: dict,
    model_cfg: dict,
    cv: dict,
    preprocessing: dict,
    normalization: str,
    seed: int,
    class_names=None,
    covariates=(),
    subset=None,
    n_jobs=1,
    groups=None,
) -> TrainResult:
    """Run one (dataset, task, group, model) job on features X (samples x features, named
    columns) and target y as returned by `metasig.learn.tasks.target`.

    `covariates` name columns of X that are not genes: normalization and gene filters skip them.
    `subset`: with in-fold VST, X holds every gene and these positions among its gene columns are
    the group's genes, kept after VST (see metasig.learn.preprocess.make_preprocessing).
    Binary targets are 0/1; their class names are `class_names` if given, else
    ["not <positive>", "<positive>"] from task_cfg["positive"].
    The permuted-label control is `permuted_tasks`. `n_jobs`: fits run at once (outer folds of
    both, and the final fit, in one pool).
    `groups`: the cv["group_by"] value of each sample; no group is split by any fold (outer, inner,
    permuted control), see metasig.learn.splits.
    """
    from metasig.learn import models

    started = clock.perf_counter()
    kind = task_cfg["type"]
    cv = {**schema_defaults("cv"), **(cv or {})}
    y = np.asarray(y)
    groups = None if groups is None else np.asarray(groups).astype(str)
    if (groups is None) != (not cv.get("group_by")) or (groups is None and scheme(cv) != KFOLD):
        raise ValueError("cv.group_by (and cv.scheme other than kfold) and `groups` go together")
    classes, positive = _classes(y, task_cfg, kind, class_names)
    pipeline, grid = job_pipeline(X, kind, model_cfg, preprocessing, normalization, seed, covariates, subset)
    timing = {}

    ran = effective(cv, groups)  # leave-one-group-out: one fold per group, one repeat
    if ran["outer_repeats"] != int(cv["outer_repeats"]):
        log.info("leave_one_group_out has no randomness to repeat: one repeat (cv.outer_repeats is not used)")
    log.info(
        "nested CV, real labels: %d samples x %d features, %s x %s outer folds%s",
        len(y),
        X.shape[1],
        ran["outer_repeats"],
        ran["outer_folds"],
        "" if groups is None else f" ({scheme(cv)}, {len(set(groups))} groups of {cv['group_by']})",
    )
    log.info("permuted-label control: %s permutation(s) x %s outer folds", cv["permuted_repeats"], ran["outer_folds"])
    if groups is not None:
        log.info(
            "permutation by %s: %s",
            cv["group_by"],
            "whole groups swap labels (the label is constant within each group)"
            if constant_within(y, groups)
            else "labels permuted freely across samples (they vary within groups), folds still grouped",
        )
    out_of_bag = oob.applies(pipeline, grid, groups)
    if out_of_bag:
        log.info("tuning: each candidate forest is fitted once per training part and scored out of bag")
    log.info("final fit on all %d samples, beside the folds", len(y))
    # One pool for the three parts, so no core idles while a part waits for its slowest fold; the
    # longest tasks first (the final fit, then the permuted folds, which fit noise more slowly).
    real_tasks = outer_fold_tasks(pipeline, grid, X, y, kind, cv, seed, groups)
    permuted_runs = permuted_tasks(pipeline, grid, X, y, kind, cv, seed, groups)
    final_task = functools.partial(final_fit, pipeline, grid, X, y, kind, cv, seed, groups)
    parts = {"final_fit": [final_task], "permuted": [t for run in permuted_runs for t in run], "nested_cv": real_tasks}
    runs, seconds = _run_parts(parts, parallel_backend(pipeline, grid, X.shape, n_jobs), n_jobs)
    timing.update({f"{name}_seconds": s for name, s in seconds.items()}, n_jobs=n_jobs)
    final, best_params = runs["final_fit"][0]
    real = pd.concat(runs["nested_cv"], ignore_index=True)
    folds = iter(runs["permuted"])
    permuted = pd.concat(
        [pd.concat([next(folds) for _ in run]).assign(repeat=r) for r, run in enumerate(permuted_runs)],
        ignore_index=True,
    )

    t0 = clock.perf_counter()
    # metric columns use the label strings of the fitted classes (0/1 for binary)
    metric_fn = metric_fn_for(kind, None if kind == "survival" else [str(c) for c in np.unique(y)])
    by_sample = None if groups is None else dict(zip(X.index.astype(str), groups))  # cluster bootstrap
    real_metrics = bootstrap_ci(real, metric_fn, int(cv["bootstrap"]), seed, groups=by_sample)
    perm_metrics = bootstrap_ci(permuted, metric_fn, int(cv["bootstrap"]), seed, groups=by_sample)
    timing["bootstrap_seconds"] = clock.perf_counter() - t0

    headline = "c_index" if kind == "survival" else "roc_auc"
    log.info("%s real %s, permuted %s", headline, _ci_text(real_metrics[headline]), _ci_text(perm_metrics[headline]))
    importance = _importance(models.feature_importance(final, list(map(str, X.columns))))

    predictions = pd.concat([real.assign(control="real"), permuted.assign(control="permuted")], ignore_index=True)
    predictions = predictions[["control"] + [c for c in predictions.columns if c != "control"]]
    fit_seconds = clock.perf_counter() - started
    timing["fit_seconds"] = fit_seconds
    return TrainResult(
        metrics=real_metrics,
        permuted=perm_metrics,
        predictions=predictions,
        final=final,
        best_params=models.jsonable_params(best_params),
        importance=importance,
        classes=classes,
        fit_seconds=fit_seconds,
        kind=kind,
        features=list(map(str, X.columns)),
        n_samples=len(y),
        seed=int(seed),
        n_features=model_width(X, covariates, subset),
        cv=_cv_record(ran, groups, out_of_bag),
        positive=positive,
        timing=timing,
    )


def job_pipeline(X, kind, model_cfg, preprocessing, normalization, seed, covariates=(), subset=None):
    """(pipeline, grid) of a job on features X: one thread per fit (n_jobs outer folds run at once,
    see nested_cv); the covariates X holds skip the gene-only steps."""
    from metasig.learn import models

    covariates = [c for c in covariates if c in X.columns]
    return models.build(
        model_cfg,
        kind,
        preprocessing,
        normalization,
        seed,
        n_jobs=1,
        covariates=covariates,
        subset=subset,
        n_features=model_width(X, covariates, subset),
    )


def model_width(X, covariates=(), subset=None):
    """The features the model sees: every column of X, or with in-fold VST (`subset`) the group's
    genes and the covariates X holds."""
    return X.shape[1] if subset is None else len(subset) + len(set(covariates) & set(X.columns))


def permuted_tasks(pipeline, grid, X, y, kind, cv, seed, groups=None):
    """The permuted-label control: the same nested CV on shuffled labels, once per permutation
    (cv["permuted_repeats"]), each with its own shuffle and outer split; averaging over
    permutations steadies the chance level. One list of outer-fold tasks per permutation
    (metasig.learn.nested_cv.outer_fold_tasks). Survival targets are structured rows, so
    (time, event) pairs move together. With `groups`, labels move by group
    (metasig.learn.splits.permute) and the splits are grouped as for the real labels."""
    return [
        outer_fold_tasks(
            pipeline, grid, X, permute(y, seed + r, groups), kind, {**cv, "outer_repeats": 1}, seed + r, groups
        )
        for r in range(int(cv["permuted_repeats"]))
    ]


def _run_parts(parts, backend, n_jobs):
    """({part: its tasks' results}, {part: its tasks' own seconds, summed}) of {part: [tasks]},
    all run by one run_tasks call, in order (the first part's tasks start first)."""
    results = iter(
        run_tasks([functools.partial(_timed, t) for tasks in parts.values() for t in tasks], backend, n_jobs)
    )
    done = {name: [next(results) for _ in tasks] for name, tasks in parts.items()}
    return {n: [r for r, _ in d] for n, d in done.items()}, {n: sum(s for _, s in d) for n, d in done.items()}


def _timed(task):
    started = clock.perf_counter()
    return task(), clock.perf_counter() - started


def write_outputs(result: TrainResult, outdir, identity: dict, features, left_out=None):
    """Write the job folder. identity: dataset, task, group, model, kind, model_kind (other keys,
    such as seed and cv, are ignored: metrics.json records the seed and CV settings the result was
    computed with). `features` must be the ordered columns the model was trained on. `left_out`:
    {reason: [samples]} the task could not use (metasig.learn.tasks.left_out); metrics.json records
    their count per reason and in all, for the leaderboard and the report."""
    from metasig.learn.artifacts import save_artifact

    outdir = Path(outdir)
    features = [str(f) for f in features]
    if result.features and features != result.features:
        raise ValueError("features differ from the columns the model was trained on (order matters)")
    kind = identity.get("kind", result.kind)
    doc = {
        **{k: identity[k] for k in ("dataset", "task", "group", "model", "model_kind")},
        "kind": kind,
        "n_samples": int(result.n_samples),
        "n_left_out": sum(len(v) for v in (left_out or {}).values()),
        "left_out": {reason: len(ids) for reason, ids in (left_out or {}).items()},
        "n_features": int(result.n_features or len(features)),
        "features": features,  # the model's inputs, in order
        "metrics": result.metrics,
        "permuted": result.permuted,
        "best_params": result.best_params,
        "cv": _cv_record(result.cv),
        "seed": int(result.seed),
    }
    if kind != "survival":
        doc["classes"] = [str(c) for c in result.classes]
    outdir.mkdir(parents=True, exist_ok=True)
    write_metrics(doc, outdir / "metrics.json")
    io.write_json({k: round(float(v), 3) for k, v in result.timing.items()}, outdir / "timing.json")
    _write_tsv(result.predictions, outdir / "predictions.tsv")
    _write_tsv(result.importance, outdir / "importance.tsv")
    save_artifact(
        result.final,
        outdir / "model",
        features,
        kind,
        identity["model_kind"],
        classes=result.classes,
        positive=result.positive,
    )


def _cv_record(cv, groups=None, out_of_bag=False) -> dict:
    """The CV settings metrics.json records: the counts run, "tuning": "out_of_bag" for forests
    tuned so (absent: on the inner folds), and for grouped CV the column, the scheme and the number
    of groups (absent: sample-level k-fold, as before grouped CV existed)."""
    out = {k: int(cv[k]) for k in CV_KEYS}
    if out_of_bag or cv.get("tuning"):
        out["tuning"] = "out_of_bag"
    if cv.get("group_by"):
        out["group_by"] = str(cv["group_by"])
        out["scheme"] = scheme(cv)
        out["n_groups"] = int(cv["n_groups"]) if groups is None else len(set(groups))
    return out


def _ci_text(ci):
    text = f"{ci['estimate']:.3f} [{ci['ci_low']:.3f}, {ci['ci_high']:.3f}]"
    if "pooled" in ci:  # ranking metrics: the estimate is the per-fold mean (metrics.bootstrap_ci)
        text += f" (mean of {ci['folds_used']}/{ci['folds']} folds; pooled {ci['pooled']:.3f})"
    return text


def _classes(y, task_cfg, kind, class_names):
    if kind == "survival":
        return None, None
    if kind == "binary":
        positive = str(task_cfg["positive"])
        names = [str(c) for c in class_names] if class_names is not None else [f"not {positive}", positive]
        return names, names[1]
    return [str(c) for c in np.unique(y)], None


def _importance(raw):
    if isinstance(raw, pd.Series):
        raw = raw.rename("importance").rename_axis("feature").reset_index()
    frame = pd.DataFrame(raw)[["feature", "importance"]]
    return frame.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


def _write_tsv(frame, path):
    with io.atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.10g")
