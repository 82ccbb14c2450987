from metasig.publish import steps

with steps.logged(snakemake.log[0]):
    steps.gate(list(snakemake.input), snakemake.params.gate, snakemake.output[0])
