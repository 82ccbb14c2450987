from metasig.data import steps

with steps.logged(snakemake.log[0]):
    steps.normalize(snakemake.input[0], snakemake.output[0], snakemake.params.method)
