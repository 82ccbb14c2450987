"""linear_sweep's SGD member in the samples' span: the iterates of scikit-learn's SGDClassifier on
the genes, at n/p of the cost."""

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier

from metasig.learn import span
from metasig.learn.sgd import SpanSGDClassifier

SETTINGS = dict(loss="modified_huber", max_iter=20, tol=None, class_weight="balanced", random_state=3)


def wide(n=90, p=400, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    score = X[:, :5].sum(axis=1) + rng.normal(size=n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
    return X, np.array([f"c{k}" for k in range(n_classes)])[y]


@pytest.mark.parametrize("n_classes,alpha", [(2, 1e-4), (2, 1e-2), (3, 1e-3), (4, 3e-2)])
def test_same_model_as_sgd_on_the_genes(n_classes, alpha):
    X, y = wide(n_classes=n_classes, seed=n_classes)
    genes = SGDClassifier(alpha=alpha, **SETTINGS).fit(X, y)
    span = SpanSGDClassifier(alpha=alpha, **SETTINGS).fit(X, y)
    assert span.coef_.shape == genes.coef_.shape and span.n_features_in_ == X.shape[1]
    # rounding only (up to 1e-8 of the largest coefficient seen): the same iterates
    assert np.abs(span.coef_ - genes.coef_).max() < 1e-6 * np.abs(genes.coef_).max()
    assert np.allclose(span.intercept_, genes.intercept_, rtol=0, atol=1e-6)
    X_new = wide(n=30, n_classes=n_classes, seed=9)[0]
    assert np.allclose(span.predict_proba(X_new), genes.predict_proba(X_new), atol=1e-6)


def test_grid_shares_one_span_and_equals_individual_fits(monkeypatch):
    X, y = wide(n_classes=3, seed=5)
    X_valid = wide(n=25, n_classes=3, seed=6)[0]
    calls = []
    real = span._row_space
    monkeypatch.setattr(span, "_row_space", lambda A: calls.append(A.shape) or real(A))
    alphas = [1e-4, 1e-3, 1e-2]
    grid = SpanSGDClassifier(**SETTINGS).grid_predictions(X, y, X_valid, [{"alpha": a} for a in alphas])
    assert calls == [X.shape]
    for a, out in zip(alphas, grid):
        assert np.allclose(out, SGDClassifier(alpha=a, **SETTINGS).fit(X, y).predict_proba(X_valid), atol=1e-6)


@pytest.mark.parametrize("shape,penalty", [((120, 40), "l2"), ((90, 400), "l1"), ((90, 400), "elasticnet")])
def test_outside_the_span_it_is_sgd_itself(shape, penalty, monkeypatch):
    """No more genes than samples, or a penalty with an L1 part (its iterates leave the span): the
    fit is scikit-learn's, bit for bit, and no span is computed."""
    monkeypatch.setattr(span, "_row_space", lambda A: pytest.fail("span computed"))
    X, y = wide(n=shape[0], p=shape[1], n_classes=3, seed=7)
    params = dict(alpha=1e-3, penalty=penalty, **SETTINGS)
    ours, theirs = SpanSGDClassifier(**params).fit(X, y), SGDClassifier(**params).fit(X, y)
    assert np.array_equal(ours.coef_, theirs.coef_) and np.array_equal(ours.intercept_, theirs.intercept_)
    (out,) = SpanSGDClassifier(**params).grid_predictions(X, y, X[:10], [{"alpha": 1e-3}])
    assert np.array_equal(out, theirs.predict_proba(X[:10]))
