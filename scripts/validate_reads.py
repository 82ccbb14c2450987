from metasig.reads import steps

with steps.logged(snakemake.log[0]):
    steps.validate_reads(
        snakemake.params.units, snakemake.output[0], workers=snakemake.threads, transcripts=snakemake.params.transcripts
    )
