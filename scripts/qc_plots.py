from metasig.report import steps

with steps.logged(snakemake.log[0]):
    steps.qc_plots(
        snakemake.input.matrix,
        snakemake.input.samples,
        snakemake.params.colour_by,
        snakemake.output.qc,
        snakemake.output.pca,
    )
