"""How the workflow scales to thousands of models: generate a study of N random gene sets x T
tasks x M models over the builtin WDBC table, dry-run it with the SLURM profile, and report how
long planning takes and how many cluster jobs it would submit with and without grouping.

Usage: python -m metasig.bench.dag [--sets 625 --tasks 2 --models 4] [--profile profiles/slurm] [--keep DIR]
(625 x 2 x 4 = 5,000 training jobs). Runs in a scratch copy of the workflow; nothing is trained.
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

MODEL_KINDS = ["elasticnet", "xgboost", "random_forest", "linear_sweep"]
STUDY_DIR = "scale"


def wdbc_features():
    """The builtin wdbc dataset's 30 features, named as metasig.data.sources.builtin names them."""
    from sklearn.datasets import load_breast_cancer

    from metasig.data.sources.builtin import snake_case

    return [snake_case(f) for f in load_breast_cancer().feature_names]


def generate(workdir, n_sets, n_tasks, n_models, seed=0):
    """Write scale/sets.gmt (n_sets random sets of 3-10 WDBC features) and scale/config.yaml
    (n_tasks binary tasks x n_models models, cycling through the classifier kinds) into the
    workflow copy `workdir`; return the config's path relative to it."""
    features = wdbc_features()
    rng = np.random.default_rng(seed)
    folder = Path(workdir) / STUDY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n_sets):
        genes = rng.choice(features, size=int(rng.integers(3, 11)), replace=False)
        lines.append("\t".join([f"SET{i + 1:05d}", "random"] + list(genes)))
    (folder / "sets.gmt").write_text("\n".join(lines) + "\n")
    models = {
        f"m{j + 1:02d}_{MODEL_KINDS[j % len(MODEL_KINDS)]}": {"kind": MODEL_KINDS[j % len(MODEL_KINDS)]}
        for j in range(n_models)
    }
    tasks = {
        f"task{t + 1:02d}": {"type": "binary", "label": "diagnosis", "positive": "malignant", "models": list(models)}
        for t in range(n_tasks)
    }
    config = {
        "seed": seed,
        "cv": {"outer_folds": 3, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 200},
        "mlflow": {"enabled": False},
        "models": models,
        "datasets": {
            "wdbc": {
                "source": "builtin",
                "name": "wdbc",
                "unit": "features",
                "namespace": "feature",
                "gene_groups": {"random": {"gmt": f"{STUDY_DIR}/sets.gmt"}},
                "tasks": tasks,
            }
        },
    }
    path = f"{STUDY_DIR}/config.yaml"
    (Path(workdir) / path).write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def ungrouped_profile(workdir, profile):
    """A profile to layer over the cluster profile `profile` that turns its bundling off: each
    rule it groups gets a group of its own and every group one job per cluster job, so each job
    is one submission, as if the workflow had no groups."""
    settings = yaml.safe_load((Path(workdir) / profile / "config.yaml").read_text())
    rules = [*settings.get("groups", {}), "train", "train_gpu"]
    off = {"groups": {r: r for r in rules}, "group-components": {r: 1 for r in rules}}
    folder = Path(workdir) / STUDY_DIR / "ungrouped"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(off))
    return folder


def parse_dry_run(output):
    """From a dry run's output: jobs per rule, and the cluster submissions it plans: one per group
    job plus one per job outside any group, except `all` (no command; Snakemake finishes it)."""
    jobs = {}
    table = re.search(r"Job stats:\njob\s+count\n[-\s]+\n(.*?)\ntotal\s+(\d+)", output, re.S)
    if not table:
        raise RuntimeError(f"no job stats in the dry run's output:\n{output[-3000:]}")
    for line in table.group(1).splitlines():
        rule, count = line.split()
        jobs[rule] = int(count)
    groups = re.findall(r"Group job (\S+) \(jobs", output)
    singles = [r for r in re.findall(r"^rule (\w+):$", output, re.M) if r != "all"]
    return {
        "jobs": jobs,
        "total_jobs": int(table.group(2)),
        "group_jobs": len(groups),
        "submissions": len(groups) + len(singles),
    }


def dry_run(workdir, config, profiles, timeout=600):
    """Time `snakemake -n` with these profiles; return (seconds, parse_dry_run(...))."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--configfile", config]
    for profile in profiles:
        cmd += ["--profile", str(profile)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-5000:]}")
    return seconds, parse_dry_run(output)


def measure(workdir, n_sets, n_tasks, n_models, profile="profiles/slurm", seed=0):
    config = generate(workdir, n_sets, n_tasks, n_models, seed)
    grouped_s, grouped = dry_run(workdir, config, [profile])
    off = ungrouped_profile(workdir, profile)
    ungrouped_s, ungrouped = dry_run(workdir, config, [profile, off])
    return {
        "gene_sets": n_sets,
        "tasks": n_tasks,
        "models": n_models,
        "profile": profile,
        "training_jobs": grouped["jobs"].get("train", 0) + grouped["jobs"].get("train_gpu", 0),
        "total_jobs": grouped["total_jobs"],
        "dry_run_s_grouped": round(grouped_s, 1),
        "dry_run_s_ungrouped": round(ungrouped_s, 1),
        "submissions_grouped": grouped["submissions"],
        "submissions_ungrouped": ungrouped["submissions"],
        "jobs_per_rule": grouped["jobs"],
    }


def main(argv=None):
    from metasig.bench.scratch import scratch_workdir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=625)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", default="profiles/slurm")
    parser.add_argument("--keep", help="work in this directory and keep it")
    args = parser.parse_args(argv)

    with scratch_workdir(args.keep, prefix="metasig-scale-") as workdir:
        summary = measure(workdir, args.sets, args.tasks, args.models, args.profile, args.seed)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
