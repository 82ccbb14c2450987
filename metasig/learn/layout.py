"""Where a trained model's files are: one folder per (dataset, task, gene group, model) job under
MODELS_ROOT, holding metrics.json, predictions.tsv, importance.tsv, timing.json and the artifact
folder `model/`. The training rule writes them, the gate, report and registry read them; all of
them take the paths from here."""

from pathlib import Path

MODELS_ROOT = "results/models"
MODEL_DIR = f"{MODELS_ROOT}/{{dataset}}/{{task}}/{{group}}/{{model}}"  # a Snakemake pattern
ARTIFACT_DIR = "model"
METRICS = "metrics.json"
RANDOM_SETS = "random_sets.tsv"  # the random-gene-set control (metasig.learn.random_sets_file), when configured
IDENTITY = ("dataset", "task", "group", "model")


def model_dir(models_root, dataset, task, group, model) -> Path:
    """A job's folder under `models_root`."""
    return Path(models_root, dataset, task, group, model)


def job_file(job, name) -> str:
    """A file (or folder) `name` of one job (dataset, task, group, model), under MODELS_ROOT."""
    return f"{MODEL_DIR}/{name}".format(**dict(zip(IDENTITY, job)))


def job_files(jobs, name, dataset=None, task=None) -> list:
    """`name` of every job, or of the jobs of one dataset's task, in job order."""
    return [job_file(j, name) for j in jobs if dataset is None or (j[0], j[1]) == (dataset, task)]


def models_root(artifact_dir) -> str:
    """The models root a job's artifact folder (…/{dataset}/{task}/{group}/{model}/model) is under."""
    return str(Path(artifact_dir).parents[len(IDENTITY)])


def job_of(path) -> tuple:
    """(dataset, task, group, model) of a file directly in a job's folder."""
    return tuple(Path(path).parent.parts[-len(IDENTITY) :])
