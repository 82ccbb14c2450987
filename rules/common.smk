import functools
import os
import sys

# Rule scripts import the metasig package from this checkout, in any environment they run in,
# and command-line tools installed beside this Python (e.g. multiqc in .venv) are found.
os.environ.update(
    PYTHONPATH=workflow.basedir,
    PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
)
sys.path.insert(0, workflow.basedir)

import metasig.config as mconfig
import metasig.reads.layout as mreads
import metasig.data.steps as msteps
from metasig.reads.units import read_units
from metasig.data.sources.table import read_sample_sheet

# The one check of the config: the schema (its messages name the field that is wrong; the
# schema's defaults are filled in on the way) and the semantic checks.
CONFIG_FILE = (workflow.configfiles or ["config"])[-1]
config = mconfig.check(config, CONFIG_FILE)

JOBS = mconfig.jobs(config)


def fold_settings(dataset):
    """Per task, the fold counts its classes are checked against before any training."""
    return {
        task: {
            k: mconfig.cv_settings(config, dataset, task)[k]
            for k in ("outer_folds", "inner_folds")
        }
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
MODELS_ROOT = "results/models"
MODEL_DIR = f"{MODELS_ROOT}/{{dataset}}/{{task}}/{{group}}/{{model}}"


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


READ_SOURCES = ("fastq", "bam", "simulated")


def is_reads(dataset):
    return config["datasets"][dataset]["source"] in READ_SOURCES


def sample_sheet_path(dataset):
    ds = config["datasets"][dataset]
    if ds["source"] == "simulated":
        return f"results/{dataset}/simulated/samples.tsv"
    return ds.get("samples")


@functools.cache
def units(dataset):
    """The units sheet of a reads dataset (simulated ones are known from their config)."""
    ds = config["datasets"][dataset]
    if ds["source"] == "simulated":
        return mreads.simulated_units(dataset, ds["simulation"])
    return read_units(
        ds["units"], samples=list(read_sample_sheet(ds["samples"])["sample"])
    )


def unit_row(wildcards):
    table = units(wildcards.dataset)
    return table[
        (table["sample"] == wildcards.sample) & (table["unit"] == wildcards.unit)
    ].iloc[0]


def dataset_samples(dataset):
    return list(dict.fromkeys(units(dataset)["sample"]))


def is_paired(row):
    return isinstance(row.get("fq2"), str) or isinstance(row.get("sra"), str)


def raw_fastq(wildcards):
    """The unit's FASTQ files: as listed, or fetched from SRA."""
    row = unit_row(wildcards)
    if isinstance(row.get("sra"), str):
        return expand(
            "results/{dataset}/sra/{acc}_{mate}.fastq.gz",
            dataset=wildcards.dataset,
            acc=row["sra"],
            mate=[1, 2],
        )
    return [row["fq1"], row["fq2"]] if is_paired(row) else [row["fq1"]]


def trimmed_fastq(dataset, sample):
    """fastp's output for every unit of a sample, as salmon reads them: {"r1": [...], "r2": [...]}."""
    table = units(dataset)
    rows = table[table["sample"] == sample]
    prefix = f"results/{dataset}/fastp"
    if all(is_paired(row) for _, row in rows.iterrows()):
        return {
            "r1": [f"{prefix}/{sample}-{u}.1.fastq.gz" for u in rows["unit"]],
            "r2": [f"{prefix}/{sample}-{u}.2.fastq.gz" for u in rows["unit"]],
        }
    return {
        "r1": [f"{prefix}/{sample}-{u}.se.fastq.gz" for u in rows["unit"]],
        "r2": [],
    }


def fastp_reports(dataset):
    return [
        f"results/{dataset}/fastp/{row['sample']}-{row['unit']}{'' if is_paired(row) else '.se'}.json"
        for _, row in units(dataset).iterrows()
    ]


def transcriptome_path(wildcards):
    ds = dataset_cfg(wildcards)
    if ds["source"] == "simulated":
        return f"results/{wildcards.dataset}/simulated/transcriptome.fa.gz"
    return ds["transcriptome"]


def mapping_qc_inputs(wildcards):
    """Tool outputs that tell how each sample's reads went: fastp + salmon, or featureCounts."""
    dataset = wildcards.dataset
    if config["datasets"][dataset]["source"] == "bam":
        return {"summary": f"results/{dataset}/featurecounts/counts.txt.summary"}
    return {"fastp": fastp_reports(dataset), "salmon": salmon_dirs(dataset)}


def salmon_dirs(dataset):
    return [f"results/{dataset}/salmon/{s}" for s in dataset_samples(dataset)]


def bam_files(dataset):
    return list(units(dataset)["bam"])


def read_inputs(dataset, input):
    """For the load step of a reads dataset: which input is which (None for other sources)."""
    if not is_reads(dataset):
        return None
    ds = config["datasets"][dataset]
    table = units(dataset)
    simulated = ds["source"] == "simulated"
    folder = f"results/{dataset}/simulated"
    return {
        "samples": sample_sheet_path(dataset),
        "tx2gene": f"{folder}/tx2gene.tsv" if simulated else ds.get("tx2gene"),
        "gtf": None if simulated else ds.get("gtf"),
        "quant": (
            dict(zip(dataset_samples(dataset), salmon_dirs(dataset)))
            if ds["source"] != "bam"
            else input.quant
        ),
        "bam_samples": (
            dict(zip(table["bam"], table["sample"])) if "bam" in table else {}
        ),
        "qc": input.qc,
        "exclude_low_mapping": ds["exclude_low_mapping"],
        "namespace": ds["namespace"],
    }


def load_inputs(wildcards):
    """What a dataset's load step reads: local files (so editing them re-runs it) and, for reads
    datasets, the quantifications and the mapping QC table."""
    dataset = wildcards.dataset
    ds = config["datasets"][dataset]
    files = [ds[key] for key in ("matrix", "samples", "tx2gene", "gtf") if key in ds]
    inputs = {"files": files}
    if ds["source"] in ("fastq", "simulated"):
        inputs["quant"] = salmon_dirs(dataset)
        inputs["qc"] = f"results/{dataset}/qc/mapping.tsv"
        if ds["source"] == "simulated":
            inputs["files"] = [
                f"results/{dataset}/simulated/{f}"
                for f in ("samples.tsv", "tx2gene.tsv")
            ]
    elif ds["source"] == "bam":
        inputs["quant"] = f"results/{dataset}/featurecounts/counts.txt"
        inputs["qc"] = f"results/{dataset}/qc/mapping.tsv"
    return inputs


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
    if config["mlflow"]["enabled"]:
        outputs.append("results/mlflow/logged.json")
    for dataset in config["datasets"]:
        outputs += [
            f"results/plots/{dataset}/qc.svg",
            f"results/plots/{dataset}/pca.svg",
        ]
        if is_reads(dataset):
            outputs += [
                f"results/{dataset}/qc/multiqc.html",
                f"results/plots/{dataset}/mapping.svg",
            ]
        if config["datasets"][dataset]["source"] in ("fastq", "simulated"):
            outputs.append(f"results/{dataset}/tpm.parquet")
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
