"""The cluster profiles without a cluster: what they plan (dry runs), how memory grows on retry,
how GPU models are routed and how XGBoost falls back to the CPU; and that a local run ignores
the groups the cluster profiles bundle jobs with. The real cluster: test_slurm_workflow.py."""

import logging
import re

import numpy as np
import pytest
import yaml
from workflow import REPO, clean_checkout, snakemake, workflow_copy

from metasig import config as mconfig
from metasig.errors import InputError
from metasig.learn import job_memory, survival, xgb

pytestmark = pytest.mark.e2e  # runs Snakemake

SMALL = ["--configfile", "resources/test_configs/small.yaml"]
PROFILES = ["slurm", "slurm-gpu"]


def profile(name):
    return yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())


def dry_run(*args):
    """The output of a dry run of the small study."""
    return snakemake(clean_checkout(), "-n", *SMALL, *args).stdout


def job_resources(out, rule):
    """The resources line of each job of `rule` in a dry run's output."""
    return re.findall(rf"rule {rule}:\n(?:\s+\w+: .*\n)*?\s+resources: (.*)", out)


@pytest.mark.parametrize("name", PROFILES)
def test_profile_names_real_rules_and_placeholders_only(name):
    settings = profile(name)
    rules = set(snakemake(clean_checkout(), "--list-rules").stdout.split())
    assert set(settings["set-resources"]) <= rules, set(settings["set-resources"]) - rules
    assert set(settings["groups"]) <= rules
    assert settings["executor"] == "slurm" and settings["retries"] == 2
    # A user edits partition (and account) names only; accounts stay commented out: the plugin
    # validates them against sacct, which needs slurmdbd.
    assert settings["default-resources"]["slurm_partition"] == "cpu"
    assert "slurm_account" not in settings["default-resources"]
    text = (REPO / "profiles" / name / "config.yaml").read_text()
    assert re.search(r"#\s*slurm_account:", text)


@pytest.mark.parametrize("name", PROFILES)
def test_dry_run_bundles_training_and_preparation(name):
    out = dry_run("--profile", f"profiles/{name}")
    groups = re.findall(r"Group job (\S+) \(jobs", out)
    # small.yaml: 3 datasets -> 3 prep bundles; 7 models -> 1 bundle (2 with GPU: 3 XGBoost)
    expected = ["prep", "prep", "prep", "train"] + (["train_gpu"] if name == "slurm-gpu" else [])
    assert sorted(groups) == expected
    assert "slurm_partition=cpu" in out


def test_gpu_profile_routes_only_xgboost_to_the_gpu_rule():
    out = dry_run("--profile", "profiles/slurm-gpu")
    gpu_jobs = re.findall(r"rule train_gpu:\n(?:.*\n)*?\s+wildcards: .*model=(\w+)", out)
    cpu_jobs = re.findall(r"rule train:\n(?:.*\n)*?\s+wildcards: .*model=(\w+)", out)
    assert sorted(gpu_jobs) == ["xgboost", "xgboost", "xgboost_cox"]
    assert sorted(cpu_jobs) == ["coxph", "elasticnet", "elasticnet", "elasticnet"]
    for line in job_resources(out, "train_gpu"):
        assert "gpu=1" in line and "slurm_partition=gpu" in line, line
    for line in job_resources(out, "train"):
        assert "gpu" not in line.replace("slurm_partition=cpu", ""), line
    # The CPU profile keeps every model in rule train.
    assert "rule train_gpu:" not in dry_run("--profile", "profiles/slurm")


def test_gpu_profile_routes_xgboost_random_sets_to_the_gpu(tmp_path):
    """The random-gene-set control of an XGBoost model runs where its training does: on a GPU."""
    config = yaml.safe_load((REPO / "resources" / "test_configs" / "small.yaml").read_text())
    (name, dataset), *_ = config["datasets"].items()
    task, spec = next((t, s) for t, s in dataset["tasks"].items() if "xgboost" in s["models"])
    spec["random_sets"] = {"count": 2, "models": ["xgboost"]}
    small = tmp_path / "random_sets.yaml"
    small.write_text(yaml.safe_dump(config))
    out = dry_run("--profile", "profiles/slurm-gpu", "--configfile", str(small))
    jobs = job_resources(out, "random_sets_gpu")
    assert jobs and all("gpu=1" in line and "slurm_partition=gpu" in line for line in jobs), jobs
    gpu_models = re.findall(r"rule random_sets_gpu:\n(?:.*\n)*?\s+wildcards: .*model=(\w+)", out)
    cpu_models = re.findall(r"rule random_sets:\n(?:.*\n)*?\s+wildcards: .*model=(\w+)", out)
    assert gpu_models == ["xgboost"] and "xgboost" not in cpu_models


