"""The logistic kind in the samples' span: scikit-learn's LogisticRegression on the genes, at n/p
of the cost."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from metasig.learn import span
from metasig.learn.logistic import SpanLogisticRegression
from tests.learn.test_sgd import wide

SETTINGS = dict(class_weight="balanced", max_iter=1000, tol=1e-10, random_state=0)


@pytest.mark.parametrize("n_classes,C", [(2, 0.01), (2, 10.0), (3, 1.0), (4, 0.1)])
def test_same_model_as_logistic_regression_on_the_genes(n_classes, C):
    X, y = wide(n_classes=n_classes, seed=n_classes)
    genes = LogisticRegression(C=C, **SETTINGS).fit(X, y)
    ours = SpanLogisticRegression(C=C, **SETTINGS).fit(X, y)
    assert ours.coef_.shape == genes.coef_.shape and ours.n_features_in_ == X.shape[1]
    # the same optimum, to the solver's tolerance
    assert np.abs(ours.coef_ - genes.coef_).max() < 1e-4 * np.abs(genes.coef_).max()
    X_new = wide(n=30, n_classes=n_classes, seed=9)[0]
    assert np.allclose(ours.predict_proba(X_new), genes.predict_proba(X_new), atol=1e-5)


def test_fitted_in_the_span_not_on_the_genes(monkeypatch):
    X, y = wide(n_classes=3, seed=5)
    seen = []
    real = LogisticRegression.fit
    monkeypatch.setattr(
        LogisticRegression, "fit", lambda self, A, *a, **k: seen.append(A.shape) or real(self, A, *a, **k)
    )
    SpanLogisticRegression(**SETTINGS).fit(X, y)
    assert seen == [(X.shape[0], X.shape[0])]


def test_grid_shares_one_span_and_equals_individual_fits(monkeypatch):
    X, y = wide(n_classes=3, seed=5)
    X_valid = wide(n=25, n_classes=3, seed=6)[0]
    calls = []
    real = span._row_space
    monkeypatch.setattr(span, "_row_space", lambda A: calls.append(A.shape) or real(A))
    Cs = [0.01, 1.0, 10.0]
    grid = SpanLogisticRegression(**SETTINGS).grid_predictions(X, y, X_valid, [{"C": C} for C in Cs])
    assert calls == [X.shape]
    for C, out in zip(Cs, grid):
        assert np.allclose(out, LogisticRegression(C=C, **SETTINGS).fit(X, y).predict_proba(X_valid), atol=1e-5)


@pytest.mark.filterwarnings("ignore:The max_iter was reached")
@pytest.mark.parametrize(
    "shape,params",
    [
        ((120, 40), {}),
        ((90, 400), {"l1_ratio": 1.0, "solver": "saga", "max_iter": 20}),
        ((90, 400), {"warm_start": True}),
    ],
)
def test_outside_the_span_it_is_logistic_regression_itself(shape, params, monkeypatch):
    """No more genes than samples, a penalty with an L1 part, or a warm start from coefficients on
    the genes: the fit is scikit-learn's, bit for bit, and no span is computed."""
    monkeypatch.setattr(span, "_row_space", lambda A: pytest.fail("span computed"))
    X, y = wide(n=shape[0], p=shape[1], n_classes=3, seed=7)
    settings = {**SETTINGS, "tol": 1e-4, **params}
    ours, theirs = SpanLogisticRegression(**settings).fit(X, y), LogisticRegression(**settings).fit(X, y)
    assert np.array_equal(ours.coef_, theirs.coef_) and np.array_equal(ours.intercept_, theirs.intercept_)
    (out,) = SpanLogisticRegression(**settings).grid_predictions(X, y, X[:10], [{"C": 1.0}])
    assert np.array_equal(out, theirs.predict_proba(X[:10]))
