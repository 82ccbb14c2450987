"""Hostile and unlucky requests against the server, one test per defect of issue 10 section B.
Each asserts the status or message a client sees and that the server stays healthy afterwards."""

import asyncio
import gzip
import hashlib
import json
import logging
import shutil
import socket
import statistics
import threading
import time

import numpy as np
import pandas as pd
import pytest
import requests
from serve_fixtures import STANDARD, build_registry, serving

from metasig.cli import main
from metasig.learn.artifacts import load_artifact
from metasig.serve import protocol
from metasig.serve.model import ServedModel

XGB = "nsclc.status.metagene_19.xgboost"
COX = "nsclc.survival.metagene_19.coxph"
GENES = ["LRIG1", "HPGD", "GDF15"]
SIM_GENES = [f"SIMG{i:04d}" for i in range(1, 121)]
SUBSET = "sim.condition.planted.elasticnet"  # in-fold DESeq2 on 120 genes, then 12 of them, then the scaler
REORDERED, CORRUPT, LINKED = (f"nsclc.status.{g}.xgboost" for g in ("reordered", "corrupt", "linked"))


def spec(name, **extra):
    dataset, task, group, model = name.split(".")
    return {
        "dataset": dataset,
        "task": task,
        "group": group,
        "model": model,
        "kind": model,
        "task_kind": "binary",
        **extra,
    }


def folder(registry, name):
    index = json.loads((registry / "index.json").read_text())
    return registry / next(m["path"] for m in index["models"] if m["name"] == name)


def rewrite(path, data):
    """Replace one artifact file and its SHA256SUMS line, as a careless hand edit would."""
    path.write_bytes(data)
    sums = path.parent / "SHA256SUMS"
    lines = [
        f"{hashlib.sha256(data).hexdigest()}  {path.name}" if line.endswith(f"  {path.name}") else line
        for line in sums.read_text().splitlines()
    ]
    sums.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    specs = STANDARD + [
        spec(SUBSET, kind="elasticnet", features=SIM_GENES, normalization="deseq2", subset=tuple(range(12))),
        spec(REORDERED),
        spec(CORRUPT),
        spec(LINKED),
    ]
    registry = build_registry(root, specs)
    features = folder(registry, REORDERED) / "features.json"
    rewrite(features, json.dumps(list(reversed(json.loads(features.read_text())))).encode())
    model_json = folder(registry, CORRUPT) / "model.json"
    model_json.write_bytes(model_json.read_bytes() + b" ")  # no longer matches SHA256SUMS
    linked = folder(registry, LINKED) / "features.json"
    outside = root / "features-elsewhere.json"
    shutil.copyfile(linked, outside)
    linked.unlink()
    linked.symlink_to(outside)  # same bytes, so the checksum alone would pass
    return registry


@pytest.fixture(scope="module")
def base(registry):
    with serving(registry) as url:
        yield url


def infer_body(n=2, genes=GENES, value=4.0):
    return {
        "inputs": [{"name": g, "shape": [n], "datatype": "FP64", "data": [value + i for i in range(n)]} for g in genes]
    }


def healthy(base):
    assert requests.get(f"{base}/v2/health/ready", timeout=10).status_code == 200
    r = requests.post(f"{base}/v2/models/{XGB}/infer", json=infer_body(), timeout=30)
    assert r.status_code == 200, r.text


def metric_lines(base, prefix="metasig_requests_total"):
    return [line for line in requests.get(f"{base}/metrics", timeout=10).text.splitlines() if line.startswith(prefix)]


