import re

# Models whose training jobs ask for a GPU: the XGBoost kinds when the study's `device` is cuda
# (profiles/slurm-gpu sets it). They train in rule train_gpu, the others in rule train, so a
# profile can size, place (partition, GPU model) and group the two kinds of job apart.
GPU_MODELS = [m for m in config["models"] if mconfig.uses_gpu(config, m)]
_GPU_NAMES = "|".join(map(re.escape, GPU_MODELS))
_END = "(?![A-Za-z0-9_-])"  # the model name ends here


# One job per (dataset, task, gene group, model): nested CV, permuted-label control, final fit.
# On a cluster, thousands of these small jobs must not become thousands of submissions: the
# cluster profiles' `group-components` bundle many jobs of group "train" into one cluster job.
# Local runs ignore groups. mem_mb: from the table's size (see train_mem_mb), times the attempt
# (the cluster profiles set `retries`).
rule train:
    input:
        # still raw counts when normalization is in-fold (see rule normalize)
        matrix="results/{dataset}/normalized.parquet",
        samples="results/{dataset}/samples.tsv",
        groups="results/{dataset}/groups.json",
    output:
        metrics=f"{MODEL_DIR}/metrics.json",
        predictions=f"{MODEL_DIR}/predictions.tsv",
        importance=f"{MODEL_DIR}/importance.tsv",
        timing=f"{MODEL_DIR}/timing.json",
        model=directory(f"{MODEL_DIR}/model"),
    log:
        "logs/{dataset}/{task}/{group}/{model}/train.log",
    benchmark:
        "benchmarks/train/{dataset}/{task}/{group}/{model}.tsv"
    wildcard_constraints:
        model=(
            f"(?!(?:{_GPU_NAMES}){_END})[A-Za-z0-9_-]+"
            if GPU_MODELS
            else "[A-Za-z0-9_-]+"
        ),
    group:
        "train"
    conda:
        "../envs/ml.yaml"
    threads: train_threads
    resources:
        mem_mb=train_mem_mb,
    params:
        task=task_cfg,
        model=lambda wildcards: mconfig.model_settings(config, wildcards.model),
        cv=lambda wildcards: mconfig.cv_settings(
            config, wildcards.dataset, wildcards.task
        ),
        preprocessing=lambda wildcards: mconfig.preprocessing_settings(
            config, wildcards.dataset
        ),
        normalization=lambda wildcards: mconfig.normalization(config, wildcards.dataset),
        covariates=lambda wildcards: dataset_cfg(wildcards).get("covariates", []),
        seed=config["seed"],
    script:
        "../scripts/train.py"


# XGBoost models on a GPU (device: cuda); "(?!)" matches nothing when no model uses one.
use rule train as train_gpu with:
    wildcard_constraints:
        model=f"(?:{_GPU_NAMES}){_END}" if GPU_MODELS else "(?!)",
    group:
        "train_gpu"
    resources:
        mem_mb=train_mem_mb,
        gpu=1,


# The random-gene-set control of one (dataset, task, group, model) with `random_sets.count` K > 0:
# all K random sets in one job (each a nested CV, no permuted control or final fit), so a study of
# 50 groups x K = 100 is 50 jobs per model, not 5,000; on a cluster they bundle with the training
# jobs (group "train"). Memory grows with each retry as in rule train, the runtime also with K.
rule random_sets:
    input:
        matrix="results/{dataset}/normalized.parquet",
        samples="results/{dataset}/samples.tsv",
        groups="results/{dataset}/groups.json",
    output:
        f"{MODEL_DIR}/{mlayout.RANDOM_SETS}",
    log:
        "logs/{dataset}/{task}/{group}/{model}/random_sets.log",
    benchmark:
        "benchmarks/random_sets/{dataset}/{task}/{group}/{model}.tsv"
    wildcard_constraints:
        model=(
            f"(?!(?:{_GPU_NAMES}){_END})[A-Za-z0-9_-]+"
            if GPU_MODELS
            else "[A-Za-z0-9_-]+"
        ),
    group:
        "train"
    conda:
        "../envs/ml.yaml"
    threads: train_threads
    resources:
        mem_mb=train_mem_mb,
        runtime=random_sets_runtime,
    params:
        sets=random_set_count,
        task=task_cfg,
        model=lambda wildcards: mconfig.model_settings(config, wildcards.model),
        cv=lambda wildcards: mconfig.cv_settings(
            config, wildcards.dataset, wildcards.task
        ),
        preprocessing=lambda wildcards: mconfig.preprocessing_settings(
            config, wildcards.dataset
        ),
        normalization=lambda wildcards: mconfig.normalization(config, wildcards.dataset),
        covariates=lambda wildcards: dataset_cfg(wildcards).get("covariates", []),
        seed=config["seed"],
    script:
        "../scripts/random_sets.py"


# The random sets of XGBoost models on a GPU, as rule train_gpu.
use rule random_sets as random_sets_gpu with:
    wildcard_constraints:
        model=f"(?:{_GPU_NAMES}){_END}" if GPU_MODELS else "(?!)",
    group:
        "train_gpu"
    resources:
        mem_mb=train_mem_mb,
        runtime=random_sets_runtime,
        gpu=1,
