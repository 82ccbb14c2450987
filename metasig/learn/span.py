"""Linear classifiers fitted in the samples' span when genes outnumber samples.

With an L2 penalty the loss sees only X w = Z (V^T w) (row_space: X = Z V^T, V with
orthonormal columns spanning X's rows), so a fit on the n columns of Z, mapped back by w = V beta,
is the fit on the p genes at n/p of the cost."""

import functools

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import _check_feature_names


class InSpan:
    """Mixin, before a scikit-learn linear classifier in the bases: its fit runs in the span where
    `_in_span(X, fit_params)` says it may, and a grid of candidates shares one span."""

    def _fit_in_span(self, X, y, **fit_params):
        values = np.asarray(X, dtype=np.float64) if self._in_span(X, fit_params) else None
        span = None if values is None else row_space(values)
        if span is None:
            return super().fit(X, y, **fit_params)
        Z, M = span
        super().fit(Z, y, **fit_params)
        self.coef_ = (self.coef_ @ M.T) @ values  # w = V beta with V = X^T M
        self.n_features_in_ = values.shape[1]
        _check_feature_names(self, X, reset=True)  # a frame's gene names, as a fit on X keeps them
        return self

    def grid_predictions(self, X, y, X_valid, candidates):
        """predict_proba(X_valid) of a fit per candidate (dicts of this estimator's parameters), in
        candidate order; the span is computed once for all of them."""
        X = np.asarray(X, dtype=np.float64)

        @functools.cache
        def span():  # (Z, Z_valid), or None where X has no more genes than samples
            found = row_space(X)
            return None if found is None else (found[0], (np.asarray(X_valid, dtype=np.float64) @ X.T) @ found[1])

        out = []
        for params in candidates:
            model = clone(self).set_params(**params)
            if not model._in_span(X, {}) or span() is None:
                out.append(model.fit(X, y).predict_proba(X_valid))
            else:  # fitted and scored in the span's coordinates: X_valid w = (X_valid V) beta
                Z, Z_valid = span()
                out.append(super(InSpan, model).fit(Z, y).predict_proba(Z_valid))
        return out


def row_space(X):
    """(Z, M) with X = Z V^T, V = X^T M having orthonormal columns spanning X's rows, or None when
    X has no more columns than rows. An L2-penalised linear model's loss sees only X w = Z (V^T w),
    and its optimal w lies in that span (any part outside adds to the penalty only), so it is the
    fit on the n columns of Z, w = V beta; V is never formed (w = (beta M^T) X). From the
    eigendecomposition X X^T = U diag(s^2) U^T: Z = U s, M = U / s, directions with s^2 below
    1e-12 of the largest dropped (they hold X's rounding errors, not its rows)."""
    n, p = X.shape
    if p <= n:
        return None
    values, vectors = np.linalg.eigh(X @ X.T)
    keep = values > values.max() * 1e-12
    if not keep.any():
        return None
    s = np.sqrt(values[keep])
    return vectors[:, keep] * s, vectors[:, keep] / s
