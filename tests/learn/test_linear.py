import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.utils.class_weight import compute_sample_weight

from metasig.learn import linear, span
from metasig.learn.linear import ElasticNetClassifier


def data(n=160, p=12, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * rng.uniform(0.5, 2.0, size=p)
    score = X[:, 0] - 0.7 * X[:, 1] + rng.normal(size=n)
    if n_classes == 2:
        return X, (score > np.quantile(score, 0.75)).astype(int)  # imbalanced: class weights matter
    cuts = np.quantile(score + 0.8 * X[:, 2], np.linspace(0, 1, n_classes + 1)[1:-1])
    return X, np.array([f"c{k}" for k in range(n_classes)])[np.digitize(score + 0.8 * X[:, 2], cuts)]


def sklearn_fit(X, y, C, l1_ratio):
    return LogisticRegression(
        C=C, l1_ratio=l1_ratio, solver="saga", class_weight="balanced", tol=1e-10, max_iter=100000
    ).fit(X, y)


@pytest.mark.parametrize("C,l1_ratio", [(0.1, 0.5), (1.0, 0.2), (10.0, 0.8), (0.05, 1.0), (1.0, 0.0)])
def test_same_objective_as_logistic_regression(C, l1_ratio):
    X, y = data()
    ours = ElasticNetClassifier(C=C, l1_ratio=l1_ratio, tol=1e-9).fit(X, y)
    ref = sklearn_fit(X, y, C, l1_ratio)
    assert np.allclose(ours.coef_, ref.coef_, atol=1e-5)
    assert np.allclose(ours.intercept_, ref.intercept_, atol=1e-5)
    assert np.allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-5)
    assert roc_auc_score(y, ours.predict_proba(X)[:, 1]) == roc_auc_score(y, ref.predict_proba(X)[:, 1])


def multinomial_objective(X, y, model, C, l1_ratio):
    log_proba = np.log(model.predict_proba(X))[np.arange(len(y)), np.searchsorted(model.classes_, y)]
    coef = model.coef_
    penalty = l1_ratio * np.abs(coef).sum() + (1 - l1_ratio) / 2 * (coef**2).sum()
    return -C * (compute_sample_weight("balanced", y) * log_proba).sum() + penalty


@pytest.mark.parametrize("C,l1_ratio", [(0.5, 0.5), (5.0, 0.2), (2.0, 0.0)])
def test_multinomial_same_objective_as_logistic_regression(C, l1_ratio):
    X, y = data(n_classes=3)
    ours = ElasticNetClassifier(C=C, l1_ratio=l1_ratio, tol=1e-9, tol_multinomial=1e-9).fit(X, y)
    ref = sklearn_fit(X, y, C, l1_ratio)
    assert list(ours.classes_) == ["c0", "c1", "c2"] and ours.coef_.shape == (3, X.shape[1])
    # the objective is flat in some directions: equal objectives (to 1e-9) allow coefficients 1e-3 apart
    assert multinomial_objective(X, y, ours, C, l1_ratio) <= multinomial_objective(X, y, ref, C, l1_ratio) * (1 + 1e-9)
    assert np.allclose(ours.coef_, ref.coef_, atol=1e-3)  # intercepts: defined up to a common shift
    assert np.allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-5)
    proba = ours.predict_proba(X)
    assert np.allclose(proba.sum(axis=1), 1.0) and (ours.predict(X) == ours.classes_[proba.argmax(1)]).all()


@pytest.mark.parametrize("n_classes", [2, 4])
def test_grid_predictions_equal_individual_fits(n_classes):
    X, y = data(n=200, p=30, n_classes=n_classes, seed=1)
    candidates = [{"C": C, "l1_ratio": r} for r in (0.2, 0.8, 0.0) for C in (10.0, 0.01, 1.0, 0.1)]
    est = ElasticNetClassifier(tol=1e-9)
    preds = est.grid_predictions(X[:140], y[:140], X[140:], candidates)
    assert len(preds) == len(candidates)
    classes = np.unique(y[:140])
    for c, pred in zip(candidates, preds):
        single = ElasticNetClassifier(tol=1e-9, **c).fit(X[:140], y[:140])
        assert list(single.classes_) == list(classes) and pred.shape == (60, len(classes))
        assert np.allclose(pred, single.predict_proba(X[140:]), atol=1e-6)
    assert not np.allclose(preds[0], preds[1])  # the candidates do differ


