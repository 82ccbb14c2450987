"""The workflow end to end on a small config: outputs, report, rerun behaviour, determinism."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from workflow import REPO, planned_jobs, snakemake, workflow_copy

SMALL = ["--configfile", "resources/test_configs/small.yaml"]


def test_default_dag_dry_runs():
    jobs = planned_jobs(REPO)
    # wdbc: 3 groups x 4 models; gse7390: 3 groups x 2 models; simreads: 2 groups x 1 model
    assert jobs["train"] == 3 * 4 + 3 * 2 + 2 * 1
    assert jobs["fastp_pe"] == jobs["salmon_quant"] == 16 and jobs["salmon_index"] == 1
    for rule in ("load_dataset", "normalize", "gene_groups", "gate", "register", "mlflow", "leaderboard",
                 "simulate_simreads", "validate_reads", "mapping_qc", "multiqc", "tpm_matrix"):
        assert rule in jobs


def test_lint_and_format_are_clean():
    lint = snakemake(REPO, "--lint", check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    snakefmt = Path(sys.executable).with_name("snakefmt")
    fmt = subprocess.run([snakefmt, "--check", "Snakefile", "rules"], cwd=REPO, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    workdir = workflow_copy(tmp_path_factory.mktemp("small"))
    snakemake(workdir, *SMALL)
    return workdir


def test_small_study_produces_every_output(small_run):
    board = pd.read_csv(small_run / "results" / "leaderboard.tsv", sep="\t")
    assert len(board) == 2 * 2 + 1 * 2
    for column in ("roc_auc", "roc_auc_ci_low", "roc_auc_ci_high", "accuracy", "permuted_roc_auc", "c_index", "gate_passed", "gate_reason"):
        assert column in board.columns, column
    wdbc = board[board.dataset == "wdbc"]
    assert (wdbc.roc_auc > 0.9).all() and (wdbc.permuted_roc_auc.between(0.3, 0.7)).all()
    assert wdbc.gate_passed.all()

    index = json.loads((small_run / "results" / "registry" / "index.json").read_text())
    names = {m["name"] for m in index["models"]}
    assert "wdbc.malignancy.ALL.xgboost" in names
    registered = small_run / "results" / "registry" / index["models"][0]["path"]
    assert (registered / "SHA256SUMS").is_file() and (registered / "model_card.md").is_file()
    assert not list(registered.rglob("*.pkl"))

    logged = json.loads((small_run / "results" / "mlflow" / "logged.json").read_text())
    assert len(logged["registered"]) == len(index["models"])
    for fig in ("leaderboard", "roc_pr", "confusion", "calibration", "importance"):
        assert (small_run / "results" / "plots" / "wdbc" / "malignancy" / f"{fig}.svg").stat().st_size > 1000
    assert (small_run / "results" / "plots" / "gse7390" / "metastasis" / "km.svg").is_file()


def test_report_is_built(small_run):
    snakemake(small_run, *SMALL, "--report", "results/report.html")
    assert (small_run / "results" / "report.html").stat().st_size > 10_000


def test_rerun_does_nothing_and_deleting_one_model_rebuilds_only_it(small_run):
    assert planned_jobs(small_run, *SMALL) == {}
    one = small_run / "results" / "models" / "wdbc" / "malignancy" / "size" / "xgboost"
    before = (one / "metrics.json").read_bytes()
    shutil.rmtree(one)
    jobs = planned_jobs(small_run, *SMALL)
    assert jobs["train"] == 1
    assert "load_dataset" not in jobs and "normalize" not in jobs
    snakemake(small_run, *SMALL)
    assert (one / "metrics.json").read_bytes() == before, "two runs gave different metrics"
