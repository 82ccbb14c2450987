"""Preprocessing settings merge global < dataset < model, `pca` and the svm kernel are checked
before any job runs, and the seed examples build the seeds' pipelines (issue 13)."""

from copy import deepcopy

import pytest
import yaml
from conftest import REPO

from metasig import config as mconfig
from metasig.errors import InputError
from metasig.learn.models import build


def example(name):
    return yaml.safe_load((REPO / "config" / "examples" / f"{name}.yaml").read_text())


def pipeline_steps(config, dataset, model):
    """The step names of the pipeline a training job of (dataset, model) builds, as the rule does."""
    pipe, _ = build(
        mconfig.model_settings(config, model),
        "multiclass",
        mconfig.preprocessing_settings(config, dataset),
        mconfig.normalization(config, dataset),
        config["seed"],
    )
    return [name for name, _ in pipe.steps]


def test_a_datasets_preprocessing_keeps_the_global_settings_it_does_not_name():
    cfg = example("pancancer_5types")  # global top_variance: 2000
    cfg["datasets"]["pancancer"]["preprocessing"] = {"select_k": 50}
    checked = mconfig.check(cfg, "x.yaml")
    assert "preprocessing" not in checked["models"]["elasticnet"]  # nothing filled in to override with
    settings = mconfig.preprocessing_settings(checked, "pancancer")
    assert settings["top_variance"] == 2000 and settings["select_k"] == 50 and settings["pca"] is None


def test_seed_examples_build_the_seeds_pipelines():
    pancancer = mconfig.check(example("pancancer_5types"), "pancancer_5types.yaml")
    assert pipeline_steps(pancancer, "pancancer", "pca_svm") == ["impute", "scale", "pca", "model"]
    assert pipeline_steps(pancancer, "pancancer", "random_forest") == ["top_variance", "impute", "scale", "model"]
    leukemia = mconfig.check(example("leukemia_gse28497"), "leukemia_gse28497.yaml")
    assert pipeline_steps(leukemia, "leukemia", "pca_logistic") == ["impute", "scale", "pca", "model"]
    assert pancancer["models"]["pca_svm"]["kind"] == "svm" and leukemia["models"]["pca_logistic"]["kind"] == "logistic"


@pytest.mark.parametrize(
    "where,value,message",
    [
        (("preprocessing", "pca"), 1.5, "neither a number of components"),
        (("datasets", "pancancer", "preprocessing", "pca"), 0, "less than or equal to the minimum of 0"),
        (("models", "pca_svm", "preprocessing", "pca"), "ten", "not of type"),
        (("models", "pca_svm", "params"), {"kernel": "poly"}, "kernel 'poly' is not supported"),
        (("models", "pca_svm", "search"), {"kernel": ["rbf", "sigmoid"]}, "kernel 'sigmoid' is not supported"),
    ],
)
def test_bad_pca_or_kernel_is_named(where, value, message):
    cfg = deepcopy(example("pancancer_5types"))
    node = cfg
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = value
    with pytest.raises(InputError, match=message) as err:
        mconfig.check(cfg, "bad.yaml")
    assert "bad.yaml" in str(err.value) and where[0] in str(err.value)


@pytest.mark.parametrize("value,ok", [("all", True), (None, True), (300, True), ("every", False), (0, False)])
def test_select_k_takes_a_number_all_or_null(value, ok):
    cfg = deepcopy(example("pancancer_5types"))
    cfg["preprocessing"]["select_k"] = value
    if ok:
        assert mconfig.check(cfg, "x.yaml")["preprocessing"]["select_k"] == value
    else:
        with pytest.raises(InputError, match="select_k") as err:
            mconfig.check(cfg, "x.yaml")
        assert "x.yaml" in str(err.value)
