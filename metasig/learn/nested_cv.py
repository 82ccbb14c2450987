"""Nested cross-validation: honest out-of-fold predictions and the final tuned fit.

The whole pipeline (normalization, filters, selection, scaling, estimator) is cloned and fitted
inside each outer training fold, and tuned by an inner grid search on that fold only, so no
statistic of a test sample ever reaches the model that scores it. Outer splits are repeated and
stratified (survival: on the event indicator) and seeded, so results are reproducible. With
`groups` (cv.group_by) no group is ever split, outer or inner (metasig.learn.splits).
"""

import functools
import logging
import math
import time as clock
import warnings

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import ParameterGrid
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from metasig.learn import metrics, oob
from metasig.learn.search import refit, search
from metasig.learn.splits import inner_splits, outer_splits, strata  # noqa: F401 (strata: imported from here)

log = logging.getLogger("metasig.learn.nested_cv")

FOLD_METRIC = {"binary": "roc_auc", "multiclass": "roc_auc", "survival": "c_index"}


def nested_cv(pipeline, param_grid, X, y, task_kind, cv: dict, seed, n_jobs=1, groups=None) -> pd.DataFrame:
    """Out-of-fold predictions of RepeatedStratifiedKFold(outer_folds, outer_repeats, seed), each
    fold tuned on StratifiedKFold(inner_folds, shuffle, seed) of its training part (metasig.learn.search,
    which picks what GridSearchCV would, XGBoost's grid halved over its rounds). `groups` (one
    value per sample): grouped splits instead, by cv["scheme"] (metasig.learn.splits). `n_jobs`
    outer folds run at once (run_tasks): each fit is single-threaded and seeded, so the result
    does not depend on n_jobs.

    Returns one row per (repeat, sample): `repeat`, `fold`, `sample`, then binary `y_true`, `score`
    (P(positive)); multiclass `y_true`, `proba_<class>`; survival `time`, `event`, `risk`,
    `surv_<t>` (when the estimator gives survival functions).
    """
    tasks = outer_fold_tasks(pipeline, param_grid, X, y, task_kind, cv, seed, groups)
    backend = parallel_backend(pipeline, param_grid, np.shape(X), n_jobs)
    return pd.concat(run_tasks(tasks, backend, n_jobs), ignore_index=True)


def outer_fold_tasks(pipeline, param_grid, X, y, task_kind, cv: dict, seed, groups=None):
    """nested_cv's outer folds as tasks (callables without arguments, in order), each returning
    its fold's rows of the predictions, for run_tasks, which may run them beside other tasks."""
    X = _frame(X)
    y = np.asarray(y)
    groups = None if groups is None else np.asarray(groups)
    outer = outer_splits(y, task_kind, cv, seed, groups)
    n_repeats = 1 + max(r for r, _, _, _ in outer)
    n_folds = 1 + max(f for _, f, _, _ in outer)
    classes = np.unique(y) if task_kind != "survival" else None
    grid = survival_time_grid(*reversed(event_time(y))) if task_kind == "survival" else None

    def outer_fold(repeat, fold, train, test):
        started = clock.perf_counter()
        threadpool_limits(limits=1)  # one BLAS/OpenMP thread per fit (also in a worker process)
        inner_groups = None if groups is None else groups[train]
        model, best = _fit(pipeline, param_grid, X, y[train], task_kind, cv, seed, inner_groups, rows=train)
        part = _predict(model, X.iloc[test], y[test], task_kind, classes, grid)
        part.insert(0, "sample", X.index[test].astype(str).to_numpy())
        part.insert(0, "fold", fold)
        part.insert(0, "repeat", repeat)
        log.info(
            "outer repeat %d/%d fold %d/%d: %s=%.3f, best %s (%.1f s)",
            repeat + 1,
            n_repeats,
            fold + 1,
            n_folds,
            FOLD_METRIC[task_kind],
            _fold_score(part, task_kind, classes),
            _brief(best),
            clock.perf_counter() - started,
        )
        return part

    return [functools.partial(outer_fold, *split) for split in outer]


