"""A generated study of hundreds of models plans as few cluster submissions as the SLURM profile
promises (metasig.bench.dag; `python -m metasig.bench.dag` does the same at 5,000 models)."""

import pytest
import yaml
from workflow import workflow_copy

from metasig import config as mconfig
from metasig.bench import dag as scale

pytestmark = pytest.mark.e2e


def test_generated_study_is_a_valid_config_with_the_asked_jobs(tmp_path):
    workdir = workflow_copy(tmp_path)
    path = scale.generate(workdir, n_sets=30, n_tasks=2, n_models=5, seed=3)
    config = mconfig.check(yaml.safe_load((workdir / path).read_text()), path, base_dir=workdir)
    jobs = mconfig.jobs(config, base_dir=workdir)
    assert len(jobs) == 30 * 2 * 5
    assert len({g for _, _, g, _ in jobs}) == 30
    kinds = [config["models"][m]["kind"] for m in config["models"]]
    assert kinds == ["elasticnet", "xgboost", "random_forest", "linear_sweep", "elasticnet"]
    # the sets are drawn from the builtin table's features, so every one resolves
    gmt = mconfig.read_gmt(workdir / scale.STUDY_DIR / "sets.gmt")
    assert all(3 <= len(genes) <= 10 for genes in gmt.values())
    assert {g for genes in gmt.values() for g in genes} <= set(scale.wdbc_features())


def test_500_models_plan_a_handful_of_submissions(tmp_path):
    workdir = workflow_copy(tmp_path)
    summary = scale.measure(workdir, n_sets=125, n_tasks=1, n_models=4)
    assert summary["training_jobs"] == 500
    # + load, normalize, gene groups, QC, gate, 5 plots, leaderboard, register, all (MLflow off)
    assert summary["total_jobs"] == 500 + 13
    # Without bundling every job but `all` is one sbatch; with it, training goes 100 jobs per
    # cluster job and a dataset's preparation is one: 5 + 1 + the 8 summary steps.
    assert summary["submissions_ungrouped"] == summary["total_jobs"] - 1
    assert summary["submissions_grouped"] == 5 + 1 + 8
    assert summary["dry_run_s_grouped"] < 60
