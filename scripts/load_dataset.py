from metasig.data import steps

with steps.logged(snakemake.log[0]):
    steps.load_dataset(
        snakemake.params.dataset,
        snakemake.wildcards.dataset,
        snakemake.output.matrix,
        snakemake.output.samples,
        cache=snakemake.params.cache,
        config_file=snakemake.params.config_file,
        groups=snakemake.params.groups,
        reads=snakemake.params.reads,
        folds=snakemake.params.folds,
    )
