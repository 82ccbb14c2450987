"""Tree-model timings at the seeds' scale (issue 12): XGBoost's inner search the old way (every
candidate fitted alone) against `grid_predictions`, thread-count determinism, and random forest.

Usage: python -m metasig.bench.trees [determinism|search|levers|forest ...] [--repeats N] [--quick]
Synthetic data: standardized log-normal-ish float32 expression with correlated gene modules and a
weak planted signal in 20 genes (binary: 124 positives of 1,218; multiclass: 281 samples, 7 classes).
"""

import argparse
import json
import time

import numpy as np
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import ParameterGrid, StratifiedKFold

from metasig.learn.survival import XGBoostCox
from metasig.learn.xgb import XGBoostClassifier

GRID = list(ParameterGrid({"max_depth": [2, 3], "n_estimators": [50, 150], "learning_rate": [0.1]}))


def synthetic(n, p, n_classes=2, n_pos=124, seed=0, modules=40):
    """(X float32 standardized, y ints); binary keeps n_pos positives, multiclass near-equal classes."""
    rng = np.random.default_rng(seed)
    factors = rng.standard_normal((n, modules), dtype=np.float32)
    module_of = rng.integers(0, modules, size=p)
    X = rng.standard_normal((n, p), dtype=np.float32)
    X += 0.6 * factors[:, module_of]
    np.exp(0.8 * X, out=X)  # log-normal counts ...
    np.log2(X + 1.0, out=X)  # ... on the log scale
    X -= X.mean(axis=0)
    X /= X.std(axis=0)
    genes = rng.choice(p, 20, replace=False)
    if n_classes == 2:
        score = X[:, genes].sum(axis=1) / np.sqrt(20) + 1.5 * rng.standard_normal(n)
        y = np.zeros(n, dtype=int)
        y[np.argsort(-score)[:n_pos]] = 1
    else:
        centres = rng.standard_normal((n_classes, 20))
        logits = X[:, genes] @ centres.T / np.sqrt(20) * 1.5 + rng.gumbel(size=(n, n_classes))
        y = logits.argmax(axis=1)
    return np.ascontiguousarray(X, dtype=np.float32), y


def auc(y, proba):
    return roc_auc_score(y, proba[:, 1]) if proba.shape[1] == 2 else roc_auc_score(y, proba, multi_class="ovr")


