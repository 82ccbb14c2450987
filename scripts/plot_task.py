from metasig.report import steps

with steps.logged(snakemake.log[0]):
    steps.plot_task(
        snakemake.params.figure,
        snakemake.input.metrics,
        snakemake.input.predictions,
        snakemake.input.importance,
        snakemake.input.gate,
        snakemake.params.gate,
        snakemake.output[0],
    )
