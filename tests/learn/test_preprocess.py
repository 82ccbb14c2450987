import functools
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from metasig.learn.preprocess import (
    CoxScoreSelector,
    DESeq2VST,
    MinMeanFilter,
    SelectKBestCapped,
    TopVarianceFilter,
    cox_score,
    make_preprocessing,
)


def nb_counts(n, p, seed, trend=True, zeros=False):
    """Negative-binomial counts with sample size factors; dispersion a0 + a1/mean (trend) or
    constant. zeros=True plants a zero in every gene."""
    rng = np.random.default_rng(seed)
    mu = rng.lognormal(4, 1.2, size=p)
    sf = rng.lognormal(0, 0.4, size=n)
    disp = 0.05 + 3.0 / mu if trend else np.full(p, 0.2)
    mean = mu[None, :] * sf[:, None]
    r = 1 / disp[None, :]
    counts = rng.negative_binomial(r, r / (r + mean)).astype(float)
    if zeros:
        counts[rng.integers(0, n, size=p), np.arange(p)] = 0
    return pd.DataFrame(counts, index=[f"s{i}" for i in range(n)], columns=[f"g{j}" for j in range(p)])


def pydeseq2_reference(train):
    from pydeseq2.dds import DeseqDataSet

    dds = DeseqDataSet(
        counts=train.astype(int),
        metadata=pd.DataFrame(index=train.index),
        design=pd.DataFrame({"Intercept": 1.0}, index=train.index),
        quiet=True,
        n_cpus=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dds.vst_fit()
    return dds


@pytest.mark.parametrize("trend", [True, False])
def test_vst_matches_pydeseq2_on_train_and_new_samples(trend):
    data = nb_counts(50, 120, seed=1, trend=trend)
    train, test = data.iloc[:35], data.iloc[35:].clip(lower=1)
    vst = DESeq2VST().fit(train)
    assert vst.vst_fit_type_ == ("parametric" if trend else "mean")
    dds = pydeseq2_reference(train)
    assert np.allclose(vst.transform(train), dds.vst_transform(), rtol=1e-10, atol=1e-10)
    # without zeros in the new rows, pydeseq2's own transform of new samples agrees
    assert np.allclose(vst.transform(test), dds.vst_transform(test.to_numpy()), rtol=1e-10, atol=1e-10)
    # a new sample with zeros still gets a finite size factor (zeros are left out of its median)
    zeros = test.copy()
    zeros.iloc[0, ::3] = 0
    assert np.isfinite(vst.transform(zeros)).all()


def test_vst_is_fitted_on_the_training_fold_only():
    data = nb_counts(40, 80, seed=2)
    train, test = data.iloc[:30], data.iloc[30:]
    vst = DESeq2VST().fit(train)
    state = (vst.logmeans_.copy(), vst.trend_a0_, vst.trend_a1_)
    whole = vst.transform(test)
    # each test sample's values depend on that sample and the training fold only
    one_by_one = np.vstack([vst.transform(test.iloc[[i]]) for i in range(len(test))])
    assert np.array_equal(whole, one_by_one)
    altered = test.copy()
    altered.iloc[1:] = altered.iloc[1:] * 5 + 3
    assert np.array_equal(vst.transform(altered)[0], whole[0])
    assert np.array_equal(vst.logmeans_, state[0]) and (vst.trend_a0_, vst.trend_a1_) == state[1:]
    # fitting on other data does change the transform (the fit is what carries the fold)
    other = DESeq2VST().fit(data)
    assert not np.allclose(other.transform(test), whole)


def test_vst_poscounts_when_every_gene_has_a_zero():
    data = nb_counts(30, 60, seed=3, zeros=True)
    vst = DESeq2VST().fit(data)
    assert vst.size_factor_method_ == "poscounts"
    sf = vst.size_factors(np.rint(data.to_numpy()))
    assert np.isclose(np.exp(np.mean(np.log(sf))), 1.0)
    out = vst.transform(data)
    assert np.isfinite(out).all() and out.shape == data.shape


def test_vst_rejects_negative_input_and_keeps_names():
    data = nb_counts(20, 30, seed=4)
    vst = DESeq2VST().fit(data)
    assert list(vst.get_feature_names_out()) == list(data.columns)
    bad = data.copy()
    bad.iloc[0, 0] = -1
    with pytest.raises(ValueError, match="non-negative counts"):
        vst.transform(bad)


def test_min_mean_filter_keeps_the_right_columns():
    X = pd.DataFrame({"low": [0.0, 1.0, 2.0], "high": [5.0, 6.0, 7.0], "mid": [3.0, np.nan, 3.0]})
    f = MinMeanFilter(min_mean=3.0).fit(X)
    assert list(f.get_feature_names_out()) == ["high", "mid"]
    assert f.transform(pd.DataFrame({"low": [100.0], "high": [0.0], "mid": [0.0]})).tolist() == [[0.0, 0.0]]
    assert MinMeanFilter(min_mean=None).fit(X).get_support().all()
    with pytest.raises(ValueError, match="lower preprocessing.min_mean"):
        MinMeanFilter(min_mean=100).fit(X)


def test_top_variance_filter_keeps_the_most_variable():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(50, 6)) * [1, 5, 0.1, 3, 2, 0.5], columns=list("abcdef"))
    f = TopVarianceFilter(n=3).fit(X)
    assert list(f.get_feature_names_out()) == ["b", "d", "e"]
    assert TopVarianceFilter(n=100).fit(X).get_support().all()  # n > #features keeps all


