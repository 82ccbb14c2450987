"""The served model's fast path is used only when it matches the artifact's own predictions."""

import json

import numpy as np
import pandas as pd
import pytest
from serve_fixtures import STANDARD, build_registry

from metasig.serve.model import ServedModel
from metasig.serve.repository import Repository


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return Repository(build_registry(tmp_path_factory.mktemp("model"), STANDARD))


def names(repo):
    return sorted(repo.entries)


def test_fast_path_is_on_and_exact_for_every_standard_model(repo):
    rng = np.random.default_rng(11)
    for name in names(repo):
        model = ServedModel.load(repo.resolve(name))
        assert model._fast is not None, name
        X = rng.normal(5.0, 3.0, size=(50, model.n_features))
        fast, reference = model.predict(X), model.reference_predict(X)
        assert fast.keys() == reference.keys()
        for key in reference:
            assert np.array_equal(fast[key], reference[key]), (name, key)


def test_fast_path_that_disagrees_is_switched_off(repo, monkeypatch):
    entry = repo.resolve("nsclc.survival.metagene_19.coxph")  # linear: any change shows
    real = ServedModel._fast_steps

    def off_by_a_bit(self):
        steps = real(self)
        return [(mean + 1e-9, scale) for mean, scale in steps]

    monkeypatch.setattr(ServedModel, "_fast_steps", off_by_a_bit)
    model = ServedModel.load(entry)
    assert model._fast is None
    X = np.full((2, 3), 4.0)
    assert np.array_equal(model.predict(X)["risk"], model.reference_predict(X)["risk"])


def test_memory_estimate_covers_uncompressed_artifact(repo):
    entry = repo.resolve("brca.subtype.ALL.elasticnet")
    model = ServedModel.load(entry)
    on_disk = sum(p.stat().st_size for p in entry.path.iterdir())
    assert model.nbytes > on_disk  # skops members are counted uncompressed, times the factor
    assert json.loads((entry.path / "features.json").read_text()) == model.features


def test_svm_and_logistic_serve_and_pca_takes_the_reference_path(tmp_path):
    """An SVM behind in-fold PCA and a plain logistic regression load, pass the load-time check and
    answer what their artifacts answer; PCA is not an imputer or a scaler, so that model never
    takes the fast path, the logistic regression (imputer + scaler only) does."""
    features = ["G0", "G1", "G2", "G3", "G4", "G5"]
    common = {"dataset": "seed", "group": "ALL", "features": features}
    specs = [
        {**common, "task": "type", "model": "pca_svm", "kind": "svm", "task_kind": "multiclass", "pca": 3},
        {**common, "task": "status", "model": "logistic", "kind": "logistic", "task_kind": "binary"},
    ]
    repo = Repository(build_registry(tmp_path, specs))
    X = np.random.default_rng(5).normal(5.0, 2.0, size=(20, len(features)))
    for name, fast in (("seed.type.ALL.pca_svm", False), ("seed.status.ALL.logistic", True)):
        model = ServedModel.load(repo.resolve(name))
        assert (model._fast is not None) == fast, name
        out = model.predict(X)
        expected = model.artifact.predict_proba(pd.DataFrame(X, columns=features)).to_numpy()
        assert np.array_equal(out["probabilities"], expected)
        assert np.allclose(out["probabilities"].sum(axis=1), 1.0)
