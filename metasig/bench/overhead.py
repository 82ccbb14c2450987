"""Per-job overhead at scale: a table-source study of many small gene groups (887 x 260 matrix,
groups of 5-20 genes, cheap models, a small CV so the fits are short), trained by Snakemake in a
scratch copy of the workflow. Reports the median and p90 of overhead = job wall time (Snakemake's
benchmark file) - in-process fit time (timing.json), and the study's total wall time.

Usage: python -m metasig.bench overhead [--jobs 1000] [--cores 2] [--keep DIR]
The target (issue 12): median overhead at most 1 s on 1,000 jobs.
"""

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

STUDY_DIR = "overhead"
SHAPE = (887, 260)
# Cheap on purpose: one candidate each, so the benchmark measures what surrounds the fit.
MODELS = {
    "enet": {"kind": "elasticnet", "search": {"C": [1.0], "l1_ratio": [0.5]}},
    "xgb": {"kind": "xgboost", "search": {"max_depth": [2], "n_estimators": [20]}},
}
CV = {"outer_folds": 3, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 100, "permuted_repeats": 1}


def generate(workdir, n_jobs, seed=0):
    """Write overhead/{matrix.parquet, samples.tsv, sets.gmt, config.yaml} into the workflow copy
    `workdir` (log2 expression with a planted signal on the first 20 genes; n_jobs / len(MODELS)
    random sets of 5-20 genes); return (config path relative to workdir, training targets)."""
    rng = np.random.default_rng(seed)
    folder = Path(workdir) / STUDY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    n, p = SHAPE
    genes = [f"G{j + 1:04d}" for j in range(p)]
    samples = [f"S{i + 1:04d}" for i in range(n)]
    label = rng.random(n) < 0.3
    expr = np.log2(rng.lognormal(mean=5.0, sigma=1.0, size=(n, p)) + 1)
    expr[:, :20] += 0.8 * label[:, None]
    pd.DataFrame(expr, index=pd.Index(samples, name="sample"), columns=genes).to_parquet(folder / "matrix.parquet")
    sheet = pd.DataFrame({"sample": samples, "status": np.where(label, "case", "control")})
    sheet.to_csv(folder / "samples.tsv", sep="\t", index=False)
    n_sets = max(1, math.ceil(n_jobs / len(MODELS)))
    lines = [
        "\t".join([f"SET{i + 1:04d}", "random", *rng.choice(genes, size=int(rng.integers(5, 21)), replace=False)])
        for i in range(n_sets)
    ]
    (folder / "sets.gmt").write_text("\n".join(lines) + "\n")
    config = {
        "seed": seed,
        "cv": CV,
        "mlflow": {"enabled": False},
        "models": MODELS,
        "datasets": {
            "scale": {
                "source": "table",
                "matrix": f"{STUDY_DIR}/matrix.parquet",
                "samples": f"{STUDY_DIR}/samples.tsv",
                "unit": "log2",
                "namespace": "symbol",
                "gene_groups": {"random": {"gmt": f"{STUDY_DIR}/sets.gmt"}},
                "tasks": {"case": {"type": "binary", "label": "status", "positive": "case", "models": list(MODELS)}},
            }
        },
    }
    path = f"{STUDY_DIR}/config.yaml"
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    targets = [
        f"results/models/scale/case/SET{i + 1:04d}/{model}/metrics.json" for i in range(n_sets) for model in MODELS
    ][:n_jobs]
    return path, targets


def run(cmd, workdir):
    """Run Snakemake with the jobs' log lines kept in a file (a thousand jobs' worth would flood the
    terminal); on failure, show its end."""
    with open(Path(workdir) / STUDY_DIR / "snakemake.log", "a") as out:
        proc = subprocess.run(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode:
        tail = (Path(workdir) / STUDY_DIR / "snakemake.log").read_text()[-5000:]
        raise RuntimeError(f"snakemake failed ({proc.returncode}):\n{tail}")


def cpu_seconds(workdir):
    """Median CPU seconds per training job (Snakemake's benchmark files): on a shared machine the
    wall time also counts waiting for a core, the CPU time does not."""
    files = sorted((Path(workdir) / "benchmarks" / "train").rglob("*.tsv"))
    return statistics.median(float(pd.read_csv(f, sep="\t")["cpu_time"].iloc[0]) for f in files)


def summarize(jobs, wall, cores, cpu_s=None):
    over = jobs.overhead_s
    return {
        "training_jobs": len(jobs),
        "cores": cores,
        "study_wall_s": round(wall, 1),
        "median_job_wall_s": round(statistics.median(jobs.wall_s), 3),
        "median_job_fit_s": round(statistics.median(jobs.fit_s), 3),
        "median_job_overhead_s": round(statistics.median(over), 3),
        "p90_job_overhead_s": round(float(np.percentile(over, 90)), 3),
        "median_job_cpu_s": None if cpu_s is None else round(cpu_s, 3),
        "target_median_overhead_s": 1.0,
    }


def main(argv=None):
    from metasig.bench.__main__ import job_overheads
    from metasig.bench.scratch import scratch_workdir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="training jobs (default 1000)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="work in this directory and keep it")
    args = parser.parse_args(argv)

    with scratch_workdir(args.keep, prefix="metasig-overhead-") as workdir:
        config, targets = generate(workdir, args.jobs, args.seed)
        options = ["--cores", str(args.cores), "--configfile", config, "--quiet", "rules"]  # targets go first
        snakemake = [sys.executable, "-m", "snakemake"]
        # prepare the inputs first, so the timed run holds the training jobs only
        prepared = [f"results/scale/{name}" for name in ("normalized.parquet", "samples.tsv", "groups.json")]
        run(snakemake + prepared + options, workdir)
        start = time.perf_counter()
        run(snakemake + targets + options, workdir)
        wall = time.perf_counter() - start
        summary = summarize(job_overheads(workdir), wall, args.cores, cpu_seconds(workdir))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