def test_select_k_larger_than_features_keeps_all_quietly():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 3)), rng.integers(0, 2, 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sel = SelectKBestCapped(k=10).fit(X, y)
    assert sel.transform(X).shape == (30, 3)
    X[:, 1] += 3 * y
    assert SelectKBestCapped(k=1).fit(X, y).get_support().tolist() == [False, True, False]


def test_select_k_with_another_score_function_is_select_k_best():
    from sklearn.feature_selection import mutual_info_classif

    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(60, 25)), rng.integers(0, 3, 60)
    X[:, 7] += y
    score = functools.partial(mutual_info_classif, random_state=0)
    ours, theirs = SelectKBestCapped(score, k=5).fit(X, y), SelectKBest(score, k=5).fit(X, y)
    np.testing.assert_array_equal(ours.scores_, theirs.scores_)
    assert np.array_equal(ours.get_support(), theirs.get_support()) and ours.get_support()[7]


def survival_data(n, p, seed, signal=(0,)):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    risk = X[:, list(signal)].sum(axis=1) if signal else np.zeros(n)
    time = rng.exponential(np.exp(-risk))
    censor = rng.exponential(2.0, size=n)
    y = np.empty(n, dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = time <= censor, np.minimum(time, censor)
    return X, y


def naive_cox_score(x, y):
    score = information = 0.0
    for i in np.flatnonzero(y["event"]):
        at_risk = x[y["time"] >= y["time"][i]]
        score += x[i] - at_risk.mean()
        information += at_risk.var()
    return score**2 / information


def test_cox_score_matches_a_direct_computation_with_ties():
    X, y = survival_data(40, 3, seed=5)
    y["time"] = np.round(y["time"], 1)  # ties
    expected = [naive_cox_score(X[:, j], y) for j in range(3)]
    assert np.allclose(cox_score(X, y), expected)
    assert np.allclose(cox_score(X, y, chunk=2), expected)  # columns in chunks: the same statistics


def test_cox_score_selector_finds_planted_features():
    X, y = survival_data(150, 8, seed=6, signal=(2, 5))
    sel = CoxScoreSelector(k=2).fit(X, y)
    assert np.flatnonzero(sel.get_support()).tolist() == [2, 5]
    assert CoxScoreSelector(k=50).fit(X, y).get_support().all()


def test_make_preprocessing_steps():
    names = lambda steps: [n for n, _ in steps]  # noqa: E731
    assert names(make_preprocessing({}, "none", "binary", 0)) == ["impute", "scale"]
    full = {"min_mean": 1.0, "top_variance": 10, "select_k": 5, "scale": True}
    assert names(make_preprocessing(full, "vst", "binary", 0)) == [
        "vst",
        "min_mean",
        "top_variance",
        "impute",
        "select",
        "scale",
    ]
    surv = make_preprocessing({"select_k": 5, "scale": False}, "log2p1", "survival", 0)
    assert names(surv) == ["impute", "select"] and isinstance(surv[-1][1], CoxScoreSelector)
    with_cov = make_preprocessing(full, "vst", "multiclass", 0, covariates=["age"])
    assert names(with_cov) == ["genes", "impute", "select", "scale"]
    assert isinstance(with_cov[0][1], ColumnTransformer)


@pytest.mark.parametrize("task_kind", ["binary", "survival"])
def test_selection_before_scaling_keeps_the_genes_scaling_first_would(task_kind):
    """select_k runs before the scaler (only kept genes get scaled): both scores ignore scale."""
    X, y = survival_data(120, 40, seed=2) if task_kind == "survival" else (None, None)
    if X is None:
        rng = np.random.default_rng(2)
        X = rng.normal(size=(120, 40))
        y = (X[:, 3] - X[:, 17] + rng.normal(size=120) > 0).astype(int)
    X = np.asarray(X) * np.geomspace(0.01, 100, X.shape[1]) + 5.0  # columns on very different scales
    select = make_preprocessing({"select_k": 8, "scale": False}, "none", task_kind, 0)[-1][1]
    unscaled = clone(select).fit(X, y).get_support()
    scaled = clone(select).fit(StandardScaler().fit_transform(X), y).get_support()
    assert unscaled.sum() == 8 and np.array_equal(unscaled, scaled)


def test_covariates_bypass_vst_and_filters():
    data = nb_counts(30, 20, seed=7)
    data["age"] = np.linspace(30, 80, 30)
    data.loc["s3", "age"] = np.nan
    steps = make_preprocessing({"top_variance": 5}, "vst", "binary", 0, covariates=["age"])
    pipe = Pipeline(steps).fit(data)
    out_names = list(pipe.get_feature_names_out())
    assert out_names[0] == "age" and len(out_names) == 6 and set(out_names[1:]) <= set(data.columns)
    out = pipe.transform(data)
    assert np.isfinite(out).all()
    # without the bypass the covariate column (NaN) cannot go through VST
    with pytest.raises(ValueError):
        Pipeline(make_preprocessing({}, "vst", "binary", 0)).fit(data)


def test_vst_refuses_a_single_gene():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="log2cpm"):
            DESeq2VST().fit(nb_counts(30, 1, seed=1))


