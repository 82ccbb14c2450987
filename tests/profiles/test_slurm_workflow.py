"""The workflow on a real SLURM cluster (tests/slurm_cluster.py), through Snakemake's own SLURM
executor and the shipped profiles, edited the way a user edits them: partition names only.

One cluster serves both tests: the CPU profile runs a small study (every step); the GPU profile then
retrains the XGBoost models on the fake GPU, where they must see it, find it unusable and fall
back to the CPU. Every submission must be an sbatch that slurmctld ran to completion, and each
model's metrics must equal a local run's."""

import json
import re
import subprocess
import sys

import pytest
import yaml
from slurm_cluster import SlurmCluster, install, unavailable
from workflow import REPO, workflow_copy

from metasig.config import jobs, load

pytestmark = pytest.mark.e2e

# The small test study without its survival dataset (same rules, one table less): 18 steps in
# 11 cluster jobs, about 2 minutes under SLURM on 2 cores, most of it the executor's polling
# between dependent jobs (it backs off by 10 s per check that finds nothing finished).
CONFIG = "slurm_study.yaml"
# Test-cluster settings a user's cluster does not need: no slurmdbd, so status by squeue (sacct
# would fail only at debug level and Snakemake would poll forever); fast polling; keep the logs.
TEST_OVERRIDES = {
    "slurm-status-command": "squeue",
    "slurm-init-seconds-before-status-checks": 1,
    "seconds-between-status-checks": 1,
    "slurm-keep-successful-logs": True,
}


def study_copy(dest):
    """A scratch copy of the workflow holding the study config CONFIG."""
    workdir = workflow_copy(dest)
    config = yaml.safe_load((workdir / "resources" / "test_configs" / "small.yaml").read_text())
    config["datasets"] = {"wdbc": config["datasets"]["wdbc"]}
    (workdir / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    return workdir


def user_edited_profile(name, dest, partition):
    """profiles/<name> with every partition name replaced, as a user adapts it to a cluster."""
    profile = yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())
    profile["default-resources"]["slurm_partition"] = partition
    for resources in profile.get("set-resources", {}).values():
        if "slurm_partition" in resources:
            resources["slurm_partition"] = partition
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dest


def run_snakemake(workdir, env, *args, targets=(), timeout=600):
    # targets first: --configfile takes every value after it
    cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", "2", "--configfile", CONFIG, *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-8000:]}")
    return output


def planned_submissions(workdir, env, *profile_args, targets=()):
    """What a dry run with these profiles would submit: each group job once, and each job outside
    a group except the target rule `all` (no command: Snakemake finishes it itself)."""
    out = run_snakemake(workdir, env, "-n", *profile_args, targets=targets)
    groups = re.findall(r"Group job (\S+) \(jobs", out)
    singles = [r for r in re.findall(r"^rule (\w+):$", out, re.M) if r != "all"]
    return sorted(groups + singles)


def sbatch_calls(output):
    return re.findall(r"sbatch call: (sbatch .*)", output)


def submitted_names(calls, known):
    """Group or rule of each sbatch call, from the --comment the plugin writes: rule_<group>_<its
    rules> for a group job, rule_<rule>_wildcards_... for a single one. `known`: candidate names."""
    names = []
    for call in calls:
        comment = re.search(r"--comment '?(\S+?)'? ", call).group(1)
        matches = [n for n in known if comment == f"rule_{n}" or comment.startswith(f"rule_{n}_")]
        assert matches, f"no group or rule named in {comment!r}"
        names.append(max(matches, key=len))  # train_gpu, not train
    return sorted(names)


