"""Penalized Cox proportional hazards with lifelines' penalty, fitted by coordinate descent.

`CoxPH(penalizer, l1_ratio)` minimises lifelines CoxPHFitter's objective

    -(1/n) log PL(b) + penalizer * (l1_ratio |b|_1 + (1 - l1_ratio) / 2 |b|^2)

where b are the coefficients of the standardised features (lifelines standardises internally by
the mean and the sample standard deviation and reports b / std). It is solved by
scikit-survival's CoxnetSurvivalAnalysis (glmnet's coordinate descent, compiled, whole penalty
paths with warm starts), which has the same objective with alpha = penalizer. Differences from
lifelines: ties in the event times are handled by Breslow's rule (lifelines: Efron's; identical
without ties) and the L1 part is exact (lifelines smooths |b|). l1_ratio = 0 (a pure ridge, which
Coxnet rejects and coordinate descent solves slowly) is solved by Newton's method instead
(cox_ridge.py), in the kernel form when there are more features than samples. With more features
than samples and l1_ratio > 0, Coxnet's coordinate descent is slow too (a 3-penalty path at
649 x 20,530 had not finished after 5 min), and skglm's working-set proximal Newton solves the
same objective (3.7 s); it also takes over where Coxnet overflows.

predict(X) is the log partial hazard (X - mean_) @ coef_, and S(t | x) = exp(-H0(t) exp(predict))
with Breslow's baseline H0 on the training risks, as before; only arrays are kept after fit.
"""

import functools
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from metasig.learn.cox_ridge import ridge_cox
from metasig.learn.preprocess import COLUMN_CHUNK
from metasig.learn.survival import _SurvivalMixin, survival_arrays

CENTRED_VALUES = 2**23  # values of X centred at once for risks (64 MB)


class CoxPH(_SurvivalMixin, BaseEstimator):
    """Penalized Cox model (lifelines' penalizer and l1_ratio) with a scikit-learn interface.

    tol, max_iter: Coxnet's coordinate-descent tolerance and iteration cap (l1_ratio > 0). tol_skglm:
    skglm's tolerance, the largest violation of the optimality conditions (at 20,530 genes, 1e-6
    left the coefficients 1e-5 from those at 1e-8, which took 5x as long). n_jobs is
    accepted for the engine interface but unused: the ridge solver's BLAS calls run on one thread,
    since with two they differ in the last bit, and results must not depend on the thread count.
    copy_X: False lets fit and grid_predictions standardise X in place when X is a copy no one
    keeps (the scaler's output, an inner split's rows: metasig.learn.search sets it) and a
    column-ordered array of more than CENTRED_VALUES values; the model then holds one fold-sized
    array instead of two (190 MB at 1,218 x 20,530), and fit's training risks come from the
    standardised copy."""

    def __init__(self, penalizer=0.1, l1_ratio=0.0, tol=1e-9, max_iter=100000, tol_skglm=1e-6, n_jobs=1, copy_X=True):
        self.penalizer = penalizer
        self.l1_ratio = l1_ratio
        self.tol = tol
        self.max_iter = max_iter
        self.tol_skglm = tol_skglm
        self.n_jobs = n_jobs
        self.copy_X = copy_X

    def _standardise(self, X, in_place=False):
        X = np.asarray(X, dtype=float)
        mean = X.mean(axis=0)
        std = _column_std(X) if len(X) > 1 else np.ones(X.shape[1])
        std = np.where(std > 0, std, 1.0)  # a constant column stays 0 after centring
        if in_place:
            Z = np.subtract(X, mean, out=X)  # the same values as the copy below
        else:
            Z = np.subtract(X, mean, order="F")  # one copy, in the column order coordinate descent reads
        Z /= std
        return Z, mean, std

    def _may_overwrite(self, X):
        return (
            not self.copy_X
            and isinstance(X, np.ndarray)
            and X.dtype == np.float64
            and X.flags.f_contiguous
            and X.flags.writeable
            and X.size > CENTRED_VALUES  # smaller inputs keep their results bit for bit
        )

    def _path(self, Z, y, penalizers, l1_ratio):
        """Coefficients of the standardised features, one column per penalizer (any order)."""
        from sksurv.linear_model import CoxnetSurvivalAnalysis
        from threadpoolctl import threadpool_limits

        penalizers = np.asarray(penalizers, dtype=float)
        order = np.argsort(-penalizers, kind="stable")  # strongest penalty first, then warm starts
        coef = np.empty((Z.shape[1], len(penalizers)))
        event, time = survival_arrays(y)
        if l1_ratio == 0:
            with threadpool_limits(limits=1, user_api="blas"):
                K = Z @ Z.T if Z.shape[1] > Z.shape[0] else None  # shared by the whole path
                start = None
                for j in order:
                    coef[:, j], start = ridge_cox(Z, time, event, penalizers[j], start=start, K=K)
            return coef
        if Z.shape[1] > Z.shape[0]:
            coef[:, order] = _skglm_cox_path(Z, time, event, penalizers[order], l1_ratio, self.tol_skglm)
            return coef
        model = CoxnetSurvivalAnalysis(
            alphas=penalizers[order],
            l1_ratio=float(l1_ratio),
            tol=self.tol,
            max_iter=self.max_iter,
            copy_X=False,
        )
        y_arr = np.empty(len(Z), dtype=[("event", bool), ("time", float)])
        y_arr["event"], y_arr["time"] = event, time
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "all coefficients are zero" at strong penalties is expected
            try:
                model.fit(np.array(Z, order="C"), y_arr)  # a copy, in the order Coxnet was always given
            except ArithmeticError:  # Coxnet overflows on weak penalties
                if len(penalizers) > 1:  # fit them one by one, so only those that overflow go to skglm
                    for j in order:
                        coef[:, j] = self._path(Z, y, penalizers[j : j + 1], l1_ratio)[:, 0]
                    return coef
                coef[:, 0] = _skglm_cox_path(Z, time, event, penalizers, l1_ratio, self.tol_skglm)[:, 0]
                return coef
        coef[:, order] = model.coef_
        return coef

    def compile_jit(self, shape):
        """Compile skglm's Cox solver in this process now if a fit on inputs of `shape` uses it
        (more genes than samples, l1_ratio > 0), before a fold's copies exist: see
        metasig.learn.nested_cv.compile_jit."""
        if float(self.l1_ratio) > 0 and shape[1] > shape[0]:
            compile_cox_solver()

    def _set_fitted(self, risks, y, coef, mean, n_features):
        from sksurv.linear_model.coxph import BreslowEstimator

        event, time = survival_arrays(y)
        self.coef_ = np.asarray(coef, dtype=float)
        self.mean_ = mean
        breslow = BreslowEstimator().fit(risks, event, time)
        self.baseline_times_ = np.asarray(breslow.cum_baseline_hazard_.x, dtype=float)
        self.baseline_cumhaz_ = np.asarray(breslow.cum_baseline_hazard_.y, dtype=float)
        self.n_features_in_ = n_features
        return self

    def fit(self, X, y):
        in_place = self._may_overwrite(X)
        Z, mean, std = self._standardise(X, in_place)
        coef_std = self._path(Z, y, [self.penalizer], self.l1_ratio)[:, 0]
        coef = coef_std / std
        if in_place:  # X is Z now
            return self._set_fitted(Z @ coef_std, y, coef, mean, Z.shape[1])
        del Z  # before the risks: at 974 x 20,530 the copy is 160 MB
        return self._set_fitted(_centred_product(X, mean, coef), y, coef, mean, np.shape(X)[1])

    def grid_predictions(self, X, y, X_valid, candidates):
        """predict(X_valid) of a fit per candidate, in candidate order; candidates that differ only
        in penalizer share one Coxnet path (strongest penalty first, warm-started)."""
        base = self.get_params()
        settings = [{**base, **c} for c in candidates]
        groups = {}
        for i, s in enumerate(settings):
            groups.setdefault(tuple(sorted((k, repr(v)) for k, v in s.items() if k != "penalizer")), []).append(i)
        Z, mean, std = self._standardise(X, self._may_overwrite(X))
        X_valid = np.asarray(X_valid, dtype=float)
        out = [None] * len(candidates)
        for members in groups.values():
            s = settings[members[0]]
            model = CoxPH(**s)
            penalizers = [settings[i]["penalizer"] for i in members]
            coefs = model._path(Z, y, penalizers, s["l1_ratio"]) / std[:, None]
            for j, i in enumerate(members):
                out[i] = (X_valid - mean) @ coefs[:, j]
        return out

    def predict(self, X):
        check_is_fitted(self, "coef_")
        return _centred_product(X, self.mean_, self.coef_)

    @property
    def feature_importances_(self):
        return np.abs(self.coef_)