def run_tasks(tasks, backend, n_jobs=1):
    """The results of `tasks` (callables without arguments), in order, n_jobs at a time in threads
    or worker processes (parallel_backend), each with one BLAS/OpenMP thread. One call for all of a
    job's fits keeps every worker busy to the end, where a call per part (real labels, permuted
    control, final fit) waits for its slowest task before the next part starts."""
    with threadpool_limits(limits=1):  # n_jobs single-threaded fits use n_jobs cores
        if backend == "threading":
            return Parallel(n_jobs=n_jobs, backend=backend)(delayed(task)() for task in tasks)
        # in order as they finish, so a worker's fold reaches the job's log then, not at the end
        runs = Parallel(n_jobs=n_jobs, backend=backend, return_as="generator")(delayed(_logged)(t) for t in tasks)
        return [_replay(result, records) for result, records in runs]


# Estimators known to release the GIL while they fit, so outer folds in threads use several cores:
# XGBoost, scikit-learn's trees and SGD (two threads of SGD fits: 2.0 cores), and at this size
# lbfgs logistic regression and our SVM, whose time goes to BLAS and libsvm (at 1,218 x 20,530
# their jobs took as long in 2 threads as in 2 processes, at 0.4 and 0.25 GB less memory). The
# others hold it, or are not known not to: skglm's numba solvers do (1.1 cores), and the Python
# loops of Coxnet's paths take it often. Their outer folds run in worker processes once the
# input is big enough to repay a worker's start (imports, numba compilation: ~10 s of CPU each,
# once per job, as later folds and the permuted control reuse the workers).
RELEASES_GIL = (
    "XGBoostClassifier",
    "XGBoostCox",
    "RandomForestClassifier",
    "SGDClassifier",
    "SpanSGDClassifier",
    "LogisticRegression",
    "SpanLogisticRegression",
    "SVMClassifier",
)
PROCESS_MIN_VALUES = 2_000_000  # samples x features


def parallel_backend(pipeline, param_grid, shape, n_jobs):
    """ "threading" or "loky" (processes) for the outer folds; the result is the same either way."""
    if n_jobs == 1 or shape[0] * shape[1] < PROCESS_MIN_VALUES:
        return "threading"
    grids = param_grid if isinstance(param_grid, list) else [param_grid]
    estimators = [pipeline[-1], *(e for g in grids for e in g.get("model", []))]
    return "threading" if all(type(e).__name__ in RELEASES_GIL for e in estimators) else "loky"


def compile_jit(pipeline, param_grid, shape):
    """Have the job's estimators compile the JIT code (skglm's solvers) a fit on inputs of `shape`
    (samples, features) would use, in this process, before a fold copies its data: compiled beside
    a fold's copies, a worker's peak memory was 160 MiB higher (metasig.learn.linear.compile_solver).
    Each compiles once per process."""
    for candidate in ParameterGrid(param_grid or {}):
        estimator = candidate.get("model", pipeline[-1])
        if hasattr(estimator, "compile_jit"):
            own = {k[len("model__") :]: v for k, v in candidate.items() if k.startswith("model__")}
            clone(estimator).set_params(**own).compile_jit(shape)


def _logged(fn, *args):
    """fn(*args) in a worker process, with the log records (INFO and up) and warnings it emitted,
    to be replayed in the job, whose log would not see them otherwise."""
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = fn(*args)
        return result, (records, [(w.message, w.category, w.filename, w.lineno) for w in caught])
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _replay(result, emitted):
    records, caught = emitted
    for record in records:
        logging.getLogger(record.name).handle(record)
    for message, category, filename, lineno in caught:
        warnings.warn_explicit(message, category, filename, lineno)
    return result


def final_fit(pipeline, param_grid, X, y, task_kind, cv, seed, groups=None):
    """Fit on all samples, tuned by the inner CV (grouped with `groups`); returns (fitted best
    pipeline, best_params)."""
    with threadpool_limits(limits=1):  # as in nested_cv, so the same fit gives the same numbers
        groups = None if groups is None else np.asarray(groups)
        return _fit(pipeline, param_grid, _frame(X), np.asarray(y), task_kind, cv, seed, groups)


def event_time(y):
    """(event bool, time float) of a structured survival target; fields by position, as in
    scikit-survival (metasig names them 'event' and 'time')."""
    event_field, time_field = y.dtype.names[:2]
    return np.asarray(y[event_field], dtype=bool), np.asarray(y[time_field], dtype=float)


