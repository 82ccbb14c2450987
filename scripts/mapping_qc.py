from metasig.reads import steps

with steps.logged(snakemake.log[0]):
    steps.mapping_qc(
        snakemake.params.units,
        dict(snakemake.input.items()),
        snakemake.params.floor,
        snakemake.params.exclude,
        snakemake.output[0],
    )
