"""The model zoo: `build()` returns an unfitted Pipeline (in-fold preprocessing + estimator named
"model") and the hyperparameter grid searched on the inner folds; each model kind's default
estimator and grid; feature importance of a fitted pipeline. Everything is seeded and
single-threaded by default so two fits with the same seed predict identically.

The estimators of our own live beside it: XGBoost in xgb.py, the survival models in survival.py.
"""

import logging

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from metasig.errors import InputError
from metasig.learn.cox import CoxPH
from metasig.learn.linear import ElasticNetClassifier
from metasig.learn.logistic import SpanLogisticRegression
from metasig.learn.preprocess import make_preprocessing
from metasig.learn.sgd import SpanSGDClassifier
from metasig.learn.survival import XGBoostCox
from metasig.learn.svm import SVMClassifier
from metasig.learn.xgb import XGBoostClassifier

CLASSIFIER_KINDS = ("xgboost", "elasticnet", "linear_sweep", "random_forest", "svm", "logistic")
SURVIVAL_KINDS = ("coxph", "xgboost_cox")

# linear_sweep: 4 families x 8 strengths = 32 linear models chosen on the inner folds, the
# open-source counterpart of the reference's "32 linear learners tuned in parallel".
SWEEP_C = [0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
SWEEP_ALPHA = [1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
# The SGD member makes a fixed number of passes, as linear learners do: run to a 1e-4 tolerance
# it took 40-369 epochs per strength at 649 x 20,530 (20 s for 8 strengths, 3.6 s at 20 epochs),
# and on WDBC 20 epochs moved the chosen SGD model's ROC-AUC by 0.0001.
SWEEP_SGD_EPOCHS = 20

# Tree models pay for every gene at every split (XGBoost scans genes x 256 bins per node, a
# forest's max_features is a share of the genes), so on wider inputs their default select_k
# keeps the genes with the best in-fold univariate score. At 974 x 20,530 one 150-round XGBoost
# fit took 123 s, on the 200 best genes 0.8 s; a forest with max_features 0.3 took 4 s on 200
# genes, 11 s on 500. On one held-out fold of each synthetic seed shape tried, 200 genes scored as
# well as 500 or all of them (README, Preprocessing).
WIDE_INPUT_SELECT_K = {"xgboost": 200, "xgboost_cox": 200, "random_forest": 200}

# XGBoost's hist method scans genes x bins at every node, so a tree's cost grows with max_bin, not
# with the few hundred samples a fold has: one 5-class 150-round fit on 534 x 200 took 7.1 s with
# XGBoost's 256 bins, 2.1 s with 64 (README, Scale). "auto": a bin per 5 training rows, 64 to 256
# (metasig.learn.xgb.auto_max_bin).
XGB_MAX_BIN = "auto"

log = logging.getLogger("metasig.learn.models")


# ---- build ------------------------------------------------------------------------------------


def _estimator(kind, task_kind, seed, n_jobs):
    """Default estimator and default grid (unprefixed keys) of a model kind."""
    if kind == "xgboost":
        est = XGBoostClassifier(max_bin=XGB_MAX_BIN, random_state=seed, n_jobs=n_jobs)
        return est, {"max_depth": [2, 3], "n_estimators": [50, 150], "learning_rate": [0.1]}
    if kind == "elasticnet":
        est = ElasticNetClassifier(C=1.0, l1_ratio=0.5, class_weight="balanced", n_jobs=n_jobs, random_state=seed)
        return est, {"C": [0.01, 0.1, 1.0, 10.0], "l1_ratio": [0.2, 0.5, 0.8]}
    if kind == "random_forest":
        # tuned by its out-of-bag score where samples are not grouped (metasig.learn.oob). Classes
        # are balanced by weights on each tree's bootstrap: scikit-learn >= 1.9 draws the bootstrap
        # itself by "balanced" weights, so a rare class's samples sit in nearly every tree and are
        # out of bag in few (HER2-positives, 1 in 10: in 0.7% of the trees instead of 37%).
        est = RandomForestClassifier(
            n_estimators=300, class_weight="balanced_subsample", oob_score=True, random_state=seed, n_jobs=n_jobs
        )
        return est, {"max_features": ["sqrt", 0.3], "min_samples_leaf": [1, 5]}
    if kind == "svm":
        est = SVMClassifier(C=1.0, kernel="rbf", class_weight="balanced", random_state=seed)
        return est, {"kernel": ["linear", "rbf"], "C": [0.1, 1.0, 10.0]}
    if kind == "logistic":
        # scikit-learn's LogisticRegression (lbfgs), in the samples' span on wide inputs: with no L1
        # term skglm's working set grows to every gene (at 1,000 x 20,000, 2-19 s a fit where lbfgs takes 0.2-1.8 s).
        est = SpanLogisticRegression(C=1.0, class_weight="balanced", max_iter=1000, random_state=seed)
        return est, {"C": [0.01, 0.1, 1.0, 10.0]}
    if kind == "linear_sweep":
        return _sweep_members(seed, n_jobs)[0], {}
    if kind == "coxph":
        return CoxPH(n_jobs=n_jobs), {"penalizer": [0.01, 0.1, 1.0], "l1_ratio": [0.0, 0.5]}
    if kind == "xgboost_cox":
        est = XGBoostCox(max_bin=XGB_MAX_BIN, random_state=seed, n_jobs=n_jobs)
        return est, {"max_depth": [2, 3], "n_estimators": [50, 150], "learning_rate": [0.05]}
    raise InputError(
        "config", "models.kind", f"unknown model kind {kind!r}; expected one of {CLASSIFIER_KINDS + SURVIVAL_KINDS}"
    )


def _sweep_members(seed, n_jobs=1):
    """The four linear families of linear_sweep (each searched over its strength): class-balanced
    logistic regression with an L2, L1 and elastic-net (0.5) penalty, and a modified-Huber SGD of
    SWEEP_SGD_EPOCHS epochs."""
    common = dict(C=1.0, class_weight="balanced", n_jobs=n_jobs, random_state=seed)
    return [
        ElasticNetClassifier(l1_ratio=0.0, **common),
        ElasticNetClassifier(l1_ratio=1.0, **common),
        ElasticNetClassifier(l1_ratio=0.5, **common),
        SpanSGDClassifier(
            loss="modified_huber",
            alpha=1e-4,
            max_iter=SWEEP_SGD_EPOCHS,
            tol=None,
            class_weight="balanced",
            random_state=seed,
        ),
    ]


def accepted_parameters(kind):
    """{"params": [...], "search": [...]}: the keys a model kind accepts in its config, so the
    config check can name a typo before any job runs (build() enforces the same)."""
    if kind == "linear_sweep":
        members = _sweep_members(0)
        return {"params": sorted({k for m in members for k in m.get_params(deep=False)}), "search": ["C", "alpha"]}
    names = sorted(_estimator(kind, None, 0, 1)[0].get_params(deep=False))
    return {"params": names, "search": names}


def _check_names(est, keys, where):
    valid = est.get_params(deep=False)
    for key in keys:
        if key not in valid:
            raise InputError(
                "config", f"{where}.{key}", f"not a parameter of {type(est).__name__} (parameters: {sorted(valid)})"
            )


def build(
    model_cfg: dict,
    task_kind: str,
    preprocessing: dict,
    normalization: str,
    seed: int,
    n_jobs: int = 1,
    covariates=(),
    subset=None,
    n_features=None,
):
    """Return (unfitted Pipeline whose last step is "model", param_grid with "model__" keys).

    model_cfg: {"kind": ..., "params": fixed estimator parameters, "search": grid overrides (keys
    without the "model__" prefix; each replaces that key's default list), "preprocessing": this
    model's preprocessing settings, merged over `preprocessing` (the dataset's)}. linear_sweep's grid is
    a list of dicts that swap the "model" step (its "search" accepts "C" and "alpha", its
    "params" apply to every member that has the parameter). covariates, subset: see make_preprocessing.
    n_features: the width of the job's input, for the model kind's default select_k (see
    `select_k`).
    """
    kind = model_cfg["kind"]
    allowed = SURVIVAL_KINDS if task_kind == "survival" else CLASSIFIER_KINDS
    if kind not in allowed:
        raise InputError(
            "config", "models.kind", f"model kind {kind!r} cannot fit a {task_kind} task; use one of {allowed}"
        )
    params = dict(model_cfg.get("params") or {})
    search = dict(model_cfg.get("search") or {})
    est, grid = _estimator(kind, task_kind, seed, n_jobs)
    if kind == "linear_sweep":
        est, param_grid = _sweep(params, search, seed, n_jobs)
    else:
        _check_names(est, params, "params")
        _check_names(est, search, "search")
        est.set_params(**params)
        grid = {**grid, **search}
        param_grid = {f"model__{k}": list(v) for k, v in grid.items()}
    preprocessing = {**(preprocessing or {}), **(model_cfg.get("preprocessing") or {})}
    preprocessing["select_k"] = select_k(kind, preprocessing.get("select_k"), n_features)
    steps = make_preprocessing(preprocessing, normalization, task_kind, seed, covariates=covariates, subset=subset)
    return Pipeline(steps + [("model", est)]), param_grid


def select_k(kind, configured, n_features=None):
    """The select_k a job uses: a number as configured; "all" keeps every gene; null is the model
    kind's default, WIDE_INPUT_SELECT_K for tree models on more features than that (logged), else
    none."""
    if configured == "all":
        return None
    default = WIDE_INPUT_SELECT_K.get(kind)
    if configured is not None or default is None or n_features is None or n_features <= default:
        return configured
    log.info(
        "%s on %s features: each training fold keeps the %s with the best univariate score "
        "(the default select_k of tree models on wide inputs; set preprocessing.select_k to a number, "
        "or to all to keep every feature)",
        kind,
        f"{n_features:,}",
        f"{default:,}",
    )
    return default


def _sweep(params, search, seed, n_jobs=1):
    unknown = set(search) - {"C", "alpha"}
    if unknown:
        raise InputError(
            "config",
            f"search.{sorted(unknown)[0]}",
            "linear_sweep searches only 'C' (logistic families) and 'alpha' (SGD)",
        )
    members = _sweep_members(seed, n_jobs)
    for key, value in params.items():
        has = [m for m in members if key in m.get_params(deep=False)]
        if not has:
            raise InputError(
                "config",
                f"params.{key}",
                "not a parameter of any linear_sweep member (ElasticNetClassifier, SpanSGDClassifier)",
            )
        for m in has:
            m.set_params(**{key: value})
    Cs, alphas = list(search.get("C", SWEEP_C)), list(search.get("alpha", SWEEP_ALPHA))
    grid = [{"model": [m], "model__C": Cs} for m in members[:3]]
    grid.append({"model": [members[3]], "model__alpha": alphas})
    return members[0], grid


def jsonable_params(params: dict) -> dict:
    """best_params_ as JSON: estimators (linear_sweep swaps the "model" step) become their repr."""
    out = {}
    for key, value in params.items():
        if isinstance(value, BaseEstimator):
            value = repr(value)
        elif hasattr(value, "item"):
            value = value.item()
        out[key] = value
    return out


# ---- importance ---------------------------------------------------------------------------------


def estimator_importance(estimator) -> np.ndarray:
    """One non-negative number per model input column: |coef| (linear: mean over classes; Cox),
    gain (XGBoost), impurity decrease (random forest), mean |gradient| (SVM with an RBF kernel)."""
    if hasattr(estimator, "feature_importances_"):
        return np.asarray(estimator.feature_importances_, dtype=float)
    if hasattr(estimator, "coef_"):
        coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=float))
        return np.abs(coef).mean(axis=0)
    raise TypeError(f"no feature importance for {type(estimator).__name__}")


