"""The transcriptome FASTA and the transcript -> gene map must describe the same transcripts: checked
before salmon runs. `transcript_inputs` is called while Snakemake builds the DAG, so pysam (through
fasta_ids) and the quantification module are imported only when a check runs.
"""

from metasig.errors import InputError, few

MAX_UNMATCHED = 0.1  # share of FASTA transcripts without a gene in the map that is still accepted


def transcript_inputs(dataset_cfg, dataset) -> dict:
    """For the workflow: a reads dataset's transcriptome and transcript -> gene map, as keyword
    arguments of `check_transcript_ids` ({} for sources without a transcriptome, such as bam)."""
    if dataset_cfg["source"] == "simulated":
        folder = f"results/{dataset}/simulated"
        return {"transcriptome": f"{folder}/transcriptome.fa.gz", "tx2gene": f"{folder}/tx2gene.tsv"}
    if dataset_cfg["source"] != "fastq":
        return {}
    key = "tx2gene" if dataset_cfg.get("tx2gene") else "gtf"
    return {"transcriptome": dataset_cfg["transcriptome"], key: dataset_cfg[key]}


def check_transcript_ids(transcriptome, tx2gene=None, gtf=None, max_unmatched=MAX_UNMATCHED):
    """Transcriptome FASTA IDs and the transcript -> gene map must describe the same transcripts,
    checked before salmon runs: otherwise tximport finds no gene for the quantified transcripts
    after hours of work. Raises InputError naming both files and a few IDs; returns the counts."""
    from metasig.reads.fastq import fasta_ids
    from metasig.reads.quant import _VERSION, tx2gene_table

    ids = fasta_ids(transcriptome)
    mapping = tx2gene if tx2gene is not None else gtf
    mapped = set(tx2gene_table(tx2gene_tsv=tx2gene, gtf=gtf)["transcript"])
    unmatched = [i for i in ids if i not in mapped]
    if len(unmatched) > max_unmatched * len(ids):
        hint = ""
        if any("|" in i for i in unmatched[:100]):
            hint = "; the FASTA headers hold '|'-separated fields (GENCODE style): cut them to the transcript ID"
        elif {_VERSION.sub("", i) for i in unmatched[:100]} & {_VERSION.sub("", m) for m in mapped}:
            hint = "; they match once version suffixes (.N) are ignored: use the map and the FASTA of the same release"
        share = (
            f"none of the transcriptome's {len(ids)} IDs is"
            if len(unmatched) == len(ids)
            else f"{len(unmatched)} of the transcriptome's {len(ids)} IDs are not"
        )
        raise InputError(
            transcriptome,
            "transcript IDs",
            f"{share} in the transcript-to-gene map {mapping} "
            f"(more than {max_unmatched:.0%} unmatched; e.g. FASTA {few(unmatched, 3)}; map "
            f"{few(sorted(mapped)[:3], 3)}){hint}",
        )
    return {"transcripts": len(ids), "unmatched": len(unmatched)}
