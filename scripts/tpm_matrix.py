from metasig.reads import steps

with steps.logged(snakemake.log[0]):
    steps.tpm_matrix(snakemake.params.reads, snakemake.output[0])
