"""The seeds' own methods (issue 13): in-fold PCA (`preprocessing.pca`), the `svm` and `logistic`
model kinds, and a model's own preprocessing merged over the dataset's."""

import logging

import numpy as np
import pandas as pd
import pytest

from metasig.learn.models import build, feature_importance
from metasig.learn.preprocess import InFoldPCA, make_preprocessing
from metasig.learn.svm import SVMClassifier, platt_fit


def spectrum_data(n=400, seed=0):
    """Independent columns with variances 60, 25, 10 and seven of 0.5: the variance explained by
    the first 1, 2, 3 components is about 0.61, 0.86, 0.96."""
    rng = np.random.default_rng(seed)
    sd = np.sqrt([60.0, 25.0, 10.0] + [0.5] * 7)
    return rng.normal(size=(n, len(sd))) * sd


@pytest.mark.parametrize("fraction,expected", [(0.5, 1), (0.8, 2), (0.9, 3), (0.9999, 10)])
def test_pca_variance_fraction_keeps_the_fewest_components_reaching_it(fraction, expected):
    X = spectrum_data()
    # the expected count, from the data's own eigenvalues (independent of scikit-learn's PCA)
    eig = np.linalg.svd(X - X.mean(axis=0), compute_uv=False) ** 2
    reached = np.cumsum(eig) / eig.sum()
    assert int(np.searchsorted(reached, fraction) + 1) == expected  # the design is what we think
    steps = make_preprocessing({"scale": False, "pca": fraction}, "none", "binary", seed=0)
    pca = steps[-1][1]
    assert steps[-1][0] == "pca" and isinstance(pca, InFoldPCA)
    pca.fit(X)
    assert pca.n_components_ == expected
    assert list(pca.get_feature_names_out()) == [f"PC{i + 1}" for i in range(expected)]


def test_pca_comes_after_scaling_and_selection():
    steps = make_preprocessing({"top_variance": 50, "select_k": 10, "pca": 3}, "none", "binary", seed=0)
    assert [name for name, _ in steps] == ["top_variance", "impute", "select", "scale", "pca"]
    assert make_preprocessing({"pca": 4.0}, "none", "binary", 0)[-1][1].n_components == 4  # YAML's 4.0 is 4


def test_too_many_components_are_capped_with_a_message(caplog):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 12))
    with caplog.at_level(logging.WARNING, logger="metasig.learn.preprocess"):
        pca = InFoldPCA(n_components=500, random_state=0).fit(X)
    assert pca.n_components_ == 12 and pca.n_components == 500  # the setting itself is unchanged
    assert "500 components requested" in caplog.text and "at most 12" in caplog.text
    pca = InFoldPCA(n_components=500, random_state=0).fit(X[:8])  # fewer samples than genes
    assert pca.n_components_ == 8 and pca.transform(X).shape == (30, 8)


def multiclass_data(n=150, p=40, seed=0):
    """Three classes named so that their sorted order (np.unique) differs from their order of
    appearance; class k is shifted along its own genes."""
    rng = np.random.default_rng(seed)
    names = np.array(["zeta", "alpha", "mid"])
    y = names[np.arange(n) % 3]
    X = rng.normal(size=(n, p))
    for k, name in enumerate(names):
        X[y == name, 3 * k : 3 * k + 3] += 2.0
    return pd.DataFrame(X, columns=[f"g{j}" for j in range(p)]), y


CASES = [
    ({"kind": "svm", "params": {"kernel": "rbf"}}, {"pca": 5}),
    ({"kind": "svm", "params": {"kernel": "linear"}}, {"pca": 0.6}),
    ({"kind": "logistic"}, {"pca": 5}),
    ({"kind": "logistic"}, {}),
]


@pytest.mark.parametrize("model,pre", CASES, ids=lambda c: str(c))
def test_multiclass_probabilities_follow_sorted_classes_and_sum_to_one(model, pre):
    X, y = multiclass_data()
    pipe, _ = build({**model, "search": {}}, "multiclass", pre, "none", seed=0)
    pipe.fit(X.iloc[:120], y[:120])
    proba = pipe.predict_proba(X.iloc[120:])
    assert list(pipe.classes_) == ["alpha", "mid", "zeta"]
    assert proba.shape == (30, 3) and np.allclose(proba.sum(axis=1), 1.0) and (proba >= 0).all()
    # column k is the probability of class k: held-out samples of each class score highest there
    for k, name in enumerate(pipe.classes_):
        assert proba[y[120:] == name].mean(axis=0).argmax() == k


