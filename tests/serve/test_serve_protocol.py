"""V2 protocol conformance with tritonclient.http as the client, and predictions equal to the
artifact's own. The server runs on 127.0.0.1 in a background thread."""

import json
import logging
import time

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as httpclient
from serve_fixtures import STANDARD, build_registry, serving
from tritonclient.utils import InferenceServerException

from metasig.learn.artifacts import load_artifact

NAMES = [f"{s['dataset']}.{s['task']}.{s['group']}.{s['model']}" for s in STANDARD]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return build_registry(tmp_path_factory.mktemp("serve"), STANDARD)


@pytest.fixture(scope="module")
def base(registry):
    with serving(registry) as url:
        yield url


@pytest.fixture(scope="module")
def client(base):
    c = httpclient.InferenceServerClient(base.removeprefix("http://"), network_timeout=30)
    yield c
    c.close()


def index(registry):
    return json.loads((registry / "index.json").read_text())


def expected(registry, name, X):
    """What load_artifact(...) predicts on the same rows: the reference for every served answer."""
    idx = index(registry)
    entry = next(e for e in idx["models"] if e["name"] == name and e["version"] == idx["latest"][name])
    art = load_artifact(registry / entry["path"])
    frame = pd.DataFrame(X, columns=art.features)
    if art.task_kind == "survival":
        return {"risk": art.predict_risk(frame).to_numpy()}, art
    proba = art.predict_proba(frame)
    return {"probabilities": proba.to_numpy(), "label": proba.idxmax(axis=1).to_numpy()}, art


def rows(n_features, n=5, seed=3):
    return np.random.default_rng(seed).normal(5.0, 2.0, size=(n, n_features))


def test_server_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "metasig" and "model_repository" in meta["extensions"]


@pytest.mark.parametrize("name", NAMES)
def test_model_metadata_names_inputs_by_gene_in_model_order(client, registry, name):
    meta = client.get_model_metadata(name)
    _, art = expected(registry, name, rows(len(STANDARD[NAMES.index(name)].get("features", [0, 0, 0]))))
    assert [i["name"] for i in meta["inputs"]] == art.features
    assert {i["datatype"] for i in meta["inputs"]} == {"FP64"} and meta["inputs"][0]["shape"] == [-1]
    assert meta["versions"] == [index(registry)["latest"][name]]
    outputs = {o["name"]: o for o in meta["outputs"]}
    if art.task_kind == "survival":
        assert list(outputs) == ["risk"]
    else:
        assert outputs["probabilities"]["shape"] == [-1, len(art.classes)] and outputs["label"]["datatype"] == "BYTES"
    assert client.is_model_ready(name)  # metadata loaded it


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_per_gene_inputs_predict_exactly_what_the_artifact_predicts(client, registry, name, binary):
    features = client.get_model_metadata(name)["inputs"]
    X = rows(len(features))
    want, _ = expected(registry, name, X)
    inputs = []
    for j, spec in enumerate(features):
        column = X[:, j] if j % 2 else X[:, j : j + 1]  # shape [N] and [N, 1] are both accepted
        inp = httpclient.InferInput(spec["name"], list(column.shape), "FP64")
        inp.set_data_from_numpy(column.copy(), binary_data=binary)
        inputs.append(inp)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in want]
    result = client.infer(name, inputs, outputs=outputs, request_id="req-1")
    assert result.get_response()["id"] == "req-1"
    for out, value in want.items():
        got = result.as_numpy(out)
        if out == "label":
            assert [v.decode() if isinstance(v, bytes) else v for v in got] == list(value)
        else:
            assert got.shape == value.shape and np.array_equal(got, value), out


