"""Small real registries for the serving tests and the serving benchmark.

Models are fitted on synthetic data (seconds), saved with `save_artifact` exactly as the training
step does, and published with `metasig.publish.registry.publish`, so the server reads the same layout as
in production. `fit_model` is cached per (kind, task, features) so many registry entries can share
one fit: `publish_copies` registers N names that all point at copies of one artifact.
"""

import functools
import json
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from metasig.learn.artifacts import save_artifact
from metasig.learn.models import build
from metasig.publish.registry import publish

GENES = ["LRIG1", "HPGD", "GDF15"]
SMALL = {
    "xgboost": {"n_estimators": [20], "max_depth": [2]},
    "elasticnet": {"C": [1.0], "l1_ratio": [0.5]},
    "coxph": {"penalizer": [0.1], "l1_ratio": [0.0]},
    "xgboost_cox": {"n_estimators": [20], "max_depth": [2]},
    "svm": {"kernel": ["rbf"], "C": [1.0]},
    "logistic": {"C": [1.0]},
}


def make_data(features, n=80, seed=0, counts=False):
    rng = np.random.default_rng(seed)
    if counts:  # raw counts, as an in-fold DESeq2 normalization needs
        values = rng.poisson(rng.uniform(20, 200, len(features)), size=(n, len(features))).astype(float)
    else:
        values = rng.normal(5.0, 2.0, size=(n, len(features)))
    X = pd.DataFrame(values, columns=list(features))
    signal = X.iloc[:, 0] - X.iloc[:, 0].mean()
    y = {
        "binary": (signal + rng.normal(0, 1.0, n) > 0).astype(int).to_numpy(),
        "multiclass": np.array(["LumA", "Basal", "Her2"])[np.digitize(signal, [-1.0, 1.0])],
    }
    surv = np.empty(n, dtype=[("event", bool), ("time", float)])
    surv["event"] = rng.random(n) < 0.7
    surv["time"] = rng.exponential(np.exp(-signal.to_numpy() / 2))
    y["survival"] = surv
    return X, y


@functools.cache
def fit_model(
    kind="xgboost", task="binary", features=tuple(GENES), seed=0, normalization="none", subset=None, pca=None
):
    """(fitted pipeline, training X) for one model kind and task; cached across tests.
    normalization "deseq2" with `subset` (column positions) gives the workflow's in-fold shape:
    normalized on every input, then narrowed to a gene group before the scaler. `pca`: in-fold PCA
    (preprocessing.pca) after the scaler."""
    X, y = make_data(features, seed=seed, counts=normalization != "none")
    preprocessing = {"scale": True, "pca": pca}
    pipe, grid = build({"kind": kind, "search": SMALL[kind]}, task, preprocessing, normalization, seed, subset=subset)
    pipe.set_params(**{k: v[0] for k, v in grid.items()})  # the one-point grid, without a search
    return pipe.fit(X, y[task]), X


def _write_model(
    models_root,
    dataset,
    task,
    group,
    model,
    kind,
    task_kind,
    features,
    seed,
    normalization="none",
    subset=None,
    pca=None,
):
    pipe, X = fit_model(kind, task_kind, tuple(features), seed, normalization, subset, pca)
    folder = Path(models_root, dataset, task, group, model)
    classes = positive = None
    if task_kind == "binary":
        classes, positive = ["alive", "dead"], "dead"
    save_artifact(pipe, folder / "model", list(features), task_kind, kind, classes=classes, positive=positive)
    doc = {
        "dataset": dataset,
        "task": task,
        "group": group,
        "model": model,
        "kind": task_kind,
        "model_kind": kind,
        "n_samples": len(X),
        "n_features": len(subset or features),
        "features": list(features),
        "classes": classes,
        "metrics": {},
        "permuted": {},
        "seed": seed,
    }
    (folder / "metrics.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
    return {
        "dataset": dataset,
        "task": task,
        "group": group,
        "model": model,
        "passed": True,
        "reason": "passed: test fixture",
    }


def build_registry(root, specs):
    """Publish models into `root/registry`. specs: iterable of dicts with dataset, task, group,
    model, kind, task_kind, features (default GENES), seed (default 0), normalization, subset (a
    tuple of column positions) and pca (see fit_model). Returns the registry path."""
    root = Path(root)
    rows = [
        _write_model(
            root / "models",
            s["dataset"],
            s["task"],
            s["group"],
            s["model"],
            s["kind"],
            s["task_kind"],
            s.get("features", GENES),
            s.get("seed", 0),
            s.get("normalization", "none"),
            s.get("subset"),
            s.get("pca"),
        )
        for s in specs
    ]
    publish(rows, root / "models", root / "registry")
    return root / "registry"


STANDARD = [
    {
        "dataset": "nsclc",
        "task": "status",
        "group": "metagene_19",
        "model": "xgboost",
        "kind": "xgboost",
        "task_kind": "binary",
    },
    {
        "dataset": "nsclc",
        "task": "survival",
        "group": "metagene_19",
        "model": "coxph",
        "kind": "coxph",
        "task_kind": "survival",
    },
    {
        "dataset": "brca",
        "task": "subtype",
        "group": "ALL",
        "model": "elasticnet",
        "kind": "elasticnet",
        "task_kind": "multiclass",
        "features": ["G0", "G1", "G2", "G3", "G4"],
    },
    {
        "dataset": "nsclc",
        "task": "survival",
        "group": "metagene_3",
        "model": "xgboost_cox",
        "kind": "xgboost_cox",
        "task_kind": "survival",
        "features": ["VIM", "LMO2", "EGR2"],
    },
]


def publish_copies(root, n, dataset="bench", task="status", kind="xgboost", task_kind="binary", features=GENES):
    """Register n models (names {dataset}.{task}.g{i}.{kind}) that are copies of one fitted
    artifact, each with its own metrics.json and hence its own version. Returns the registry."""
    root = Path(root)
    models = root / "models"
    first = None
    rows = []
    for i in range(n):
        group = f"g{i:05d}"
        if first is None:
            rows.append(_write_model(models, dataset, task, group, kind, kind, task_kind, features, 0))
            first = models / dataset / task / group / kind
            continue
        folder = models / dataset / task / group / kind
        shutil.copytree(first / "model", folder / "model")
        doc = json.loads((first / "metrics.json").read_text())
        doc["group"] = group
        (folder / "metrics.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
        rows.append(
            {
                "dataset": dataset,
                "task": task,
                "group": group,
                "model": kind,
                "passed": True,
                "reason": "passed: test fixture",
            }
        )
    publish(rows, models, root / "registry")
    return root / "registry"


# ---- a live server on loopback ------------------------------------------------------------------


class Running(str):
    """The base URL ("http://127.0.0.1:<port>") with `.server` (metasig.serve.app.Server) attached."""

    def __new__(cls, url, server):
        obj = super().__new__(cls, url)
        obj.server = server
        return obj


@contextmanager
def serving(registry, limits=None, **settings):
    """Run the app with uvicorn in a background thread on a free 127.0.0.1 port; stop on exit.
    Connection settings are the ones `metasig serve` uses; `limits` overrides some of them."""
    import uvicorn

    from metasig.serve.app import Settings, create_app
    from metasig.serve.server import uvicorn_config

    app = create_app(Settings(registry=str(registry), **settings))
    # proto IPPROTO_TCP, as uvicorn's own sockets: asyncio sets TCP_NODELAY only then, and without
    # it every keep-alive response waits ~40 ms for a delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, **(limits or {})))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "test server did not start within 10 s"
    try:
        yield Running(f"http://127.0.0.1:{port}", app.state.server)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