def wait_for(condition, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def expected_proba(registry, name, X):
    art = load_artifact(folder(registry, name))
    return art.predict_proba(pd.DataFrame(X, columns=art.features)).to_numpy()


# ---- B1 -------------------------------------------------------------------------------------------


def test_b1_column_subset_before_the_scaler_is_served_with_its_input_count(base, registry):
    X = np.random.default_rng(5).poisson(80, size=(4, len(SIM_GENES))).astype(float)
    body = {"inputs": [{"name": "counts", "shape": list(X.shape), "datatype": "FP64", "data": X.tolist()}]}
    r = requests.post(f"{base}/v2/models/{SUBSET}/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    got = np.asarray(r.json()["outputs"][0]["data"]).reshape(4, 2)
    assert np.array_equal(got, expected_proba(registry, SUBSET, X))
    listed = {m["name"]: m for m in requests.get(f"{base}/v2/models", timeout=10).json()["models"]}
    assert listed[SUBSET]["n_features"] == 120 and listed[XGB]["n_features"] == 3
    healthy(base)


# ---- B2 -------------------------------------------------------------------------------------------


def test_b2_model_that_loads_but_cannot_predict_is_refused_at_load(base):
    r = requests.get(f"{base}/v2/models/{REORDERED}", timeout=30)
    assert r.status_code == 503 and "cannot predict" in r.json()["error"], r.text
    assert "feature names" in r.json()["error"]
    r = requests.post(f"{base}/v2/models/{REORDERED}/infer", json=infer_body(), timeout=30)
    assert r.status_code == 503, r.text
    assert requests.get(f"{base}/v2/models/{REORDERED}/ready", timeout=10).status_code != 200
    index = requests.post(f"{base}/v2/repository/index", json={}, timeout=10).json()
    assert next(row for row in index if row["name"] == REORDERED)["state"] != "READY"
    assert not [line for line in metric_lines(base) if 'status="500"' in line]
    healthy(base)


# ---- B3 -------------------------------------------------------------------------------------------


def csv_post(base, data, name=XGB, **headers):
    return requests.post(
        f"{base}/invocations",
        data=data,
        timeout=30,
        headers={"content-type": "text/csv", "X-Amzn-SageMaker-Target-Model": name, **headers},
    )


def test_b3_gzip_every_member_is_decoded_and_trailing_garbage_is_refused(base):
    first, second = "1.0,2.0,3.0\n4.0,5.0,6.0\n", "7.0,8.0,9.0\n"
    two_members = gzip.compress(first.encode()) + gzip.compress(second.encode())
    r = csv_post(base, two_members, **{"content-encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert len(r.text.split()) == 3  # one line per row sent, none dropped
    plain = csv_post(base, first + second)
    assert r.text == plain.text
    r = csv_post(base, gzip.compress(first.encode()) + b"not gzip at all", **{"content-encoding": "gzip"})
    assert r.status_code == 400 and "after the compressed data" in r.json()["error"], r.text
    r = csv_post(base, gzip.compress(first.encode())[:-6], **{"content-encoding": "gzip"})  # cut short
    assert r.status_code == 400 and "incomplete" in r.json()["error"], r.text
    healthy(base)


# ---- B4 -------------------------------------------------------------------------------------------


def raw(base, data, close=True, timeout=10):
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.sendall(data)
    if close:
        sock.close()
    return sock


def requests_for(base, model):
    return [line for line in metric_lines(base) if f'model="{model}"' in line]


@pytest.mark.parametrize("how", ["disconnect_mid_body", "bad_chunk_size"])
def test_b4_a_client_that_goes_away_or_sends_bad_chunks_is_not_an_internal_error(registry, how, caplog):
    with serving(registry) as base, caplog.at_level(logging.INFO, logger="metasig.serve"):
        path = f"/v2/models/{COX}/infer"
        if how == "disconnect_mid_body":
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
            raw(base, head.encode() + b'{"inputs": [')
        else:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            )
            sock = raw(base, head.encode() + b'5\r\n{"inp\r\nzz\r\nuts\r\n', close=False)
            reply = sock.recv(4096)
            sock.close()
            assert reply == b"" or not reply.startswith(b"HTTP/1.1 500"), reply
        wait_for(lambda: requests_for(base, COX), "the request to be counted")
        counted = requests_for(base, COX)
        assert not [line for line in counted if 'status="500"' in line], counted
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text
        healthy(base)


# ---- B5 -------------------------------------------------------------------------------------------

SHORT = {"timeout_keep_alive": 1, "header_timeout": 1}


def closed_within(sock, seconds):
    """True if the server closes the connection (after any response) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except TimeoutError:
        return False
    finally:
        sock.close()


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n",
        f"POST /v2/models/{XGB}/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n{{".encode(),
    ],
    ids=["idle", "slow_header", "slow_body"],
)
def test_b5_idle_and_slow_connections_are_closed(registry, sent):
    with serving(registry, limits=SHORT, body_timeout=1) as base:
        assert closed_within(raw(base, sent, close=False), 8), "connection still open 8 s after a 1 s timeout"
        healthy(base)


def test_b5_connections_are_capped():
    from metasig.serve.server import uvicorn_config

    config = uvicorn_config(object())
    assert config.limit_concurrency and config.limit_concurrency <= 1024
    assert config.timeout_keep_alive <= 30


def big_body(mib=15.0):
    """A V2 request of about `mib` MiB: one [N, 3] feature matrix as JSON."""
    n = int(mib * 2**20 / 57)  # three reprs of ~18 characters and separators per row
    X = np.random.default_rng(1).normal(5.0, 2.0, size=(n, 3))
    return json.dumps({"inputs": [{"name": "x", "shape": [n, 3], "datatype": "FP64", "data": X.tolist()}]}).encode()


def health_latencies(base, until=None, n=20):
    """Seconds per /v2/health/ready answer, asked back to back until `until()` (or n times)."""
    out = []
    with requests.Session() as session:
        while not until() if until else len(out) < n:
            start = time.perf_counter()
            assert session.get(f"{base}/v2/health/ready", timeout=30).status_code == 200
            out.append(time.perf_counter() - start)
    return out


def test_b5_large_bodies_are_parsed_off_the_event_loop(registry, monkeypatch):
    on_loop, real = [], protocol.parse_infer

    def parse_infer(*args, **kw):
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(*args, **kw)

    monkeypatch.setattr(protocol, "parse_infer", parse_infer)
    body = big_body()
    assert 14 * 2**20 < len(body) < 16 * 2**20
    with serving(registry) as base:
        healthy(base)
        control = health_latencies(base)
        results = []

        def post():
            results.append(requests.post(f"{base}/v2/models/{XGB}/infer", data=body, timeout=120).status_code)

        threads = [threading.Thread(target=post) for _ in range(2)]
        for t in threads:
            t.start()
        wait_for(lambda: len(on_loop) >= 3, "both large requests to reach the parser", timeout=60)
        loaded = health_latencies(base, lambda: len(results) == 2)
        for t in threads:
            t.join()
    assert results == [200, 200]
    assert on_loop and not any(on_loop[1:]), "a large body was parsed on the event loop thread"
    # The figure the issue asks for, with the machine's own idle latency as headroom: on the loop,
    # each probe would wait for a whole 15 MiB parse (~300 ms).
    assert len(loaded) >= 3, "too few health probes answered while the bodies were parsed"
    assert statistics.median(loaded) < 0.050 + statistics.median(control), (loaded, control)


# ---- B6 -------------------------------------------------------------------------------------------


def test_b6_over_budget_is_refused_from_the_artifact_size_without_loading(registry, monkeypatch):
    calls, real = [], ServedModel.load.__func__

    def counting(cls, entry):
        calls.append(entry.name)
        return real(cls, entry)

    monkeypatch.setattr(ServedModel, "load", classmethod(counting))
    with serving(registry, max_memory_mb=0.01) as base:
        for _ in range(3):
            r = requests.get(f"{base}/v2/models/{XGB}", timeout=30)
            assert r.status_code == 507 and "memory budget" in r.json()["error"], r.text
        assert calls == [], "the model was loaded to find out it does not fit"
        assert requests.get(f"{base}/v2/health/ready", timeout=10).status_code == 200


def test_b6_a_failed_load_is_remembered_for_a_while(base):
    before = base.server.metrics.load_failures._value.get()
    for _ in range(3):
        r = requests.post(f"{base}/v2/models/{CORRUPT}/infer", json=infer_body(), timeout=30)
        assert r.status_code == 503 and "sha256" in r.json()["error"].lower(), r.text
    assert base.server.metrics.load_failures._value.get() == before + 1
    healthy(base)


# ---- B7 -------------------------------------------------------------------------------------------


def test_b7_a_malformed_index_is_warned_about_once_per_change(registry, tmp_path, caplog):
    copy = tmp_path / "registry"
    shutil.copytree(registry, copy, symlinks=True)
    with serving(copy) as base, caplog.at_level(logging.WARNING, logger="metasig.serve"):

        def warnings():
            return [r for r in caplog.records if "not usable" in r.getMessage()]

        (copy / "index.json").write_text('{"models": [')
        for _ in range(5):
            assert requests.get(f"{base}/v2/models", timeout=10).status_code == 200
        assert len(warnings()) == 1
        (copy / "index.json").write_text('{"models": [ ')  # another change, another warning
        for _ in range(3):
            requests.get(f"{base}/v2/health/ready", timeout=10)
        assert len(warnings()) == 2
        assert XGB in {m["name"] for m in requests.get(f"{base}/v2/models", timeout=10).json()["models"]}
        healthy(base)


# ---- B8 -------------------------------------------------------------------------------------------


def test_b8_bearer_scheme_is_case_insensitive(registry):
    with serving(registry, token="s3cret") as base:
        for scheme in ("Bearer", "bearer", "BEARER"):
            r = requests.get(f"{base}/v2/models", headers={"authorization": f"{scheme} s3cret"}, timeout=10)
            assert r.status_code == 200, scheme
        assert (
            requests.get(f"{base}/v2/models", headers={"authorization": "bearer wrong"}, timeout=10).status_code == 401
        )
        assert requests.get(f"{base}/v2/health/ready", timeout=10).status_code == 200


@pytest.fixture
def started(monkeypatch):
    """Run `metasig serve` up to the point where it would listen; returns what it would run."""
    from metasig.serve import server

    seen = {}
    monkeypatch.setattr(server, "run", lambda settings, **kw: seen.update(settings=settings, **kw))
    monkeypatch.delenv("METASIG_TOKEN", raising=False)
    monkeypatch.delenv("METASIG_TOKEN_FILE", raising=False)
    return seen


def test_b8_token_file_and_its_environment_variable(registry, tmp_path, started, monkeypatch):
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    main(["serve", "--registry", str(registry), "--token-file", str(secret)])
    assert started["settings"].token == "s3cret"
    monkeypatch.setenv("METASIG_TOKEN_FILE", str(secret))
    main(["serve", "--registry", str(registry)])
    assert started["settings"].token == "s3cret"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--registry", str(registry), "--token-file", str(tmp_path / "empty")])
    assert "empty" in str(exc.value.code)


def test_b8_warns_when_listening_beyond_this_machine_without_a_token(registry, started, caplog):
    with caplog.at_level(logging.WARNING, logger="metasig.serve"):
        main(["serve", "--registry", str(registry), "--host", "0.0.0.0"])
        assert "without a token" in caplog.text
        caplog.clear()
        main(["serve", "--registry", str(registry), "--host", "127.0.0.1"])
        main(["serve", "--registry", str(registry), "--host", "0.0.0.0", "--token", "t"])
        assert "without a token" not in caplog.text


@pytest.mark.parametrize(
    "csv, message",
    [
        ("FOO,BAR,BAZ\n1,2,3\n", "'FOO', 'BAR', 'BAZ'"),
        ("LRIG1,HPGD,GDF15,EXTRA\n1,2,3,4\n", "'EXTRA'"),
        ("1_000,2,3\n", "'1_000'"),
        ("LRIG1,HPGD,GDF15\n1,2, nan\n", "'nan'"),
    ],
    ids=["unknown_genes", "extra_column", "underscore_number", "nan"],
)
def test_b8_csv_names_what_is_wrong(base, csv, message):
    r = csv_post(base, csv)
    assert r.status_code == 400 and message in r.json()["error"], r.text
    healthy(base)


def test_b8_symlink_inside_a_model_folder_is_refused(base):
    r = requests.get(f"{base}/v2/models/{LINKED}", timeout=30)
    assert r.status_code == 503 and "symbolic link" in r.json()["error"] and "features.json" in r.json()["error"], (
        r.text
    )
    healthy(base)
