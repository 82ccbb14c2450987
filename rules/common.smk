import os
import sys

from snakemake.utils import validate

# Rule scripts import the metasig package from this checkout, in any environment they run in.
os.environ.update(PYTHONPATH=workflow.basedir)
sys.path.insert(0, workflow.basedir)

import metasig.config as mconfig

# Our own schema check first: its messages name the config field that is wrong.
CONFIG_FILE = (workflow.configfiles or ["config"])[-1]
mconfig.check_schema(config, CONFIG_FILE)
validate(config, "../config/schemas/config.schema.yaml")  # also fills in defaults
config = mconfig.check(config, CONFIG_FILE)

JOBS = mconfig.jobs(config)
MODELS_ROOT = "results/models"
MODEL_DIR = f"{MODELS_ROOT}/{{dataset}}/{{task}}/{{group}}/{{model}}"


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    task="[A-Za-z0-9_-]+",
    group="[A-Za-z0-9_-]+",
    model="[A-Za-z0-9_-]+",


def dataset_cfg(wildcards):
    return config["datasets"][wildcards.dataset]


def task_cfg(wildcards):
    return dataset_cfg(wildcards)["tasks"][wildcards.task]


def task_type(dataset, task):
    return config["datasets"][dataset]["tasks"][task]["type"]


def local_inputs(wildcards):
    """Local files a dataset reads, so that editing them re-runs its load step."""
    ds = dataset_cfg(wildcards)
    return [ds[key] for key in ("matrix", "samples") if key in ds]


def gmt_inputs(wildcards):
    return [
        g["gmt"]
        for g in dataset_cfg(wildcards)["gene_groups"].values()
        if isinstance(g, dict)
    ]


def task_job_files(name):
    """One file per (group, model) job of a task, e.g. all metrics.json of the task."""

    def inner(wildcards):
        return [
            f"{MODEL_DIR}/{name}".format(dataset=d, task=t, group=g, model=m)
            for d, t, g, m in JOBS
            if (d, t) == (wildcards.dataset, wildcards.task)
        ]

    return inner


def tasks():
    return sorted({(d, t) for d, t, _, _ in JOBS})


TASK_PLOTS = {
    "binary": ["leaderboard", "roc_pr", "confusion", "calibration", "importance"],
    "multiclass": ["leaderboard", "roc_pr", "confusion", "importance"],
    "survival": ["leaderboard", "km", "importance"],
}


def final_outputs():
    # Every model is a target itself, so deleting one model's outputs rebuilds it (and what uses it).
    outputs = [
        f"{MODEL_DIR}/{name}".format(dataset=d, task=t, group=g, model=m)
        for d, t, g, m in JOBS
        for name in ("metrics.json", "model")
    ]
    outputs += ["results/leaderboard.tsv", "results/registry/index.json"]
    if config.get("mlflow", {}).get("enabled", True):
        outputs.append("results/mlflow/logged.json")
    for dataset in config["datasets"]:
        outputs += [
            f"results/plots/{dataset}/qc.svg",
            f"results/plots/{dataset}/pca.svg",
        ]
    for d, t in tasks():
        outputs += [
            f"results/plots/{d}/{t}/{p}.svg" for p in TASK_PLOTS[task_type(d, t)]
        ]
    return outputs


def task_plot_inputs(wildcards):
    return {
        "metrics": task_job_files("metrics.json")(wildcards),
        "predictions": task_job_files("predictions.tsv")(wildcards),
        "importance": task_job_files("importance.tsv")(wildcards),
        "gate": f"results/gate/{wildcards.dataset}/{wildcards.task}.tsv",
    }


def plot_rule_output(name):
    return report(
        f"results/plots/{{dataset}}/{{task}}/{name}.svg",
        caption=f"../resources/report/{name}.rst",
        category="{dataset}",
        subcategory="{task}",
        labels={"figure": name},
    )
