from metasig.publish import steps

with steps.logged(snakemake.log[0]):
    steps.register(
        list(snakemake.input.gates),
        snakemake.params.models_root,
        snakemake.params.registry_root,
        snakemake.output[0],
    )
