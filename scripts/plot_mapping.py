from metasig.report import steps

with steps.logged(snakemake.log[0]):
    steps.plot_mapping(snakemake.input[0], snakemake.params.floor, snakemake.output[0])