def test_median_of_ratios_matches_pydeseq2_and_corrects_composition():
    from pydeseq2.dds import DeseqDataSet

    from metasig.learn.preprocess import MedianOfRatiosLog2

    rng = np.random.default_rng(4)
    n, genes = 24, 50
    base = rng.lognormal(5, 1, genes)
    treated = np.arange(n) >= n // 2
    fold = np.ones((n, genes))
    fold[np.ix_(treated, np.arange(5))] = 8.0  # five genes take a much larger share in treated samples
    counts = rng.poisson(base * fold * rng.uniform(0.5, 2, n)[:, None]).astype(float)

    mor = MedianOfRatiosLog2().fit(counts)
    index = pd.Index([f"s{i}" for i in range(n)])
    dds = DeseqDataSet(
        counts=pd.DataFrame(counts.astype(int), index=index, columns=[f"g{j}" for j in range(genes)]),
        metadata=pd.DataFrame(index=index),
        design=pd.DataFrame({"Intercept": 1.0}, index=index),
        quiet=True,
    )
    dds.fit_size_factors()
    assert np.allclose(mor.size_factors(counts), dds.obs["size_factors"].to_numpy(), rtol=1e-6)

    # the 45 unchanged genes: no shift between conditions after median-of-ratios, a clear one after CPM
    unchanged = slice(5, None)
    shift = lambda values: values[treated, unchanged].mean() - values[~treated, unchanged].mean()  # noqa: E731
    cpm = np.log2(counts / counts.sum(axis=1, keepdims=True) * 1e6 + 1)
    assert abs(shift(mor.transform(counts))) < 0.1
    assert shift(cpm) < -0.3


def test_every_in_fold_normalization_has_a_transformer():
    # metasig.data.normalize passes these through untouched; each must be fitted in-fold here instead
    from metasig.data.normalize import IN_FOLD, METHODS
    from metasig.learn.preprocess import IN_FOLD_NORMALIZATIONS

    assert set(IN_FOLD_NORMALIZATIONS) == set(IN_FOLD) <= set(METHODS)


