"""Survival estimators with a scikit-learn interface: gradient-boosted Cox (XGBoost) here, penalized
Cox in cox.py (on the shared helpers below).

They take y as a structured array [("event", bool), ("time", float)], predict a risk score
(higher = worse), score with Harrell's C (so GridSearchCV needs no custom scorer) and give survival
probabilities from a Breslow baseline.
"""

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from metasig.learn.xgb import (
    BoostedGrid,
    _fit_params,
    _train_matrix,
    as_float32,
    train_booster,
    xgb_gain,
    xgb_margin,
)


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
        max_bin=256,
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
        self.max_bin = max_bin
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.device = device

    def _setup(self, y):
        """(XGBoost parameters, label) of a fit on y: the label is the time, negated when censored."""
        event, time = survival_arrays(y)
        params = _fit_params(self, self.get_params(), len(time))
        return {"objective": "survival:cox", **params}, np.where(event, time, -time)

    def fit(self, X, y):
        from sksurv.linear_model.coxph import BreslowEstimator

        X = as_float32(X)
        event, time = survival_arrays(y)
        params, label = self._setup(y)
        self.booster_ = train_booster(params, _train_matrix(X, label, None, params))
        breslow = BreslowEstimator().fit(xgb_margin(self.booster_, X, self.n_jobs), event, time)
        self.baseline_times_ = np.asarray(breslow.cum_baseline_hazard_.x, dtype=float)
        self.baseline_cumhaz_ = np.asarray(breslow.cum_baseline_hazard_.y, dtype=float)
        self.n_features_in_ = X.shape[1]
        self.feature_importances_ = xgb_gain(self.booster_, X.shape[1])
        return self

    def grid_session(self, X, y, X_valid, candidates):
        """The candidates fitted on (X, y) together, each one's predict(X_valid) (the risk
        margin) on demand (`BoostedGrid`)."""
        setups = [(*clone(self).set_params(**c)._setup(y), None) for c in candidates]

        def predict(booster, dvalid, rounds):
            return np.asarray(booster.predict(dvalid, output_margin=True, iteration_range=(0, rounds)), dtype=float)

        return BoostedGrid(setups, X, X_valid, predict)

    def grid_predictions(self, X, y, X_valid, candidates):
        """predict(X_valid) of each candidate fitted on (X, y) (`grid_session`)."""
        return self.grid_session(X, y, X_valid, candidates).outputs()

    def predict(self, X):
        check_is_fitted(self, "booster_")
        return xgb_margin(self.booster_, X, self.n_jobs)
