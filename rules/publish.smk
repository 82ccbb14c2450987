# Gate each task's models, register those that pass, log them to MLflow, tabulate everything.
rule gate:
    input:
        metrics=task_job_files("metrics.json"),
        random_sets=task_random_files,
    output:
        report(
            "results/gate/{dataset}/{task}.tsv",
            caption="../resources/report/gate.rst",
            category="{dataset}",
            subcategory="{task}",
            labels={"figure": "gate decisions"},
        ),
    log:
        "logs/{dataset}/{task}/gate.log",
    benchmark:
        "benchmarks/{dataset}/{task}/gate.tsv"
    conda:
        "../envs/ml.yaml"
    params:
        gate=lambda wildcards: mconfig.gate_settings(
            config, wildcards.dataset, wildcards.task
        ),
    script:
        "../scripts/gate.py"


rule register:
    input:
        gates=[f"results/gate/{d}/{t}.tsv" for d, t in tasks()],
        models=mlayout.job_files(JOBS, mlayout.ARTIFACT_DIR),
    output:
        "results/registry/index.json",
    log:
        "logs/register.log",
    benchmark:
        "benchmarks/register.tsv"
    conda:
        "../envs/ml.yaml"
    params:
        models_root=lambda wildcards, input: mlayout.models_root(input.models[0]),
        registry_root=lambda wildcards, output: os.path.dirname(output[0]),
    script:
        "../scripts/register.py"


rule mlflow:
    input:
        "results/registry/index.json",
    output:
        "results/mlflow/logged.json",
    log:
        "logs/mlflow.log",
    benchmark:
        "benchmarks/mlflow.tsv"
    conda:
        "../envs/mlflow.yaml"
    params:
        registry_root=lambda wildcards, input: os.path.dirname(input[0]),
        tracking_uri=config["mlflow"]["tracking_uri"],
        experiment=config["mlflow"]["experiment"],
    script:
        "../scripts/mlflow_log.py"


rule leaderboard:
    input:
        metrics=mlayout.job_files(JOBS, mlayout.METRICS),
        gates=[f"results/gate/{d}/{t}.tsv" for d, t in tasks()],
    output:
        report(
            "results/leaderboard.tsv",
            caption="../resources/report/leaderboard_table.rst",
            category="Leaderboard",
        ),
    log:
        "logs/leaderboard.log",
    benchmark:
        "benchmarks/leaderboard.tsv"
    conda:
        "../envs/ml.yaml"
    script:
        "../scripts/leaderboard.py"
