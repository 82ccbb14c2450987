from metasig.publish import steps

with steps.logged(snakemake.log[0]):
    steps.log_mlflow(
        snakemake.params.registry_root,
        snakemake.params.tracking_uri,
        snakemake.params.experiment,
        snakemake.output[0],
    )
