"""The plain reference: what a user would write with scikit-learn, XGBoost and lifelines, on the
same outer splits and grids as metasig, with nothing of metasig's engine.

One call fits one outer split: RepeatedStratifiedKFold(5, 3, random_state=seed) as in
metasig/learn/nested_cv.py (stratified on the class, or the event for survival), tuned by
GridSearchCV(Pipeline([StandardScaler(), estimator]), grid, cv=StratifiedKFold(3, shuffle=True,
random_state=seed)) with ROC-AUC (binary), macro one-vs-rest ROC-AUC (multiclass) or Harrell's C
(survival), refitted on the split's training part, scored on its test part. The grids are those
of metasig/learn/models.py when this benchmark was written (tests/bench checks they still agree).

Tree classifiers on more genes than SCREEN_K keep, as metasig's do, the SCREEN_K genes with the best
F-test in each fit (SelectKBest(f_classif) first in the pipeline), so the two compare the same model;
spec["screen"] = False fits them on every gene, as a user unaware of metasig's screen would. The
Cox models have no scikit-learn screen and always see every gene.
"""

import time

import numpy as np
import pandas as pd
import sklearn
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import GridSearchCV, RepeatedStratifiedKFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

GRIDS = {
    "xgboost": {"max_depth": [2, 3], "n_estimators": [50, 150], "learning_rate": [0.1]},
    "elasticnet": {"C": [0.01, 0.1, 1.0, 10.0], "l1_ratio": [0.2, 0.5, 0.8]},
    "random_forest": {"max_features": ["sqrt", 0.3], "min_samples_leaf": [1, 5]},
    "logistic": {"C": [0.01, 0.1, 1.0, 10.0]},
    "svm": {"estimator__kernel": ["linear", "rbf"], "estimator__C": [0.1, 1.0, 10.0]},
    "linear_sweep": {
        "C": [0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
        "alpha": [1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
    },
    "coxph": {"penalizer": [0.01, 0.1, 1.0], "l1_ratio": [0.0, 0.5]},
    "xgboost_cox": {"max_depth": [2, 3], "n_estimators": [50, 150], "learning_rate": [0.05]},
}
SCREEN_K = {"xgboost": 200, "random_forest": 200}  # metasig.learn.models.WIDE_INPUT_SELECT_K's classifiers
_PENALTY_ARG = tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 8)


def logistic(l1_ratio, **kw):
    if _PENALTY_ARG:  # scikit-learn < 1.8 needs the penalty named
        kw["penalty"] = "l2" if l1_ratio == 0 else "l1" if l1_ratio == 1 else "elasticnet"
    return LogisticRegression(l1_ratio=l1_ratio, **kw)


def load(data_dir, group, task):
    """(X DataFrame, y) as a user would read the benchmark's files: pandas, no metasig."""
    X = pd.read_parquet(f"{data_dir}/normalized.parquet")
    sheet = pd.read_csv(f"{data_dir}/samples.tsv", sep="\t", dtype={"sample": str})
    genes = pd.read_json(f"{data_dir}/groups.json", typ="series")[group]["genes"]
    X = X.loc[sheet["sample"], genes]
    if task["type"] == "survival":
        y = np.empty(len(sheet), dtype=[("event", bool), ("time", float)])
        y["event"], y["time"] = sheet[task["event"]].astype(bool), sheet[task["time"]].astype(float)
    elif task["type"] == "binary":
        y = (sheet[task["label"]].astype(str) == str(task["positive"])).astype(int).to_numpy()
    else:
        y = sheet[task["label"]].astype(str).to_numpy(dtype=object)
    return X, y


def outer_split(X, y, kind, seed, index):
    strata = y["event"].astype(int) if kind == "survival" else y
    splits = RepeatedStratifiedKFold(n_splits=5, n_repeats=3, random_state=seed).split(X, strata)
    for i, split in enumerate(splits):
        if i == index:
            return split
    raise IndexError(index)


def run_split(spec):
    """Fit and score one outer split; returns {"fit_s", "metric", "best", "test_size"}."""
    task, kind, seed = spec["task"], spec["model"]["kind"], int(spec["seed"])
    X, y = load(spec["data_dir"], spec["group"], task)
    train, test = outer_split(X, y, task["type"], seed, int(spec["split"]))
    X_train, X_test = X.iloc[train].to_numpy(), X.iloc[test].to_numpy()
    started = time.perf_counter()
    if kind == "coxph":
        predict, best = _lifelines_cox(X_train, y[train], seed)
    else:
        screen = SCREEN_K.get(kind) if spec.get("screen", True) else None
        predict, best = _grid_search(kind, task["type"], X_train, y[train], seed, int(spec["threads"]), screen)
    out = predict(X_test)
    fit_s = time.perf_counter() - started
    return {"fit_s": fit_s, "metric": score(task["type"], y[test], out), "best": best, "test_size": len(test)}


def score(task_kind, y, out):
    from sklearn.metrics import roc_auc_score
    from sksurv.metrics import concordance_index_censored

    if task_kind == "survival":
        return float(concordance_index_censored(y["event"], y["time"], out)[0])
    if task_kind == "binary":
        return float(roc_auc_score(y, out))
    return float(roc_auc_score(y, out, multi_class="ovr", labels=sorted(set(y))))


def _grid_search(kind, task_kind, X, y, seed, threads, screen=None):
    import xgboost as xgb

    strata = y["event"].astype(int) if task_kind == "survival" else y
    inner = list(StratifiedKFold(3, shuffle=True, random_state=seed).split(X, strata))
    grid = {f"model__{k}": v for k, v in GRIDS[kind].items()}
    fit_params, labels, scoring = {}, None, {"binary": "roc_auc", "multiclass": "roc_auc_ovr"}.get(task_kind)
    if kind == "xgboost":
        labels = np.unique(y)  # XGBoost wants 0..k-1
        y = np.searchsorted(labels, y)
        est = xgb.XGBClassifier(tree_method="hist", random_state=seed, n_jobs=1)
        if task_kind == "binary":
            est.set_params(scale_pos_weight=(y == 0).sum() / max((y == 1).sum(), 1))
        else:
            from sklearn.utils.class_weight import compute_sample_weight

            fit_params["model__sample_weight"] = compute_sample_weight("balanced", y)
    elif kind == "elasticnet":
        est = logistic(0.5, solver="saga", max_iter=5000, class_weight="balanced", random_state=seed)
    elif kind == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        est = RandomForestClassifier(n_estimators=300, class_weight="balanced_subsample", random_state=seed, n_jobs=1)
    elif kind == "logistic":
        est = logistic(0.0, solver="lbfgs", max_iter=1000, class_weight="balanced", random_state=seed)
    elif kind == "svm":  # what SVMClassifier does: Platt sigmoids on held-out folds, one SVC on all
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        est = CalibratedClassifierCV(SVC(class_weight="balanced"), method="sigmoid", cv=3, ensemble=False)
    elif kind == "linear_sweep":
        est, grid = None, _sweep_grid(seed)
    elif kind == "xgboost_cox":
        est = xgb.XGBRegressor(objective="survival:cox", tree_method="hist", random_state=seed, n_jobs=1)
        y = np.where(y["event"], y["time"], -y["time"])  # XGBoost's Cox label: negative = censored
        scoring = _signed_time_cindex
    else:
        raise ValueError(f"no reference for model kind {kind!r}")
    steps = [("scale", StandardScaler()), ("model", est if est is not None else "passthrough")]
    if screen and X.shape[1] > screen:
        from sklearn.feature_selection import SelectKBest, f_classif

        steps.insert(0, ("screen", SelectKBest(f_classif, k=screen)))
    pipe = Pipeline(steps)
    search = GridSearchCV(pipe, grid, scoring=scoring, cv=inner, n_jobs=threads, refit=True)
    search.fit(X, y, **fit_params)
    best = {k: (type(v).__name__ if hasattr(v, "get_params") else v) for k, v in search.best_params_.items()}
    if task_kind == "survival":
        return search.predict, best
    if task_kind == "binary":
        return (lambda Z: search.predict_proba(Z)[:, 1]), best
    return search.predict_proba, best


def _sweep_grid(seed):
    common = dict(max_iter=5000, class_weight="balanced", random_state=seed)
    C, alpha = GRIDS["linear_sweep"]["C"], GRIDS["linear_sweep"]["alpha"]
    sgd = SGDClassifier(loss="modified_huber", max_iter=20, tol=None, class_weight="balanced", random_state=seed)
    return [
        {"model": [logistic(0.0, solver="lbfgs", **common)], "model__C": C},
        {"model": [logistic(1.0, solver="saga", **common)], "model__C": C},
        {"model": [logistic(0.5, solver="saga", **common)], "model__C": C},
        {"model": [sgd], "model__alpha": alpha},
    ]


def _signed_time_cindex(estimator, X, y):
    from sksurv.metrics import concordance_index_censored

    return concordance_index_censored(y > 0, np.abs(y), estimator.predict(X))[0]


def _lifelines_cox(X, y, seed):
    """Penalized Cox with lifelines, tuned by hand on the inner folds (lifelines has no grid search
    of its own); scaled by a StandardScaler fitted on the training part of each fit."""
    from itertools import product

    from lifelines import CoxPHFitter
    from sksurv.metrics import concordance_index_censored

    def fit(rows, penalizer, l1_ratio):
        scaler = StandardScaler().fit(X[rows])
        frame = pd.DataFrame(scaler.transform(X[rows]))
        frame.columns = [f"x{i}" for i in range(X.shape[1])]
        frame["T"], frame["E"] = y["time"][rows], y["event"][rows].astype(int)
        cph = CoxPHFitter(penalizer=penalizer, l1_ratio=l1_ratio).fit(frame, "T", "E")
        coef = cph.params_.to_numpy()
        return lambda Z: scaler.transform(Z) @ coef

    inner = list(StratifiedKFold(3, shuffle=True, random_state=seed).split(X, y["event"].astype(int)))
    best, best_score = None, -np.inf
    for pen, l1 in product(GRIDS["coxph"]["penalizer"], GRIDS["coxph"]["l1_ratio"]):
        scores = []
        for tr, va in inner:
            risk = fit(tr, pen, l1)(X[va])
            scores.append(concordance_index_censored(y["event"][va], y["time"][va], risk)[0])
        if np.mean(scores) > best_score:
            best, best_score = (pen, l1), float(np.mean(scores))
    return fit(np.arange(len(y)), *best), {"penalizer": best[0], "l1_ratio": best[1]}
