"""Held-out metrics and their bootstrap confidence intervals.

Every metric is computed from *sample weights* (B, n): a row of ones is the plain metric, a row of
bootstrap counts is one resample. One vectorised code path therefore serves both the point estimate
and 1000 resamples x several outer repeats in well under a second, and the two cannot disagree.
The formulas follow scikit-learn (classification) and scikit-survival (Harrell's C, integrated Brier
score); tests/learn/test_metrics.py checks them against those libraries.

Prediction frames follow the predictions.tsv contract (one row per sample of one outer repeat):
binary `y_true` (0/1) + `score` (P(positive)); multiclass `y_true` + `proba_<class>`;
survival `time`, `event`, `risk` (+ optional `surv_<t>` survival probabilities at time t).
"""

import logging
import math

import numpy as np
import pandas as pd

CLASSIFICATION_METRICS = ("roc_auc", "pr_auc", "balanced_accuracy", "f1", "mcc", "accuracy")
SURVIVAL_METRICS = ("c_index", "ibs")
RANKING_METRICS = ("roc_auc", "pr_auc", "c_index")  # estimated per outer fold (see bootstrap_ci)
THRESHOLD = 0.5  # binary decision threshold on P(positive): predicted positive if score >= 0.5
_TIED_TOL = 1e-8  # risk ties, as in sksurv.metrics.concordance_index_censored
_CHUNK = 250  # resamples evaluated at once (bounds memory for large n)
log = logging.getLogger("metasig.learn.metrics")


# ---- public: plain metrics -------------------------------------------------------------------


def classification_metrics(y_true, scores, classes) -> dict:
    """Metrics of one set of predictions.

    Binary: `scores` is 1-D P(positive) (or 2-D with the positive class in column 1); y_true is 0/1
    (or labels, positive = classes[1]). Multiclass: `scores` is (n, k) with columns in `classes`
    order; y_true holds class labels. Undefined metrics (e.g. ROC-AUC with one class) are NaN.
    """
    scores = np.asarray(scores, dtype=float)
    ones = np.ones((1, len(scores)))
    if scores.ndim == 1 or len(classes) == 2:
        s = scores if scores.ndim == 1 else scores[:, 1]
        out = _binary(_positive_mask(y_true, classes), s, ones)
    else:
        out = _multiclass(_class_index(y_true, classes), scores, ones)
    return {k: float(v[0]) for k, v in out.items()}


def survival_metrics(time, event, risk, surv_probs=None, times=None, train_time=None, train_event=None) -> dict:
    """Harrell's C-index of `risk` (higher = worse) and, if survival probabilities at `times` are
    given, the integrated Brier score (censoring weights from train_time/train_event, default the
    evaluated data themselves). NaN where not computable."""
    time, event, risk = (np.asarray(a) for a in (time, event, risk))
    ones = np.ones((1, len(time)))
    out = {"c_index": float(_cindex(time.astype(float), event.astype(bool), risk.astype(float), ones)[0])}
    out["ibs"] = math.nan
    if surv_probs is not None and times is not None:
        cens = _censoring(
            train_time if train_time is not None else time, train_event if train_event is not None else event
        )
        out["ibs"] = float(
            _ibs(
                time.astype(float),
                event.astype(bool),
                np.asarray(surv_probs, float),
                np.asarray(times, float),
                cens,
                ones,
            )[0]
        )
    return out


# ---- public: metric functions over prediction frames (for bootstrap_ci) ----------------------


def classification_metric_fn(classes):
    """fn(frame, weights, only=None) -> {metric: array (B,)} for binary (`score`) or multiclass
    (`proba_*`); `only` (metric names) lets bootstrap_ci skip the metrics it does not need."""
    classes = [str(c) for c in classes] if classes is not None else None

    def fn(frame, weights, only=None):
        if "score" in frame:
            return _binary(frame["y_true"].to_numpy() == 1, frame["score"].to_numpy(float), weights, only)
        cols = [f"proba_{c}" for c in classes]
        return _multiclass(_class_index(frame["y_true"], classes), frame[cols].to_numpy(float), weights, only)

    fn.selective = True
    return fn


