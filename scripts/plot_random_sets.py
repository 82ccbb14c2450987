from metasig.report import steps

with steps.logged(snakemake.log[0]):
    steps.plot_random_sets(
        list(snakemake.input.metrics),
        list(snakemake.input.random_sets),
        snakemake.params.gate,
        snakemake.output[0],
    )
