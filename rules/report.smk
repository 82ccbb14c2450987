# Per-task figures for the report; each reads the task's training outputs and gate decisions.
# A rule names its figure in params.figure (its output file is named after it, not read for it).


rule plot_leaderboard:
    input:
        unpack(task_plot_inputs),
    output:
        plot_rule_output("leaderboard"),
    log:
        "logs/{dataset}/{task}/plot_leaderboard.log",
    benchmark:
        "benchmarks/{dataset}/{task}/plot_leaderboard.tsv"
    conda:
        "../envs/report.yaml"
    params:
        figure="leaderboard",
        gate=lambda wildcards: mconfig.gate_settings(
            config, wildcards.dataset, wildcards.task
        ),
    script:
        "../scripts/plot_task.py"


use rule plot_leaderboard as plot_roc_pr with:
    output:
        plot_rule_output("roc_pr"),
    log:
        "logs/{dataset}/{task}/plot_roc_pr.log",
    benchmark:
        "benchmarks/{dataset}/{task}/plot_roc_pr.tsv"
    params:
        figure="roc_pr",


use rule plot_leaderboard as plot_confusion with:
    output:
        plot_rule_output("confusion"),
    log:
        "logs/{dataset}/{task}/plot_confusion.log",
    benchmark:
        "benchmarks/{dataset}/{task}/plot_confusion.tsv"
    params:
        figure="confusion",


use rule plot_leaderboard as plot_calibration with:
    output:
        plot_rule_output("calibration"),
    log:
        "logs/{dataset}/{task}/plot_calibration.log",
    benchmark:
        "benchmarks/{dataset}/{task}/plot_calibration.tsv"
    params:
        figure="calibration",


use rule plot_leaderboard as plot_km with:
    output:
        plot_rule_output("km"),
    log:
        "logs/{dataset}/{task}/plot_km.log",
    benchmark:
        "benchmarks/{dataset}/{task}/plot_km.tsv"
    params:
        figure="km",


use rule plot_leaderboard as plot_importance with:
    output:
        plot_rule_output("importance"),
    log:
        "logs/{dataset}/{task}/plot_importance.log",
    benchmark:
        "benchmarks/{dataset}/{task}/plot_importance.tsv"
    params:
        figure="importance",


# Each signature of a task against its random gene sets (only tasks with `random_sets.count` > 0).
rule plot_random_sets:
    input:
        metrics=lambda wildcards: mlayout.job_files(
            RANDOM_JOBS, mlayout.METRICS, wildcards.dataset, wildcards.task
        ),
        random_sets=task_random_files,
    output:
        plot_rule_output("random_sets"),
    log:
        "logs/{dataset}/{task}/plot_random_sets.log",
    benchmark:
        "benchmarks/{dataset}/{task}/plot_random_sets.tsv"
    conda:
        "../envs/report.yaml"
    params:
        gate=lambda wildcards: mconfig.gate_settings(
            config, wildcards.dataset, wildcards.task
        ),
    script:
        "../scripts/plot_random_sets.py"
