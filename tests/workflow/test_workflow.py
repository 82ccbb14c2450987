"""The workflow end to end on a small config: outputs, report, rerun behaviour, determinism."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from workflow import REPO, clean_checkout, planned_jobs, snakemake, workflow_copy

pytestmark = pytest.mark.e2e  # runs Snakemake

SMALL = ["--configfile", "resources/test_configs/small.yaml"]


def test_default_dag_dry_runs():
    jobs = planned_jobs(clean_checkout())
    # wdbc: 3 groups x 4 models; gse7390: 3 groups x 2 models; simreads: 2 groups x 1 model
    assert jobs["train"] == 3 * 4 + 3 * 2 + 2 * 1
    assert jobs["fastp_pe"] == jobs["salmon_quant"] == 16 and jobs["salmon_index"] == 1
    # the random-gene-set control: wdbc's mean and worst groups x elasticnet, one figure for the task
    assert jobs["random_sets"] == 2 and jobs["plot_random_sets"] == 1
    for rule in (
        "load_dataset",
        "normalize",
        "gene_groups",
        "gate",
        "register",
        "mlflow",
        "leaderboard",
        "simulate_simreads",
        "validate_reads",
        "mapping_qc",
        "multiqc",
        "tpm_matrix",
    ):
        assert rule in jobs


def test_lint_and_format_are_clean():
    lint = snakemake(clean_checkout(), "--lint", check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    snakefmt = Path(sys.executable).with_name("snakefmt")
    fmt = subprocess.run([snakefmt, "--check", "Snakefile", "rules"], cwd=REPO, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    ruff = Path(sys.executable).with_name("ruff")
    for check in (["check", "."], ["format", "--check", "."]):
        proc = subprocess.run([ruff, *check], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    workdir = workflow_copy(tmp_path_factory.mktemp("small"))
    snakemake(workdir, *SMALL)
    return workdir


def test_small_study_produces_every_output(small_run):
    board = pd.read_csv(small_run / "results" / "leaderboard.tsv", sep="\t")
    assert len(board) == 2 * 2 + 1 * 2 + 1  # wdbc, gse7390, wdbc_counts
    for column in (
        "roc_auc",
        "roc_auc_ci_low",
        "roc_auc_ci_high",
        "accuracy",
        "permuted_roc_auc",
        "c_index",
        "gate_passed",
        "gate_reason",
    ):
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
    # the random-gene-set control of wdbc_counts' size group: 3 sets of its 3 columns, in the leaderboard
    random = small_run / "results" / "models" / "wdbc_counts" / "malignancy" / "size" / "elasticnet" / "random_sets.tsv"
    table = pd.read_csv(random, sep="\t")
    assert list(table["set"]) == [1, 2, 3] and (table["n_genes"] == 3).all() and table["roc_auc"].between(0, 1).all()
    row = board[board.dataset == "wdbc_counts"].iloc[0]
    assert row["random_sets"] == 3 and 0.25 <= row["random_p"] <= 1
    assert board[board.dataset != "wdbc_counts"]["random_sets"].isna().all()
    assert (small_run / "results" / "plots" / "wdbc_counts" / "malignancy" / "random_sets.svg").stat().st_size > 1000


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


def test_metasig_serve_answers_for_the_models_the_workflow_registered(small_run):
    """The user's path: `metasig serve` on the registry this run built, asked over HTTP."""
    import socket
    import time

    import numpy as np
    import requests

    from metasig.learn.artifacts import load_artifact

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    metasig = Path(sys.executable).parent / "metasig"
    server = subprocess.Popen(
        [str(metasig), "serve", "--registry", "results/registry", "--port", str(port)],
        cwd=small_run,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if requests.get(f"{url}/v2/health/ready", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert server.poll() is None, server.stderr.read()
        index = json.loads((small_run / "results" / "registry" / "index.json").read_text())
        listed = {m["name"]: m for m in requests.get(f"{url}/v2/models", timeout=10).json()["models"]}
        assert set(listed) == {m["name"] for m in index["models"]}
        # wdbc_counts: in-fold DESeq2 on every column, then a gene group, then the scaler
        assert "wdbc_counts.malignancy.size.elasticnet" in listed

        for entry in index["models"]:  # every registered model and version, through HTTP
            name, version = entry["name"], entry["version"]
            artifact = load_artifact(small_run / "results" / "registry" / entry["path"])
            assert listed[name]["n_features"] == len(artifact.features), name
            rows = _input_rows(small_run, entry["dataset"], artifact.features)
            body = {
                "inputs": [
                    {"name": f, "shape": [len(rows)], "datatype": "FP64", "data": rows[f].tolist()}
                    for f in artifact.features
                ]
            }
            answer = requests.post(f"{url}/v2/models/{name}/versions/{version}/infer", json=body, timeout=60)
            assert answer.status_code == 200, (name, answer.text)
            served = {o["name"]: np.asarray(o["data"]) for o in answer.json()["outputs"]}
            if artifact.task_kind == "survival":
                np.testing.assert_allclose(served["risk"], artifact.predict_risk(rows).to_numpy(), rtol=1e-12)
            else:
                expected = artifact.predict_proba(rows).to_numpy()
                np.testing.assert_allclose(served["probabilities"].reshape(expected.shape), expected, rtol=1e-12)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _input_rows(run, dataset, features, n=5):
    """n samples' values of `features`: genes from the dataset's matrix, covariates from its sheet."""
    matrix = pd.read_parquet(run / "results" / dataset / "normalized.parquet")
    sheet = pd.read_csv(run / "results" / dataset / "samples.tsv", sep="\t").set_index("sample")
    sheet.index = sheet.index.astype(str)
    table = matrix.join(sheet[[c for c in sheet.columns if c not in matrix.columns]])
    return table[features].apply(pd.to_numeric, errors="coerce").dropna().iloc[:n]