@pytest.mark.parametrize("l1_ratio", [0.5, 0.0])
def test_tolerance_is_relative_to_the_penalty(l1_ratio):
    """The largest violation of the optimality conditions of the normalised objective is at most
    tol * alpha at every C (an absolute tolerance would leave weak penalties far less accurate)."""
    X, y = data(n=200, p=30, seed=4)
    raw = compute_sample_weight("balanced", y)
    weights, tol = raw / raw.sum(), 1e-2
    for C in (0.01, 1.0, 100.0):
        model = ElasticNetClassifier(C=C, l1_ratio=l1_ratio, tol=tol).fit(X, y)
        alpha = 1.0 / (C * raw.sum())
        grad = X.T @ (weights * (model.predict_proba(X)[:, 1] - y))
        w = model.coef_[0]
        smooth = grad + alpha * (1 - l1_ratio) * w
        violation = np.where(w != 0, np.abs(smooth + alpha * l1_ratio * np.sign(w)), np.abs(smooth) - alpha * l1_ratio)
        assert violation.max() <= 1.5 * tol * alpha, (C, violation.max() / alpha)


@pytest.mark.parametrize("n_classes", [2, 7])
def test_auc_close_to_the_old_saga_elasticnet(n_classes):
    """Same penalty as the old LogisticRegression(saga, max_iter=5000) on a held-out part: ROC-AUC
    (multiclass: macro one-vs-rest) within 0.01."""
    X, y = data(n=700, p=40, n_classes=n_classes, seed=2)
    train = np.arange(len(y)) % 3 != 0
    old = LogisticRegression(C=0.1, l1_ratio=0.5, solver="saga", class_weight="balanced", max_iter=5000)
    models = [old.fit(X[train], y[train]), ElasticNetClassifier(C=0.1, l1_ratio=0.5).fit(X[train], y[train])]
    probas = [m.predict_proba(X[~train]) for m in models]
    aucs = [roc_auc_score(y[~train], p[:, 1] if n_classes == 2 else p, multi_class="ovr") for p in probas]
    assert abs(aucs[0] - aucs[1]) < 0.01, aucs
    assert aucs[1] > 0.6


def test_deterministic_across_thread_counts():
    X, y = data(n=300, p=50, n_classes=3, seed=3)
    fits = [ElasticNetClassifier(C=0.3, n_jobs=k).fit(X, y) for k in (1, 2, 1)]
    assert all(np.array_equal(fits[0].coef_, f.coef_) for f in fits[1:])
    assert all(np.array_equal(fits[0].intercept_, f.intercept_) for f in fits[1:])


def test_fitted_state_is_plain_arrays():
    X, y = data()
    est = ElasticNetClassifier().fit(X, y)
    fitted = {k: v for k, v in vars(est).items() if k.endswith("_")}
    assert set(fitted) == {"classes_", "coef_", "intercept_", "n_features_in_"}
    assert all(isinstance(v, np.ndarray | int) for v in fitted.values())


