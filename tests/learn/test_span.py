"""Linear classifiers in the samples' span (metasig.learn.span): linear_sweep's SGD member and the
logistic kind are scikit-learn's own models on the genes, at n/p of the cost."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier

from metasig.learn import span
from metasig.learn.logistic import SpanLogisticRegression
from metasig.learn.sgd import SpanSGDClassifier

SGD = dict(loss="modified_huber", max_iter=20, tol=None, class_weight="balanced", random_state=3)
LOGISTIC = dict(class_weight="balanced", max_iter=1000, tol=1e-10, random_state=0)
# (ours, scikit-learn's, settings, the searched parameter, tolerance on coefficients relative to
# the largest, on probabilities): SGD takes the same steps (rounding only), lbfgs reaches the same
# optimum (to its tolerance)
MODELS = {
    "sgd": (SpanSGDClassifier, SGDClassifier, SGD, "alpha", 1e-6, 1e-6),
    "logistic": (SpanLogisticRegression, LogisticRegression, LOGISTIC, "C", 1e-4, 1e-5),
}


def wide(n=90, p=400, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    score = X[:, :5].sum(axis=1) + rng.normal(size=n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
    return X, np.array([f"c{k}" for k in range(n_classes)])[y]


@pytest.mark.parametrize(
    "model,n_classes,value",
    [("sgd", 2, 1e-4), ("sgd", 2, 1e-2), ("sgd", 3, 1e-3), ("sgd", 4, 3e-2)]
    + [("logistic", 2, 0.01), ("logistic", 2, 10.0), ("logistic", 3, 1.0), ("logistic", 4, 0.1)],
)
def test_same_model_as_scikit_learns_on_the_genes(model, n_classes, value):
    ours_cls, theirs_cls, settings, name, coef_tol, proba_tol = MODELS[model]
    X, y = wide(n_classes=n_classes, seed=n_classes)
    genes = theirs_cls(**{name: value}, **settings).fit(X, y)
    ours = ours_cls(**{name: value}, **settings).fit(X, y)
    assert ours.coef_.shape == genes.coef_.shape and ours.n_features_in_ == X.shape[1]
    assert np.abs(ours.coef_ - genes.coef_).max() < coef_tol * np.abs(genes.coef_).max()
    assert np.allclose(ours.intercept_, genes.intercept_, rtol=0, atol=proba_tol)
    X_new = wide(n=30, n_classes=n_classes, seed=9)[0]
    assert np.allclose(ours.predict_proba(X_new), genes.predict_proba(X_new), atol=proba_tol)


@pytest.mark.parametrize("model", MODELS)
def test_fitted_in_the_span_not_on_the_genes(model, monkeypatch):
    ours_cls, theirs_cls, settings, *_ = MODELS[model]
    X, y = wide(n_classes=3, seed=5)
    seen, real = [], theirs_cls.fit
    monkeypatch.setattr(theirs_cls, "fit", lambda self, A, *a, **k: seen.append(A.shape) or real(self, A, *a, **k))
    ours_cls(**settings).fit(X, y)
    assert seen == [(X.shape[0], X.shape[0])]


@pytest.mark.parametrize("model,values", [("sgd", [1e-4, 1e-3, 1e-2]), ("logistic", [0.01, 1.0, 10.0])])
def test_grid_shares_one_span_and_equals_individual_fits(model, values, monkeypatch):
    ours_cls, theirs_cls, settings, name, _, proba_tol = MODELS[model]
    X, y = wide(n_classes=3, seed=5)
    X_valid = wide(n=25, n_classes=3, seed=6)[0]
    calls, real = [], span.row_space
    monkeypatch.setattr(span, "row_space", lambda A: calls.append(A.shape) or real(A))
    grid = ours_cls(**settings).grid_predictions(X, y, X_valid, [{name: v} for v in values])
    assert calls == [X.shape]
    for v, out in zip(values, grid):
        expected = theirs_cls(**{name: v}, **settings).fit(X, y).predict_proba(X_valid)
        assert np.allclose(out, expected, atol=proba_tol)


@pytest.mark.filterwarnings("ignore:The max_iter was reached")
@pytest.mark.parametrize(
    "model,shape,params",
    [
        ("sgd", (120, 40), {"alpha": 1e-3, "penalty": "l2"}),
        ("sgd", (90, 400), {"alpha": 1e-3, "penalty": "l1"}),
        ("sgd", (90, 400), {"alpha": 1e-3, "penalty": "elasticnet"}),
        ("logistic", (120, 40), {"C": 1.0}),
        ("logistic", (90, 400), {"C": 1.0, "l1_ratio": 1.0, "solver": "saga", "max_iter": 20}),
        ("logistic", (90, 400), {"C": 1.0, "warm_start": True}),
    ],
)
def test_outside_the_span_it_is_scikit_learns_model_itself(model, shape, params, monkeypatch):
    """No more genes than samples, a penalty with an L1 part (its solutions leave the span), or a
    warm start from coefficients on the genes: the fit is scikit-learn's, bit for bit, and no span
    is computed."""
    ours_cls, theirs_cls, settings, name, *_ = MODELS[model]
    monkeypatch.setattr(span, "row_space", lambda A: pytest.fail("span computed"))
    X, y = wide(n=shape[0], p=shape[1], n_classes=3, seed=7)
    settings = {**settings, "tol": 1e-4 if model == "logistic" else None, **params}
    ours, theirs = ours_cls(**settings).fit(X, y), theirs_cls(**settings).fit(X, y)
    assert np.array_equal(ours.coef_, theirs.coef_) and np.array_equal(ours.intercept_, theirs.intercept_)
    (out,) = ours_cls(**settings).grid_predictions(X, y, X[:10], [{name: settings[name]}])
    assert np.array_equal(out, theirs.predict_proba(X[:10]))


@pytest.mark.parametrize("model", MODELS)
def test_a_frame_s_gene_names_are_kept_as_by_a_fit_on_the_genes(model):
    ours_cls, theirs_cls, settings, *_ = MODELS[model]
    X, y = wide(n_classes=2, seed=1)
    frame = pd.DataFrame(X, columns=[f"gene/{j}" for j in range(X.shape[1])])
    ours, theirs = ours_cls(**settings).fit(frame, y), theirs_cls(**settings).fit(frame, y)
    assert list(ours.feature_names_in_) == list(theirs.feature_names_in_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn warns when names are missing on either side
        ours.predict_proba(frame)
    with pytest.raises(ValueError, match="feature names"):
        ours.predict_proba(frame.rename(columns={"gene/0": "other"}))