def _pca_position(fitted_pipeline):
    names = [name for name, _ in fitted_pipeline.steps[:-1]]
    return names.index("pca") if "pca" in names else None


def model_feature_names(fitted_pipeline, feature_names):
    """Names of the columns the final estimator sees, mapped through filters and selectors
    (PC1..PCk after in-fold PCA)."""
    pre = fitted_pipeline[:-1]
    if len(pre) == 0:
        return np.asarray(feature_names, dtype=object)
    return pre.get_feature_names_out(np.asarray(feature_names, dtype=object))


def _importance_and_names(fitted_pipeline, names):
    """(importance per column, column names) at the level of genes. With in-fold PCA the model
    sees components, which mean nothing to a reader: importance is mapped back to the genes PCA
    was fitted on. A linear model's coefficients on components are exactly coefficients on the
    (scaled) genes, coef @ components_, so their |.| is reported as for any linear model; an RBF
    SVM's decision gradients are pulled back the same way (mean |gradient| on the genes); for
    other models (trees) a component's importance is spread over genes by its |loadings|."""
    position = _pca_position(fitted_pipeline)
    estimator = fitted_pipeline[-1]
    if position is None:
        return estimator_importance(estimator), model_feature_names(fitted_pipeline, names)
    pca = fitted_pipeline[position]
    before = fitted_pipeline[:position]
    genes = before.get_feature_names_out(np.asarray(names, dtype=object)) if len(before) else names
    if hasattr(estimator, "coef_") and not hasattr(estimator, "feature_importances_"):
        coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=float)) @ pca.components_
        return np.abs(coef).mean(axis=0), genes
    if hasattr(estimator, "decision_gradients"):  # RBF SVM: gradients pulled back, as coefficients are
        grads = estimator.decision_gradients()
        return np.mean([np.abs(g @ pca.components_).mean(axis=0) for g in grads], axis=0), genes
    return estimator_importance(estimator) @ np.abs(pca.components_), genes


def feature_importance(fitted_pipeline, feature_names) -> pd.DataFrame:
    """DataFrame[feature, importance] over every input feature (0 for features the filters or
    selectors dropped), sorted by importance descending, then input order."""
    names = list(map(str, feature_names))
    values, used = _importance_and_names(fitted_pipeline, names)
    used = [str(n) for n in used]
    if len(values) != len(used):
        raise ValueError(f"{len(values)} importances for {len(used)} model inputs")
    lookup = dict(zip(used, values))
    table = pd.DataFrame({"feature": names, "importance": [float(lookup.get(n, 0.0)) for n in names]})
    order = np.argsort(-table["importance"].to_numpy(), kind="stable")
    return table.iloc[order].reset_index(drop=True)