@pytest.mark.parametrize("name", [NAMES[0], NAMES[2]])
def test_feature_matrix_fp32_and_default_outputs(client, registry, name):
    n_features = len(client.get_model_metadata(name)["inputs"])
    X = rows(n_features, n=7).astype(np.float32)
    want, _ = expected(registry, name, X.astype(np.float64))
    inp = httpclient.InferInput("features", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    result = client.infer(name, [inp])  # no outputs requested: all of them, in binary
    assert np.array_equal(result.as_numpy("probabilities"), want["probabilities"])
    assert [v.decode() for v in result.as_numpy("label")] == list(want["label"])


def test_versions_latest_alias_and_unknown_version(client, registry):
    name = NAMES[1]
    version = index(registry)["latest"][name]
    X = rows(3, n=2)
    inp = httpclient.InferInput("matrix", [2, 3], "FP64")
    inp.set_data_from_numpy(X)
    by_name = client.infer(name, [inp]).as_numpy("risk")
    by_version = client.infer(name, [inp], model_version=version).as_numpy("risk")
    by_alias = client.infer(name, [inp], model_version="latest").as_numpy("risk")
    assert np.array_equal(by_name, by_version) and np.array_equal(by_name, by_alias)
    assert np.array_equal(by_name, expected(registry, name, X)[0]["risk"])
    assert client.get_model_metadata(name, model_version=version)["parameters"]["version"] == version
    with pytest.raises(InferenceServerException) as err:
        client.infer(name, [inp], model_version="000000000000")
    assert err.value.status() == "404" and "no version" in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("nsclc.survival.metagene_99.coxph")
    assert err.value.status() == "404" and "unknown model" in err.value.message()


def test_repository_api_load_unload_index(client, base):
    name = NAMES[3]
    client.unload_model(name)
    assert not client.is_model_ready(name)
    listing = {r["name"]: r for r in client.get_model_repository_index()}
    assert set(listing) == set(NAMES) and listing[name]["state"] == "UNAVAILABLE"
    loads = base.server.cache.loads
    client.load_model(name)
    assert client.is_model_ready(name) and base.server.cache.loads == loads + 1
    ready_only = requests.post(f"{base}/v2/repository/index", json={"ready": True}, timeout=10).json()
    assert name in {r["name"] for r in ready_only} and all(r["state"] == "READY" for r in ready_only)
    with pytest.raises(InferenceServerException) as err:  # no uploads: models come from the registry only
        client.load_model(name, config=json.dumps({"backend": "python"}))
    assert err.value.status() == "400"
    with pytest.raises(InferenceServerException) as err:
        client.load_model("no.such.model.here")
    assert err.value.status() == "404"


def test_list_models_and_curl_style_request(base, registry):
    listed = requests.get(f"{base}/v2/models", timeout=10).json()["models"]
    assert [m["name"] for m in listed] == sorted(NAMES)
    assert all(m["latest"] == index(registry)["latest"][m["name"]] for m in listed)
    # curl -d sends application/x-www-form-urlencoded; the JSON body is still accepted
    name = NAMES[1]
    body = {
        "inputs": [
            {"name": g, "shape": [1], "datatype": "FP64", "data": [float(i + 4)]}
            for i, g in enumerate(["LRIG1", "HPGD", "GDF15"])
        ]
    }
    r = requests.post(
        f"{base}/v2/models/{name}/infer",
        data=json.dumps(body),
        headers={"content-type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    risk = r.json()["outputs"][0]
    assert risk["name"] == "risk" and risk["shape"] == [1]
    assert risk["data"] == list(expected(registry, name, np.array([[4.0, 5.0, 6.0]]))[0]["risk"])


def test_sagemaker_invocations_csv_and_json(base, registry):
    name = NAMES[0]
    X = rows(3, n=4)
    want = expected(registry, name, X)[0]["probabilities"][:, 1]
    csv = "".join(",".join(repr(float(v)) for v in row) + "\n" for row in X)
    r = requests.post(
        f"{base}/invocations",
        data=csv,
        timeout=10,
        headers={"content-type": "text/csv", "X-Amzn-SageMaker-Target-Model": f"{name}.tar.gz"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert np.array_equal(np.array([float(v) for v in r.text.split()]), want)
    # a header row picks columns by name, whatever their order
    header = "GDF15,LRIG1,HPGD\n" + "".join(f"{float(row[2])!r},{float(row[0])!r},{float(row[1])!r}\n" for row in X)
    r = requests.post(
        f"{base}/invocations",
        data=header,
        timeout=10,
        headers={"content-type": "text/csv", "X-Amzn-SageMaker-Target-Model": name},
    )
    assert np.array_equal(np.array([float(v) for v in r.text.split()]), want)
    v2 = {"inputs": [{"name": "x", "shape": list(X.shape), "datatype": "FP64", "data": X.tolist()}]}
    r = requests.post(f"{base}/invocations", json=v2, timeout=10, headers={"X-Amzn-SageMaker-Target-Model": name})
    assert np.array_equal(np.array(r.json()["outputs"][0]["data"]).reshape(4, 2)[:, 1], want)
    r = requests.post(f"{base}/invocations", json=v2, timeout=10)
    assert r.status_code == 400 and "X-Amzn-SageMaker-Target-Model".lower() in r.json()["error"].lower()


def test_access_log_and_metrics(base, registry, caplog):
    name = NAMES[0]
    # the versioned path is this test's alone, so its line cannot be confused with another test's
    own = f"/v2/models/{name}/versions/{index(registry)['latest'][name]}/infer"
    body = {"inputs": [{"name": "f", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}]}
    with caplog.at_level(logging.INFO, logger="metasig.serve.access"):
        assert requests.post(f"{base}{own}", json=body, timeout=10).status_code == 200
        assert requests.get(f"{base}/v2/models/nope.nope/ready", timeout=10).status_code == 404
        # The line is written once the response has been sent, so it can trail the client a little;
        # lines of earlier tests' requests can still arrive too: find this test's own by path.
        paths = (own, "/v2/models/nope.nope/ready")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = {}
            for r in caplog.records:
                line = json.loads(r.getMessage()) if r.name == "metasig.serve.access" else {}
                if line.get("path") in paths:
                    lines.setdefault(line["path"], []).append(line)
            if len(lines) == 2:
                break
            time.sleep(0.02)
    infer, missing = (lines.get(p, []) for p in paths)
    assert len(infer) == 1 and len(missing) == 1, lines
    infer, missing = infer[0], missing[0]
    assert infer["method"] == "POST" and infer["model"] == name and infer["status"] == 200
    assert infer["latency_ms"] > 0
    assert missing["method"] == "GET" and missing["status"] == 404 and missing["model"] is None
    text = requests.get(f"{base}/metrics", timeout=10).text
    assert f'metasig_requests_total{{model="{name}",status="200"}}' in text
    assert 'metasig_requests_total{model="",status="404"}' in text
    for metric in (
        "metasig_request_latency_seconds_bucket",
        "metasig_model_loads_total",
        "metasig_model_evictions_total",
        "metasig_cache_models",
        "metasig_cache_bytes",
        "metasig_registered_models 4.0",
    ):
        assert metric in text, metric
