from metasig.learn import steps

with steps.logged(snakemake.log[0]):
    steps.train_random_sets(
        snakemake.input.matrix,
        snakemake.input.samples,
        snakemake.input.groups,
        out=snakemake.output[0],
        identity=dict(snakemake.wildcards.items()),
        count=snakemake.params.sets,
        task_cfg=snakemake.params.task,
        model_cfg=snakemake.params.model,
        cv=snakemake.params.cv,
        preprocessing=snakemake.params.preprocessing,
        normalization=snakemake.params.normalization,
        covariates=snakemake.params.covariates,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