@pytest.mark.filterwarnings("ignore:Skipping features without any observed values")
def test_median_imputer_matches_simple_imputer_with_and_without_missing_values():
    from sklearn.impute import SimpleImputer

    from metasig.learn.preprocess import MedianImputer

    rng = np.random.default_rng(1)
    X = rng.normal(size=(41, 30))
    holes = X.copy()
    holes[3, 4] = np.nan
    holes[:, 9] = np.nan  # a column without any value is dropped, as SimpleImputer does
    for train, chunk in ((X, 1024), (X, 7), (X[:40], 7), (holes, 7)):  # 7: medians of 5 column chunks
        fast, reference = MedianImputer(), SimpleImputer(strategy="median").fit(train)
        fast.chunk = chunk
        fast.fit(train)
        np.testing.assert_array_equal(fast.statistics_, reference.statistics_)
        np.testing.assert_array_equal(fast.transform(holes), reference.transform(holes))


def test_median_imputer_copies_only_when_it_fills():
    """Finite input comes back uncopied with SimpleImputer's values and layout; input with
    holes is copied and filled, and never written into."""
    from sklearn.impute import SimpleImputer

    from metasig.learn.preprocess import MedianImputer

    rng = np.random.default_rng(2)
    X = rng.normal(size=(20, 6))
    frame = pd.DataFrame(X, columns=[f"g{i}" for i in range(6)]).iloc[2:18]
    for data in (X, np.asfortranarray(X), frame):
        fast, reference = MedianImputer().fit(data), SimpleImputer(strategy="median").fit(data)
        out, expected = fast.transform(data), reference.transform(data)
        np.testing.assert_array_equal(out, expected)
        assert out.flags.c_contiguous == expected.flags.c_contiguous
        assert np.shares_memory(out, np.asarray(data))
        assert fast.copy is True
    shared = X.copy()
    shared.flags.writeable = False  # the job's memory-mapped matrix, in a final fit's refit
    assert np.shares_memory(MedianImputer().fit(shared).transform(shared), shared)
    holes = X.copy()
    holes[1, 2] = np.nan
    out = MedianImputer().fit(X).transform(holes)
    assert np.isnan(holes[1, 2]) and not np.isnan(out).any()
    assert not np.shares_memory(out, holes)


def test_median_imputer_takes_a_float_frame_as_values_and_checks_its_names(monkeypatch):
    """scikit-learn inspects a frame column by column (0.3 s a call at 20,000 genes): a frame of
    float columns is validated as its values instead, with SimpleImputer's outputs and fitted
    names, and still refuses a frame whose columns differ from those it was fitted on."""
    import sklearn.utils.validation as validation
    from sklearn.impute import SimpleImputer

    from metasig.learn.preprocess import MedianImputer

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(30, 8)), columns=[f"g{i}" for i in range(8)])
    holes = frame.copy()
    holes.iloc[4, 5] = np.nan
    reference = SimpleImputer(strategy="median").fit(frame)
    inspected = []
    original = validation._pandas_dtype_needs_early_conversion
    monkeypatch.setattr(
        validation, "_pandas_dtype_needs_early_conversion", lambda dtype: inspected.append(dtype) or original(dtype)
    )
    fast = MedianImputer().fit(frame)
    out = fast.transform(frame)
    assert inspected == []
    np.testing.assert_array_equal(out, reference.transform(frame))
    np.testing.assert_array_equal(fast.transform(holes), reference.transform(holes))
    np.testing.assert_array_equal(fast.feature_names_in_, reference.feature_names_in_)
    np.testing.assert_array_equal(fast.get_feature_names_out(), reference.get_feature_names_out())
    with pytest.raises(ValueError, match="feature names"):
        fast.transform(frame.rename(columns={"g3": "other"}))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        fast.transform(frame.to_numpy())
    mixed = frame.assign(g0=np.arange(30))  # an integer column: scikit-learn's own checks
    np.testing.assert_array_equal(
        MedianImputer().fit(mixed).transform(mixed), SimpleImputer(strategy="median").fit(mixed).transform(mixed)
    )


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("with_nan", [False, True])
def test_chunked_scaler_fits_standard_scalers_statistics(order, with_nan):
    from sklearn.preprocessing import StandardScaler

    from metasig.learn.preprocess import ChunkedStandardScaler

    rng = np.random.default_rng(5)
    X = np.asarray(rng.lognormal(2.0, 1.0, size=(90, 23)) * rng.uniform(0.1, 50, 23), order=order)
    X[:, 4] = 3.0  # a constant column: scale 1
    if with_nan:
        X[[2, 9], 6] = np.nan
    frame = pd.DataFrame(X, columns=[f"g{i}" for i in range(23)])
    whole = StandardScaler().fit(frame)
    chunked = ChunkedStandardScaler()
    chunked.chunk = 5  # 5 chunks, the last one short
    chunked.fit(frame)
    for name in ("mean_", "var_", "scale_", "n_samples_seen_"):
        assert np.array_equal(getattr(chunked, name), getattr(whole, name), equal_nan=True), name
    assert type(chunked.n_samples_seen_) is type(whole.n_samples_seen_)
    assert list(chunked.feature_names_in_) == list(frame.columns) and chunked.n_features_in_ == 23
    assert np.array_equal(chunked.transform(frame), whole.transform(frame), equal_nan=True)
    for settings in ({"with_mean": False}, {"with_mean": False, "with_std": False}):
        wide = ChunkedStandardScaler(**settings)
        wide.chunk = 5
        wide.fit(X)
        reference = StandardScaler(**settings).fit(X)
        for name in ("mean_", "var_", "scale_"):
            ours, theirs = getattr(wide, name), getattr(reference, name)
            assert (ours is None and theirs is None) or np.array_equal(ours, theirs, equal_nan=True), (settings, name)


