"""On-demand loading within a budget: LRU eviction by count and by memory, single-flight loads
under concurrency, registry reload without restart, refusal of tampered artifacts."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import requests
from serve_fixtures import GENES, _write_model, publish_copies, serving

from metasig.learn.artifacts import load_artifact
from metasig.publish.registry import publish, read_sums
from metasig.serve.model import estimate_bytes


def name_of(i):
    return f"bench.status.g{i:05d}.xgboost"


def infer(url, name, x=(1.0, 2.0, 3.0), version=None, session=requests):
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    doc = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": list(x)}]}
    return session.post(url + path, json=doc, timeout=30)


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    return publish_copies(tmp_path_factory.mktemp("copies"), 6)


def test_lru_eviction_by_count(copies):
    with serving(copies, max_models=2) as url:
        cache = url.server.cache
        for i in (0, 1, 0, 2):  # 0 is used again before 2 arrives, so 1 is the least recent
            assert infer(url, name_of(i)).status_code == 200
            assert len(cache) <= 2
        assert {k[0] for k in cache.loaded()} == {name_of(0), name_of(2)}
        for i in range(3, 6):
            assert infer(url, name_of(i)).status_code == 200
            assert len(cache) <= 2
        assert cache.loads == 6 and cache.evictions == 4
        assert infer(url, name_of(5)).status_code == 200 and cache.loads == 6  # warm: no load
        assert infer(url, name_of(0)).status_code == 200 and cache.loads == 7  # evicted: loaded again
        text = requests.get(url + "/metrics", timeout=10).text
        assert "metasig_model_evictions_total 5.0" in text and "metasig_cache_models 2.0" in text
        assert "metasig_model_loads_total 7.0" in text


def test_lru_eviction_by_memory_budget(copies):
    index = json.loads((copies / "index.json").read_text())
    folder = copies / index["models"][0]["path"]
    one = estimate_bytes(folder, read_sums(folder))
    budget_mb = 2.5 * one / 2**20
    with serving(copies, max_models=100, max_memory_mb=budget_mb) as url:
        cache = url.server.cache
        for i in range(6):
            assert infer(url, name_of(i)).status_code == 200
            assert cache.bytes <= budget_mb * 2**20 and len(cache) <= 2
        assert len(cache) == 2 and cache.evictions == 4
        metric = [
            line
            for line in requests.get(url + "/metrics", timeout=10).text.splitlines()
            if line.startswith("metasig_cache_bytes ")
        ]
        assert metric == [f"metasig_cache_bytes {float(2 * one)}"]
    with serving(copies, max_memory_mb=0.5 * one / 2**20) as url:  # one model alone exceeds the budget
        r = infer(url, name_of(0))
        assert r.status_code == 507 and "budget" in r.json()["error"] and len(url.server.cache) == 0


def test_concurrent_first_requests_load_once(copies):
    n_clients, per_client = 16, 12
    with serving(copies, max_models=10) as url:
        cache = url.server.cache
        real, calls = cache.loader, []

        def slow_loader(entry):  # widen the window in which every first request is in flight
            calls.append(entry.key)
            time.sleep(0.3)
            return real(entry)

        cache.loader = slow_loader
        barrier = threading.Barrier(n_clients, timeout=10)
        names = [name_of(i) for i in range(3)]

        def client(k):
            session, out = requests.Session(), []
            barrier.wait()  # every client's first request for names[0] starts together
            for j in range(per_client):
                name = names[0] if j == 0 else names[(k + j) % 3]
                r = infer(url, name, x=(k, j, 1.0), session=session)
                out.append((name, (k, j, 1.0), r.status_code, r.json()))
            session.close()
            return out

        start = time.monotonic()
        with ThreadPoolExecutor(n_clients) as pool:
            results = [r for batch in pool.map(client, range(n_clients)) for r in batch]
        elapsed = time.monotonic() - start
    assert len(results) == n_clients * per_client and elapsed < 30
    assert [r for r in results if r[2] != 200] == []
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 3  # one load per model
    assert cache.loads == 3
    # every answer is the artifact's own prediction for that request's row
    index = json.loads((copies / "index.json").read_text())
    art = load_artifact(copies / next(e["path"] for e in index["models"] if e["name"] == names[0]))
    X = np.array([r[1] for r in results], dtype=float)
    want = art.predict_proba(pd.DataFrame(X, columns=GENES)).to_numpy()
    got = np.array([r[3]["outputs"][0]["data"] for r in results])
    assert np.array_equal(got, want)  # all copies share one fitted model


def test_new_model_and_new_version_servable_without_restart(tmp_path):
    models, registry = tmp_path / "models", tmp_path / "registry"
    first = _write_model(models, "nsclc", "status", "metagene_19", "xgboost", "xgboost", "binary", GENES, 0)
    publish([first], models, registry)
    new = "nsclc.survival.metagene_19.coxph"
    with serving(registry) as url:
        assert infer(url, new).status_code == 404
        r = infer(url, "nsclc.status.metagene_19.xgboost")
        old_version = r.json()["model_version"]
        # the workflow publishes a new model and a retrained version of the served one
        rows = [_write_model(models, "nsclc", "survival", "metagene_19", "coxph", "coxph", "survival", GENES, 0)]
        (models / "nsclc/status/metagene_19/xgboost").rename(tmp_path / "old")
        rows.append(_write_model(models, "nsclc", "status", "metagene_19", "xgboost", "xgboost", "binary", GENES, 5))
        index = publish(rows, models, registry)
        r = infer(url, new)
        assert r.status_code == 200 and r.json()["outputs"][0]["name"] == "risk"
        r = infer(url, "nsclc.status.metagene_19.xgboost")
        assert r.json()["model_version"] == index["latest"]["nsclc.status.metagene_19.xgboost"] != old_version
        assert infer(url, "nsclc.status.metagene_19.xgboost", version=old_version).status_code == 200
        assert url.server.repo.reloads == 2
        listed = {m["name"] for m in requests.get(url + "/v2/models", timeout=10).json()["models"]}
        assert new in listed


def test_tampered_artifact_is_refused_and_server_stays_up(tmp_path):
    models, registry = tmp_path / "models", tmp_path / "registry"
    index = publish(
        [_write_model(models, "nsclc", "status", "metagene_19", "xgboost", "xgboost", "binary", GENES, 0)],
        models,
        registry,
    )
    target = registry / index["models"][0]["path"] / "model.json"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with serving(registry) as url:
        r = infer(url, "nsclc.status.metagene_19.xgboost")
        assert r.status_code == 503 and "checksum mismatch" in r.json()["error"]
        assert str(registry) not in r.json()["error"]  # server paths are not disclosed
        assert len(url.server.cache) == 0
        assert requests.get(url + "/v2/health/live", timeout=10).status_code == 200
        assert "metasig_model_load_failures_total 1.0" in requests.get(url + "/metrics", timeout=10).text
