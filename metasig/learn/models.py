"""The model zoo: `build()` returns an unfitted Pipeline (in-fold preprocessing + estimator named
"model") and the hyperparameter grid searched on the inner folds.

Survival estimators take y as a structured array [("event", bool), ("time", float)], predict a
risk score (higher = worse), score with Harrell's C (so GridSearchCV needs no custom scorer) and
give survival probabilities from a Breslow baseline. Everything is seeded and single-threaded by
default so two fits with the same seed predict identically.

XGBoost models take `device` ("cpu" or "cuda"); "cuda" trains on the GPU when one is visible and
otherwise falls back to the CPU with a logged warning (see `xgb_device`).
"""

import functools
import json
import logging
import os
import warnings

import numpy as np
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted

from metasig.errors import InputError
from metasig.learn.preprocess import make_preprocessing

CLASSIFIER_KINDS = ("xgboost", "elasticnet", "linear_sweep", "random_forest")
SURVIVAL_KINDS = ("coxph", "xgboost_cox")

# linear_sweep: 4 families x 8 strengths = 32 linear models chosen on the inner folds, the
# open-source counterpart of the reference's "32 linear learners tuned in parallel".
SWEEP_C = [0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
SWEEP_ALPHA = [1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
_SKLEARN_PENALTY_DEPRECATED = tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 8)
log = logging.getLogger("metasig.learn.models")


def _logistic(l1_ratio, **kw):
    """LogisticRegression with the penalty given by l1_ratio (0 = L2, 1 = L1), across versions:
    scikit-learn >= 1.8 infers the penalty from l1_ratio and deprecates `penalty`."""
    if not _SKLEARN_PENALTY_DEPRECATED:
        kw["penalty"] = "l2" if l1_ratio == 0 else "l1" if l1_ratio == 1 else "elasticnet"
    return LogisticRegression(l1_ratio=l1_ratio, **kw)


# ---- XGBoost classifier ---------------------------------------------------------------------


@functools.cache
def xgb_device(requested="cpu"):
    """The device XGBoost will really train on: `requested` ("cpu", "cuda" or "cuda:N") when it
    is usable, else "cpu" with one warning per process saying why. XGBoost itself would fall back
    too, but with a warning of its own at every fit; checking once here puts the reason in the
    job's log and runs every later fit explicitly on the CPU."""
    if not str(requested).startswith("cuda"):
        return "cpu"
    import xgboost as xgb

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not xgb.build_info().get("USE_CUDA"):
        reason = f"this XGBoost {xgb.__version__} was built without CUDA"
    elif visible is not None and visible.strip() in ("", "-1", "NoDevFiles"):
        reason = f"no GPU is visible (CUDA_VISIBLE_DEVICES={visible!r})"
    else:
        # A tiny fit: XGBoost switches a CUDA context to CPU when no device answers.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                booster = xgb.train(
                    {"device": requested, "verbosity": 0}, xgb.DMatrix(np.zeros((2, 1)), label=[0.0, 1.0]), 1
                )
            actual = json.loads(booster.save_config())["learner"]["generic_param"]["device"]
        except xgb.core.XGBoostError as exc:
            actual = f"none ({str(exc).splitlines()[0]})"
        if actual.startswith("cuda"):
            log.info("XGBoost trains on %s (CUDA_VISIBLE_DEVICES=%s)", actual, visible)
            return requested
        reason = f"XGBoost found no usable GPU (CUDA_VISIBLE_DEVICES={visible!r}; device: {actual})"
    log.warning("device %s requested but %s: training on the CPU instead", requested, reason)
    return "cpu"


def _fit_on_device(estimator, params):
    """XGBoost parameters with the estimator's device resolved to one that works here."""
    return {**params, "device": xgb_device(estimator.device)}


def _predict_on_cpu(booster):
    """Predictions and saved models are device-neutral: a GPU-trained booster predicts on the CPU
    (inputs are NumPy arrays), so artifacts load and predict the same anywhere."""
    booster.set_param({"device": "cpu"})
    return booster


def _dmatrix(X):
    import xgboost as xgb

    return xgb.DMatrix(np.asarray(X, dtype=np.float32), nthread=1)


def xgb_class_proba(booster, X, n_classes):
    """Class probabilities (n_samples, n_classes) from a Booster; shared with the artifact loader
    so a reloaded model predicts exactly what the fitted one did."""
    p = booster.predict(_dmatrix(X))
    if n_classes == 2:
        p = np.column_stack([1.0 - p, p])
    return np.asarray(p, dtype=float)


def xgb_margin(booster, X):
    return np.asarray(booster.predict(_dmatrix(X), output_margin=True), dtype=float)


