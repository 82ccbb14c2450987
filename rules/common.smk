import functools
import os
import sys

from snakemake.exceptions import WorkflowError

# Rule scripts import the metasig package from this checkout, in any environment they run in,
# and command-line tools installed beside this Python (e.g. multiqc in .venv) are found.
os.environ.update(
    PYTHONPATH=workflow.basedir,
    PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
)
sys.path.insert(0, workflow.basedir)

import metasig.config as mconfig
import metasig.reads.layout as mreads
import metasig.learn.layout as mlayout
import metasig.learn.job_memory as mjob_memory
import metasig.data.steps as msteps

# The one check of the config: the schema (its messages name the field that is wrong; the
# schema's defaults are filled in on the way) and the semantic checks.
CONFIG_FILE = (workflow.configfiles or ["config"])[-1]
config = mconfig.check(config, CONFIG_FILE)

JOBS = mconfig.jobs(config)
RANDOM_JOBS = mconfig.random_set_jobs(config)  # the jobs with a random-gene-set control


def fold_settings(dataset):
    """Per task, the fold counts (and grouping) its classes are checked against before any training."""
    return {
        task: mconfig.fold_settings(config, dataset, task)
        for task in config["datasets"][dataset]["tasks"]
    }


# Every local dataset is read and checked while the DAG is built, before any job: a bad dataset
# stops the run before another dataset's outputs are written (downloads are checked in their
# load_dataset job). Cluster jobs re-parse this file; the main process has checked already.
if workflow.is_main_process:
    msteps.check_inputs(
        {
            d: (ds, mconfig.expanded_groups(config, d), fold_settings(d))
            for d, ds in config["datasets"].items()
        },
        CONFIG_FILE,
        config["cache"],
        marker_dir=".snakemake/metasig",
    )
MODEL_DIR = mlayout.MODEL_DIR


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    sample="[^/]+",
    unit="[^-./]+",
    accession="[SED]RR[0-9]+",
    task="[A-Za-z0-9_-]+",
    group="[A-Za-z0-9_-]+",
    model="[A-Za-z0-9_-]+",


def dataset_cfg(wildcards):
    return config["datasets"][wildcards.dataset]


def task_cfg(wildcards):
    return dataset_cfg(wildcards)["tasks"][wildcards.task]


def task_type(dataset, task):
    return config["datasets"][dataset]["tasks"][task]["type"]


# The reads layout is metasig.reads.layout's; these wrappers only look a dataset up.
def is_reads(dataset):
    return mreads.is_reads(config["datasets"][dataset])


@functools.cache
def units(dataset):
    """The units sheet of a reads dataset (read once per DAG build)."""
    return mreads.units_table(dataset, config["datasets"][dataset])


def reads_units(dataset):
    return units(dataset) if is_reads(dataset) else None


def raw_fastq(wildcards):
    row = mreads.unit_row(units(wildcards.dataset), wildcards.sample, wildcards.unit)
    return mreads.raw_fastq(wildcards.dataset, row)


def trimmed_fastq(wildcards):
    return mreads.trimmed_fastq(
        wildcards.dataset, wildcards.sample, units(wildcards.dataset)
    )


def transcriptome_path(wildcards):
    return mreads.transcriptome(wildcards.dataset, dataset_cfg(wildcards))


def mapping_qc_inputs(wildcards):
    return mreads.mapping_qc_inputs(
        wildcards.dataset, dataset_cfg(wildcards), units(wildcards.dataset)
    )


def load_inputs(wildcards):
    d = wildcards.dataset
    return mreads.load_inputs(d, config["datasets"][d], reads_units(d))


def read_inputs(dataset, input):
    return mreads.read_inputs(
        dataset,
        config["datasets"][dataset],
        reads_units(dataset),
        input.get("quant"),
        input.get("qc"),
    )


def gmt_inputs(wildcards):
    return [
        g["gmt"]
        for g in dataset_cfg(wildcards)["gene_groups"].values()
        if isinstance(g, dict)
    ]


def task_job_files(name):
    """One file per (group, model) job of a task, e.g. all metrics.json of the task."""
    return lambda wildcards: mlayout.job_files(
        JOBS, name, wildcards.dataset, wildcards.task
    )


def task_random_files(wildcards):
    """random_sets.tsv of every job of the task that has random gene sets (maybe none)."""
    return mlayout.job_files(
        RANDOM_JOBS, mlayout.RANDOM_SETS, wildcards.dataset, wildcards.task
    )


def random_set_count(wildcards):
    """K, the random gene sets of each of the task's tested (group, model)."""
    return mconfig.random_sets_settings(config, wildcards.dataset, wildcards.task)[
        "count"
    ]


def random_sets_runtime(wildcards, attempt):
    """Cluster minutes of a random-set job: 15 + 1 per set, times the attempt. The default
    study's sets took about 8 s each (elasticnet, 569 samples x 10 features)."""
    return attempt * (15 + random_set_count(wildcards))


def random_tasks():
    return sorted({(d, t) for d, t, _, _ in RANDOM_JOBS})


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
        mlayout.job_file(job, name)
        for job in JOBS
        for name in ("metrics.json", "model")
    ]
    outputs += [mlayout.job_file(job, mlayout.RANDOM_SETS) for job in RANDOM_JOBS]
    outputs += [f"results/plots/{d}/{t}/random_sets.svg" for d, t in random_tasks()]
    outputs += ["results/leaderboard.tsv", "results/registry/index.json"]
    if config["mlflow"]["enabled"]:
        outputs.append("results/mlflow/logged.json")
    for dataset in config["datasets"]:
        outputs += [
            f"results/plots/{dataset}/qc.svg",
            f"results/plots/{dataset}/pca.svg",
        ]
        outputs += mreads.final_outputs(dataset, config["datasets"][dataset])
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


def train_mem_mb(wildcards, input, threads, attempt):
    """Memory of a training job: metasig.learn.job_memory's estimate from its samples, its genes
    and its threads, times the attempt, so a retried job asks for more."""
    normalization = mconfig.normalization(config, wildcards.dataset)
    return attempt * mjob_memory.train_mem_mb(
        input.matrix,
        input.samples,
        input.groups,
        wildcards.group,
        normalization,
        threads,
    )


def train_threads(wildcards):
    """Threads of a training job: the task's `cv.n_jobs` (default 1), or more when the study has
    fewer training jobs than cores: --cores split evenly among them (rounded down), so a study of
    one large job uses every core and one of a thousand small jobs runs one per core. Snakemake
    runs jobs only while their threads fit in --cores, so cores are never oversubscribed; where
    --cores is not known (cluster runs), n_jobs. The engine's results do not depend on the count.
    """
    n_jobs = mconfig.cv_settings(config, wildcards.dataset, wildcards.task)["n_jobs"]
    try:
        cores = workflow.cores
    except WorkflowError:  # no --cores given
        return n_jobs
    if not isinstance(cores, int):
        return n_jobs
    return max(n_jobs, cores // max(1, len(JOBS)))
