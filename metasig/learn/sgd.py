"""linear_sweep's SGD member: scikit-learn's SGDClassifier, run in the samples' span when genes
outnumber samples."""

import functools

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import SGDClassifier

from metasig.learn.linear import _row_space


class SpanSGDClassifier(SGDClassifier):
    """SGDClassifier; with an L2 penalty and more genes than samples it runs on the n columns of
    the samples' span (linear._row_space: X = Z V^T) instead of the p genes, then maps its
    coefficients back (w = V beta). Each SGD step shrinks w and adds a multiple of one sample's
    row, so w stays in that span, and the samples' order and the learning rates do not depend on
    the features: the iterates are the same up to rounding, at n/p of the cost (8 strengths on
    426 x 20,531 with 5 classes, one-vs-rest: 9.1 s on the genes, 0.3 s in the span, with the same
    validation ROC-AUCs to 3 decimals)."""

    def fit(self, X, y, coef_init=None, intercept_init=None, sample_weight=None):
        span = _row_space(np.asarray(X, dtype=np.float64)) if coef_init is None and self._in_span(X) else None
        if span is None:
            return super().fit(X, y, coef_init=coef_init, intercept_init=intercept_init, sample_weight=sample_weight)
        X, (Z, M) = np.asarray(X, dtype=np.float64), span
        super().fit(Z, y, intercept_init=intercept_init, sample_weight=sample_weight)
        self.coef_ = (self.coef_ @ M.T) @ X  # w = V beta with V = X^T M
        self.n_features_in_ = X.shape[1]
        return self

    def grid_predictions(self, X, y, X_valid, candidates):
        """predict_proba(X_valid) of a fit per candidate (dicts of this estimator's parameters), in
        candidate order; the span is computed once for all of them."""
        X = np.asarray(X, dtype=np.float64)

        @functools.cache
        def span():  # (Z, Z_valid), or None where X has no more genes than samples
            found = _row_space(X)
            return None if found is None else (found[0], (np.asarray(X_valid, dtype=np.float64) @ X.T) @ found[1])

        out = []
        for params in candidates:
            model = clone(self).set_params(**params)
            if not model._in_span(X) or span() is None:
                out.append(model.fit(X, y).predict_proba(X_valid))
            else:  # fitted and scored in the span's coordinates: X_valid w = (X_valid V) beta
                Z, Z_valid = span()
                out.append(SGDClassifier.fit(model, Z, y).predict_proba(Z_valid))
        return out

    def _in_span(self, X):
        return self.penalty == "l2" and X.shape[1] > X.shape[0]
