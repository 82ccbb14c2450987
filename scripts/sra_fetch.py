from pathlib import Path

from metasig.reads import steps

with steps.logged(snakemake.log[0]):
    steps.sra_fetch(
        snakemake.wildcards.accession,
        list(snakemake.output),
        workdir=Path(snakemake.output[0]).parent / f".{snakemake.wildcards.accession}.tmp",
    )
