import hashlib
import json
import time

import pytest

from metasig.config import gate_defaults
from metasig.publish.gate import gate_task
from metasig.publish.registry import publish


def fake_model(root, group, seed=1, d="nsclc", t="status", m="lr"):
    folder = root / d / t / group / m
    art = folder / "model"
    art.mkdir(parents=True)
    files = {
        "features.json": json.dumps(["CD44", "VIM"]),
        "model.skops": f"fake-{group}-{seed}",
        "artifact.json": json.dumps({"model_kind": "linear_sweep", "kind": "binary"}),
    }
    for name, text in files.items():
        (art / name).write_text(text)
    (art / "SHA256SUMS").write_text(
        "".join(f"{hashlib.sha256(v.encode()).hexdigest()}  {k}\n" for k, v in files.items())
    )
    block = lambda e, lo, hi: {"estimate": e, "ci_low": lo, "ci_high": hi}  # noqa: E731
    doc = {
        "dataset": d,
        "task": t,
        "group": group,
        "model": m,
        "kind": "binary",
        "model_kind": "linear_sweep",
        "n_samples": 119,
        "n_features": 2,
        "features": ["CD44", "VIM"],
        "classes": ["Alive", "Dead"],
        "metrics": {"roc_auc": block(0.8, 0.7, 0.9), "f1": block(0.6, float("nan"), 0.7)},
        "permuted": {"roc_auc": block(0.5, 0.4, 0.6)},
        "best_params": {"C": 0.1, "penalty": "l2", "grid": [1, 2]},
        "cv": {"outer_folds": 5, "outer_repeats": 3},
        "seed": seed,
    }
    (folder / "metrics.json").write_text(json.dumps(doc))
    return doc


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow")
    docs = [fake_model(tmp / "models", "metagene_9"), fake_model(tmp / "models", "ALL")]
    index = publish(gate_task(docs, gate_defaults("binary")), tmp / "models", tmp / "registry")
    uri = f"sqlite:///{tmp / 'db' / 'mlflow.db'}"
    from metasig.publish.tracking import log_to_mlflow

    start = time.perf_counter()
    first = log_to_mlflow(index["models"], tmp / "registry", uri, "metasig-test")
    seconds = time.perf_counter() - start
    return tmp, index, uri, first, seconds


def test_runs_and_registered_versions_exist(logged):
    tmp, index, uri, first, seconds = logged
    from mlflow.tracking import MlflowClient

    assert sorted(first) == [("metasig.nsclc.status.ALL.lr", 1), ("metasig.nsclc.status.metagene_9.lr", 1)]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    entry = next(e for e in index["models"] if e["group"] == "ALL")
    mv = client.get_model_version("metasig.nsclc.status.ALL.lr", "1")
    assert mv.tags["metasig_version"] == entry["version"] and mv.tags["gate"].startswith("passed")
    run = client.get_run(mv.run_id)
    assert run.data.params["group"] == "ALL" and run.data.params["best_params.C"] == "0.1"
    assert run.data.params["cv.outer_folds"] == "5"
    assert run.data.metrics["roc_auc_ci_low"] == pytest.approx(0.7)
    assert run.data.metrics["permuted_roc_auc_ci_high"] == pytest.approx(0.6)
    assert "f1_ci_low" not in run.data.metrics  # NaN bounds are skipped, not logged as numbers
    logged_files = {f.path for f in client.list_artifacts(mv.run_id, "model")}
    assert {"model/SHA256SUMS", "model/model.skops", "model/model_card.md", "model/metrics.json"} <= logged_files
    assert mv.source.startswith("file://") and (tmp / "db" / "artifacts").is_dir()  # artifacts beside the db
    print(f"mlflow: {seconds:.2f}s for 2 models incl. DB creation")


def test_second_call_creates_no_duplicate(logged):
    tmp, index, uri, first, _ = logged
    from mlflow.tracking import MlflowClient

    from metasig.publish.tracking import log_to_mlflow

    again = log_to_mlflow(index["models"], tmp / "registry", uri, "metasig-test")
    assert sorted(again) == sorted(first)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert len(client.search_model_versions("name = 'metasig.nsclc.status.ALL.lr'")) == 1
    exp = client.get_experiment_by_name("metasig-test")
    assert len(client.search_runs([exp.experiment_id])) == 2

    # A new metasig version of the same model becomes MLflow version 2.
    fake_model(tmp / "models2", "ALL", seed=9)
    from metasig.io import read_json
    from metasig.publish.gate import gate_task as gt

    doc = read_json(tmp / "models2/nsclc/status/ALL/lr/metrics.json")
    index2 = publish(gt([doc], gate_defaults("binary")), tmp / "models2", tmp / "registry")
    new = [e for e in index2["models"] if e["group"] == "ALL"][-1:]
    assert log_to_mlflow(new, tmp / "registry", uri, "metasig-test") == [("metasig.nsclc.status.ALL.lr", 2)]


# Issue 10 C10 (moved here from the hostile-data tests: it needs this module's fake_model)
def test_mlflow_rerun_leaves_no_orphan_running_run(tmp_path):
    from mlflow.tracking import MlflowClient

    from metasig.config import gate_defaults
    from metasig.publish.gate import gate_task
    from metasig.publish.registry import publish
    from metasig.publish.tracking import VERSION_TAG, log_to_mlflow

    index = publish(
        gate_task([fake_model(tmp_path / "models", "ALL")], gate_defaults("binary")),
        tmp_path / "models",
        tmp_path / "registry",
    )
    entry = index["models"][0]
    uri = f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}"
    (tmp_path / "db").mkdir()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("metasig-test", artifact_location=(tmp_path / "db" / "artifacts").as_uri())
    # what a step killed between create_run and set_terminated leaves behind
    orphan = client.create_run(experiment, tags={"metasig_name": entry["name"], VERSION_TAG: entry["version"]})
    assert log_to_mlflow(index["models"], tmp_path / "registry", uri, "metasig-test")
    statuses = {r.info.run_id: r.info.status for r in client.search_runs([experiment])}
    assert "RUNNING" not in statuses.values()
    assert statuses[orphan.info.run_id] == "FAILED" and list(statuses.values()).count("FINISHED") == 1