def xgb_gain(booster, n_features):
    """Average split gain of each feature (0 when never used), in column order."""
    score = booster.get_score(importance_type="gain")
    return np.array([score.get(f"f{i}", 0.0) for i in range(n_features)], dtype=float)


class XGBoostClassifier(ClassifierMixin, BaseEstimator):
    """XGBClassifier with label encoding (classes_ keep the original labels, strings included)
    and class balancing. scale_pos_weight="auto": binary -> n_negative / n_positive from the
    training labels (XGBoost's scale_pos_weight); multiclass -> "balanced" sample weights.
    A float sets scale_pos_weight (binary) directly; None turns balancing off."""

    def __init__(
        self,
        max_depth=3,
        n_estimators=100,
        learning_rate=0.1,
        subsample=1.0,
        colsample_bytree=1.0,
        min_child_weight=1.0,
        reg_lambda=1.0,
        reg_alpha=0.0,
        gamma=0.0,
        scale_pos_weight="auto",
        tree_method="hist",
        random_state=0,
        n_jobs=1,
        device="cpu",
    ):
        self.max_depth = max_depth
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.reg_alpha = reg_alpha
        self.gamma = gamma
        self.scale_pos_weight = scale_pos_weight
        self.tree_method = tree_method
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.device = device

    def fit(self, X, y):
        import xgboost as xgb

        X = np.asarray(X, dtype=np.float32)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        y_enc = encoder.transform(y)
        # every constructor parameter is an XGBoost one, except our class balancing switch
        params = _fit_on_device(self, {k: v for k, v in self.get_params().items() if k != "scale_pos_weight"})
        weight = None
        if len(self.classes_) == 2:
            params["objective"] = "binary:logistic"
            if self.scale_pos_weight == "auto":
                n_pos = int((y_enc == 1).sum())
                params["scale_pos_weight"] = (len(y_enc) - n_pos) / max(n_pos, 1)
            elif self.scale_pos_weight is not None:
                params["scale_pos_weight"] = float(self.scale_pos_weight)
        else:
            params.update(objective="multi:softprob", num_class=len(self.classes_))
            if self.scale_pos_weight == "auto":
                weight = compute_sample_weight("balanced", y_enc)
        self.xgb_params_ = params
        model = xgb.XGBClassifier(**params).fit(X, y_enc, sample_weight=weight)
        self.booster_ = _predict_on_cpu(model.get_booster())
        self.n_features_in_ = X.shape[1]
        self.feature_importances_ = xgb_gain(self.booster_, X.shape[1])
        return self

    def predict_proba(self, X):
        check_is_fitted(self, "booster_")
        return xgb_class_proba(self.booster_, X, len(self.classes_))

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


# ---- survival estimators ----------------------------------------------------------------------


def survival_arrays(y):
    """(event bool array, time float array) from the structured survival target."""
    return np.asarray(y["event"], dtype=bool), np.asarray(y["time"], dtype=float)


def harrell_c(y, risk):
    """Harrell's concordance of a risk score (higher = earlier event); NaN when no pair is
    comparable (e.g. a fold without events)."""
    from sksurv.metrics import concordance_index_censored

    event, time = survival_arrays(y)
    try:
        return float(concordance_index_censored(event, time, np.asarray(risk, dtype=float))[0])
    except (ValueError, ZeroDivisionError):
        return float("nan")


def cumulative_hazard_at(times, cumhaz, t):
    """Right-continuous step function H0 evaluated at t (0 before the first time)."""
    idx = np.searchsorted(np.asarray(times, dtype=float), np.asarray(t, dtype=float), side="right") - 1
    cumhaz = np.asarray(cumhaz, dtype=float)
    return np.where(idx >= 0, cumhaz[np.clip(idx, 0, None)], 0.0)


def survival_from_risk(risk, times, cumhaz, t):
    """S(t | x) = exp(-H0(t) * exp(risk)) for each sample (rows) and time in t (columns)."""
    h0 = cumulative_hazard_at(times, cumhaz, np.atleast_1d(t))
    return np.exp(-np.outer(np.exp(np.asarray(risk, dtype=float)), h0))


class _SurvivalMixin:
    """predict/score/survival-function interface shared by the Cox models. Subclasses set
    baseline_times_ and baseline_cumhaz_ and implement predict (the log relative hazard)."""

    def score(self, X, y):
        return harrell_c(y, self.predict(X))

    def predict_survival(self, X, times):
        """Survival probabilities, array (n_samples, len(times))."""
        return survival_from_risk(self.predict(X), self.baseline_times_, self.baseline_cumhaz_, times)

    def predict_cumulative_hazard(self, X, times):
        h0 = cumulative_hazard_at(self.baseline_times_, self.baseline_cumhaz_, np.atleast_1d(times))
        return np.outer(np.exp(self.predict(X)), h0)

    def predict_survival_function(self, X, return_array=False):
        """scikit-survival style: StepFunction per sample, or with return_array=True the array
        of S(t) at `unique_times_` (the training times)."""
        surv = self.predict_survival(X, self.unique_times_)
        if return_array:
            return surv
        from sksurv.functions import StepFunction

        return np.array([StepFunction(self.unique_times_, row) for row in surv])

    @property
    def unique_times_(self):
        return np.asarray(self.baseline_times_, dtype=float)