def survival_metric_fn(train_time=None, train_event=None):
    """fn(frame, weights) -> {"c_index", "ibs"}; IBS needs `surv_<t>` columns (else NaN). The
    censoring distribution comes from train_time/train_event, default the frame's own (unweighted)
    data, so it stays fixed across bootstrap resamples."""

    def fn(frame, weights, only=None):
        time = frame["time"].to_numpy(float)
        event = frame["event"].to_numpy().astype(bool)
        out = {}
        if only is None or "c_index" in only:
            out["c_index"] = _cindex(time, event, frame["risk"].to_numpy(float), weights)
        if only is not None and "ibs" not in only:
            return out
        cols, grid = surv_columns(frame)
        if len(grid) >= 2:
            cens = _censoring(
                train_time if train_time is not None else time, train_event if train_event is not None else event
            )
            out["ibs"] = _ibs(time, event, frame[cols].to_numpy(float), grid, cens, weights)
        else:
            out["ibs"] = np.full(len(weights), np.nan)
        return out

    fn.selective = True
    return fn


def metric_fn_for(task_kind, classes=None):
    return survival_metric_fn() if task_kind == "survival" else classification_metric_fn(classes)


def surv_columns(frame):
    """(column names, times) of the `surv_<t>` columns, ordered by time."""
    pairs = sorted((float(c[5:]), c) for c in frame.columns if str(c).startswith("surv_"))
    return [c for _, c in pairs], np.array([t for t, _ in pairs], dtype=float)


# ---- public: bootstrap -----------------------------------------------------------------------


def bootstrap_ci(predictions_by_repeat, metric_fn, n_boot, seed, per_fold=RANKING_METRICS, groups=None) -> dict:
    """Point estimate and 95% percentile bootstrap CI of every metric metric_fn returns.

    predictions_by_repeat: a list of per-repeat prediction frames (each one row per sample, with a
    `fold` column when the repeat was split into folds), or one frame with a `repeat` column.
    metric_fn(frame, weights (B, n)) -> {metric: array (B,)}.

    Ranking metrics (`per_fold`: ROC-AUC, PR-AUC, C-index) are estimated as the mean over every
    (repeat, fold) of the metric on that fold's test set alone: fold models score on their own
    scales, so ranking one fold's samples against another's (pooling) biases them downward. A fold
    where the metric is undefined (one class, no event, no comparable pair) is left out of the mean
    and counted (`folds_used` of `folds`); if no fold is usable the pooled value is the estimate,
    with a warning. The pooled value is kept as `pooled`. Other metrics (threshold metrics, IBS) are
    sums over samples of calibrated outputs, comparable across folds: they stay the mean over
    repeats of the metric on each repeat's pooled out-of-fold predictions.

    Each resample draws sample IDs with replacement once and applies them to every repeat (the
    repeats share the samples, so resampling them independently would understate the variance).
    Within a fold this is a resample with replacement of that fold's test set (its size varies
    around the fold's size); per-fold metrics are recomputed on it and averaged over the usable
    folds, skipping a fold the resample leaves undefined. Resamples where a metric is undefined
    everywhere (NaN) are skipped for that metric.
    `groups` ({sample ID: group}, grouped CV): a resample draws groups with replacement instead, each
    drawn group bringing all its samples (a cluster bootstrap): samples of one patient are not
    independent, and resampling them one by one would narrow the interval.
    Returns {metric: {"estimate", "ci_low", "ci_high"}} (NaN when not computable), plus "pooled",
    "folds_used" and "folds" for the per-fold metrics.
    """
    frames = _align_repeats(predictions_by_repeat)
    n = len(frames[0])
    # (frame of one fold's test set, its row positions in the aligned repeat frame)
    parts = [(f.iloc[idx].reset_index(drop=True), idx) for f in frames for idx in _fold_rows(f)]
    point = _mean_over_repeats([metric_fn(f, np.ones((1, n))) for f in frames])
    folded = [m for m in point if m in per_fold]
    fold_point = _by_fold(parts, metric_fn, np.ones((1, n)), folded)
    usable = {m: np.isfinite(fold_point[m][:, 0]) for m in folded}
    unit = _units(frames[0], groups)  # the resampled unit of each row: itself, or its group
    n_units = int(unit.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_units, size=(int(n_boot), n_units))
    boot = {m: [] for m in point}
    fold_boot = {m: [] for m in folded}
    by_fold = [m for m in folded if usable[m].any()]
    pooled_only = [m for m in point if m not in by_fold]  # resampled on the pooled predictions
    for start in range(0, len(draws), _CHUNK):
        weights = _counts(draws[start : start + _CHUNK], n_units)[:, unit]
        if pooled_only:
            chunk = _mean_over_repeats([_call(metric_fn, f, weights, pooled_only) for f in frames])
            for m in pooled_only:
                boot[m].append(chunk[m])
        for m, values in _by_fold(parts, metric_fn, weights, by_fold).items():
            fold_boot[m].append(_mean_defined(values[usable[m]]))
    out = {}
    for m, est in point.items():
        estimate, values = est[0], boot[m]
        if m in folded:
            extra = {"pooled": float(est[0]), "folds_used": int(usable[m].sum()), "folds": len(parts)}
            if usable[m].any():
                estimate, values = np.mean(fold_point[m][usable[m], 0]), fold_boot[m]
            else:
                log.warning(
                    "%s is undefined in every one of %d folds (one class, or no event); "
                    "reporting the pooled out-of-fold value instead",
                    m,
                    len(parts),
                )
        values = np.concatenate(values) if values else np.array([])
        values = values[np.isfinite(values)]
        low, high = np.percentile(values, [2.5, 97.5]) if len(values) else (math.nan, math.nan)
        out[m] = {"estimate": float(estimate), "ci_low": float(low), "ci_high": float(high)}
        if m in folded:
            out[m].update(extra)
    return out


