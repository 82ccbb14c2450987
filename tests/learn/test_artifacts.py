import hashlib
import json
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from conftest import SMALL_GRIDS as SMALL
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from metasig.errors import InputError
from metasig.learn.artifacts import TRUSTED_TYPES, load_artifact, save_artifact, skops_bytes
from metasig.learn.models import build

PREPROCESSING = {"min_mean": 1.0, "top_variance": 8, "select_k": 5, "scale": True}
CASES = [
    ("xgboost", "binary"),
    ("xgboost", "multiclass"),
    ("elasticnet", "binary"),
    ("elasticnet", "multiclass"),
    ("linear_sweep", "binary"),
    ("random_forest", "multiclass"),
    ("svm", "binary"),  # these three with in-fold PCA (their model's own preprocessing)
    ("svm", "multiclass"),
    ("logistic", "multiclass"),
    ("coxph", "survival"),
    ("xgboost_cox", "survival"),
]


def make_data(n=60, p=10, seed=0):
    """Counts-like genes (for VST) plus a covariate with a missing value, and all three targets."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.poisson(30, size=(n, p)).astype(float), columns=[f"G{i}" for i in range(p)])
    X["G0"] += rng.poisson(40, size=n) * (np.arange(n) % 2)
    X["age"] = rng.normal(60, 8, size=n)
    X.loc[2, "age"] = np.nan
    X.index = [f"S{i}" for i in range(n)]
    y = {
        "binary": (np.arange(n) % 2).astype(int),
        "multiclass": np.array(["LumA", "Basal", "Her2"])[np.arange(n) % 3],
    }
    surv = np.empty(n, dtype=[("event", bool), ("time", float)])
    surv["event"], surv["time"] = rng.random(n) < 0.7, rng.exponential(np.exp(-(X["G0"] > 40)), size=n)
    y["survival"] = surv
    return X, y


def fitted(kind, task, seed=0):
    X, y = make_data()
    params = {"n_estimators": 30} if kind == "random_forest" else {}
    model = {"kind": kind, "params": params, "search": SMALL[kind]}
    if kind in ("svm", "logistic"):
        model["preprocessing"] = {"pca": 3}
    pipe, _ = build(model, task, PREPROCESSING, "vst", seed, covariates=["age"])
    return pipe.fit(X, y[task]), X


def direct_prediction(pipe, X, task):
    if task == "survival":
        return pipe[-1].predict(pipe[:-1].transform(X))
    return pipe.predict_proba(X)


def loaded_prediction(artifact, X, task):
    if task == "survival":
        return artifact.predict_risk(X).to_numpy()
    return artifact.predict_proba(X).to_numpy()


@pytest.mark.parametrize("kind,task", CASES)
def test_round_trip_gives_identical_predictions(tmp_path, kind, task):
    pipe, X = fitted(kind, task)
    written = save_artifact(pipe, tmp_path, list(X.columns), task, kind)
    names = sorted(p.name for p in written)
    assert "SHA256SUMS" in names and "features.json" in names and "preprocessing.skops" in names
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.pickle"))
    artifact = load_artifact(tmp_path)
    assert artifact.features == list(X.columns) and artifact.task_kind == task
    # columns are matched by name: shuffle them and add an unrelated one
    shuffled = X[X.columns[::-1]].assign(extra=1.0)
    assert np.array_equal(loaded_prediction(artifact, shuffled, task), direct_prediction(pipe, X, task))
    if task == "survival":
        surv = artifact.predict_survival(X, [0.5, 1.0])
        assert surv.shape == (len(X), 2) and ((surv.to_numpy() >= 0) & (surv.to_numpy() <= 1)).all()
        assert np.allclose(surv.to_numpy(), pipe[-1].predict_survival(pipe[:-1].transform(X), [0.5, 1.0]))
    else:
        assert artifact.classes == [str(c) for c in pipe.classes_]
    # the checksum file covers every other file, in sha256sum format
    lines = (tmp_path / "SHA256SUMS").read_text().splitlines()
    assert sorted(line.split("  ")[1] for line in lines) == [n for n in names if n != "SHA256SUMS"]
    for line in lines:
        digest, name = line.split("  ")
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest


def test_sgd_member_of_linear_sweep_round_trips(tmp_path):
    X, y = make_data()
    pipe, _ = build({"kind": "linear_sweep"}, "binary", {}, "log2p1", 0)
    pipe.set_params(model=SGDClassifier(loss="modified_huber", alpha=1e-3, random_state=0))
    pipe.fit(X, y["binary"])
    save_artifact(pipe, tmp_path, list(X.columns), "binary", "linear_sweep", classes=["neg", "pos"], positive="pos")
    artifact = load_artifact(tmp_path)
    out = artifact.predict_proba(X)
    assert list(out.columns) == ["neg", "pos"] and artifact.positive == "pos"
    assert np.array_equal(out.to_numpy(), pipe.predict_proba(X))


def test_multiclass_columns_follow_given_class_order(tmp_path):
    pipe, X = fitted("elasticnet", "multiclass")
    save_artifact(pipe, tmp_path, list(X.columns), "multiclass", "elasticnet", classes=["LumA", "Her2", "Basal"])
    out = load_artifact(tmp_path).predict_proba(X)
    assert list(out.columns) == ["LumA", "Her2", "Basal"]
    direct = pd.DataFrame(pipe.predict_proba(X), columns=pipe.classes_, index=X.index)
    pd.testing.assert_frame_equal(out, direct[["LumA", "Her2", "Basal"]])


def test_missing_feature_is_named(tmp_path):
    pipe, X = fitted("coxph", "survival")
    save_artifact(pipe, tmp_path, list(X.columns), "survival", "coxph")
    with pytest.raises(InputError, match="G3"):
        load_artifact(tmp_path).predict_risk(X.drop(columns=["G3"]))


@pytest.mark.parametrize("victim", ["preprocessing.skops", "model.json", "artifact.json", "features.json"])
def test_tampered_file_is_refused(tmp_path, victim):
    pipe, X = fitted("xgboost", "binary")
    save_artifact(pipe, tmp_path, list(X.columns), "binary", "xgboost")
    path = tmp_path / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        load_artifact(tmp_path)
    assert victim in str(err.value) and "checksum mismatch" in str(err.value)


def test_missing_or_incomplete_checksums_are_refused(tmp_path):
    pipe, X = fitted("random_forest", "multiclass")
    save_artifact(pipe, tmp_path, list(X.columns), "multiclass", "random_forest")
    sums = tmp_path / "SHA256SUMS"
    lines = sums.read_text().splitlines()
    sums.write_text("".join(f"{line}\n" for line in lines if not line.endswith("model.skops")))
    with pytest.raises(InputError, match="model.skops"):
        load_artifact(tmp_path)
    sums.unlink()
    with pytest.raises(InputError, match="SHA256SUMS"):
        load_artifact(tmp_path)


def test_skops_types_are_all_on_the_allowlist():
    seen = set()
    for kind, task in CASES:
        pipe, _ = fitted(kind, task)
        seen |= set(sio.get_untrusted_types(data=skops_bytes(pipe[:-1])))
        if kind in ("elasticnet", "linear_sweep", "random_forest", "svm", "logistic"):
            seen |= set(sio.get_untrusted_types(data=skops_bytes(pipe[-1])))
    assert seen <= set(TRUSTED_TYPES), sorted(seen - set(TRUSTED_TYPES))
    assert "metasig.learn.preprocess.DESeq2VST" in seen  # the check did see our own types
    assert {"metasig.learn.preprocess.InFoldPCA", "metasig.learn.svm.SVMClassifier"} <= seen


class Shift(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """A harmless transformer skops does not know: loading it must need an explicit trust."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float) + 1.0