class CoxPH(_SurvivalMixin, BaseEstimator):
    """Penalized Cox proportional hazards (lifelines CoxPHFitter) with a scikit-learn interface.

    predict(X) is the log partial hazard (X - mean_) @ coef_ as lifelines computes it, so
    S(t | x) = exp(-H0(t) exp(predict(x))) with lifelines' Breslow baseline H0. Only arrays are
    kept after fit (coef_, mean_, baseline_times_, baseline_cumhaz_)."""

    def __init__(self, penalizer=0.1, l1_ratio=0.0, max_steps=500):
        self.penalizer = penalizer
        self.l1_ratio = l1_ratio
        self.max_steps = max_steps

    def fit(self, X, y):
        from lifelines import CoxPHFitter

        X = np.asarray(X, dtype=float)
        event, time = survival_arrays(y)
        columns = [f"x{i}" for i in range(X.shape[1])]
        frame = pd.DataFrame(X, columns=columns)
        frame["__time"], frame["__event"] = time, event.astype(int)
        fitter = CoxPHFitter(penalizer=self.penalizer, l1_ratio=self.l1_ratio, baseline_estimation_method="breslow")
        with warnings.catch_warnings():
            # lifelines warns about low-variance columns and near-separation; penalization handles both.
            warnings.simplefilter("ignore")
            fitter.fit(frame, duration_col="__time", event_col="__event", fit_options={"max_steps": self.max_steps})
        self.coef_ = fitter.params_.loc[columns].to_numpy(dtype=float)
        self.mean_ = np.asarray(fitter._norm_mean.loc[columns], dtype=float)
        baseline = fitter.baseline_cumulative_hazard_
        self.baseline_times_ = baseline.index.to_numpy(dtype=float)
        self.baseline_cumhaz_ = baseline.iloc[:, 0].to_numpy(dtype=float)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        check_is_fitted(self, "coef_")
        return (np.asarray(X, dtype=float) - self.mean_) @ self.coef_

    @property
    def feature_importances_(self):
        return np.abs(self.coef_)


class XGBoostCox(_SurvivalMixin, BaseEstimator):
    """Gradient-boosted Cox model (XGBoost objective survival:cox; label = time, negated when
    censored). predict(X) is the output margin (log relative hazard); the baseline cumulative
    hazard is Breslow's estimator on the training margins (scikit-survival)."""

    def __init__(
        self,
        max_depth=3,
        n_estimators=100,
        learning_rate=0.05,
        subsample=1.0,
        colsample_bytree=1.0,
        min_child_weight=1.0,
        reg_lambda=1.0,
        reg_alpha=0.0,
        tree_method="hist",
        random_state=0,
        n_jobs=1,
        device="cpu",
    ):
        self.max_depth = max_depth
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.reg_alpha = reg_alpha
        self.tree_method = tree_method
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.device = device

    def fit(self, X, y):
        import xgboost as xgb
        from sksurv.linear_model.coxph import BreslowEstimator

        X = np.asarray(X, dtype=np.float32)
        event, time = survival_arrays(y)
        model = xgb.XGBRegressor(objective="survival:cox", **_fit_on_device(self, self.get_params()))
        model.fit(X, np.where(event, time, -time))
        self.booster_ = _predict_on_cpu(model.get_booster())
        breslow = BreslowEstimator().fit(xgb_margin(self.booster_, X), event, time)
        self.baseline_times_ = np.asarray(breslow.cum_baseline_hazard_.x, dtype=float)
        self.baseline_cumhaz_ = np.asarray(breslow.cum_baseline_hazard_.y, dtype=float)
        self.n_features_in_ = X.shape[1]
        self.feature_importances_ = xgb_gain(self.booster_, X.shape[1])
        return self

    def predict(self, X):
        check_is_fitted(self, "booster_")
        return xgb_margin(self.booster_, X)


# ---- build ------------------------------------------------------------------------------------