def _units(frame, groups):
    """Row -> resampling unit: the row itself (arange), or a code of its sample's group."""
    if groups is None:
        return np.arange(len(frame))
    if "sample" not in frame:
        raise ValueError("a grouped bootstrap needs the predictions' `sample` column")
    labels = frame["sample"].astype(str).map({str(k): str(v) for k, v in dict(groups).items()})
    if labels.isna().any():
        raise ValueError(f"no group for sample {frame['sample'][labels.isna()].iloc[0]}")
    return pd.factorize(labels, sort=True)[0]


def _fold_rows(frame):
    """Row positions of each fold's test set (the whole repeat when there is no `fold` column)."""
    if "fold" not in frame:
        return [np.arange(len(frame))]
    codes = pd.factorize(frame["fold"], sort=True)[0]
    return [np.flatnonzero(codes == k) for k in range(codes.max() + 1)]


def _by_fold(parts, metric_fn, weights, names):
    """{metric: (folds, B)} of metric_fn on each fold's rows, with those rows' weights."""
    if not names:
        return {}
    results = [_call(metric_fn, part, weights[:, idx], names) for part, idx in parts]
    return {m: np.array([np.asarray(r[m], float) for r in results]) for m in names}


def _call(metric_fn, frame, weights, names):
    """metric_fn restricted to `names` when it can skip the others (this module's functions)."""
    if getattr(metric_fn, "selective", False):
        return metric_fn(frame, weights, only=set(names))
    return metric_fn(frame, weights)


def _mean_defined(values):
    """(folds, B) -> (B,) mean over the folds where the value is defined; NaN where none is."""
    ok = np.isfinite(values)
    count = ok.sum(0)
    return np.where(count > 0, np.where(ok, values, 0.0).sum(0) / np.maximum(count, 1), np.nan)


