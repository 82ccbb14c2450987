from pathlib import Path

from metasig.learn import steps

with steps.logged(snakemake.log[0]):
    steps.train(
        snakemake.input.matrix,
        snakemake.input.samples,
        snakemake.input.groups,
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
    )
