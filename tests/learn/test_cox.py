import warnings

import numpy as np
import pandas as pd
import pytest

from metasig.learn.cox import CoxPH
from metasig.learn.survival import harrell_c


def survival_data(n=150, p=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * rng.uniform(0.5, 3.0, size=p)
    risk = 1.2 * X[:, 0] / X[:, 0].std() - 0.8 * X[:, 1] / X[:, 1].std()
    time, censor = rng.exponential(np.exp(-risk)), rng.exponential(2.0, size=n)
    y = np.empty(n, dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = time <= censor, np.minimum(time, censor)
    return X, y


def lifelines_coef(X, y, penalizer, l1_ratio):
    from lifelines import CoxPHFitter

    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame["T"], frame["E"] = y["time"], y["event"].astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitter = CoxPHFitter(penalizer=penalizer, l1_ratio=l1_ratio).fit(frame, "T", "E")
    return fitter.params_.to_numpy()


@pytest.mark.parametrize("penalizer,l1_ratio,atol", [(0.1, 0.0, 1e-6), (0.01, 0.0, 1e-6), (0.05, 0.5, 2e-4)])
def test_same_objective_as_lifelines(penalizer, l1_ratio, atol):
    """Ridge: exact agreement; elastic net: lifelines smooths |b|, so agreement to its smoothing."""
    X, y = survival_data()
    ours = CoxPH(penalizer=penalizer, l1_ratio=l1_ratio).fit(X, y)
    assert np.allclose(ours.coef_, lifelines_coef(X, y, penalizer, l1_ratio), atol=atol)


def test_ridge_with_more_features_than_samples_matches_coxnet():
    """The kernel-form Newton solver (p > n) against Coxnet's coordinate descent on a near-ridge."""
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    X, y = survival_data(n=50, p=120, seed=4)
    ours = CoxPH(penalizer=0.2, l1_ratio=0.0).fit(X, y)
    Z = (X - X.mean(0)) / X.std(0, ddof=1)
    ref = CoxnetSurvivalAnalysis(alphas=[0.2], l1_ratio=1e-9, tol=1e-12, max_iter=10**7).fit(Z, y)
    assert np.allclose(ours.coef_ * X.std(0, ddof=1), ref.coef_[:, 0], atol=1e-4)
    assert np.abs(ours.coef_).max() > 1e-3


@pytest.mark.parametrize("order", ["C", "F"])
def test_kernel_ridge_coefficients_from_sorted_column_blocks_bit_for_bit(order):
    from metasig.learn.cox_ridge import _sorted_rows_product

    rng = np.random.default_rng(3)
    Z = np.asarray(rng.normal(size=(97, 2500)), order=order)
    rows, x = rng.permutation(97), rng.normal(size=97)
    assert np.array_equal(_sorted_rows_product(Z, rows, x, columns=1024), Z[rows].T @ x)


@pytest.mark.parametrize("order", ["C", "F"])
def test_standardising_in_place_takes_no_temporary_of_the_inputs_size(order):
    """The standard deviations come 1,024 columns at a time, the same bit for bit as NumPy's, which
    centres a copy of the whole input first (200 MB in a final fit at 1,218 x 20,530)."""
    import tracemalloc

    from metasig.learn.cox import _column_std

    X = np.asarray(np.random.default_rng(5).lognormal(size=(60, 20_000)), order=order)
    assert np.array_equal(_column_std(X), X.std(axis=0, ddof=1))
    X = np.asfortranarray(X)
    expected = (X - X.mean(axis=0)) / X.std(axis=0, ddof=1)
    tracemalloc.start()
    Z, _, _ = CoxPH(copy_X=False)._standardise(X, in_place=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert Z is X and np.array_equal(Z, expected)
    assert peak < X.nbytes / 4, f"{peak / 2**20:.1f} MiB beside a {X.nbytes / 2**20:.1f} MiB input"


def test_kernel_ridge_holds_no_sorted_copy_of_the_features():
    """With more features than samples, the Newton steps need only the kernel Z Z': the solver
    must not sort a copy of Z (160 MB per worker at 974 x 20,530) to get the coefficients."""
    import tracemalloc

    from metasig.learn.cox_ridge import ridge_cox

    X, y = survival_data(n=60, p=20_000, seed=2)
    Z = np.asfortranarray((X - X.mean(0)) / X.std(0, ddof=1))
    K = Z @ Z.T
    tracemalloc.start()
    coef, dual_weights = ridge_cox(Z, y["time"], y["event"], 0.5, K=K)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < Z.nbytes / 4, f"{peak / 2**20:.1f} MiB held beside a {Z.nbytes / 2**20:.1f} MiB Z"
    assert np.allclose(coef, Z.T @ dual_weights)  # the weights come back in the samples' own order


@pytest.mark.parametrize("n,p", [(150, 8), (60, 150)])
def test_grid_predictions_equal_individual_fits(n, p):
    X, y = survival_data(n=n, p=p, seed=1)
    train = np.arange(n) % 4 != 0
    candidates = [{"penalizer": a, "l1_ratio": r} for r in (0.0, 0.5) for a in (0.1, 1.0, 0.03)]
    preds = CoxPH().grid_predictions(X[train], y[train], X[~train], candidates)
    for c, pred in zip(candidates, preds):
        single = CoxPH(**c).fit(X[train], y[train]).predict(X[~train])
        assert pred.shape == (int((~train).sum()),)
        assert np.allclose(pred, single, atol=1e-4), c
    assert not np.allclose(preds[0], preds[1])


def test_c_index_close_to_lifelines():
    X, y = survival_data(n=300, p=10, seed=2)
    train = np.arange(300) % 3 != 0
    for penalizer, l1_ratio in [(0.1, 0.0), (0.05, 0.5)]:
        old = X[~train] @ lifelines_coef(X[train], y[train], penalizer, l1_ratio)
        new = CoxPH(penalizer=penalizer, l1_ratio=l1_ratio).fit(X[train], y[train]).predict(X[~train])
        assert abs(harrell_c(y[~train], new) - harrell_c(y[~train], old)) < 0.01
        assert harrell_c(y[~train], new) > 0.65


def test_deterministic_across_thread_counts():
    X, y = survival_data(n=120, p=400, seed=5)
    for l1_ratio in (0.0, 0.5):
        fits = [CoxPH(penalizer=0.1, l1_ratio=l1_ratio, n_jobs=k).fit(X, y) for k in (1, 2)]
        assert np.array_equal(fits[0].coef_, fits[1].coef_)
        assert np.array_equal(fits[0].baseline_cumhaz_, fits[1].baseline_cumhaz_)


def test_skglm_fallback_solves_the_same_objective():
    """The path used where Coxnet overflows (weak penalties, p > n) agrees with Coxnet elsewhere."""
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    from metasig.learn.cox import _skglm_cox_path

    X, y = survival_data(n=80, p=120, seed=6)
    Z = (X - X.mean(0)) / X.std(0, ddof=1)
    ours = _skglm_cox_path(Z, y["time"], y["event"], [0.3, 0.1], 0.5, 1e-10)
    ref = CoxnetSurvivalAnalysis(alphas=[0.3, 0.1], l1_ratio=0.5, tol=1e-10).fit(Z, y).coef_
    assert np.allclose(ours, ref, atol=1e-3) and np.count_nonzero(ours[:, 1]) > 0


def test_more_features_than_samples_go_to_skglm_at_coxnets_optimum(monkeypatch):
    """Coxnet's coordinate descent is slow where features outnumber samples; skglm solves the same
    objective there (Coxnet is not called at all)."""
    import sksurv.linear_model
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    X, y = survival_data(n=80, p=120, seed=6)
    Z = (X - X.mean(0)) / X.std(0, ddof=1)
    ref = CoxnetSurvivalAnalysis(alphas=[0.3, 0.1], l1_ratio=0.5, tol=1e-10).fit(Z, y).coef_ / X.std(0, ddof=1)[:, None]

    def no_coxnet(*args, **kwargs):
        raise AssertionError("Coxnet was called")

    monkeypatch.setattr(sksurv.linear_model, "CoxnetSurvivalAnalysis", no_coxnet)
    fits = [CoxPH(penalizer=a, l1_ratio=0.5, tol_skglm=1e-10).fit(X, y) for a in (0.3, 0.1)]
    assert np.allclose(np.column_stack([f.coef_ for f in fits]), ref, atol=1e-3)
    assert np.count_nonzero(fits[1].coef_) > 0
    (path,) = CoxPH(l1_ratio=0.5).grid_predictions(X, y, X[:10], [{"penalizer": 0.1}])
    assert np.allclose(path, fits[1].predict(X[:10]), atol=1e-3)


def test_risks_of_wide_inputs_centred_by_row_blocks(monkeypatch):
    """Risks (the baseline hazard's and predict's) centre CENTRED_VALUES of X at a time, not a whole
    copy of X (numpy's allocations are traced); the risks are those of the one product."""
    import tracemalloc

    from metasig.learn import cox

    X, y = survival_data(n=90, p=12, seed=7)
    whole = CoxPH(penalizer=0.1).fit(X, y)
    monkeypatch.setattr(cox, "CENTRED_VALUES", 12 * 20)  # 20 rows at a time
    blocks = CoxPH(penalizer=0.1).fit(X, y)
    assert np.allclose(blocks.predict(X), whole.predict(X), rtol=0, atol=1e-12)
    assert np.allclose(blocks.baseline_cumhaz_, whole.baseline_cumhaz_, rtol=1e-12)
    wide = np.random.default_rng(0).normal(size=(4000, 12))  # 384 kB
    tracemalloc.start()
    blocks.predict(wide)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100_000  # the 32 kB of risks and a 2 kB block, never a 384 kB centred copy


def test_a_copy_no_one_keeps_is_standardised_in_place(monkeypatch):
    """copy_X=False: fit standardises a large column-ordered input in place (the same model to
    rounding; the input then holds the standardised values). refit gives CoxPH the scaler's output,
    a copy no one keeps, and the fit then holds one array of the input's size, not two (traced);
    the model's copy_X is True again afterwards."""
    import tracemalloc

    from metasig.learn import cox
    from metasig.learn.models import build
    from metasig.learn.search import refit

    X, y = survival_data(n=200, p=2000, seed=3)
    monkeypatch.setattr(cox, "CENTRED_VALUES", 1000)  # "large" from 1,000 values on
    Xf = np.asfortranarray(X, dtype=float)
    copied = CoxPH(penalizer=0.1, l1_ratio=0.5).fit(Xf, y)
    owned = Xf.copy(order="F")
    in_place = CoxPH(penalizer=0.1, l1_ratio=0.5, copy_X=False).fit(owned, y)
    np.testing.assert_allclose(in_place.coef_, copied.coef_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(in_place.baseline_cumhaz_, copied.baseline_cumhaz_, rtol=1e-10)
    np.testing.assert_allclose(owned.mean(axis=0), 0, atol=1e-12)  # overwritten: standardised
    small = Xf[:, :4].copy(order="F")  # 800 values: left alone (the pipeline's frames are column-ordered)
    CoxPH(penalizer=0.1, copy_X=False).fit(small, y)
    assert np.array_equal(small, Xf[:, :4])

    pipeline, _ = build({"kind": "coxph", "search": {}}, "survival", {}, "none", 0)
    peaks = {}
    for name, fit in {"refit": lambda: refit(pipeline, {}, Xf, y), "fit": lambda: clone_fit(pipeline, Xf, y)}.items():
        tracemalloc.start()
        model = fit()
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks["refit"] < peaks["fit"] - 0.8 * Xf.nbytes, peaks
    assert model[-1].copy_X and refit(pipeline, {}, Xf, y)[-1].copy_X
    np.testing.assert_allclose(refit(pipeline, {}, Xf, y).predict(Xf), model.predict(Xf), rtol=0, atol=1e-10)


def clone_fit(pipeline, X, y):
    from sklearn.base import clone

    return clone(pipeline).fit(X, y)


def test_the_inner_search_standardises_its_own_split_in_place(monkeypatch):
    """An inner split's training rows are the search's own copy: CoxPH standardises them in place
    (the same risks, bit for bit, as on a copy), so the search holds one split-sized array fewer,
    and picks the same candidate."""
    from metasig.learn import cox
    from metasig.learn.models import build
    from metasig.learn.search import search

    X, y = survival_data(n=180, p=2000, seed=5)
    Xf = np.asfortranarray(X, dtype=float)
    owned = Xf[:120].copy(order="F")
    monkeypatch.setattr(cox, "CENTRED_VALUES", 1000)
    candidates = [{"penalizer": 0.1, "l1_ratio": 0.0}, {"penalizer": 1.0, "l1_ratio": 0.0}]
    copied = CoxPH().grid_predictions(Xf[:120], y[:120], Xf[120:], candidates)
    in_place = CoxPH(copy_X=False).grid_predictions(owned, y[:120], Xf[120:], candidates)
    assert all(np.array_equal(a, b) for a, b in zip(copied, in_place))
    assert not np.array_equal(owned, Xf[:120])  # standardised

    overwritten, grid_predictions = [], CoxPH.grid_predictions

    def spy(self, X, *args):
        overwritten.append(self._may_overwrite(X))
        return grid_predictions(self, X, *args)

    monkeypatch.setattr(CoxPH, "grid_predictions", spy)
    pipeline, grid = build({"kind": "coxph", "search": {"l1_ratio": [0.0]}}, "survival", {}, "none", 0)
    splits = [(np.arange(0, 120), np.arange(120, 180)), (np.arange(60, 180), np.arange(0, 60))]
    results = {}
    for values in (10**9, 1000):  # in place never, then from 1,000 values on
        monkeypatch.setattr(cox, "CENTRED_VALUES", values)
        model, params = search(pipeline, grid, pd.DataFrame(Xf), y, "survival", splits)
        results[values] = (params, model.predict(Xf))
    assert overwritten == [False, False, True, True]  # each split's rows, once large enough
    assert results[1000][0] == results[10**9][0]
    np.testing.assert_allclose(results[1000][1], results[10**9][1], rtol=0, atol=1e-10)


def test_compile_jit_compiles_skglm_only_where_a_fit_would_use_it(monkeypatch):
    """skglm's Cox solver serves elastic-net fits with more genes than samples: only those compile
    it ahead of a fold (metasig.learn.nested_cv.compile_jit)."""
    from metasig.learn import cox

    compiled = []
    monkeypatch.setattr(cox, "compile_cox_solver", lambda: compiled.append(True))
    CoxPH(l1_ratio=0.5).compile_jit((100, 20_000))
    assert len(compiled) == 1
    CoxPH(l1_ratio=0.0).compile_jit((100, 20_000))  # ridge: Newton in the kernel form
    CoxPH(l1_ratio=0.5).compile_jit((1_000, 200))  # Coxnet
    assert len(compiled) == 1


def test_compile_cox_solver_leaves_fits_as_they_were():
    from metasig.learn import cox

    X, y = survival_data(n=30, p=60, seed=4)
    before = CoxPH(penalizer=0.1, l1_ratio=0.5).fit(X, y).coef_
    cox.compile_cox_solver()
    np.testing.assert_array_equal(CoxPH(penalizer=0.1, l1_ratio=0.5).fit(X, y).coef_, before)