def _align_repeats(predictions_by_repeat):
    if isinstance(predictions_by_repeat, pd.DataFrame):
        frames = [g for _, g in predictions_by_repeat.groupby("repeat", sort=True)]
    else:
        frames = list(predictions_by_repeat)
    if not frames or not len(frames[0]):
        raise ValueError("bootstrap_ci needs at least one non-empty prediction frame")
    if "sample" not in frames[0]:
        return [f.reset_index(drop=True) for f in frames]
    frames = [f.sort_values("sample", kind="stable").reset_index(drop=True) for f in frames]
    ids = frames[0]["sample"].astype(str).to_numpy()
    if len(set(ids)) != len(ids):
        raise ValueError("a repeat has duplicate sample IDs; each repeat must predict every sample once")
    for f in frames[1:]:
        if not np.array_equal(f["sample"].astype(str).to_numpy(), ids):
            raise ValueError("repeats predict different samples; the bootstrap needs the same samples in every repeat")
    return frames


def _counts(draws, n):
    """(B, n) resample indices -> (B, n) float counts of how often each sample was drawn."""
    b = len(draws)
    flat = (draws + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(float)


def _mean_over_repeats(results):
    # NaN in any repeat makes the resample's value NaN, hence skipped
    return {m: np.mean([np.asarray(r[m], float) for r in results], axis=0) for m in results[0]}


# ---- weighted classification -----------------------------------------------------------------


def _wants(only, *names):
    return only is None or any(n in only for n in names)


def _positive_mask(y_true, classes):
    y = np.asarray(y_true)
    if y.dtype.kind in "biuf":
        return y == 1
    return y.astype(str) == str(classes[1])


def _class_index(y_true, classes):
    lookup = {str(c): i for i, c in enumerate(classes)}
    labels = np.asarray(y_true).astype(str)
    unknown = sorted(set(labels) - set(lookup))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(lookup)}")
    return np.array([lookup[v] for v in labels], dtype=int)