def survival_time_grid(time, event, n=8):
    """Evaluation times for survival probabilities and the integrated Brier score: n quantiles
    between the 10th and 80th percentile of event times (inside every fold's follow-up), rounded
    to 6 significant digits so that `surv_<t>` column names give the times back exactly."""
    event_times = np.asarray(time, float)[np.asarray(event, bool)]
    raw = np.percentile(event_times, np.linspace(10, 80, n))
    return np.unique([float(f"{t:.6g}") for t in raw])


def survival_probabilities(model, X, times):
    """(n, len(times)) survival probabilities, or None if the model cannot give them.

    Prefers a `predict_survival(X, times)` method of the final estimator (metasig.learn.survival);
    otherwise scikit-survival's `predict_survival_function`, with times clipped to each step
    function's domain."""
    if isinstance(model, Pipeline) and hasattr(model[-1], "predict_survival"):
        Xt = model[:-1].transform(X) if len(model) > 1 else X
        return np.asarray(model[-1].predict_survival(Xt, times), dtype=float)
    if hasattr(model, "predict_survival"):
        return np.asarray(model.predict_survival(X, times), dtype=float)
    if hasattr(model, "predict_survival_function"):
        out = np.empty((len(X), len(times)))
        for i, fn in enumerate(model.predict_survival_function(X)):
            low, high = fn.domain
            out[i] = fn(np.clip(times, low, high))
        return out
    return None


def _frame(X):
    return X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))


def _fit(pipeline, param_grid, X, y, task_kind, cv, seed, groups=None, rows=None):
    """(fitted pipeline, best parameters) on X's rows `rows` (default all), whose labels are y."""
    compile_jit(pipeline, param_grid, (len(y), X.shape[1]))
    if groups is not None:
        pipeline = oob.without_out_of_bag_score(pipeline)
    candidates = ParameterGrid(param_grid or {})
    if len(candidates) <= 1:  # nothing to tune: skip the inner CV
        best = dict(candidates[0]) if len(candidates) else {}
        return refit(pipeline, best, X, y) if rows is None else refit(pipeline, best, X.iloc[rows], y, True), best
    if oob.applies(pipeline, param_grid, groups):
        return oob.search(pipeline, param_grid, X if rows is None else X.iloc[rows], y, task_kind)
    splits = inner_splits(y, task_kind, cv, seed, groups)
    return search(pipeline, param_grid, X, y, task_kind, splits, rows=rows)


def _predict(model, X, y, task_kind, classes, grid):
    if task_kind == "survival":
        event, time = event_time(y)
        out = pd.DataFrame(
            {"time": time, "event": event.astype(int), "risk": np.asarray(model.predict(X), dtype=float)}
        )
        surv = survival_probabilities(model, X, grid)
        if surv is not None:
            for j, t in enumerate(grid):
                out[f"surv_{t:g}"] = surv[:, j]
        return out
    proba = np.asarray(model.predict_proba(X), dtype=float)
    fitted = list(model.classes_)
    if task_kind == "binary":
        positive = classes[-1]  # 1 for the 0/1 targets of metasig.learn.tasks.target
        return pd.DataFrame({"y_true": y, "score": proba[:, fitted.index(positive)]})
    out = pd.DataFrame({"y_true": y.astype(str)})
    for c in classes:  # a class missing from a training fold gets probability 0
        out[f"proba_{c}"] = proba[:, fitted.index(c)] if c in fitted else 0.0
    return out


def _brief(best):
    """Best parameters for a log line; swapped-in estimators (linear_sweep) by class name."""
    if not best:
        return "(no search)"
    return {k: type(v).__name__ if hasattr(v, "get_params") else v for k, v in best.items()}


def _fold_score(part, task_kind, classes):
    try:
        if task_kind == "survival":
            return metrics.survival_metrics(part["time"], part["event"], part["risk"])["c_index"]
        if task_kind == "binary":
            return metrics.classification_metrics(part["y_true"].to_numpy(), part["score"].to_numpy(), list(classes))[
                "roc_auc"
            ]
        cols = [f"proba_{c}" for c in classes]
        return metrics.classification_metrics(
            part["y_true"].to_numpy(), part[cols].to_numpy(), [str(c) for c in classes]
        )["roc_auc"]
    except ValueError:
        return math.nan
