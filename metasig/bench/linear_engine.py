"""Old vs new linear/Cox engine on one synthetic HER2-shaped problem (issue 12).

    python -m metasig.bench.linear_engine {binary,multiclass,survival} [--n N --p P] [--old-cap 300]

Times (a) one fit of the old estimator (saga LogisticRegression / lifelines CoxPHFitter), in a
child process stopped after --old-cap seconds, (b) one fit of the new estimator at the same penalty
(after its JIT warm-up, reported apart), (c) the new grid_predictions over the default grid on a
2/3 - 1/3 split; prints the validation ROC-AUC / C-index of old and new. Single runs.
"""

import argparse
import json
import multiprocessing as mp
import time

import numpy as np


def synthetic(n=1218, p=20530, n_pos=124, n_signal=20, effect=0.6, seed=0, survival=False, n_classes=2):
    """Log-normal expression in 200 correlated gene modules, log2 and standardised; a weak planted
    signal in n_signal genes: 124 positives of 1,218 (binary), exponential times (survival), or
    n_classes > 2 unbalanced classes, each shifting the signal genes its own way."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, 200)).astype(np.float32)
    module, load = rng.integers(0, 200, size=p), rng.uniform(0.2, 0.8, size=p).astype(np.float32)
    X = np.empty((n, p))
    for s in range(0, p, 2000):
        cols = slice(s, min(p, s + 2000))
        noise = rng.normal(size=(n, cols.stop - cols.start)).astype(np.float32)
        X[:, cols] = np.log2(1 + np.exp(0.7 * (factors[:, module[cols]] * load[cols] + noise) + rng.normal(2, 1)))
    X -= X.mean(0)
    X /= X.std(0) + 1e-12
    genes = rng.choice(p, n_signal, replace=False)
    if n_classes > 2:
        y = rng.choice(n_classes, size=n, p=np.arange(1, n_classes + 1) / (n_classes * (n_classes + 1) / 2))
        X[:, genes] += effect * rng.normal(size=(n_classes, n_signal))[y]
        return X, np.array([f"class{k}" for k in range(n_classes)])[y]
    score = X[:, genes] @ rng.choice([-1.0, 1.0], n_signal) * 3 * effect / np.sqrt(n_signal) + rng.normal(size=n)
    if survival:
        t = rng.exponential(np.exp(-0.6 * score))
        c = rng.exponential(2 * np.median(t), size=n)
        y = np.empty(n, dtype=[("event", bool), ("time", float)])
        y["event"], y["time"] = t <= c, np.minimum(t, c)
        return X, y
    y = np.zeros(n, int)
    y[np.argsort(-score)[:n_pos]] = 1
    return X, y


def _old_fit(kind, X, y, queue):
    start = time.perf_counter()
    if kind != "survival":
        from sklearn.linear_model import LogisticRegression

        m = LogisticRegression(C=0.1, l1_ratio=0.5, solver="saga", max_iter=5000, class_weight="balanced").fit(X, y)
        queue.put((time.perf_counter() - start, m.coef_, m.intercept_))
    else:
        import pandas as pd
        from lifelines import CoxPHFitter

        frame = pd.DataFrame(X)
        frame["T"], frame["E"] = y["time"], y["event"].astype(int)
        m = CoxPHFitter(penalizer=0.1, l1_ratio=0.5).fit(frame, "T", "E", fit_options={"max_steps": 500})
        queue.put((time.perf_counter() - start, m.params_.to_numpy(), float(m._norm_mean.to_numpy() @ m.params_)))


def run_old(kind, X, y, cap):
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_old_fit, args=(kind, X, y, queue))
    proc.start()
    proc.join(cap)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return None
    return queue.get()


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["binary", "multiclass", "survival"])
    ap.add_argument("--classes", type=int, default=7)
    ap.add_argument("--n", type=int, default=1218)
    ap.add_argument("--p", type=int, default=20530)
    ap.add_argument("--old-cap", type=float, default=300.0)
    args = ap.parse_args(argv)
    from sklearn.metrics import roc_auc_score

    from metasig.learn.cox import CoxPH
    from metasig.learn.linear import ElasticNetClassifier
    from metasig.learn.survival import harrell_c

    n_classes = args.classes if args.kind == "multiclass" else 2
    X, y = synthetic(args.n, args.p, survival=args.kind == "survival", n_classes=n_classes)
    train = np.arange(len(X)) % 3 != 0
    Xt, yt, Xv, yv = X[train], y[train], X[~train], y[~train]
    out = {"kind": args.kind, "shape": list(X.shape)}
    if args.kind != "survival":
        est = ElasticNetClassifier(C=0.1, l1_ratio=0.5)
        grid = [{"C": C, "l1_ratio": r} for C in (0.01, 0.1, 1.0, 10.0) for r in (0.2, 0.5, 0.8)]

        def score(pred):
            if n_classes > 2:
                return float(roc_auc_score(yv, pred, multi_class="ovr"))
            return float(roc_auc_score(yv, pred[:, 1] if pred.ndim == 2 else pred))
    else:
        est = CoxPH(penalizer=0.1, l1_ratio=0.5)
        grid = [{"penalizer": a, "l1_ratio": r} for a in (0.01, 0.1, 1.0) for r in (0.0, 0.5)]

        def score(pred):
            return harrell_c(yv, pred)

    start = time.perf_counter()
    est.fit(Xt[:50, :20], yt[:50])  # JIT warm-up (skglm) / import
    out["warmup_s"] = time.perf_counter() - start
    start = time.perf_counter()
    est.fit(Xt, yt)
    out["new_fit_s"] = time.perf_counter() - start
    new_pred = est.predict(Xv) if args.kind == "survival" else est.predict_proba(Xv)
    out["new_metric"] = score(new_pred)
    out["new_nonzero"] = int(np.count_nonzero(est.coef_))
    start = time.perf_counter()
    preds = est.grid_predictions(Xt, yt, Xv, grid)
    out["new_grid_s"] = time.perf_counter() - start
    out["new_grid_metrics"] = {json.dumps(c): round(score(p), 4) for c, p in zip(grid, preds)}
    old = run_old(args.kind, Xt, yt, args.old_cap)
    if old is None:
        out["old_fit_s"] = f">{args.old_cap:g}"
    else:
        seconds, coef, offset = old
        out["old_fit_s"] = seconds
        if args.kind == "survival":
            out["old_metric"] = score(Xv @ coef - offset)
        else:
            eta = Xv @ coef.T + offset
            proba = np.exp(eta - eta.max(axis=1, keepdims=True))
            out["old_metric"] = score(eta[:, 0] if n_classes == 2 else proba / proba.sum(axis=1, keepdims=True))
        out["max_coef_diff"] = float(np.abs(np.ravel(coef) - est.coef_.ravel()).max())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