def _safe_div(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _ranking(pos, score, weights):
    """Weighted ROC-AUC and average precision (sklearn definitions, ties as in sklearn)."""
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    w = weights[:, order]
    p_lvl = np.add.reduceat(w * pos[order], starts, axis=1)  # weight of positives per score level
    n_lvl = np.add.reduceat(w * ~pos[order], starts, axis=1)
    p_tot, n_tot = p_lvl.sum(1), n_lvl.sum(1)
    below = np.cumsum(n_lvl, axis=1) - n_lvl
    auc = _safe_div((p_lvl * (below + 0.5 * n_lvl)).sum(1), p_tot * n_tot)
    # average precision: thresholds from the highest score down; AP = sum dRecall * precision
    p_desc, n_desc = p_lvl[:, ::-1], n_lvl[:, ::-1]
    tp, fp = np.cumsum(p_desc, axis=1), np.cumsum(n_desc, axis=1)
    precision = np.nan_to_num(_safe_div(tp, tp + fp))
    ap = _safe_div((p_desc * precision).sum(1), p_tot)
    ap = np.where(n_tot > 0, ap, np.nan)  # one class only: undefined
    return auc, ap


def _confusion_metrics(conf):
    """balanced_accuracy, f1 (macro over classes seen in truth or prediction), mcc, accuracy from
    (B, k, k) weighted confusion matrices (rows truth, columns prediction), as sklearn."""
    diag = np.diagonal(conf, axis1=1, axis2=2)
    t, p = conf.sum(2), conf.sum(1)
    total = t.sum(1)
    correct = diag.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        present = t > 0  # classes absent from the truth have no recall (sklearn ignores them)
        recall = np.where(present, diag / np.where(present, t, 1), 0.0)
        bal = _safe_div(recall.sum(1), present.sum(1).astype(float))
        seen = (t + p) > 0
        f1_class = np.where(seen, 2 * diag / np.where(seen, t + p, 1), 0.0)
        f1_macro = _safe_div(f1_class.sum(1), seen.sum(1).astype(float))
        cov_tp = correct * total - (t * p).sum(1)
        cov_pp = total**2 - (p * p).sum(1)
        cov_tt = total**2 - (t * t).sum(1)
        den = np.sqrt(cov_tt * cov_pp)
        mcc = np.where(den > 0, cov_tp / np.where(den > 0, den, 1), 0.0)
    return bal, f1_macro, mcc, _safe_div(correct, total)


def _binary(pos, score, weights, only=None):
    pos = np.asarray(pos, bool)
    auc, ap = _ranking(pos, score, weights) if _wants(only, "roc_auc", "pr_auc") else (None, None)
    if not _wants(only, "balanced_accuracy", "f1", "mcc", "accuracy"):
        return {"roc_auc": auc, "pr_auc": ap}
    pred = score >= THRESHOLD
    tp, fn = weights @ (pos & pred), weights @ (pos & ~pred)
    fp, tn = weights @ (~pos & pred), weights @ (~pos & ~pred)
    conf = np.stack([np.stack([tn, fp], 1), np.stack([fn, tp], 1)], 1)  # rows: truth 0, 1
    bal, _, mcc, acc = _confusion_metrics(conf)
    f1 = np.where(2 * tp + fp + fn > 0, _safe_div(2 * tp, 2 * tp + fp + fn), 0.0)  # f1 of class 1
    out = {"roc_auc": auc, "pr_auc": ap, "balanced_accuracy": bal, "f1": f1, "mcc": mcc, "accuracy": acc}
    return {k: v for k, v in out.items() if v is not None}


def _multiclass(yi, scores, weights, only=None):
    k = scores.shape[1]
    auc = ap = None
    if _wants(only, "roc_auc", "pr_auc"):
        aucs, aps = zip(*(_ranking(yi == c, scores[:, c], weights) for c in range(k)))
        # OvR macro averages; any class absent from a resample makes them undefined (NaN)
        auc = np.mean(aucs, axis=0)
        ap = np.mean(aps, axis=0)
        if not _wants(only, "balanced_accuracy", "f1", "mcc", "accuracy"):
            return {"roc_auc": auc, "pr_auc": ap}
    pred = np.argmax(scores, axis=1)
    onehot = np.zeros((len(yi), k * k))
    onehot[np.arange(len(yi)), yi * k + pred] = 1.0
    conf = (weights @ onehot).reshape(len(weights), k, k)
    bal, f1, mcc, acc = _confusion_metrics(conf)
    out = {"roc_auc": auc, "pr_auc": ap, "balanced_accuracy": bal, "f1": f1, "mcc": mcc, "accuracy": acc}
    return {k: v for k, v in out.items() if v is not None}


# ---- weighted survival -----------------------------------------------------------------------


def _cindex(time, event, risk, weights):
    """Harrell's C as sksurv's concordance_index_censored: an event i is comparable with every j
    that has a later time, or the same time and no event; risk ties count 1/2."""
    ev = np.flatnonzero(event)
    if not len(ev):
        return np.full(len(weights), np.nan)
    ti, tj = time[ev][:, None], time[None, :]
    comparable = (tj > ti) | ((tj == ti) & ~event[None, :])
    diff = risk[ev][:, None] - risk[None, :]
    tie = np.abs(diff) <= _TIED_TOL
    concordant = comparable * np.where(tie, 0.5, (diff > 0).astype(float))
    w_ev = weights[:, ev]
    num = ((w_ev @ concordant) * weights).sum(1)
    den = ((w_ev @ comparable.astype(float)) * weights).sum(1)
    return _safe_div(num, den)


def _censoring(time, event):
    from sksurv.nonparametric import CensoringDistributionEstimator
    from sksurv.util import Surv

    return CensoringDistributionEstimator().fit(Surv.from_arrays(np.asarray(event, bool), np.asarray(time, float)))


def _ibs(time, event, surv, grid, cens, weights):
    """Integrated Brier score with inverse-probability-of-censoring weights (sksurv's formula)."""
    g_t = cens.predict_proba(grid)
    g_t[g_t == 0] = np.inf
    g_y = cens.predict_proba(time)
    g_y[g_y == 0] = np.inf
    case = (time[:, None] <= grid[None, :]) & event[:, None]
    control = time[:, None] > grid[None, :]
    contrib = surv**2 * case / g_y[:, None] + (1.0 - surv) ** 2 * control / g_t[None, :]
    brier = _safe_div(weights @ contrib, weights.sum(1)[:, None])
    return np.trapezoid(brier, grid, axis=1) / (grid[-1] - grid[0])
