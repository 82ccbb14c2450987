"""`python -m metasig.bench engine --configs`: the ready example configs at their real size.

Each example (config/examples/<name>.yaml) keeps its seed, CV, preprocessing, models, tasks and
groups, but its dataset becomes a `table` source holding a synthetic matrix of its shape
(metasig/bench/synthetic.py; --quick: the quick shapes), and MLflow is off. Snakemake then runs
the whole workflow on it (load, checks, groups, training, gate, plots, leaderboard, registry) in
a scratch copy, with the benchmark's --threads as --cores; the wall time is recorded. Changes to
the examples, stated in the summary: her2_tcga_xena keeps only the task `her2` (the synthetic
sheet has no missing statuses, so `her2_strict` would train the same jobs again); its gene set
ERBB2_amplicon resolves because the synthetic matrix names planted genes after it; its
`cv.group_by: patient` (the Xena source's barcode prefix) gets a `patient` column with one sample
per patient, as the synthetic table has no matched normals.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from metasig import io
from metasig.bench import synthetic
from metasig.bench.engine import Progress
from metasig.bench.scratch import REPO, scratch_copy

EXAMPLES = {"her2_tcga_xena": "a", "pancancer_5types": "c", "leukemia_gse28497": "b"}
DROPPED_TASKS = {"her2_tcga_xena": ["her2_strict"]}


def study(example, case, workdir):
    """Write the synthetic table and the example's config pointing at it; return the config path."""
    config = yaml.safe_load((REPO / "config" / "examples" / f"{example}.yaml").read_text())
    (name, dataset), *_ = config["datasets"].items()
    tasks = {t: cfg for t, cfg in dataset["tasks"].items() if t not in DROPPED_TASKS.get(example, [])}
    matrix, sheet, _, _ = synthetic.generate(case)
    label = next(cfg["label"] for cfg in tasks.values())
    sheet = sheet.rename(columns={case.label: label})
    group_by = (config.get("cv") or {}).get("group_by")
    if group_by and group_by not in sheet.columns:  # one sample per group
        sheet[group_by] = sheet["sample"]
    io.write_matrix(matrix, workdir / "input" / f"{name}.parquet", case.unit, case.namespace)
    io.write_sheet(sheet, workdir / "input" / f"{name}_samples.tsv")
    config["datasets"] = {
        name: {
            "source": "table",
            "matrix": f"input/{name}.parquet",
            "samples": f"input/{name}_samples.tsv",
            "unit": dataset["unit"],
            "namespace": dataset["namespace"],
            "gene_groups": dataset["gene_groups"],
            "tasks": tasks,
        }
    }
    config["mlflow"] = {"enabled": False}
    path = workdir / f"{example}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path.name


def run(workdir, configfile, cores, timeout):
    """Snakemake on the config in its own session; (status, wall seconds)."""
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", configfile, "--quiet", "rules"]
    with open(workdir / "snakemake.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return "timeout", time.perf_counter() - started
    status = "ok" if proc.returncode == 0 else f"failed (rc {proc.returncode}; see {workdir / 'snakemake.log'})"
    return status, time.perf_counter() - started


def _leaderboard(workdir):
    board = workdir / "results" / "leaderboard.tsv"
    if not board.is_file():
        return []
    import pandas as pd

    frame = pd.read_csv(board, sep="\t")
    keep = [c for c in ("task", "group", "model", "roc_auc", "permuted_roc_auc", "passed") if c in frame.columns]
    return frame[keep].to_dict("records")


def main(args):
    say = Progress()
    cases = synthetic.QUICK if args.quick else synthetic.FULL
    timeout = args.job_timeout or (3600 if args.quick else 6 * 3600)
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="metasig-configs-"))
    rows = []
    for example, letter in EXAMPLES.items():
        case = cases[letter]
        workdir = scratch_copy(root / example)
        configfile = study(example, case, workdir)
        say(f"start  {example}: {case.n_samples} x {case.n_genes} synthetic table, --cores {args.threads}")
        status, wall = run(workdir, configfile, args.threads, timeout)
        say(f"{'done  ' if status == 'ok' else 'FAILED'} {example}: {status} after {wall:.0f} s")
        rows.append(
            {
                "example": example,
                "shape": [case.n_samples, case.n_genes],
                "status": status,
                "wall_s": round(wall, 1),
                "training_jobs": len(list((workdir / "results" / "models").rglob("metrics.json"))),
                "dropped_tasks": DROPPED_TASKS.get(example, []),
                "leaderboard": _leaderboard(workdir),
            }
        )
    lines = ["| example | shape | cores | status | wall | training jobs |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['example']} | {r['shape'][0]} x {r['shape'][1]} | {args.threads} | {r['status'].split(' (')[0]} "
            f"| {r['wall_s']:.0f} s | {r['training_jobs']} |"
        )
    print("\n".join(lines))
    summary = {"title": "Ready configs on synthetic tables of their shape", "notes": [__doc__], "rows": rows}
    name = args.out or ("bench_engine_configs_quick" if args.quick else "bench_engine_configs")
    out = Path(args.save_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(f"# {summary['title']}\n\n{__doc__}\n" + "\n".join(lines) + "\n")
    save_json = {**summary, "settings": vars(args)}
    (out / f"{name}.json").write_text(json.dumps(save_json, indent=2, default=str) + "\n")
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    return summary