def test_median_imputer_returns_finite_input_without_searching_it_cell_by_cell(monkeypatch):
    """Finite input with nothing to drop is validated and returned: no missing-value mask is
    built (0.1 s a call at 20,000 genes). A wrong width still raises SimpleImputer's error, and
    a gene without any training value is still dropped, with its warning."""
    import sklearn.impute._base as impute_base
    from sklearn.impute import SimpleImputer

    from metasig.learn.preprocess import MedianImputer

    rng = np.random.default_rng(4)
    X = rng.normal(size=(25, 7))
    fast = MedianImputer().fit(X)
    masks = []
    original = impute_base._get_mask
    monkeypatch.setattr(impute_base, "_get_mask", lambda *a: masks.append(1) or original(*a))
    np.testing.assert_array_equal(fast.transform(X), X)
    assert masks == []
    for imputer in (fast, SimpleImputer(strategy="median").fit(X)):
        with pytest.raises(ValueError, match="X has 6 features, but .* is expecting 7"):
            imputer.transform(X[:, :6])
    empty = X.copy()
    empty[:, 3] = np.nan
    with pytest.warns(UserWarning, match="Skipping features without any observed values"):
        out = MedianImputer().fit(empty).transform(X)
    assert out.shape == (25, 6)
    np.testing.assert_array_equal(out, np.delete(X, 3, axis=1))


def test_median_imputer_medians_are_numpys_for_odd_and_even_folds():
    from metasig.learn.preprocess import MedianImputer

    rng = np.random.default_rng(5)
    for n in (1, 2, 5, 8):
        X = rng.lognormal(size=(n, 11))
        X[:, 2] = 3.0  # ties
        imputer = MedianImputer()
        imputer.chunk = 4
        np.testing.assert_array_equal(imputer.fit(X).statistics_, np.median(X, axis=0))


def test_anova_f_is_f_classif_and_selects_the_same_genes():
    """The screen's F statistic from class sums equals f_classif's (to rounding), constant genes
    included, so SelectKBestCapped keeps the genes SelectKBest(f_classif) keeps."""

    from metasig.learn.preprocess import SelectKBestCapped, anova_f

    rng = np.random.default_rng(6)
    for n_classes in (2, 5):
        y = rng.integers(0, n_classes, size=90).astype(str)
        X = rng.lognormal(size=(90, 400)) + (y == "1")[:, None] * np.linspace(0, 1, 400)
        X[:, 7] = 2.5  # a constant gene: NaN, as f_classif's
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected_f, expected_p = f_classif(X, y)
            reference = SelectKBest(f_classif, k=40).fit(X, y)
        f, p = anova_f(X, y)
        np.testing.assert_allclose(f, expected_f, rtol=1e-10)
        np.testing.assert_allclose(p, expected_p, rtol=1e-8, atol=1e-300)
        assert np.isnan(f[7]) and np.isnan(expected_f[7])
        ours = SelectKBestCapped(f_classif, k=40).fit(X, y)
        np.testing.assert_array_equal(ours.get_support(), reference.get_support())
