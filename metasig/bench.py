"""`make bench`: wall time of the default study from scratch and the per-job overhead of Snakemake
(median job wall time minus the in-process fit time the job itself measured).

The study runs in a scratch copy of the workflow so the checkout's own results are left alone.
Usage: python -m metasig.bench [--config FILE] [--cores N] [--keep DIR]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
PARTS = ["Snakefile", "rules", "scripts", "config", "resources", "envs", "profiles", "metasig"]


def scratch_copy(dest):
    """Copy the workflow (not its results or venv) into `dest` and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / part)
    return dest


def job_overheads(workdir):
    """Per training job: (wall seconds from Snakemake's benchmark file, fit seconds from timing.json)."""
    rows = []
    for bench in sorted((workdir / "benchmarks" / "train").rglob("*.tsv")):
        job = bench.relative_to(workdir / "benchmarks" / "train").with_suffix("")
        timing = json.loads((workdir / "results" / "models" / job / "timing.json").read_text())
        wall = float(pd.read_csv(bench, sep="\t")["s"].iloc[0])
        rows.append({"job": str(job), "wall_s": wall, "fit_s": timing["fit_seconds"], "overhead_s": wall - timing["fit_seconds"]})
    return pd.DataFrame(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--cores", type=int, default=8)
    parser.add_argument("--keep", help="run in this directory and keep it")
    args = parser.parse_args(argv)

    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="metasig-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    scratch_copy(workdir)
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(args.cores), "--configfile", args.config, "--quiet", "rules"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=workdir, check=True)
    wall = time.perf_counter() - start

    jobs = job_overheads(workdir)
    summary = {
        "config": args.config,
        "cores": args.cores,
        "study_wall_s": round(wall, 1),
        "training_jobs": len(jobs),
        "median_job_wall_s": round(statistics.median(jobs.wall_s), 2),
        "median_job_fit_s": round(statistics.median(jobs.fit_s), 2),
        "median_job_overhead_s": round(statistics.median(jobs.overhead_s), 2),
    }
    print(jobs.sort_values("wall_s", ascending=False).to_string(index=False, float_format="%.2f"))
    print(json.dumps(summary, indent=2))
    out = REPO / "benchmarks" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return summary


if __name__ == "__main__":
    main()
