"""Class-weighted elastic-net logistic regression on a fast coordinate-descent solver (skglm).

`ElasticNetClassifier(C, l1_ratio, class_weight)` minimises exactly scikit-learn's
LogisticRegression(C=C, l1_ratio=l1_ratio, class_weight=class_weight) objective

    C * sum_i s_i log(1 + exp(-y_i (x_i w + b))) + l1_ratio |w|_1 + (1 - l1_ratio) / 2 |w|^2

(s_i the class weights, intercept b unpenalised) in skglm's normalised form: the mean weighted
log-loss (weights summing to 1) plus alpha * penalty, with alpha = 1 / (C * sum_i s_i). The solver
is skglm's working-set proximal Newton, which at 1,218 x 20,530 fits in about a second where saga
takes minutes. A pure L2 penalty (l1_ratio = 0) has no sparse working set for it to exploit, so
that smooth problem goes to L-BFGS (scikit-learn's LogisticRegression on the same weights and the
same tolerance): on an 8-penalty path at 649 x 20,530, 3.7 s where skglm took 23.5 s. Multiclass
is the multinomial (softmax) model, as LogisticRegression's.

Only numpy arrays are kept after fit (coef_, intercept_, classes_), so the fitted estimator is a
plain, allowlistable skops object.
"""

import functools
import warnings

import numpy as np
from numba import float64
from skglm.datafits.base import BaseDatafit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted

from metasig.learn import span

# Genes the solver is given at once: wider inputs start from this many (the current support, else
# the genes with the largest gradient) and grow by at least as many.
WORKING_SET = 1000
LBFGS_MAX_ITER = 2000  # L-BFGS iterations per solve (pure L2); 20-40 sufficed at 20,000 genes, warm-started


class WeightedLogistic(BaseDatafit):
    """skglm datafit sum_i s_i log(1 + exp(-y_i ((Xw)_i - o_i))) with labels in {-1, 1}, weights s
    summing to 1 and a fixed offset o (skglm's own Logistic has neither). Compiled by numba at
    first use. With o_i = log sum_{l != k} exp(eta_il) it is the multinomial loss as a function of
    class k's linear predictor, which is how the multinomial model is fitted (one class at a time)."""

    def __init__(self, sample_weights, offset):
        self.sample_weights = sample_weights
        self.offset = offset

    def get_spec(self):
        return (("sample_weights", float64[:]), ("offset", float64[:]))

    def params_to_dict(self):
        return dict(sample_weights=self.sample_weights, offset=self.offset)

    def raw_grad(self, y, Xw):
        return -self.sample_weights * y / (1.0 + np.exp(y * (Xw - self.offset)))

    def raw_hessian(self, y, Xw):
        e = np.exp(-np.abs(Xw - self.offset))
        return self.sample_weights * e / (1.0 + e) ** 2

    def get_lipschitz(self, X, y):
        return (self.sample_weights @ (X**2)) / 4.0

    def get_global_lipschitz(self, X, y):
        return np.linalg.norm(X.T * np.sqrt(self.sample_weights), ord=2) ** 2 / 4.0

    def value(self, y, w, Xw):
        z = -y * (Xw - self.offset)  # log(1 + exp(z)), overflow-free
        return np.sum(self.sample_weights * (np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))))

    def gradient_scalar(self, X, y, w, Xw, j):
        return X[:, j] @ self.raw_grad(y, Xw)

    def gradient(self, X, y, Xw):
        return X.T @ self.raw_grad(y, Xw)

    def intercept_update_step(self, y, Xw):
        return 4.0 * np.sum(self.raw_grad(y, Xw))  # curvature <= 1/4 with weights summing to 1