@pytest.mark.parametrize("model,pre", CASES, ids=lambda c: str(c))
def test_two_fits_with_the_same_seed_are_identical(model, pre):
    X, y = multiclass_data(n=120, p=600)  # max(n, p) > 500: PCA's "auto" picks the seeded randomized SVD
    fits = [build({**model, "search": {}}, "multiclass", pre, "none", seed=3)[0].fit(X, y) for _ in range(2)]
    assert np.array_equal(fits[0].predict_proba(X), fits[1].predict_proba(X))
    if pre.get("pca") == 5:
        assert fits[0].named_steps["pca"]._fit_svd_solver == "randomized"


def test_binary_svm_probabilities_rank_like_its_decision_values():
    """Platt's sigmoid is increasing in the decision value (A < 0), so ROC-AUC of the calibrated
    probabilities is the SVM's own."""
    X, y = multiclass_data()
    yb = (y == "mid").astype(int)
    svm = SVMClassifier(kernel="rbf", random_state=0).fit(X.to_numpy(), yb)
    assert svm.platt_[0, 0] < 0
    order = np.argsort(svm.decision_function(X.to_numpy()), kind="stable")
    assert (np.diff(svm.predict_proba(X.to_numpy())[order, 1]) >= 0).all()


def test_platt_fit_recovers_a_known_sigmoid():
    rng = np.random.default_rng(0)
    f = rng.normal(scale=2.0, size=20000)
    target = rng.random(f.size) < 1.0 / (1.0 + np.exp(-1.5 * f + 0.4))  # A = -1.5, B = 0.4
    np.testing.assert_allclose(platt_fit(f, target), [-1.5, 0.4], atol=0.06)


def test_svm_calibration_needs_two_samples_per_class():
    X = np.random.default_rng(0).normal(size=(7, 3))
    with pytest.raises(ValueError, match="class 2 has 1 sample"):
        SVMClassifier().fit(X, np.array([0, 0, 0, 1, 1, 1, 2]))


@pytest.mark.parametrize("kind", ["logistic", "svm"])
def test_pca_importance_is_pulled_back_to_the_genes_exactly(kind):
    """With as many components as genes PCA is a rotation. An L2 logistic regression and an RBF
    SVM (distances, and gamma "scale", are unchanged by it) are rotation-invariant, so the
    importance pulled back through the loadings (coefficients; decision gradients) equals the
    importance of the same model fitted on the genes directly."""
    X, y = multiclass_data(n=150, p=8)
    yb = (y == "alpha").astype(int)
    direct = build({"kind": kind, "search": {}}, "binary", {}, "none", 0)[0].fit(X, yb)
    rotated = build({"kind": kind, "search": {}}, "binary", {"pca": 8}, "none", 0)[0].fit(X, yb)
    a = feature_importance(direct, X.columns).set_index("feature")["importance"]
    b = feature_importance(rotated, X.columns).set_index("feature")["importance"]
    np.testing.assert_allclose(b[a.index].to_numpy(), a.to_numpy(), rtol=1e-3, atol=1e-5)
    assert a.index[0] in {"g3", "g4", "g5"}  # alpha's planted genes lead
    assert set(a.index[:3]) <= {f"g{j}" for j in range(9)}  # and only planted genes follow


@pytest.mark.parametrize("kind", ["svm", "random_forest"])
def test_pca_importance_of_other_models_is_spread_over_genes_by_loadings(kind):
    X, y = multiclass_data(n=150, p=30)
    pipe = build({"kind": kind, "search": {}}, "multiclass", {"select_k": 12, "pca": 6}, "none", 0)[0].fit(X, y)
    imp = feature_importance(pipe, X.columns)
    assert sorted(imp["feature"]) == sorted(X.columns)
    assert (imp["importance"] > 0).sum() == 12  # the genes select_k kept, the others 0
    assert set(imp["feature"].iloc[:9]) == {f"g{j}" for j in range(9)}  # the planted genes lead


def test_a_models_preprocessing_is_merged_over_the_datasets():
    dataset = {"top_variance": 20, "select_k": 10, "scale": True}
    pipe, _ = build({"kind": "svm", "preprocessing": {"select_k": None, "pca": 3}}, "binary", dataset, "none", 0)
    assert [name for name, _ in pipe.steps] == ["top_variance", "impute", "scale", "pca", "model"]
    pipe, _ = build({"kind": "random_forest"}, "binary", dataset, "none", 0)
    assert [name for name, _ in pipe.steps] == ["top_variance", "impute", "select", "scale", "model"]