def test_memory_and_runtime_grow_with_each_retry():
    """The training jobs' memory is the rule's own (the profiles set only their runtime): in a dry
    run, before the tables exist, job_memory's floor, times the attempt."""
    for attempt, runtime in [(1, 10), (3, 30)]:
        out = dry_run("--profile", "profiles/slurm", "--attempt", str(attempt))
        lines = job_resources(out, "train")
        mem = job_memory.FLOOR_MB * attempt
        assert lines and all(f"mem_mb={mem}," in line and f"runtime={runtime}" in line for line in lines), lines
    out = dry_run("--attempt", "2")
    assert all(f"mem_mb={2 * job_memory.FLOOR_MB}," in line for line in job_resources(out, "train"))


def test_device_config_reaches_only_xgboost_models():
    config = {
        "device": "cuda",
        "models": {
            "x": {"kind": "xgboost"},
            "c": {"kind": "xgboost_cox", "params": {"max_depth": 2}},
            "e": {"kind": "elasticnet"},
            "own": {"kind": "xgboost", "params": {"device": "cpu"}},
        },
    }
    assert mconfig.model_settings(config, "x") == {"kind": "xgboost", "params": {"device": "cuda"}}
    assert mconfig.model_settings(config, "c")["params"] == {"max_depth": 2, "device": "cuda"}
    assert mconfig.model_settings(config, "e") == {"kind": "elasticnet"}
    assert [m for m in config["models"] if mconfig.uses_gpu(config, m)] == ["x", "c"]
    # the default device leaves model configs untouched, so existing results are not rerun
    assert mconfig.model_settings({**config, "device": "cpu"}, "x") is config["models"]["x"]
    small = yaml.safe_load((REPO / SMALL[1]).read_text())
    mconfig.check_schema({**small, "device": "cuda"})
    with pytest.raises(InputError, match="device"):
        mconfig.check_schema({**small, "device": "tpu"})


@pytest.fixture
def fresh_device_probe():
    xgb.xgb_device.cache_clear()
    yield
    xgb.xgb_device.cache_clear()


def test_cuda_without_a_visible_gpu_trains_on_cpu_and_says_why(fresh_device_probe, monkeypatch, caplog):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with caplog.at_level(logging.WARNING, logger="metasig.learn.xgb"):
        assert xgb.xgb_device("cuda") == "cpu"
    assert "device cuda requested but no GPU is visible (CUDA_VISIBLE_DEVICES='')" in caplog.text
    assert xgb.xgb_device("cpu") == "cpu"


def test_cuda_fallback_predicts_exactly_as_cpu(fresh_device_probe, monkeypatch, caplog):
    """On a machine without a usable GPU (as here, or a GPU job whose device is fake), the probe
    fit decides, the reason is logged and the model equals the CPU one."""
    import xgboost

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(80, 4)), rng.integers(0, 2, 80)
    with caplog.at_level(logging.INFO, logger="metasig.learn.xgb"):
        on_cuda = xgb.XGBoostClassifier(n_estimators=20, device="cuda").fit(X, y)
    on_cpu = xgb.XGBoostClassifier(n_estimators=20).fit(X, y)
    if xgb.xgb_device("cuda") != "cpu":
        pytest.skip(f"a GPU is usable here (xgboost {xgboost.__version__}); the fallback is not exercised")
    assert "training on the CPU instead" in caplog.text
    assert np.array_equal(on_cuda.predict_proba(X), on_cpu.predict_proba(X))
    cox = survival.XGBoostCox(n_estimators=20, device="cuda")
    assert cox.get_params()["device"] == "cuda"  # a settable parameter, so `params: {device: ...}` works


@pytest.mark.e2e
def test_local_run_ignores_the_cluster_groups(tmp_path):
    """Groups only bundle cluster submissions: with the same bundling settings, a dry run plans a
    group job, and a local run executes the same jobs one by one."""
    workdir = workflow_copy(tmp_path)
    targets = [f"results/models/wdbc/malignancy/size/{m}/metrics.json" for m in ("elasticnet", "xgboost")]
    bundling = [
        "--group-components",
        "train=100",
        "--groups",
        "load_dataset=prep",
        "normalize=prep",
        "gene_groups=prep",
    ]
    planned = snakemake(workdir, *targets, *SMALL, "-n", *bundling).stdout
    assert re.findall(r"Group job (\S+) \(jobs", planned) == ["prep", "train"]
    ran = snakemake(workdir, *targets, *SMALL, *bundling)
    output = ran.stdout + ran.stderr
    assert not re.search(r"group job", output, re.I), output[-3000:]
    assert len(re.findall(r"^localrule train:$", output, re.M)) == 2  # each its own local job
    assert len(re.findall(r"Finished jobid: \d+ \(Rule: train\)", output)) == 2
