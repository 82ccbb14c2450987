"""XGBoost with a scikit-learn interface: the classifier (label encoding, class balancing) and the
booster helpers shared with the Cox model and the artifact loader.

XGBoost models take `device` ("cpu" or "cuda"); "cuda" trains on the GPU when one is visible and
otherwise falls back to the CPU with a logged warning (see `xgb_device`).
"""

import functools
import json
import logging
import os
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted

log = logging.getLogger("metasig.learn.xgb")


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


ROWS_PER_BIN = 5  # max_bin "auto": a histogram bin per this many training rows, within BIN_RANGE
BIN_RANGE = (64, 256)  # 256: XGBoost's default


def auto_max_bin(max_bin, n_rows):
    """max_bin, or for "auto" the bins for n_rows training rows. A tree scans genes x bins at each
    node, so fewer bins are faster, but too few cost accuracy: on the HER2-shaped benchmark
    (649-row inner splits) 64 bins scored 0.023 ROC-AUC below 128 (standard error 0.010), while on
    a few hundred rows 64 quantiles already hold a handful of samples each."""
    if max_bin != "auto":
        return max_bin
    low, high = BIN_RANGE
    return int(min(high, max(low, n_rows // ROWS_PER_BIN)))


def _fit_params(estimator, params, n_rows):
    """XGBoost parameters of a fit on n_rows: the estimator's device resolved to one that works
    here, its max_bin to a number (auto_max_bin)."""
    return {**params, "device": xgb_device(estimator.device), "max_bin": auto_max_bin(params["max_bin"], n_rows)}


def _predict_on_cpu(booster):
    """Predictions and saved models are device-neutral: a GPU-trained booster predicts on the CPU
    (inputs are NumPy arrays), so artifacts load and predict the same anywhere."""
    booster.set_param({"device": "cpu"})
    return booster


def as_float32(X):
    """X as a C-contiguous float32 array, the layout XGBoost reads; no copy when X already is one."""
    return np.ascontiguousarray(X, dtype=np.float32)


def _dmatrix(X, nthread=1):
    import xgboost as xgb

    return xgb.DMatrix(as_float32(X), nthread=nthread)


def xgb_class_proba(booster, X, n_classes, nthread=1):
    """Class probabilities (n_samples, n_classes) from a Booster; shared with the artifact loader
    so a reloaded model predicts exactly what the fitted one did."""
    return _class_columns(booster.predict(_dmatrix(X, nthread)), n_classes)


def _class_columns(p, n_classes):
    if n_classes == 2:
        p = np.column_stack([1.0 - p, p])
    return np.asarray(p, dtype=float)


def xgb_margin(booster, X, nthread=1):
    return np.asarray(booster.predict(_dmatrix(X, nthread), output_margin=True), dtype=float)


def _train_matrix(X, label, weight, params):
    """The training matrix XGBoost's scikit-learn wrapper would build: quantile-binned (hist)
    with the booster's thread count, a plain DMatrix for the other tree methods."""
    import xgboost as xgb

    if params.get("tree_method") in ("hist", None, "auto"):
        return xgb.QuantileDMatrix(
            as_float32(X), label=label, weight=weight, nthread=params["n_jobs"], max_bin=params.get("max_bin", 256)
        )
    return xgb.DMatrix(as_float32(X), label=label, weight=weight, nthread=params["n_jobs"])


def train_booster(params, dtrain):
    """A booster trained on dtrain; params are XGBoost's scikit-learn ones (n_estimators = rounds)."""
    booster = grow_booster(start_booster(params, dtrain), dtrain, params)
    return _predict_on_cpu(booster.reset())  # reset: frees the training caches, as xgb.train does


def start_booster(params, dtrain):
    """An untrained booster for dtrain, which `grow_booster` trains."""
    import xgboost as xgb

    return xgb.Booster({k: v for k, v in params.items() if k != "n_estimators"}, [dtrain])


def grow_booster(booster, dtrain, params):
    """The booster boosted to params["n_estimators"] rounds in all, on params' device: xgb.train's
    own loop (one `update` per round), so a booster grown in steps is the one trained in one go."""
    if booster.num_boosted_rounds() < params["n_estimators"]:
        booster.set_param({"device": params.get("device", "cpu")})
    for i in range(booster.num_boosted_rounds(), params["n_estimators"]):
        booster.update(dtrain, iteration=i)
    return booster


class BoostedGrid:
    """The candidates of one grid on one training set, boosted together.

    setups: per candidate (params, label, weight) as `train_booster` and `_train_matrix` take them.
    One training matrix is built per distinct (label, weight, matrix kind) and shared; candidates
    that differ only in n_estimators share one booster, grown as far as the candidates asked for so
    far need, each scored on its first n_estimators rounds (`iteration_range`). Boosting is
    sequential and the random state advances round by round, so that prefix is exactly the
    booster a separate fit with fewer rounds would have trained, and a booster grown in steps is
    the one `xgb.train` grows in one go (gbtree; tests check both with row and column
    subsampling). `groups` and `budget` let a search score some candidates first and grow only
    the promising boosters further (`metasig.learn.halving`).
    predict(booster, dvalid, rounds) -> one candidate's output."""

    def __init__(self, setups, X, X_valid, predict):
        for params, _, _ in setups:
            if params["n_estimators"] < 1:
                raise ValueError(f"n_estimators must be at least 1, got {params['n_estimators']}")
        self._setups, self._predict = setups, predict
        self._dvalid = _dmatrix(X_valid, setups[0][0]["n_jobs"])
        self._key = [_group_key(*setup) for setup in setups]
        members, self._matrices = {}, {}
        X = as_float32(X)
        for i, key in enumerate(self._key):
            members.setdefault(key, []).append(i)
            if key[1:] not in self._matrices:  # built now, so X is not kept
                self._matrices[key[1:]] = _train_matrix(X, *setups[i][1:], setups[i][0])
        self.groups = list(members.values())  # candidates sharing one booster, in grid order
        self._boosters = {}

    def __len__(self):
        return len(self._setups)

    def budget(self, i):
        """Candidate i's boosting rounds."""
        return self._setups[i][0]["n_estimators"]

    def label(self, i):
        """Candidate i's booster, named by the parameters in which the boosters differ."""
        firsts = [self._setups[group[0]][0] for group in self.groups]
        params = self._setups[i][0]
        varied = [k for k in params if k != "n_estimators" and any(f.get(k) != params[k] for f in firsts)]
        return ", ".join(f"{k} {params[k]}" for k in varied) or "booster"

    def output(self, i):
        """Candidate i's validation output, its group's booster grown as far as it needs."""
        params = self._setups[i][0]
        key, dtrain = self._key[i], self._matrices[self._key[i][1:]]
        if key not in self._boosters:
            self._boosters[key] = start_booster(params, dtrain)
        booster = grow_booster(self._boosters[key], dtrain, params)
        return self._predict(_predict_on_cpu(booster), self._dvalid, params["n_estimators"])

    def outputs(self):
        """Every candidate's validation output, in grid order."""
        return [self.output(i) for i in range(len(self))]


def _group_key(params, label, weight):
    """(every parameter but n_estimators, then what the training matrix depends on)."""
    rest = tuple(sorted((k, repr(v)) for k, v in params.items() if k != "n_estimators"))
    quantile = params.get("tree_method") in ("hist", None, "auto")
    return (
        rest,
        quantile,
        params["n_jobs"] if quantile else None,
        params.get("max_bin", 256) if quantile else None,
        np.asarray(label).tobytes(),
        None if weight is None else np.asarray(weight).tobytes(),
    )


def xgb_gain(booster, n_features):
    """Average split gain of each feature (0 when never used), in column order."""
    score = booster.get_score(importance_type="gain")
    return np.array([score.get(f"f{i}", 0.0) for i in range(n_features)], dtype=float)


class XGBoostClassifier(ClassifierMixin, BaseEstimator):
    """XGBClassifier with label encoding (classes_ keep the original labels, strings included)
    and class balancing. scale_pos_weight="auto": binary -> n_negative / n_positive from the
    training labels (XGBoost's scale_pos_weight); multiclass -> "balanced" sample weights; both
    with the intercept (base_score) a balanced fit has, so results do not depend on n_jobs.
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
        self.gamma = gamma
        self.scale_pos_weight = scale_pos_weight
        self.tree_method = tree_method
        self.max_bin = max_bin
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.device = device

    def _setup(self, y):
        """(classes, encoded labels, XGBoost parameters, sample weights) of a fit on labels y."""
        encoder = LabelEncoder().fit(y)
        classes, y_enc = encoder.classes_, encoder.transform(y)
        # every constructor parameter is an XGBoost one, except our class balancing switch
        own = {k: v for k, v in self.get_params().items() if k != "scale_pos_weight"}
        params = _fit_params(self, own, len(y_enc))
        weight = None
        if len(classes) == 2:
            params["objective"] = "binary:logistic"
            if self.scale_pos_weight == "auto":
                n_pos = int((y_enc == 1).sum())
                params["scale_pos_weight"] = (len(y_enc) - n_pos) / max(n_pos, 1)
                params["base_score"] = 0.5  # the intercept of a balanced fit (see multiclass)
            elif self.scale_pos_weight is not None:
                params["scale_pos_weight"] = float(self.scale_pos_weight)
        else:
            params.update(objective="multi:softprob", num_class=len(classes))
            if self.scale_pos_weight == "auto":
                weight = compute_sample_weight("balanced", y_enc)
                # XGBoost estimates the intercept with a multi-threaded sum, whose rounding noise
                # (1e-7) changed every later tree with the thread count; balanced, it is exactly 0.
                params["base_score"] = 0.0
        return classes, y_enc, params, weight

    def fit(self, X, y):
        X = as_float32(X)
        self.classes_, y_enc, self.xgb_params_, weight = self._setup(y)
        self.booster_ = train_booster(self.xgb_params_, _train_matrix(X, y_enc, weight, self.xgb_params_))
        self.n_features_in_ = X.shape[1]
        self.feature_importances_ = xgb_gain(self.booster_, X.shape[1])
        return self

    def grid_session(self, X, y, X_valid, candidates):
        """The candidates (parameters on top of ours) fitted on (X, y) together, each one's
        predict_proba(X_valid) on demand (`BoostedGrid`)."""
        setups = [clone(self).set_params(**c)._setup(y) for c in candidates]
        n_classes = len(setups[0][0])

        def predict(booster, dvalid, rounds):
            return _class_columns(booster.predict(dvalid, iteration_range=(0, rounds)), n_classes)

        return BoostedGrid([(params, y_enc, weight) for _, y_enc, params, weight in setups], X, X_valid, predict)

    def grid_predictions(self, X, y, X_valid, candidates):
        """predict_proba(X_valid) of each candidate fitted on (X, y) (`grid_session`)."""
        return self.grid_session(X, y, X_valid, candidates).outputs()

    def predict_proba(self, X):
        check_is_fitted(self, "booster_")
        return xgb_class_proba(self.booster_, X, len(self.classes_), self.n_jobs)

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