def metrics(workdir):
    return {
        str(p.relative_to(workdir)): json.loads(p.read_text())
        for p in sorted((workdir / "results" / "models").rglob("metrics.json"))
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    install()
    with SlurmCluster(root=tmp_path_factory.mktemp("slurm"), partition="main", gpus=1) as c:
        yield c


@pytest.fixture(scope="module")
def local_metrics(tmp_path_factory):
    """The models of the small study trained locally, for comparison."""
    workdir = study_copy(tmp_path_factory.mktemp("local"))
    files = [f"results/models/{d}/{t}/{g}/{m}/metrics.json" for d, t, g, m in jobs(load(workdir / CONFIG), workdir)]
    run_snakemake(workdir, None, targets=files)
    return metrics(workdir)


@pytest.fixture(scope="module")
def study(cluster, tmp_path_factory):
    """The study run under SLURM with the CPU profile: (workdir, scratch root, test-overrides
    profile, the submissions a dry run planned, snakemake's output)."""
    root = tmp_path_factory.mktemp("cluster-run")
    workdir = study_copy(root / "workflow")
    overrides = root / "test-profile"
    overrides.mkdir()
    (overrides / "config.yaml").write_text(yaml.safe_dump(TEST_OVERRIDES))
    profiles = ["--profile", str(user_edited_profile("slurm", root / "slurm", "main")), "--profile", str(overrides)]
    planned = planned_submissions(workdir, cluster.env, *profiles)
    output = run_snakemake(workdir, cluster.env, *profiles, "--verbose")
    return workdir, root, overrides, planned, output


def test_cpu_profile_runs_the_study_as_few_sbatch_jobs(cluster, study, local_metrics):
    workdir, _, _, planned, output = study
    calls = sbatch_calls(output)
    # Every job went through sbatch, bundled: one submission per group job or ungrouped job.
    assert submitted_names(calls, set(planned)) == planned
    assert planned.count("train") == 1 and planned.count("prep") == 1
    jobs_run = int(re.search(r"(\d+) of \1 steps \(100%\) done", output).group(1))
    assert len(calls) < jobs_run - 1, f"{len(calls)} submissions for {jobs_run} jobs: grouping did not bundle"
    assert "Trying to restart job" not in output
    for call in calls:
        assert " -p main" in call and " --mem " in call and " -t " in call, call
        assert "--gpus" not in call and "--gres" not in call, call
    # ... and slurmctld ran each of them to completion.
    run_id = re.search(r"SLURM run ID: (\S+)", output).group(1)
    ours = [j for j in cluster.jobs() if j["JobName"] == run_id]
    assert len(ours) == len(calls)
    assert {j["JobState"] for j in ours} == {"COMPLETED"}, [(j["JobId"], j["JobState"]) for j in ours]
    # The plugin's per-job SLURM logs show where each ran.
    logs = list((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(logs) == len(calls)
    # Same models as a local run, number for number.
    assert metrics(workdir) == local_metrics
    assert (workdir / "results" / "leaderboard.tsv").is_file()
    assert (workdir / "results" / "registry" / "index.json").is_file()


def test_gpu_profile_asks_for_a_gpu_and_falls_back_to_cpu(cluster, study, local_metrics):
    workdir, root, overrides, _, _ = study
    profiles = [
        "--profile",
        str(user_edited_profile("slurm-gpu", root / "slurm-gpu", "main")),
        "--profile",
        str(overrides),
    ]
    xgboost = [f for f, doc in local_metrics.items() if doc["model_kind"] in ("xgboost", "xgboost_cox")]
    assert xgboost
    # device: cuda changes the XGBoost jobs' params, so exactly they rerun, now in rule train_gpu.
    output = run_snakemake(workdir, cluster.env, *profiles, "--verbose", targets=xgboost)
    calls = sbatch_calls(output)
    assert calls and submitted_names(calls, {"train", "train_gpu"}) == ["train_gpu"] * len(calls)
    for call in calls:
        assert "--gpus=1" in call, call
    run_id = re.search(r"SLURM run ID: (\S+)", output).group(1)
    ours = [j for j in cluster.jobs() if j["JobName"] == run_id]
    assert ours and all(j.get("TresPerJob") == "gres:gpu:1" for j in ours), ours
    assert {j["JobState"] for j in ours} == {"COMPLETED"}
    # Inside the job SLURM exposed the (fake) GPU; XGBoost could not use it and said so.
    for metrics_file in xgboost:
        doc = local_metrics[metrics_file]
        log = (workdir / "logs" / doc["dataset"] / doc["task"] / doc["group"] / doc["model"] / "train.log").read_text()
        assert "device cuda requested but" in log and "CUDA_VISIBLE_DEVICES='0'" in log, log[:2000]
        assert "training on the CPU instead" in log
    # The CPU fallback trains exactly as the CPU profile did.
    after = metrics(workdir)
    assert {f: after[f] for f in xgboost} == {f: local_metrics[f] for f in xgboost}
