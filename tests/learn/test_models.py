import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_GRIDS as SMALL
from sklearn.model_selection import GridSearchCV, KFold, ParameterGrid

from metasig.errors import InputError
from metasig.learn.cox import CoxPH
from metasig.learn.models import build, feature_importance, jsonable_params
from metasig.learn.survival import XGBoostCox, harrell_c
from metasig.learn.xgb import XGBoostClassifier

CLASSIFIERS = ["xgboost", "elasticnet", "linear_sweep", "random_forest", "svm", "logistic"]
SURVIVAL = ["coxph", "xgboost_cox"]


def cfg(kind, **params):
    return {"kind": kind, "params": params, "search": SMALL[kind]}


def classification_data(n=90, p=8, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"g{i}" for i in range(p)])
    y_binary = (X["g0"] + 0.5 * rng.normal(size=n) > 0.3).astype(int).to_numpy()
    y_multi = np.array(["AML", "ALL", "CML"])[np.digitize(X["g1"] + 0.3 * rng.normal(size=n), [-0.4, 0.4])]
    return X, y_binary, y_multi


def survival_data(n=160, p=6, seed=0, signal=True):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"g{i}" for i in range(p)])
    risk = 1.5 * X["g0"].to_numpy() - 1.0 * X["g3"].to_numpy() if signal else np.zeros(n)
    time = rng.exponential(np.exp(-risk))
    censor = rng.exponential(3.0, size=n)
    y = np.empty(n, dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = time <= censor, np.minimum(time, censor)
    return X, y


@pytest.mark.parametrize("kind", CLASSIFIERS)
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_classifiers_fit_and_predict_proba(kind, task):
    X, yb, ym = classification_data()
    y = yb if task == "binary" else ym
    pipe, grid = build(cfg(kind), task, {"select_k": 5}, "none", seed=0)
    assert pipe.steps[-1][0] == "model"
    pipe.fit(X, y)
    proba = pipe.predict_proba(X)
    classes = np.unique(y)
    assert proba.shape == (len(X), len(classes))
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert list(pipe.classes_) == list(classes)
    # the planted feature carries the signal
    accuracy = (classes[proba.argmax(axis=1)] == y).mean()
    assert accuracy > 0.7
    imp = feature_importance(pipe, X.columns)
    assert list(imp.columns) == ["feature", "importance"] and sorted(imp["feature"]) == sorted(X.columns)
    assert imp["feature"].iloc[0] == ("g0" if task == "binary" else "g1")
    assert (np.diff(imp["importance"].to_numpy()) <= 0).all()
    assert (imp["importance"] == 0).sum() >= 3  # select_k=5 of 8: three dropped features get 0


@pytest.mark.parametrize("kind", CLASSIFIERS + SURVIVAL)
def test_same_seed_same_predictions(kind):
    if kind in SURVIVAL:
        X, y = survival_data(n=80)
        task = "survival"
    else:
        X, _, y = classification_data(n=60)
        task = "multiclass"
    preds = []
    for _ in range(2):
        pipe, _ = build(cfg(kind), task, {}, "none", seed=7)
        pipe.fit(X, y)
        preds.append(pipe.predict(X) if task == "survival" else pipe.predict_proba(X))
    assert np.array_equal(preds[0], preds[1])


def test_default_grids():
    grids = {kind: build({"kind": kind}, "binary", {}, "none", 0)[1] for kind in CLASSIFIERS}
    grids.update({kind: build({"kind": kind}, "survival", {}, "none", 0)[1] for kind in SURVIVAL})
    assert grids["xgboost"] == {
        "model__max_depth": [2, 3],
        "model__n_estimators": [50, 150],
        "model__learning_rate": [0.1],
    }
    assert grids["elasticnet"] == {"model__C": [0.01, 0.1, 1.0, 10.0], "model__l1_ratio": [0.2, 0.5, 0.8]}
    assert grids["random_forest"] == {"model__max_features": ["sqrt", 0.3], "model__min_samples_leaf": [1, 5]}
    assert grids["svm"] == {"model__kernel": ["linear", "rbf"], "model__C": [0.1, 1.0, 10.0]}
    assert grids["logistic"] == {"model__C": [0.01, 0.1, 1.0, 10.0]}
    assert grids["coxph"] == {"model__penalizer": [0.01, 0.1, 1.0], "model__l1_ratio": [0.0, 0.5]}
    assert grids["xgboost_cox"] == {
        "model__max_depth": [2, 3],
        "model__n_estimators": [50, 150],
        "model__learning_rate": [0.05],
    }
    sweep = list(ParameterGrid(grids["linear_sweep"]))
    assert len(sweep) >= 32
    models = {repr(p["model"].set_params(**{k[7:]: v for k, v in p.items() if k != "model"})) for p in sweep}
    assert len(models) == len(sweep)  # 32 distinct configurations
    assert all(hasattr(p["model"], "predict_proba") for p in sweep)


def test_search_overrides_and_params():
    pipe, grid = build(
        {"kind": "xgboost", "params": {"subsample": 0.8}, "search": {"max_depth": [4]}}, "binary", {}, "none", 3
    )
    assert grid == {"model__max_depth": [4], "model__n_estimators": [50, 150], "model__learning_rate": [0.1]}
    assert pipe.named_steps["model"].subsample == 0.8 and pipe.named_steps["model"].random_state == 3
    with pytest.raises(InputError, match="search.depth"):
        build({"kind": "xgboost", "search": {"depth": [2]}}, "binary", {}, "none", 0)
    with pytest.raises(InputError, match="params.nope"):
        build({"kind": "elasticnet", "params": {"nope": 1}}, "binary", {}, "none", 0)
    with pytest.raises(InputError, match="cannot fit a survival task"):
        build({"kind": "xgboost"}, "survival", {}, "none", 0)
    with pytest.raises(InputError):
        build({"kind": "linear_sweep", "search": {"l1_ratio": [0.1]}}, "binary", {}, "none", 0)


def test_grid_search_runs_on_pipelines():
    X, yb, _ = classification_data(n=60)
    pipe, grid = build({"kind": "linear_sweep", "search": {"C": [0.1, 1.0], "alpha": [1e-3]}}, "binary", {}, "none", 0)
    assert len(ParameterGrid(grid)) == 7
    search = GridSearchCV(pipe, grid, cv=3, scoring="roc_auc").fit(X, yb)
    assert search.best_score_ > 0.8
    params = jsonable_params(search.best_params_)
    assert isinstance(params["model"], str)
    Xs, ys = survival_data(n=80)
    pipe, grid = build(
        {"kind": "coxph", "search": {"penalizer": [0.1, 1.0], "l1_ratio": [0.0]}}, "survival", {}, "none", 0
    )
    search = GridSearchCV(pipe, grid, cv=KFold(3, shuffle=True, random_state=0)).fit(Xs, ys)
    assert search.best_score_ > 0.65  # Harrell's C through estimator.score


def test_xgboost_balances_binary_classes():
    X, _, _ = classification_data(n=60)
    y = np.r_[np.ones(12, int), np.zeros(48, int)]
    est = XGBoostClassifier(n_estimators=5).fit(X, y)
    assert est.xgb_params_["scale_pos_weight"] == 4.0
    assert (
        XGBoostClassifier(n_estimators=5, scale_pos_weight=None).fit(X, y).xgb_params_.get("scale_pos_weight") is None
    )


def _holdout_c(kind, signal):
    X, y = survival_data(n=240, signal=signal, seed=11)
    pipe, _ = build(cfg(kind), "survival", {}, "none", seed=0)
    pipe.fit(X.iloc[:160], y[:160])
    return pipe.score(X.iloc[160:], y[160:])


@pytest.mark.parametrize("kind", SURVIVAL)
def test_survival_c_index_signal_and_noise(kind):
    assert _holdout_c(kind, signal=True) > 0.7
    assert abs(_holdout_c(kind, signal=False) - 0.5) < 0.1


@pytest.mark.parametrize("kind", SURVIVAL)
def test_survival_functions(kind):
    X, y = survival_data(n=100)
    est = (CoxPH() if kind == "coxph" else XGBoostCox(n_estimators=30)).fit(X.to_numpy(), y)
    times = np.quantile(y["time"], [0.1, 0.5, 0.9])
    surv = est.predict_survival(X.to_numpy(), times)
    assert surv.shape == (100, 3) and ((surv >= 0) & (surv <= 1)).all()
    assert (np.diff(surv, axis=1) <= 0).all()  # non-increasing in t
    # higher risk, lower survival
    risk = est.predict(X.to_numpy())
    assert surv[np.argmax(risk), 1] < surv[np.argmin(risk), 1]
    fns = est.predict_survival_function(X.to_numpy()[:2])
    assert np.isclose(fns[0](times[1]), surv[0, 1])
    assert est.score(X.to_numpy(), y) == harrell_c(y, risk)


def test_coxph_agrees_with_lifelines():
    from lifelines import CoxPHFitter

    X, y = survival_data(n=100)
    est = CoxPH(penalizer=0.1).fit(X.to_numpy(), y)
    frame = X.copy()
    frame["T"], frame["E"] = y["time"], y["event"].astype(int)
    ref = CoxPHFitter(penalizer=0.1).fit(frame, "T", "E")
    assert np.allclose(est.coef_, ref.params_[X.columns].to_numpy())
    times = np.sort(y["time"])[[5, 40, 80]]  # lifelines interpolates between times; we use the step function
    expected = ref.predict_survival_function(X, times=times).to_numpy().T
    assert np.allclose(est.predict_survival(X.to_numpy(), times), expected, atol=1e-8)
    assert np.allclose(est.predict(X.to_numpy()), ref.predict_log_partial_hazard(X).to_numpy())


def test_importance_maps_through_column_transformer_and_filters():
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.poisson(50, size=(60, 12)).astype(float), columns=[f"G{i}" for i in range(12)])
    y = (np.arange(60) % 2).astype(int)
    X["G4"] += 60 * y  # planted count signal
    X["age"] = rng.normal(60, 5, 60)
    pre = {"top_variance": 6, "select_k": 4}
    pipe, _ = build(cfg("elasticnet"), "binary", pre, "vst", 0, covariates=["age"])
    pipe.fit(X, y)
    imp = feature_importance(pipe, X.columns)
    assert sorted(imp["feature"]) == sorted(X.columns)
    assert imp["feature"].iloc[0] == "G4"
    assert (imp["importance"] > 0).sum() <= 4