@pytest.mark.parametrize("n_classes,C,l1_ratio", [(3, 2.0, 0.5), (3, 20.0, 0.8), (2, 20.0, 0.5)])
def test_working_set_grows_to_the_optimum(n_classes, C, l1_ratio, monkeypatch):
    """More genes than the working set starts with (and than samples): the genes left out join
    while their zero coefficients violate the optimality conditions, so the fit reaches the
    optimum of the solver given every gene at once."""
    X, y = data(n=150, p=400, n_classes=n_classes, seed=3)
    monkeypatch.setattr(linear, "WORKING_SET", 40)
    grown = ElasticNetClassifier(C=C, l1_ratio=l1_ratio, tol=1e-9, tol_multinomial=1e-9).fit(X, y)
    monkeypatch.setattr(linear, "WORKING_SET", X.shape[1])
    every_gene = ElasticNetClassifier(C=C, l1_ratio=l1_ratio, tol=1e-9, tol_multinomial=1e-9).fit(X, y)
    assert np.count_nonzero(np.any(grown.coef_ != 0, axis=0)) > 2 * 40
    assert np.allclose(grown.predict_proba(X), every_gene.predict_proba(X), atol=1e-6)
    if n_classes > 2:
        objective = multinomial_objective
        assert objective(X, y, grown, C, l1_ratio) <= objective(X, y, every_gene, C, l1_ratio) + 1e-9
    else:
        assert np.allclose(grown.coef_, every_gene.coef_, atol=1e-5)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_solver_never_sees_one_column(n_classes, monkeypatch):
    """An (n, 1) column is C- and F-ordered at once; numba types it as C and compiles skglm's
    solver a second time (8 s per worker). A path whose first active penalty admits one gene
    still hands the solver column-ordered blocks of two genes or more."""
    monkeypatch.setattr(linear, "WORKING_SET", 10)
    X, y = data(n=150, p=40, n_classes=n_classes, seed=5)
    seen = []
    descend = ElasticNetClassifier._descend

    def spy(self, X, *args):
        seen.append(X.shape[1])
        return descend(self, X, *args)

    monkeypatch.setattr(ElasticNetClassifier, "_descend", spy)
    model = ElasticNetClassifier(l1_ratio=1.0)
    supports = []
    for C in np.geomspace(1e-3, 1, 12):
        supports.append(np.count_nonzero(np.any(model.set_params(C=C).fit(X, y).coef_ != 0, axis=0)))
    assert 1 in supports  # the path passes a one-gene support
    assert seen and min(seen) >= 2


@pytest.mark.parametrize("n_classes", [2, 3])
def test_strong_penalty_leaves_only_the_class_shares(n_classes, monkeypatch):
    monkeypatch.setattr(linear, "WORKING_SET", 10)  # no gene is ever active: the intercepts' closed form
    X, y = data(n=120, p=30, n_classes=n_classes, seed=4)
    y = np.where(np.arange(len(y)) < 60, y[0], y)  # unequal classes
    shares = np.unique(y, return_counts=True)[1] / len(y)
    for class_weight, expected in [(None, shares), ("balanced", [1 / n_classes] * n_classes)]:
        model = ElasticNetClassifier(C=1e-6, l1_ratio=0.5, class_weight=class_weight).fit(X, y)
        assert not model.coef_.any()
        assert np.allclose(model.predict_proba(X[:5]), expected)


def test_multinomial_says_when_it_runs_out_of_sweeps():
    X, y = data(n_classes=3)
    with pytest.warns(ConvergenceWarning, match="did not converge in 2 sweeps"):
        ElasticNetClassifier(C=5.0, max_sweeps=2).fit(X, y)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("C", [0.05, 2.0])
def test_l2_with_more_genes_than_samples_solved_in_the_samples_span(n_classes, C, monkeypatch):
    """Same optimum as scikit-learn's lbfgs on the genes themselves; a path finds the span once."""
    X, y = data(n=40, p=150, n_classes=n_classes, seed=6)
    calls = []
    monkeypatch.setattr(span, "row_space", lambda X, f=span.row_space: calls.append(1) or f(X))
    ours = ElasticNetClassifier(C=C, l1_ratio=0.0, tol=1e-10).fit(X, y)
    ref = LogisticRegression(C=C, class_weight="balanced", tol=1e-10, max_iter=100000).fit(X, y)
    assert np.allclose(ours.coef_, ref.coef_, atol=1e-6) and np.allclose(ours.intercept_, ref.intercept_, atol=1e-6)
    path = ElasticNetClassifier(l1_ratio=0.0, tol=1e-10).grid_predictions(X, y, X[:7], [{"C": 0.01}, {"C": C}])[1]
    assert np.allclose(path, ours.predict_proba(X[:7]), atol=1e-7)
    assert len(calls) == 2  # one for the fit, one for the whole path
