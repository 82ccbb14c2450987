from pathlib import Path

from metasig.reads import steps

with steps.logged(snakemake.log[0]):
    steps.simulate_reads(snakemake.params.simulation, Path(snakemake.output.transcriptome).parent)