class ElasticNetClassifier(ClassifierMixin, BaseEstimator):
    """LogisticRegression's elastic-net objective (C, l1_ratio, class_weight) solved with skglm.

    Binary: one coefficient vector, as LogisticRegression. Multiclass: the multinomial (softmax)
    model with the penalty on every coefficient, as LogisticRegression's default; it is fitted by
    block coordinate descent over classes (each block a weighted logistic problem with an offset,
    solved by skglm), sweeping until the linear predictors move less than `tol_multinomial`.

    tol: the stopping tolerance relative to the penalty: a solve stops when the largest violation
    of the optimality conditions of the normalised objective (skglm's tol; L-BFGS's gtol for
    l1_ratio = 0) is at most tol * alpha, so that the coefficients are within about
    tol / (1 - l1_ratio) of the optimum's (the objective is alpha (1 - l1_ratio) strongly convex)
    whatever C is. An absolute tolerance solves the weak penalties of a path least accurately: on
    one inner split of the pan-cancer shape (427 x 20,531, 5 classes) 1e-6 gave C = 0.01 to 4e-6
    in validation probability and C = 10 to 1e-2; tol = 5e-3 gives each C 1e-2 or better, the
    three 4-penalty paths in 6.5 s instead of 8.8 s. max_iter: skglm's outer
    working-set iterations per solve (L-BFGS: LBFGS_MAX_ITER). n_jobs limits
    the BLAS threads of the matrix products. random_state is unused (the solver is deterministic);
    it is kept so configs written for LogisticRegression keep working.
    """

    def __init__(
        self,
        C=1.0,
        l1_ratio=0.5,
        class_weight="balanced",
        fit_intercept=True,
        tol=5e-3,
        max_iter=100,
        tol_multinomial=1e-6,
        max_sweeps=1000,
        n_jobs=1,
        random_state=None,
    ):
        self.C = C
        self.l1_ratio = l1_ratio
        self.class_weight = class_weight
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.tol_multinomial = tol_multinomial
        self.max_sweeps = max_sweeps
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ---- fitting ---------------------------------------------------------------------------------

    def _solve(self, X, labels, problem, tol, coef, intercept, max_iter=None, Xw=None):
        """(coef, intercept, X coef + intercept) of one weighted logistic problem (_problem's
        compiled datafit and penalty), warm-started from (coef, intercept), to the absolute
        tolerance tol or after at most max_iter (default self.max_iter) proximal Newton steps.
        Xw: X coef + intercept when the caller has it (the solver updates it in place)."""
        from skglm.solvers import ProxNewton

        w = np.append(coef, intercept) if self.fit_intercept else coef.copy()
        Xw = X @ coef + intercept if Xw is None else Xw
        max_iter = self.max_iter if max_iter is None else max_iter
        solver = ProxNewton(tol=tol, max_iter=max_iter, fit_intercept=self.fit_intercept)
        # _solve, which skglm's solve() wraps after compiling the datafit and penalty anew at every
        # call: 0.2 ms each, 6% of a multinomial path, whose block descent makes thousands of solves
        w = solver._solve(X, labels, *problem, w, Xw)[0]
        if not self.fit_intercept:
            return w.copy(), 0.0, Xw
        return w[:-1].copy(), float(w[-1]), Xw

    def _fit_arrays(self, X, y, classes, start=None, row_space=None):
        """(coef (n_models, p), intercept (n_models,)) for self's parameters, from `start`;
        row_space: a function giving span.row_space(X), so that a path computes it once."""
        K, p = len(classes), X.shape[1]
        raw = np.ones(len(y)) if self.class_weight is None else compute_sample_weight(self.class_weight, y)
        weights, alpha = raw / raw.sum(), 1.0 / (float(self.C) * raw.sum())
        n_models = 1 if K == 2 else K
        if float(self.l1_ratio) == 0:
            return self._fit_l2(X, y, raw, alpha, n_models, start, row_space)
        coef, intercept = (np.zeros((n_models, p)), np.zeros(n_models)) if start is None else (s.copy() for s in start)
        return self._fit_working_set(X, y, classes, weights, alpha, coef, intercept)

    def _fit_working_set(self, X, y, classes, weights, alpha, coef, intercept):
        """The penalised fit on a working set of genes, as glmnet does: the solver sees only the
        working set's columns; then one gradient over every gene (a matrix product), and genes
        whose zero coefficients violate the optimality conditions by more than tol join, until
        none does. Inputs of at most WORKING_SET genes are solved on all of them at once. On
        426 x 20,531 with 5 classes, the 4-penalty path at l1_ratio 0.2 took 10.7 s with every
        block solve scanning all genes, 5.0 s so; and the solver needs no column-ordered copy of
        the whole matrix."""
        targets = (y[:, None] == (classes[None, 1:] if len(classes) == 2 else classes[None, :])).astype(float)
        threshold = alpha * float(self.l1_ratio)  # |gradient| a zero coefficient may have
        tol = float(self.tol) * alpha
        if X.shape[1] <= WORKING_SET:
            return self._descend(X, y, classes, weights, alpha, tol, coef, intercept)
        work, solved, columns = np.flatnonzero(np.any(coef != 0, axis=0)), False, None
        if not len(work) and self.fit_intercept:  # no gene yet: the intercepts fit the weighted class shares
            share = np.log(weights @ targets)
            intercept = share - share.mean() if len(classes) > 2 else share - np.log1p(-np.exp(share))
        while True:
            if solved or len(work) < 2:  # a warm start's support (2 genes or more) is first solved alone
                # the working set's columns: those just solved on (a copy of 2,000 genes: 9 ms)
                eta = (columns if solved else X[:, work]) @ coef[:, work].T + intercept
                residual = weights[:, None] * (_probabilities(eta) - targets)
                violation = np.abs(X.T @ residual).max(axis=1) - threshold
                violation[work] = -np.inf
                outside = np.count_nonzero(violation > tol)
                if not outside and (solved or not len(work)):  # no gene yet: the intercepts are the optimum
                    return coef, intercept
                # the worst violators join; a one-gene support gets one: numba types an (n, 1) array
                # as C-ordered and compiles skglm's solver a second time for it (8 s)
                take = min(outside, max(WORKING_SET, len(work))) if solved or not len(work) else 0
                take = max(take, 2 - len(work))
                work = np.union1d(work, np.argsort(-violation, kind="stable")[:take])
            columns = np.asfortranarray(X[:, work])  # column access in coordinate descent
            coef[:, work], intercept = self._descend(columns, y, classes, weights, alpha, tol, coef[:, work], intercept)
            solved = True

    def _descend(self, X, y, classes, weights, alpha, tol, coef, intercept):
        """(coef, intercept) solved on these columns: one weighted logistic problem (binary), block
        descent (multiclass)."""
        X = np.asfortranarray(X)  # column access in coordinate descent
        if len(classes) > 2:
            return self._block_descent(X, y, classes, weights, alpha, tol, coef, intercept)
        labels = np.where(y == classes[1], 1.0, -1.0)
        coef, intercept = coef.copy(), intercept.copy()
        problem = _problem(weights, np.zeros(len(y)), alpha, float(self.l1_ratio))
        coef[0], intercept[0], _ = self._solve(X, labels, problem, tol, coef[0], intercept[0])
        return coef, intercept

    def _block_descent(self, X, y, classes, weights, alpha, tol, coef, intercept):
        """Block coordinate descent over classes, each block a weighted logistic problem in that
        class's coefficients with the other classes' predictors as offset, until the linear
        predictors move less than tol_multinomial. Each block takes one proximal Newton step per
        sweep, as glmnet takes one quadratic approximation per class: solving every block to tol
        in every sweep took 10.2 s for the three 4-penalty paths on 426 x 20,531 (5 classes), one
        step 6.3 s, with the same validation ROC-AUC (to 2e-4)."""
        from sklearn.exceptions import ConvergenceWarning

        coef, intercept, K = coef.copy(), intercept.copy(), len(classes)
        eta = X @ coef.T + intercept
        offset = np.zeros(len(y))  # the datafit reads it by reference: set in place for each class
        problem = _problem(weights, offset, alpha, float(self.l1_ratio))
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", "`ProxNewton` did not converge", ConvergenceWarning
            )  # one step, by design
            for _ in range(int(self.max_sweeps)):
                moved = 0.0
                for k in range(K):
                    others = np.delete(eta, k, axis=1)
                    top = others.max(axis=1)
                    offset[:] = top + np.log(np.exp(others - top[:, None]).sum(axis=1))
                    labels = np.where(y == classes[k], 1.0, -1.0)
                    coef[k], intercept[k], new = self._solve(
                        X, labels, problem, tol, coef[k], intercept[k], max_iter=1, Xw=eta[:, k].copy()
                    )
                    moved = max(moved, float(np.abs(new - eta[:, k]).max()))
                    eta[:, k] = new
                shift = _best_common_shift(coef, float(self.l1_ratio))
                coef += shift
                eta += (X @ shift)[:, None]  # the same move of every class's predictor
                if moved <= self.tol_multinomial:
                    return coef, intercept
        warnings.warn(
            f"multinomial fit (C={self.C}, l1_ratio={self.l1_ratio}) did not converge in {self.max_sweeps} sweeps "
            f"(linear predictors still moved by {moved:.2g} > tol_multinomial {self.tol_multinomial:g})",
            ConvergenceWarning,
            stacklevel=2,
        )
        return coef, intercept

    def _fit_l2(self, X, y, raw, alpha, n_models, start, row_space=None):
        """The l1_ratio = 0 problem by L-BFGS: LogisticRegression's objective C * sum_i s_i loss_i
        + |w|^2 / 2 is this one, and its tol is on the same normalised gradient. With more genes
        than samples it is solved in the samples' span (row_space: see span.row_space), exactly the
        same objective on n features instead of p: on 149 x 22,283 with 7 classes an 8-penalty
        path took 0.3 s there, 16.1 s on the genes."""
        basis = row_space() if row_space is not None else span.row_space(X)
        model = LogisticRegression(
            C=float(self.C),
            tol=float(self.tol) * alpha,  # LogisticRegression's objective is normalised as ours
            max_iter=LBFGS_MAX_ITER,
            fit_intercept=self.fit_intercept,
            warm_start=start is not None,
        )
        if start is not None:
            coef, intercept = start
            model.coef_ = coef.copy() if basis is None else (coef @ X.T) @ basis[1]
            model.intercept_ = intercept.copy()
        model.fit(X if basis is None else basis[0], y, sample_weight=raw)
        coef = model.coef_.copy() if basis is None else (model.coef_ @ basis[1].T) @ X
        intercept = np.broadcast_to(np.asarray(model.intercept_, dtype=float), (n_models,)).copy()
        return coef, intercept

    def _prepare(self, X, y):
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"need at least 2 classes to fit, got {list(classes)}")
        return X, y, classes

    def fit(self, X, y):
        from threadpoolctl import threadpool_limits

        X, y, classes = self._prepare(X, y)
        with threadpool_limits(limits=int(self.n_jobs or 1), user_api="blas"):
            coef, intercept = self._fit_arrays(X, y, classes)
        return self._set_fitted(classes, coef, intercept)

    def compile_jit(self, shape):
        """Compile skglm's solver in this process now if a fit on inputs of `shape` uses it
        (l1_ratio > 0, any shape); see compile_solver."""
        if float(self.l1_ratio) > 0:
            compile_solver()

    def _set_fitted(self, classes, coef, intercept):
        self.classes_ = classes
        self.coef_ = coef
        self.intercept_ = intercept
        self.n_features_in_ = coef.shape[1]
        return self

    def grid_predictions(self, X, y, X_valid, candidates):
        """predict_proba(X_valid) of a fit per candidate (dicts of this estimator's parameters), in
        candidate order. Candidates differing only in C share one warm-started path, fitted from
        the strongest penalty (smallest C) down (engine interface of issue 12)."""
        from threadpoolctl import threadpool_limits

        base = self.get_params()
        settings = [{**base, **c} for c in candidates]
        groups = {}
        for i, s in enumerate(settings):
            groups.setdefault(tuple(sorted((k, repr(v)) for k, v in s.items() if k != "C")), []).append(i)
        X, y, classes = self._prepare(X, y)
        X_valid = np.asarray(X_valid, dtype=np.float64)
        out = [None] * len(candidates)
        row_space = functools.cache(lambda: span.row_space(X))  # shared by every L2 path of the grid
        with threadpool_limits(limits=int(self.n_jobs or 1), user_api="blas"):
            for members in groups.values():
                start = None
                for i in sorted(members, key=lambda i: float(settings[i]["C"])):
                    model = clone(self).set_params(**settings[i])
                    start = model._fit_arrays(X, y, classes, start, row_space)
                    out[i] = model._set_fitted(classes, *start).predict_proba(X_valid)
        return out

    # ---- prediction ------------------------------------------------------------------------------

    def decision_function(self, X):
        check_is_fitted(self, "coef_")
        scores = np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_
        return scores[:, 0] if len(self.classes_) == 2 else scores

    def predict_proba(self, X):
        scores = self.decision_function(X)
        if len(self.classes_) == 2:
            p = _sigmoid(scores)
            return np.column_stack([1.0 - p, p])
        return _probabilities(scores)

    def predict(self, X):
        return self.classes_[
            np.argmax(self.decision_function(X) if len(self.classes_) > 2 else self.predict_proba(X), axis=1)
        ]