@pytest.mark.parametrize("n_classes", [2, 3])
def test_svm_grid_predictions_equal_separate_fits(n_classes):
    """The shared-Gram search predicts what each candidate fitted alone on the features does
    (linear, RBF with gamma "scale" from the rows each SVC sees, "auto" and a number)."""
    from sklearn.base import clone

    from metasig.learn.svm import SVMClassifier

    rng = np.random.default_rng(n_classes)
    X, X_valid = rng.normal(size=(90, 40)), rng.normal(size=(30, 40))
    y = rng.integers(0, n_classes, 90)
    X[:, :4] += 0.8 * y[:, None]
    estimator = SVMClassifier(random_state=1)
    candidates = [{"kernel": k, "C": c} for k in ("linear", "rbf") for c in (0.1, 10.0)]
    candidates += [{"kernel": "rbf", "gamma": "auto"}, {"kernel": "rbf", "gamma": 0.05}]
    candidates += [{"kernel": "linear", "C": 10.0, "scale_C": True}]
    grid = estimator.grid_predictions(X, y, X_valid, candidates)
    for params, proba in zip(candidates, grid):
        alone = clone(estimator).set_params(**params).fit(X, y).predict_proba(X_valid)
        np.testing.assert_allclose(proba, alone, rtol=0, atol=1e-6, err_msg=str(params))
    assert not np.allclose(grid[0], grid[2])  # the kernels differ, so would the fits


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_scaled_C_makes_the_svm_blind_to_the_inputs_scale(kernel):
    """With scale_C, inputs 30 times larger (principal components of thousands of genes against
    standardised genes) give the same probabilities (to libsvm's tolerance); without it,
    the linear kernel's C becomes a harder margin and the fit changes."""
    from metasig.learn.svm import SVMClassifier

    rng = np.random.default_rng(7)
    X, X_valid = rng.normal(size=(80, 10)), rng.normal(size=(20, 10))
    y = (X[:, 0] + rng.normal(scale=1.5, size=80) > 0).astype(int)  # classes overlap
    fits = {}
    for scale_C in (True, False):
        for factor in (1.0, 30.0):
            model = SVMClassifier(kernel=kernel, C=1.0, scale_C=scale_C, random_state=0)
            fits[scale_C, factor] = model.fit(factor * X, y).predict_proba(factor * X_valid)
    np.testing.assert_allclose(fits[True, 1.0], fits[True, 30.0], atol=1e-3)  # libsvm stops at tol 1e-3
    if kernel == "linear":
        assert np.abs(fits[False, 1.0] - fits[False, 30.0]).max() > 1e-2
        assert np.abs(fits[True, 1.0] - fits[False, 1.0]).max() > 1e-2  # C is divided by about 10
    else:  # RBF with gamma "scale" is blind to the scale already; scale_C leaves it alone
        np.testing.assert_allclose(fits[True, 1.0], fits[False, 1.0], atol=0)


def test_gram_kernels_are_svcs():
    """Kernel values from the shared Gram matrix equal scikit-learn's, gamma "scale" taken over the
    rows the SVC is fitted on, as SVC.fit on those rows computes it."""
    from sklearn.metrics.pairwise import linear_kernel, rbf_kernel

    from metasig.learn.svm import Gram, SVMClassifier

    rng = np.random.default_rng(4)
    X, X_valid = rng.normal(1.0, 2.0, size=(50, 30)), rng.normal(size=(7, 30))
    gram, rows, fit = Gram(X, X_valid), np.arange(0, 50, 3), np.arange(1, 50, 2)
    rbf = SVMClassifier(kernel="rbf")
    np.testing.assert_allclose(gram.kernel(SVMClassifier(kernel="linear"), rows, fit), linear_kernel(X[rows], X[fit]))
    scale = 1.0 / (30 * X[fit].var())
    np.testing.assert_allclose(gram.kernel(rbf, rows, fit), rbf_kernel(X[rows], X[fit], gamma=scale), rtol=1e-10)
    np.testing.assert_allclose(gram.kernel(rbf, "valid", fit), rbf_kernel(X_valid, X[fit], gamma=scale), rtol=1e-10)
    auto = SVMClassifier(kernel="rbf", gamma="auto")
    np.testing.assert_allclose(gram.kernel(auto, None, None), rbf_kernel(X, X, gamma=1 / 30), rtol=1e-10)
