"""The workflow end to end on a small config: outputs, report, rerun behaviour, determinism."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from workflow import REPO, clean_checkout, planned_jobs, snakemake, workflow_copy

SMALL = ["--configfile", "resources/test_configs/small.yaml"]


def test_default_dag_dry_runs():
    jobs = planned_jobs(clean_checkout())
    # wdbc: 3 groups x 4 models; gse7390: 3 groups x 2 models; simreads: 2 groups x 1 model
    assert jobs["train"] == 3 * 4 + 3 * 2 + 2 * 1
    assert jobs["fastp_pe"] == jobs["salmon_quant"] == 16 and jobs["salmon_index"] == 1
    for rule in ("load_dataset", "normalize", "gene_groups", "gate", "register", "mlflow", "leaderboard",
                 "simulate_simreads", "validate_reads", "mapping_qc", "multiqc", "tpm_matrix"):
        assert rule in jobs


def test_lint_and_format_are_clean():
    lint = snakemake(clean_checkout(), "--lint", check=False)
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


def test_metasig_serve_answers_for_the_models_the_workflow_registered(small_run):
    """The user's path: `metasig serve` on the registry this run built, asked over HTTP."""
    import socket
    import time

    import numpy as np
    import requests

    from metasig.artifacts import load_artifact

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    metasig = Path(sys.executable).parent / "metasig"
    server = subprocess.Popen([str(metasig), "serve", "--registry", "results/registry", "--port", str(port)],
                              cwd=small_run, stderr=subprocess.PIPE, text=True)
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
        listed = {m["name"] for m in requests.get(f"{url}/v2/models", timeout=10).json()["models"]}
        assert listed == {m["name"] for m in index["models"]}

        name = "wdbc.malignancy.ALL.xgboost"
        meta = requests.get(f"{url}/v2/models/{name}", timeout=30).json()
        features = [i["name"] for i in meta["inputs"]]
        matrix = pd.read_parquet(small_run / "results" / "wdbc" / "normalized.parquet")
        rows = matrix[features].iloc[:5]
        body = {"inputs": [{"name": f, "shape": [len(rows)], "datatype": "FP64", "data": rows[f].tolist()}
                           for f in features]}
        answer = requests.post(f"{url}/v2/models/{name}/infer", json=body, timeout=30).json()
        served = {o["name"]: o for o in answer["outputs"]}
        probabilities = np.asarray(served["probabilities"]["data"]).reshape(len(rows), -1)
        entry = next(m for m in index["models"] if m["name"] == name and m["version"] == index["latest"][name])
        expected = load_artifact(small_run / "results" / "registry" / entry["path"]).predict_proba(rows)
        np.testing.assert_allclose(probabilities, expected.to_numpy(), rtol=1e-12)
    finally:
        server.terminate()
        server.wait(timeout=30)
