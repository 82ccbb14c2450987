"""Rule adapters of the reads stage: validation, SRA, TPM, mapping QC, the simulated cohort."""

import logging

import pandas as pd

from metasig import io
from metasig.logs import logged

log = logging.getLogger("metasig")

__all__ = ["logged", "validate_reads", "tpm_matrix", "sra_fetch", "mapping_qc", "simulate_reads"]


def validate_reads(units_table, table_out, workers=1, transcripts=None):
    """Every FASTQ read to its end and mates paired, every BAM sorted and indexed, and the
    transcriptome's IDs found in the transcript -> gene map (`transcripts`: transcriptome + tx2gene
    or gtf paths), before any tool."""
    from metasig.reads.bam import check_bam
    from metasig.reads.fastq import check_units
    from metasig.reads.transcripts import check_transcript_ids

    if transcripts:
        found = check_transcript_ids(**transcripts)
        log.info(
            "transcriptome: %d transcript(s), %d without a gene in the map", found["transcripts"], found["unmatched"]
        )
    stats = check_units(units_table, workers=workers)
    for bam in units_table.get("bam", pd.Series(dtype=str)).dropna():
        check_bam(bam)
    with io.atomic_path(table_out) as tmp:
        stats.to_csv(tmp, sep="\t", index=False)
    log.info("validated %d unit(s)", len(units_table))


def tpm_matrix(reads, tpm_out):
    """Gene-level TPM beside the counts, for people who want abundances (not used for training)."""
    from metasig.data.sources.reads import tx2gene
    from metasig.reads import quant

    _, tpm = quant.salmon_to_matrix(reads["quant"], tx2gene(reads))
    io.write_matrix(tpm, tpm_out, "tpm", reads.get("namespace", "feature"))


def sra_fetch(accession, fastq_out, workdir):
    from metasig.reads.sra import fetch

    fetch(accession, fastq_out, workdir)


def mapping_qc(units_table, inputs, floor, exclude, table_out):
    from metasig.reads import quant

    samples = list(dict.fromkeys(units_table["sample"]))
    if "summary" in inputs:
        bam_to_sample = dict(zip(units_table["bam"], units_table["sample"]))
        table = quant.featurecounts_qc(inputs["summary"], bam_to_sample, floor, exclude)
    else:
        reports = {s: [] for s in samples}
        for sample, report in zip(units_table["sample"], inputs["fastp"]):
            reports[sample].append(report)
        salmon = dict(zip(samples, inputs["salmon"]))
        table = quant.mapping_qc(samples, salmon, reports, floor, exclude)
    with io.atomic_path(table_out) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    for row in table[table["flagged"]].itertuples():
        log.warning("sample %s: %s%s", row.sample, row.reason, " (excluded)" if row.excluded else "")


def simulate_reads(simulation, out_dir):
    """The built-in two-condition cohort: the first `planted` genes change between conditions."""
    from metasig.reads.layout import planted_genes, simulation_settings
    from metasig.reads.simulate import simulate_cohort

    settings = simulation_settings(simulation)
    paths = simulate_cohort(
        out_dir,
        n_per_condition=settings["samples_per_condition"],
        n_genes=settings["genes"],
        planted_genes=planted_genes(settings),
        fold_change=settings["fold_change"],
        reads_per_sample=settings["reads"],
        seed=settings["seed"],
    )
    log.info("simulated %d samples into %s", len(paths["fastq"]), out_dir)
