from metasig.publish import steps

with steps.logged(snakemake.log[0]):
    steps.leaderboard(list(snakemake.input.metrics), list(snakemake.input.gates), snakemake.output[0])