def _column_std(X):
    """X.std(axis=0, ddof=1), bit for bit, COLUMN_CHUNK columns at a time: NumPy's takes a centred
    temporary of X's size (200 MB in a final fit at 1,218 x 20,530, beside the scaler's output)."""
    return np.concatenate(
        [X[:, start : start + COLUMN_CHUNK].std(axis=0, ddof=1) for start in range(0, X.shape[1], COLUMN_CHUNK)]
    )


def _centred_product(X, mean, coef):
    """(X - mean) @ coef, CENTRED_VALUES of X at a time: the centred copy of a whole 1,218 x 20,530
    matrix would take 0.2 GB. Inputs of at most that many values take one product, as before."""
    X = np.asarray(X, dtype=float)
    rows = max(1, CENTRED_VALUES // max(1, X.shape[1]))
    out = np.empty(len(X))
    for start in range(0, len(X), rows):
        out[start : start + rows] = (X[start : start + rows] - mean) @ coef
    return out


@functools.cache
def compile_cox_solver():
    """_skglm_cox_path compiled by numba in this process, on a tiny problem (once per process)."""
    rng = np.random.default_rng(0)
    _skglm_cox_path(rng.normal(size=(8, 10)), np.arange(1.0, 9.0), np.arange(8) % 2 == 0, [0.1], 0.5, 1e-6)


def _skglm_cox_path(Z, time, event, penalizers, l1_ratio, tol):
    """The same objective (Breslow ties) by skglm's proximal Newton, warm-started along
    `penalizers` (strongest first): robust where exp(risk) grows large, and fast where features
    outnumber samples (its working set holds the few nonzero coefficients)."""
    from skglm.datafits import Cox
    from skglm.penalties import L1_plus_L2
    from skglm.solvers import ProxNewton

    Z = np.asfortranarray(Z)  # a no-op for CoxPH's own (column-ordered) Z
    Y = np.column_stack([time, event.astype(float)])
    w, out = np.zeros(Z.shape[1]), []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for penalizer in penalizers:
            solver = ProxNewton(fit_intercept=False, tol=tol, max_iter=50)
            w = solver.solve(
                Z, Y, Cox(), L1_plus_L2(float(penalizer), float(l1_ratio)), w_init=w.copy(), Xw_init=Z @ w
            )[0]
            out.append(w.copy())
    return np.column_stack(out)