@pytest.mark.parametrize(
    "kind,configured,width,expected",
    [
        ("xgboost", None, 600, 200),  # a tree model on a wide input: the kind's default screen
        ("random_forest", None, 600, 200),
        ("xgboost_cox", None, 201, 200),
        ("xgboost", None, 200, None),  # not wider than the screen: no selection step at all
        ("xgboost", "all", 600, None),  # the user keeps every feature
        ("xgboost", 40, 600, 40),  # the user's number wins
        ("elasticnet", None, 600, None),  # linear models have no default screen
    ],
)
def test_tree_models_screen_wide_inputs_unless_told_otherwise(kind, configured, width, expected):
    task = "survival" if kind == "xgboost_cox" else "binary"
    pipe, _ = build({"kind": kind}, task, {"select_k": configured}, "none", 0, n_features=width)
    select = dict(pipe.steps).get("select")
    assert (None if select is None else select.k) == expected


def test_the_wide_input_screen_keeps_the_genes_with_signal_in_fold(caplog):
    from metasig.learn.job import job_pipeline

    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(120, 700)), columns=[f"g{i}" for i in range(700)])
    y = (X["g5"] + X["g600"] > 0).astype(int).to_numpy()
    with caplog.at_level("INFO", logger="metasig.learn.models"):
        pipe, _ = job_pipeline(X, "binary", {"kind": "xgboost", "params": {"n_estimators": 5}}, {}, "none", 0)
    assert "xgboost on 700 features: each training fold keeps the 200" in caplog.text
    kept = pipe.fit(X, y)[:-1].get_feature_names_out()
    assert len(kept) == 200 and {"g5", "g600"} <= set(kept)