def inner_split(y, seed=0):
    """One 2/3 - 1/3 inner split (the first of 3 stratified folds)."""
    return next(StratifiedKFold(3, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def old_search(est, X, y, X_valid):
    """Today's engine: each candidate cloned and fitted alone, single-threaded."""
    outs, fits = [], []
    for c in GRID:
        out, seconds = timed(lambda c=c: clone(est).set_params(**c, n_jobs=1).fit(X, y).predict_proba(X_valid))
        outs.append(out)
        fits.append(seconds)
    return outs, fits


def bench_search(shape, repeats):
    n, p, k = shape
    X, y = synthetic(n, p, k)
    tr, va = inner_split(y)
    Xtr, Xva = X[tr], X[va]
    est = XGBoostClassifier(random_state=0)
    rows = []
    for r in range(repeats):
        (old, fits), t_old = timed(lambda: old_search(est, Xtr, y[tr], Xva))
        row = {"shape": f"{n}x{p}", "classes": k, "repeat": r, "old_search_s": t_old}
        row["old_fit_s"] = dict(zip([f"d{c['max_depth']}_n{c['n_estimators']}" for c in GRID], fits))
        for n_jobs in (1, 2):
            new, t_new = timed(
                lambda n_jobs=n_jobs: est.set_params(n_jobs=n_jobs).grid_predictions(Xtr, y[tr], Xva, GRID)
            )
            row[f"grid_n_jobs{n_jobs}_s"] = t_new
            row[f"identical_n_jobs{n_jobs}"] = all(np.array_equal(a, b) for a, b in zip(old, new))
        row["auc"] = [round(auc(y[va], o), 4) for o in old]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def determinism(shape=(1218, 2000, 2)):
    """Bit-identity of hist predictions across nthread 1, 2, 4 (QuantileDMatrix built with the same
    nthread as training, as fit does), binary and multiclass."""
    n, p, k = shape
    for n_classes in (2, 5):
        X, y = synthetic(n, p, n_classes)
        tr, va = inner_split(y)
        for extra in ({}, {"subsample": 0.8, "colsample_bytree": 0.5}):
            preds = {}
            for nthread in (1, 2, 4):
                est = XGBoostClassifier(n_estimators=150, max_depth=3, n_jobs=nthread, **extra)
                preds[nthread] = est.fit(X[tr], y[tr]).predict_proba(X[va])
            diff = {t: float(np.abs(preds[t] - preds[1]).max()) for t in (2, 4)}
            same = {t: bool(np.array_equal(preds[t], preds[1])) for t in (2, 4)}
            print(json.dumps({"classes": n_classes, **extra, "identical_vs_1": same, "max_abs_diff": diff}), flush=True)
    X, y = synthetic(n, p, 2)
    rng = np.random.default_rng(1)
    surv = np.empty(n, dtype=[("event", bool), ("time", float)])
    surv["time"] = rng.exponential(np.exp(-y)) + 0.01
    surv["event"] = rng.random(n) < 0.7
    tr, va = inner_split(y)
    preds = {t: XGBoostCox(n_estimators=150, n_jobs=t).fit(X[tr], surv[tr]).predict(X[va]) for t in (1, 2, 4)}
    same = {t: bool(np.array_equal(preds[t], preds[1])) for t in (2, 4)}
    print(json.dumps({"survival": True, "identical_vs_1": same}), flush=True)


def levers(shape):
    """Where the time goes in one search: float32 conversion, matrix building, training; and
    candidate exact-or-near levers (matrix binned on the whole fold, max_bin)."""
    import xgboost as xgb

    n, p, k = shape
    X, y = synthetic(n, p, k)
    tr, va = inner_split(y)
    Xtr = X[tr]
    X64 = Xtr.astype(np.float64)
    out = {"shape": f"{n}x{p}", "classes": k}
    _, out["float32_copy_from_float64_s"] = timed(lambda: np.ascontiguousarray(X64, dtype=np.float32))
    _, out["row_subset_copy_s"] = timed(lambda: X[tr])
    for nthread in (1, 2):
        _, out[f"qdm_build_nthread{nthread}_s"] = timed(
            lambda t=nthread: xgb.QuantileDMatrix(Xtr, label=y[tr], nthread=t)
        )
    _, out["dmatrix_valid_s"] = timed(lambda: xgb.DMatrix(X[va], nthread=1))
    est = XGBoostClassifier(max_depth=3, n_estimators=150)
    ref, out["fit_d3_n150_s"] = timed(lambda: est.fit(Xtr, y[tr]).predict_proba(X[va]))
    # bins from the whole outer fold (train + validation rows), training on the inner-train rows only
    full = xgb.QuantileDMatrix(X, nthread=1)
    params = est.xgb_params_
    w = (
        None
        if k == 2
        else __import__("sklearn.utils.class_weight").utils.class_weight.compute_sample_weight("balanced", y[tr])
    )
    (dtr, out["qdm_with_ref_build_s"]) = timed(
        lambda: xgb.QuantileDMatrix(Xtr, label=y[tr], weight=w, ref=full, nthread=1)
    )
    booster = xgb.train({k_: v for k_, v in params.items() if k_ != "n_estimators"}, dtr, 150)
    p_ref = booster.predict(xgb.DMatrix(X[va]))
    p_ref = np.column_stack([1 - p_ref, p_ref]) if k == 2 else p_ref
    out["fold_bins_auc_diff"] = auc(y[va], p_ref) - auc(y[va], ref)
    out["fold_bins_identical"] = bool(np.array_equal(p_ref, ref))
    for max_bin in (64, 128):
        dm = xgb.QuantileDMatrix(Xtr, label=y[tr], weight=w, max_bin=max_bin, nthread=1)
        booster, secs = timed(
            lambda dm=dm, mb=max_bin: xgb.train(
                {**{k_: v for k_, v in params.items() if k_ != "n_estimators"}, "max_bin": mb}, dm, 150
            )
        )
        pb = booster.predict(xgb.DMatrix(X[va]))
        pb = np.column_stack([1 - pb, pb]) if k == 2 else pb
        out[f"max_bin{max_bin}"] = {
            "train_s": secs,
            "identical": bool(np.array_equal(pb, ref)),
            "auc_diff": auc(y[va], pb) - auc(y[va], ref),
        }
    print(json.dumps(out), flush=True)


def forest(shape, max_features, n_jobs, n_estimators=300):
    from sklearn.ensemble import RandomForestClassifier

    n, p, k = shape
    X, y = synthetic(n, p, k)
    tr, va = inner_split(y)
    rf = RandomForestClassifier(
        n_estimators=n_estimators, max_features=max_features, class_weight="balanced", random_state=0, n_jobs=n_jobs
    )
    proba, secs = timed(lambda: rf.fit(X[tr], y[tr]).predict_proba(X[va]))
    print(
        json.dumps(
            {
                "shape": f"{n}x{p}",
                "max_features": max_features,
                "n_jobs": n_jobs,
                "n_estimators": n_estimators,
                "fit_s": secs,
                "auc": auc(y[va], proba),
            }
        ),
        flush=True,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="+", choices=["determinism", "search", "levers", "forest"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--forest-trees", type=int, default=300, help="trees per forest (fit time scales linearly)")
    parser.add_argument("--quick", action="store_true", help="small shapes (a smoke run)")
    args = parser.parse_args(argv)
    binary, multi = ((300, 2000, 2), (120, 2000, 7)) if args.quick else ((1218, 20530, 2), (281, 22283, 7))
    if "determinism" in args.what:
        determinism((300, 500, 2) if args.quick else (1218, 2000, 2))
    if "search" in args.what:
        bench_search(binary, args.repeats)
        bench_search(multi, max(1, args.repeats - 1))
    if "levers" in args.what:
        levers(binary)
        levers(multi)
    if "forest" in args.what:
        for max_features in ("sqrt", 0.3):
            for n_jobs in (1, 2):
                forest(binary, max_features, n_jobs, n_estimators=args.forest_trees)


if __name__ == "__main__":
    main()
