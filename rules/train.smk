# One job per (dataset, task, gene group, model): nested CV, permuted-label control, final fit.
rule train:
    input:
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
    conda:
        "../envs/ml.yaml"
    threads:
        lambda wildcards: mconfig.cv_settings(
            config, wildcards.dataset, wildcards.task
        )["n_jobs"]
    resources:
        mem_mb=2000,
    params:
        task=task_cfg,
        model=lambda wildcards: config["models"][wildcards.model],
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
