"""Rule train: one training job. It runs in the warm worker (metasig.learn.warm), a server that has
the training libraries imported already, else in this process; METASIG_WARM=0 turns the worker off.
This script must stay thin: no pandas or scikit-learn here."""

from pathlib import Path

from metasig.learn import warm

warm.run(
    "metasig.learn.steps:train",
    dict(
        matrix_in=snakemake.input.matrix,
        samples_in=snakemake.input.samples,
        groups_in=snakemake.input.groups,
        outdir=Path(snakemake.output.metrics).parent,
        identity=dict(snakemake.wildcards.items()),
        task_cfg=snakemake.params.task,
        model_cfg=snakemake.params.model,
        cv=snakemake.params.cv,
        preprocessing=snakemake.params.preprocessing,
        normalization=snakemake.params.normalization,
        covariates=snakemake.params.covariates,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    ),
    log=snakemake.log[0],
)