@functools.cache
def compile_solver():
    """Have numba compile skglm's solver for ElasticNetClassifier's problems in this process, on a
    tiny fit (15-25 s of CPU, once per process). A worker process that compiled it during its first
    fold, with the fold's copies held, peaked 160 MiB higher than one that compiled it first (613
    against 450 MiB of anonymous memory at 1,218 x 20,530), so jobs call this before a fold copies
    its data (metasig.learn.nested_cv)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    ElasticNetClassifier(C=1.0, l1_ratio=0.5).fit(X, np.arange(20) % 2)


def _problem(weights, offset, alpha, l1_ratio):
    """(datafit, penalty) of one weighted logistic problem, compiled by skglm (numba jitclasses);
    the datafit holds `offset` by reference, not a copy."""
    from skglm.penalties import L1_plus_L2
    from skglm.utils.jit_compilation import compiled_clone

    return compiled_clone(WeightedLogistic(weights, offset)), compiled_clone(L1_plus_L2(alpha, l1_ratio))


def _best_common_shift(coef, l1_ratio):
    """v (per feature, the same for every class) minimising the penalty of coef + v. The softmax
    loss does not change under such a shift, and class-by-class descent moves along it only slowly,
    so it is taken exactly after each sweep. Per feature, the minimum of the convex piecewise
    quadratic sum_k l1 |w_k + v| + (1 - l1) / 2 (w_k + v)^2 lies at a kink (-w_k) or at the
    stationary point of one of its pieces; all are tried."""
    K = coef.shape[0]
    kinks = -coef  # (K, p)
    candidates = [kinks]
    if l1_ratio < 1:
        signs = np.arange(-K, K + 1, 2, dtype=float)  # possible sums of sign(w_k + v)
        stationary = -(l1_ratio * signs[:, None] + (1 - l1_ratio) * coef.sum(axis=0)) / ((1 - l1_ratio) * K)
        candidates.append(stationary)
    v = np.vstack(candidates)  # (n_candidates, p)
    shifted = coef[None, :, :] + v[:, None, :]
    cost = (l1_ratio * np.abs(shifted) + (1 - l1_ratio) / 2 * shifted**2).sum(axis=1)
    return v[np.argmin(cost, axis=0), np.arange(coef.shape[1])]


def _probabilities(scores):
    """Class probabilities of linear predictors (n, K): softmax, or for one column its sigmoid."""
    if scores.shape[1] == 1:
        return _sigmoid(scores)
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    return scores / scores.sum(axis=1, keepdims=True)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)) without overflow
