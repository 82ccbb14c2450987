"""Reads datasets (fastq, simulated, bam) as the expression-matrix contract: gene-level counts
from salmon (length-scaled, through pytximport) or featureCounts, samples under the mapping-rate
floor left out when the config says so, and the sample sheet restricted to the samples kept."""

import pandas as pd

from metasig.data.sources.table import read_sample_sheet
from metasig.reads import quant


def gene_counts(dataset_cfg: dict, reads: dict) -> pd.DataFrame:
    if dataset_cfg["source"] == "bam":
        return quant.featurecounts_to_matrix(reads["quant"], reads["bam_samples"])
    counts, _ = quant.salmon_to_matrix(reads["quant"], tx2gene(reads))
    return counts


def tx2gene(reads: dict) -> pd.DataFrame:
    return quant.tx2gene_table(tx2gene_tsv=reads.get("tx2gene"), gtf=reads.get("gtf"))


def load(dataset_cfg: dict, reads: dict):
    """(matrix, sheet, meta) of a reads dataset; `reads` says which workflow input is which."""
    matrix = gene_counts(dataset_cfg, reads)
    sheet = read_sample_sheet(reads["samples"])
    qc = pd.read_csv(reads["qc"], sep="\t", dtype={"sample": str})
    matrix, sheet = quant.apply_exclusion(matrix, sheet, qc, qc_file=reads["qc"])
    from metasig.data.sources import check_library  # the package imports this module

    check_library(matrix, dataset_cfg, "counts", f"{dataset_cfg['source']} quantification ({reads['qc']})")
    meta = {
        "source": dataset_cfg["source"],
        "unit": "counts",
        "namespace": dataset_cfg.get("namespace", "feature"),
        "quantified_with": "featureCounts"
        if dataset_cfg["source"] == "bam"
        else "salmon + pytximport (length-scaled TPM)",
    }
    return matrix, sheet, meta
