"""Ridge-penalised Cox regression (Breslow ties) by Newton's method, the l1_ratio = 0 case of
metasig.learn.cox.CoxPH: minimise -(1/n) log PL(Z b) + penalizer / 2 |b|^2.

Coordinate descent (Coxnet) converges very slowly on a pure ridge with many more features than
samples, so this is solved exactly instead: in the primal (p x p Newton systems) when p <= n, and
otherwise in the kernel form b = Z' a (the ridge solution lies in the row space of Z), where each
Newton step is an n x n solve: (W K + penalizer I) da = -(grad of the loss wrt eta + penalizer a),
K = Z Z', W the Hessian of the loss wrt the linear predictor eta.
"""

import numpy as np
from scipy import linalg

from metasig.learn.preprocess import COLUMN_CHUNK


class _Breslow:
    """Loss -(1/n) log PL(eta), its gradient and dense Hessian wrt eta, for samples sorted by time."""

    def __init__(self, time, event):
        self.event = event.astype(float)
        self.first = np.searchsorted(time, time, side="left")  # risk set of i: samples from first[i] on
        self.last = np.searchsorted(time, time, side="right") - 1  # events at or before t_i: up to last[i]
        self.n = len(time)
        self.lower = np.minimum.outer(np.arange(self.n), np.arange(self.n))

    def _parts(self, eta):
        shift = eta.max()
        w = np.exp(eta - shift)
        at_risk = np.cumsum(w[::-1])[::-1][self.first]
        return shift, w, at_risk

    def loss(self, eta):
        shift, _, at_risk = self._parts(eta)
        with np.errstate(divide="ignore", invalid="ignore"):  # a rejected line-search step may overflow
            return -np.sum(self.event * (eta - shift - np.log(at_risk))) / self.n

    def grad_hess(self, eta):
        _, w, at_risk = self._parts(eta)
        c1 = np.cumsum(self.event / at_risk)[self.last]
        c2 = np.cumsum(self.event / at_risk**2)[self.last]
        grad = (w * c1 - self.event) / self.n
        hess = -np.outer(w, w) * c2[self.lower]
        hess[np.diag_indices(self.n)] += w * c1
        return grad, hess / self.n


def ridge_cox(Z, time, event, penalizer, start=None, tol=1e-12, max_iter=100, K=None):
    """Coefficients b (length p) of the standardised features Z; `start`: coefficients to warm-start
    from (primal) or dual weights a (kernel form); returns (b, state for a warm start). K: Z Z',
    reused across penalizers when given."""
    order = np.argsort(time, kind="stable")
    time, event = np.asarray(time, float)[order], np.asarray(event, bool)[order]
    model = _Breslow(time, event)
    n, p = Z.shape
    dual = p > n
    if dual:  # Z itself is not sorted: a sorted copy would be a fold-sized array (160 MB at 20,530 genes)
        K = (Z @ Z.T if K is None else K)[np.ix_(order, order)]
        x = np.zeros(n) if start is None else np.asarray(start, float)[order]
        eta = K @ x
    else:
        Z = Z[order]
        x = np.zeros(p) if start is None else np.asarray(start, float)
        eta = Z @ x

    def objective(eta, x):
        return model.loss(eta) + 0.5 * penalizer * (x @ (K @ x) if dual else x @ x)

    value = objective(eta, x)
    for _ in range(max_iter):
        grad, hess = model.grad_hess(eta)
        if dual:
            u = grad + penalizer * x
            step = linalg.solve(hess @ K + penalizer * np.eye(n), -u)
            step_eta = K @ step
            decrement = -u @ step_eta
        else:
            g = Z.T @ grad + penalizer * x
            step = linalg.solve(Z.T @ hess @ Z + penalizer * np.eye(p), -g, assume_a="pos")
            step_eta = Z @ step
            decrement = -g @ step
        if decrement / 2 <= tol:
            break
        s = 1.0
        while s > 1e-10:  # backtracking (Armijo) line search
            new_value = objective(eta + s * step_eta, x + s * step)
            if new_value <= value - 0.25 * s * decrement:
                break
            s /= 2
        x, eta, value = x + s * step, eta + s * step_eta, new_value
    if dual:
        state = np.empty(n)
        state[order] = x
        return _sorted_rows_product(Z, order, x), state
    return x, x


def _sorted_rows_product(Z, order, x, columns=COLUMN_CHUNK):
    """Z[order].T @ x, bit for bit, from sorted copies of `columns` columns at a time (8 MB at
    1,000 samples and 1,024 columns) instead of one of the whole of Z."""
    return np.concatenate([Z[:, start : start + columns][order].T @ x for start in range(0, Z.shape[1], columns)])
