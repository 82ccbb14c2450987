# metasig: gene-signature model families with honest evaluation, a gated registry and one report.
# Run: snakemake --cores 8   (config/config.yaml; another config with --configfile)

import sys

from snakemake.utils import min_version

min_version("9.0")


# The default study, unless --configfile names another (which then replaces it, not merges into it).
if not workflow.overwrite_configfiles:
    # Snakemake's message for a YAML syntax error names no file, line or column; ours does.
    # (A --configfile is read by Snakemake before this file: `python -m metasig.config FILE` checks it.)
    sys.path.insert(0, workflow.basedir)
    from metasig.config import read_yaml

    read_yaml("config/config.yaml")

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/reads.smk"
include: "rules/data.smk"
include: "rules/learn.smk"
include: "rules/publish.smk"
include: "rules/report.smk"


report: "resources/report/workflow.rst"


rule all:
    default_target: True
    input:
        final_outputs(),
