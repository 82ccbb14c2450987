"""Serving benchmark: metasig's server against `mlflow models serve` on the same model, same run.

    python -m metasig.bench.serve --out results/bench_serve.json [--models 1000] [--requests 2000]

Everything runs on 127.0.0.1 in a scratch folder. One XGBoost pipeline (imputer, scaler, XGBoost;
3 genes) is fitted on synthetic data and saved twice: as a metasig artifact, published under
`--models` names (copies with their own versions), and as an MLflow sklearn model with
`predict_proba`, so both servers compute the same probabilities (checked before timing). Both
servers are single processes (MLflow: `--workers 1`) with uvicorn on h11.

Measured, for each server:
  - warm latency of one-sample requests, sequential on one keep-alive connection: p50, p99;
  - requests/second with 16 concurrent keep-alive clients (threads);
  - cold start: process start to first answer; for metasig also the on-demand load of a model not
    yet in memory (median over 20 models), which MLflow cannot do (one model per process);
  - memory: RSS of the metasig server after every one of the `--models` models has been requested
    once with `--max-models` loaded at most, against MLflow's RSS for one model; MLflow needs one
    process per model, so its figure for all models is that RSS times the number of models.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from metasig.bench.local_server import Client, free_port, start, stop, tree_rss, wait_ready

GENES = ["LRIG1", "HPGD", "GDF15"]


# ---- the model, twice ---------------------------------------------------------------------------


def fit_pipeline(seed=0, n=120):
    from metasig.learn.models import build

    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(5.0, 2.0, size=(n, len(GENES))), columns=GENES)
    y = ((X["LRIG1"] - 5.0) + rng.normal(0, 1.0, n) > 0).astype(int).to_numpy()
    pipe, grid = build(
        {"kind": "xgboost", "search": {"n_estimators": [50], "max_depth": [3]}}, "binary", {"scale": True}, "none", seed
    )
    pipe.set_params(**{k: v[0] for k, v in grid.items()})
    return pipe.fit(X, y), X


def metasig_registry(root, pipe, n_models):
    """Publish n_models names, each a copy of the one artifact with its own metrics.json."""
    from metasig.learn.artifacts import save_artifact
    from metasig.publish.registry import publish

    models = Path(root, "models")
    first = models / "bench" / "status" / "g00000" / "xgboost"
    save_artifact(pipe, first / "model", GENES, "binary", "xgboost", classes=["alive", "dead"], positive="dead")
    rows = []
    for i in range(n_models):
        group = f"g{i:05d}"
        folder = models / "bench" / "status" / group / "xgboost"
        if i:
            shutil.copytree(first / "model", folder / "model")
        doc = {
            "dataset": "bench",
            "task": "status",
            "group": group,
            "model": "xgboost",
            "kind": "binary",
            "model_kind": "xgboost",
            "features": GENES,
            "n_features": len(GENES),
            "metrics": {},
            "permuted": {},
        }
        (folder / "metrics.json").write_text(json.dumps(doc, sort_keys=True))
        rows.append(
            {
                "dataset": "bench",
                "task": "status",
                "group": group,
                "model": "xgboost",
                "passed": True,
                "reason": "passed: benchmark",
            }
        )
    publish(rows, models, Path(root, "registry"))
    return Path(root, "registry")


def mlflow_model(root, pipe):
    import mlflow.sklearn

    path = Path(root, "mlflow_model")
    mlflow.sklearn.save_model(pipe, str(path), serialization_format="cloudpickle", pyfunc_predict_fn="predict_proba")
    return path


def name_of(i):
    return f"bench.status.g{i:05d}.xgboost"


# ---- the MLflow process -------------------------------------------------------------------------


def mlflow_env(work):
    # mlflow starts `uvicorn` by name: the venv's bin must be on PATH even when not activated
    bin_dir = str(Path(sys.executable).parent)
    return dict(
        os.environ, MLFLOW_TRACKING_URI=f"file://{work}/mlruns", PATH=bin_dir + os.pathsep + os.environ.get("PATH", "")
    )


# ---- request bodies -----------------------------------------------------------------------------


def mlflow_serve_cmd(model_path, port):
    """`mlflow models serve` of one model on loopback with one worker (the mlflow beside this Python)."""
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    serve = ["models", "serve", "-m", str(model_path), "--env-manager", "local"]
    return [mlflow_bin, *serve, "-h", "127.0.0.1", "-p", str(port), "--workers", "1"]


def metasig_request(x, name=None):
    body = json.dumps(
        {"inputs": [{"name": g, "shape": [1], "datatype": "FP64", "data": [float(v)]} for g, v in zip(GENES, x)]}
    )
    return f"/v2/models/{name or name_of(0)}/infer", body, {"Content-Type": "application/json"}


def metasig_answer(raw):
    return json.loads(raw)["outputs"][0]["data"]


def mlflow_request(x, name=None):
    body = json.dumps({"dataframe_split": {"columns": GENES, "data": [[float(v) for v in x]]}})
    return "/invocations", body, {"Content-Type": "application/json"}


def mlflow_answer(raw):
    return json.loads(raw)["predictions"][0]


# ---- measurements -------------------------------------------------------------------------------


def latency(port, make, n, warmup=100):
    c = Client(port)
    rng = np.random.default_rng(1)
    times = []
    for i in range(warmup + n):
        path, body, headers = make(rng.normal(5, 2, len(GENES)))
        t0 = time.perf_counter()
        status, _ = c.post(path, body, headers)
        dt = time.perf_counter() - t0
        if status != 200:
            raise RuntimeError(f"status {status} during the latency run")
        if i >= warmup:
            times.append(dt * 1000)
    c.close()
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "mean_ms": float(np.mean(times)),
        "n": n,
    }


def throughput(port, make, clients=16, duration=5.0):
    bodies = [make(np.random.default_rng(i).normal(5, 2, len(GENES))) for i in range(64)]
    counts, errors = [0] * clients, [0] * clients
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(k):
        c = Client(port)
        barrier.wait()
        i = k
        while time.perf_counter() < stop_at[0]:
            path, body, headers = bodies[i % len(bodies)]
            status, _ = c.post(path, body, headers)
            counts[k] += 1
            errors[k] += status != 200
            i += 1
        c.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + duration
    t0 = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join(timeout=duration + 60)
    elapsed = time.perf_counter() - t0
    return {
        "rps": sum(counts) / elapsed,
        "requests": sum(counts),
        "errors": sum(errors),
        "clients": clients,
        "seconds": elapsed,
    }


def run_metasig(work, registry, args, results):
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "metasig.cli",
        "serve",
        "--registry",
        str(registry),
        "--port",
        str(port),
        "--max-models",
        str(args.max_models),
        "--max-memory-mb",
        str(args.max_memory_mb),
    ]
    t0 = time.perf_counter()
    proc = start(cmd, work / "metasig_server.log")
    try:
        first = wait_ready(port, lambda c: c.post(*metasig_request([5.0, 5.0, 5.0])), proc)
        results["cold_start_s"] = time.perf_counter() - t0 if first else None
        results["rss_one_model_mb"] = tree_rss(proc) / 2**20
        results["latency"] = latency(port, metasig_request, args.requests)
        results["throughput"] = throughput(port, metasig_request, args.clients, args.duration)
        # on-demand loads: models not yet in memory, one at a time
        c, loads = Client(port), []
        for i in range(1, 21):
            path, body, headers = metasig_request([5.0, 5.0, 5.0], name_of(i))
            t1 = time.perf_counter()
            status, _ = c.post(path, body, headers)
            loads.append((time.perf_counter() - t1) * 1000)
            assert status == 200, status
        results["on_demand_load_ms"] = statistics.median(loads)
        # every registered model once: memory must stay bounded by the budget
        peak, t2 = 0, time.perf_counter()
        for i in range(args.models):
            status, _ = c.post(*metasig_request([5.0, 5.0, 5.0], name_of(i)))
            assert status == 200, status
            if i % 50 == 0:
                peak = max(peak, tree_rss(proc))
        results["all_models_s"] = time.perf_counter() - t2
        c.close()
        results["rss_all_models_mb"] = max(peak, tree_rss(proc)) / 2**20
        c = Client(port)
        c.conn.request("GET", "/metrics")
        text = c.conn.getresponse().read().decode()
        c.close()
        metric = {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith(("metasig_cache_", "metasig_model_loads_total", "metasig_model_evictions_total"))
        }
        results["cache"] = metric
    finally:
        stop(proc)


def run_mlflow(work, model_path, args, results):
    port = free_port()
    cmd = mlflow_serve_cmd(model_path, port)
    env = mlflow_env(work)
    t0 = time.perf_counter()
    proc = start(cmd, work / "mlflow_server.log", env=env)
    try:
        wait_ready(port, lambda c: c.post(*mlflow_request([5.0, 5.0, 5.0])), proc)
        results["cold_start_s"] = time.perf_counter() - t0
        results["rss_one_model_mb"] = tree_rss(proc) / 2**20
        results["latency"] = latency(port, mlflow_request, args.requests)
        results["throughput"] = throughput(port, mlflow_request, args.clients, args.duration)
    finally:
        stop(proc)


def check_same_answers(work, registry, model_path):
    """Both servers must return the same probabilities before their speed is compared."""
    out, procs = {}, []
    try:
        for kind in ("metasig", "mlflow"):
            port = free_port()
            if kind == "metasig":
                cmd = [
                    sys.executable,
                    "-m",
                    "metasig.cli",
                    "serve",
                    "--registry",
                    str(registry),
                    "--port",
                    str(port),
                    "--no-access-log",
                ]
                make, answer, env = metasig_request, metasig_answer, None
            else:
                cmd = mlflow_serve_cmd(model_path, port)
                make, answer, env = mlflow_request, mlflow_answer, mlflow_env(work)
            proc = start(cmd, work / f"{kind}_check.log", env=env)
            procs.append(proc)
            wait_ready(port, lambda c, make=make: c.post(*make([5.0, 5.0, 5.0])), proc)
            c = Client(port)
            rows = np.random.default_rng(7).normal(5, 2, size=(20, len(GENES)))
            out[kind] = [answer(c.post(*make(x))[1]) for x in rows]
            c.close()
    finally:
        for proc in procs:
            stop(proc)
    return bool(np.allclose(out["metasig"], out["mlflow"], rtol=0, atol=1e-12)), out


def ratio(a, b):
    return None if not a or not b else a / b


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m metasig.bench serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="write the results as JSON here")
    p.add_argument("--models", type=int, default=1000, help="registered models (default: %(default)s)")
    p.add_argument("--max-models", type=int, default=50, help="metasig's loaded-model bound (default: %(default)s)")
    p.add_argument("--max-memory-mb", type=float, default=64, help="metasig's memory budget (default: %(default)s)")
    p.add_argument("--requests", type=int, default=2000, help="sequential requests for latency (default: %(default)s)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default: %(default)s)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of the throughput run (default: %(default)s)")
    p.add_argument("--no-peer", action="store_true", help="skip the MLflow peer")
    p.add_argument("--keep", default=None, help="keep the scratch folder here")
    args = p.parse_args(argv)

    work = Path(args.keep or tempfile.mkdtemp(prefix="metasig-bench-serve-"))
    if args.keep and work.exists() and any(work.iterdir()):
        p.error(f"--keep {work}: folder is not empty")
    work.mkdir(parents=True, exist_ok=True)
    print(f"scratch: {work}", file=sys.stderr)
    pipe, _ = fit_pipeline()
    t0 = time.perf_counter()
    registry = metasig_registry(work, pipe, args.models)
    print(f"published {args.models} models in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    report = {
        "models": args.models,
        "max_models": args.max_models,
        "max_memory_mb": args.max_memory_mb,
        "clients": args.clients,
        "cpu_count": os.cpu_count(),
        "metasig": {},
        "peer": None,
    }
    if not args.no_peer:
        model_path = mlflow_model(work, pipe)
        same, _ = check_same_answers(work, registry, model_path)
        report["same_predictions"] = same
        if not same:
            print("warning: the two servers' probabilities differ", file=sys.stderr)
        report["peer"] = {
            "name": "mlflow models serve --env-manager local --workers 1 (sklearn pipeline, predict_proba)",
            "mlflow": _version("mlflow"),
        }
        run_mlflow(work, model_path, args, report["peer"])
    run_metasig(work, registry, args, report["metasig"])

    m, peer = report["metasig"], report["peer"]
    rows = [
        ("warm p50 ms", m["latency"]["p50_ms"], peer and peer["latency"]["p50_ms"]),
        ("warm p99 ms", m["latency"]["p99_ms"], peer and peer["latency"]["p99_ms"]),
        (f"req/s, {args.clients} clients", m["throughput"]["rps"], peer and peer["throughput"]["rps"]),
        ("start to first answer s", m["cold_start_s"], peer and peer["cold_start_s"]),
        ("on-demand model load ms", m["on_demand_load_ms"], None),
        ("RSS, 1 model MB", m["rss_one_model_mb"], peer and peer["rss_one_model_mb"]),
        (f"RSS, {args.models} models MB", m["rss_all_models_mb"], None),
    ]  # the peer: not measured
    report["ratios_metasig_over_peer"] = {label: ratio(a, b) for label, a, b in rows if b}
    report["targets"] = {
        "p99_under_10ms": m["latency"]["p99_ms"] < 10,
        "rps_at_least_peer": None if not peer else m["throughput"]["rps"] >= peer["throughput"]["rps"],
        "cache_within_budget": m["cache"].get("metasig_cache_models", 0) <= args.max_models
        and m["cache"].get("metasig_cache_bytes", 0) <= args.max_memory_mb * 2**20,
        "zero_errors": m["throughput"]["errors"] == 0 and (not peer or peer["throughput"]["errors"] == 0),
    }
    print(f"\n{'':28s}{'metasig':>12s}{'mlflow':>12s}{'ratio':>9s}")
    for label, a, b in rows:
        r = ratio(a, b)
        print(
            f"{label:28s}{a:12.2f}{(b if b is not None else float('nan')):12.2f}"
            f"{(r if r is not None else float('nan')):9.2f}"
        )
    print(f"\n(mlflow serves one model per process, so it has no {args.models}-model figure)")
    print("targets:", json.dumps(report["targets"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _version(package):
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