def _estimator(kind, task_kind, seed, n_jobs):
    """Default estimator and default grid (unprefixed keys) of a model kind."""
    if kind == "xgboost":
        est = XGBoostClassifier(random_state=seed, n_jobs=n_jobs)
        return est, {"max_depth": [2, 3], "n_estimators": [50, 150], "learning_rate": [0.1]}
    if kind == "elasticnet":
        est = _logistic(0.5, solver="saga", C=1.0, max_iter=5000, class_weight="balanced", random_state=seed)
        return est, {"C": [0.01, 0.1, 1.0, 10.0], "l1_ratio": [0.2, 0.5, 0.8]}
    if kind == "random_forest":
        est = RandomForestClassifier(n_estimators=300, class_weight="balanced", random_state=seed, n_jobs=n_jobs)
        return est, {"max_features": ["sqrt", 0.3], "min_samples_leaf": [1, 5]}
    if kind == "linear_sweep":
        return _sweep_members(seed)[0], {}
    if kind == "coxph":
        return CoxPH(), {"penalizer": [0.01, 0.1, 1.0], "l1_ratio": [0.0, 0.5]}
    if kind == "xgboost_cox":
        est = XGBoostCox(random_state=seed, n_jobs=n_jobs)
        return est, {"max_depth": [2, 3], "n_estimators": [50, 150], "learning_rate": [0.05]}
    raise InputError(
        "config", "models.kind", f"unknown model kind {kind!r}; expected one of {CLASSIFIER_KINDS + SURVIVAL_KINDS}"
    )


def _sweep_members(seed):
    """The four linear families of linear_sweep (each searched over its strength)."""
    common = dict(max_iter=5000, class_weight="balanced", random_state=seed)
    return [
        _logistic(0.0, solver="lbfgs", C=1.0, **common),
        _logistic(1.0, solver="saga", C=1.0, **common),
        _logistic(0.5, solver="saga", C=1.0, **common),
        SGDClassifier(
            loss="modified_huber", alpha=1e-4, max_iter=5000, tol=1e-4, class_weight="balanced", random_state=seed
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
):
    """Return (unfitted Pipeline whose last step is "model", param_grid with "model__" keys).

    model_cfg: {"kind": ..., "params": fixed estimator parameters, "search": grid overrides (keys
    without the "model__" prefix; each replaces that key's default list)}. linear_sweep's grid is
    a list of dicts that swap the "model" step (its "search" accepts "C" and "alpha", its
    "params" apply to every member that has the parameter). covariates, subset: see make_preprocessing.
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
        est, param_grid = _sweep(params, search, seed)
    else:
        _check_names(est, params, "params")
        _check_names(est, search, "search")
        est.set_params(**params)
        grid = {**grid, **search}
        param_grid = {f"model__{k}": list(v) for k, v in grid.items()}
    steps = make_preprocessing(preprocessing, normalization, task_kind, seed, covariates=covariates, subset=subset)
    return Pipeline(steps + [("model", est)]), param_grid


def _sweep(params, search, seed):
    unknown = set(search) - {"C", "alpha"}
    if unknown:
        raise InputError(
            "config",
            f"search.{sorted(unknown)[0]}",
            "linear_sweep searches only 'C' (logistic families) and 'alpha' (SGD)",
        )
    members = _sweep_members(seed)
    for key, value in params.items():
        has = [m for m in members if key in m.get_params(deep=False)]
        if not has:
            raise InputError(
                "config",
                f"params.{key}",
                "not a parameter of any linear_sweep member (LogisticRegression, SGDClassifier)",
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
    gain (XGBoost), impurity decrease (random forest)."""
    if hasattr(estimator, "feature_importances_"):
        return np.asarray(estimator.feature_importances_, dtype=float)
    if hasattr(estimator, "coef_"):
        coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=float))
        return np.abs(coef).mean(axis=0)
    raise TypeError(f"no feature importance for {type(estimator).__name__}")


def model_feature_names(fitted_pipeline, feature_names):
    """Names of the columns the final estimator sees, mapped through filters and selectors."""
    pre = fitted_pipeline[:-1]
    if len(pre) == 0:
        return np.asarray(feature_names, dtype=object)
    return pre.get_feature_names_out(np.asarray(feature_names, dtype=object))


def feature_importance(fitted_pipeline, feature_names) -> pd.DataFrame:
    """DataFrame[feature, importance] over every input feature (0 for features the filters or
    selectors dropped), sorted by importance descending, then input order."""
    names = list(map(str, feature_names))
    used = [str(n) for n in model_feature_names(fitted_pipeline, names)]
    values = estimator_importance(fitted_pipeline[-1])
    if len(values) != len(used):
        raise ValueError(f"{len(values)} importances for {len(used)} model inputs")
    lookup = dict(zip(used, values))
    table = pd.DataFrame({"feature": names, "importance": [float(lookup.get(n, 0.0)) for n in names]})
    order = np.argsort(-table["importance"].to_numpy(), kind="stable")
    return table.iloc[order].reset_index(drop=True)