def test_types_off_the_allowlist_are_refused(tmp_path):
    X, y = make_data()
    pipe = Pipeline([("shift", Shift()), ("scale", StandardScaler()), ("model", SGDClassifier(loss="log_loss"))])
    pipe.fit(X.fillna(0), y["binary"])
    save_artifact(pipe, tmp_path, list(X.columns), "binary", "linear_sweep")
    with pytest.raises(InputError, match="refusing to load"):
        load_artifact(tmp_path)


def test_no_pickle_on_save_or_load(tmp_path, monkeypatch):
    pipe, X = fitted("random_forest", "binary")

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("dump", "dumps", "load", "loads"):
        monkeypatch.setattr(pickle, name, forbidden)
    save_artifact(pipe, tmp_path, list(X.columns), "binary", "random_forest")
    assert np.array_equal(load_artifact(tmp_path).predict_proba(X).to_numpy(), pipe.predict_proba(X))
    for skops_file in tmp_path.glob("*.skops"):
        names = zipfile.ZipFile(skops_file).namelist()
        assert all(n == "schema.json" or n.endswith(".npy") for n in names)


def test_saved_bytes_are_reproducible(tmp_path):
    """Same data and seed -> identical files, also from a fresh interpreter (object ids, hash
    seeds and timestamps differ there)."""
    for task, kind in (("binary", "random_forest"), ("survival", "xgboost_cox")):
        a, b = tmp_path / f"{kind}_a", tmp_path / f"{kind}_b"
        pipe, X = fitted(kind, task)
        save_artifact(pipe, a, list(X.columns), task, kind)
        pipe2, _ = fitted(kind, task)
        save_artifact(pipe2, b, list(X.columns), task, kind)
        assert (a / "SHA256SUMS").read_bytes() == (b / "SHA256SUMS").read_bytes()
    c = tmp_path / "random_forest_c"
    code = (
        "import sys; sys.path[:0] = sys.argv[2:];"
        "from test_artifacts import fitted; from metasig.learn.artifacts import save_artifact;"
        "pipe, X = fitted('random_forest', 'binary');"
        "save_artifact(pipe, sys.argv[1], list(X.columns), 'binary', 'random_forest')"
    )
    here = __import__("pathlib").Path(__file__).parent  # this module, and conftest one folder up
    subprocess.run(
        [sys.executable, "-c", code, str(c), str(here), str(here.parent)],
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert (c / "SHA256SUMS").read_bytes() == (tmp_path / "random_forest_a" / "SHA256SUMS").read_bytes()


def test_artifact_json_records_what_the_server_needs(tmp_path):
    pipe, X = fitted("xgboost_cox", "survival")
    save_artifact(pipe, tmp_path, list(X.columns), "survival", "xgboost_cox")
    record = json.loads((tmp_path / "artifact.json").read_text())
    assert record["model_kind"] == "xgboost_cox" and record["task_kind"] == "survival"
    assert record["estimator_file"] == "model.json" and record["baseline_file"] == "baseline_hazard.json"
    assert record["created_with"]["xgboost"] and record["created_with"]["scikit-learn"]
    assert json.loads((tmp_path / "features.json").read_text()) == list(X.columns)
