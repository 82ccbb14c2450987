from metasig.publish import steps

with steps.logged(snakemake.log[0]):
    steps.gate(
        list(snakemake.input.metrics),
        snakemake.params.gate,
        snakemake.output[0],
        list(snakemake.input.random_sets),
    )
