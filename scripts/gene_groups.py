from metasig.data import steps

with steps.logged(snakemake.log[0]):
    steps.gene_groups(
        snakemake.input.matrix,
        snakemake.params.groups,
        snakemake.params.covariates,
        snakemake.output[0],
        snakemake.params.config_file,
        originals=snakemake.params.originals,
    )
