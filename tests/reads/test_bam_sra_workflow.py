"""BAM input through featureCounts, and SRA accessions (wired, and a clear error offline)."""

import re
import shutil

import numpy as np
import pandas as pd
import pysam
import pytest
import yaml
from workflow import planned_jobs, snakemake, workflow_copy

pytestmark = pytest.mark.e2e  # runs Snakemake

GENES = [f"GENE{i:02d}" for i in range(12)]
LENGTH = 3000


def write_bam(path, gene_means, rng, read_length=50):
    """A coordinate-sorted, indexed BAM of single-end reads on one contig per gene."""
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": g, "LN": LENGTH} for g in GENES]}
    with pysam.AlignmentFile(path, "wb", header=header) as bam:
        for tid, mean in enumerate(gene_means):
            for i, pos in enumerate(sorted(rng.integers(0, LENGTH - read_length, rng.poisson(mean)))):
                read = pysam.AlignedSegment(bam.header)
                read.query_name, read.reference_id, read.reference_start = f"{GENES[tid]}_{i}", tid, int(pos)
                read.query_sequence, read.query_qualities = (
                    "A" * read_length,
                    pysam.qualitystring_to_array("I" * read_length),
                )
                read.cigarstring, read.mapping_quality, read.flag = f"{read_length}M", 60, 0
                bam.write(read)
    pysam.index(str(path))


def bam_study(workdir, n_per_condition=6, seed=0):
    rng = np.random.default_rng(seed)
    (workdir / "bams").mkdir()
    rows, sheet = [], []
    for i in range(2 * n_per_condition):
        condition = "tumour" if i >= n_per_condition else "normal"
        means = np.full(len(GENES), 200.0)
        if condition == "tumour":
            means[:3] *= 4  # three genes up four-fold
        path = workdir / "bams" / f"P{i:02d}.bam"
        write_bam(path, means, rng)
        rows.append({"sample": f"P{i:02d}", "unit": "lane1", "bam": f"bams/P{i:02d}.bam"})
        sheet.append({"sample": f"P{i:02d}", "condition": condition})
    pd.DataFrame(rows).to_csv(workdir / "units.tsv", sep="\t", index=False)
    pd.DataFrame(sheet).to_csv(workdir / "samples.tsv", sep="\t", index=False)
    gtf = [f'{g}\tsim\texon\t1\t{LENGTH}\t.\t+\t.\tgene_id "{g}"; transcript_id "{g}.t1";' for g in GENES]
    (workdir / "genes.gtf").write_text("\n".join(gtf) + "\n")


def config(dataset):
    return {
        "seed": 3,
        "mlflow": {"enabled": False},
        "cv": {"outer_folds": 3, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 200},
        "models": {"elasticnet": {"kind": "elasticnet", "search": {"C": [1.0], "l1_ratio": [0.5]}}},
        "datasets": {
            "study": {
                **dataset,
                "samples": "samples.tsv",
                "unit": "counts",
                "namespace": "symbol",
                "gene_groups": {"up": GENES[:3], "ALL": "ALL"},
                "tasks": {
                    "condition": {
                        "type": "binary",
                        "label": "condition",
                        "positive": "tumour",
                        "models": ["elasticnet"],
                    }
                },
            }
        },
    }


@pytest.mark.skipif(shutil.which("featureCounts") is None, reason="needs featureCounts (subread) on PATH")
def test_bam_dataset_counts_with_featurecounts(tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    bam_study(workdir)
    cfg = config({"source": "bam", "units": "units.tsv", "gtf": "genes.gtf", "paired": False})
    (workdir / "bam.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(workdir, "--configfile", "bam.yaml")
    counts = pd.read_parquet(workdir / "results" / "study" / "matrix.parquet")
    assert list(counts.columns) == GENES and len(counts) == 12
    assert counts.loc["P11", GENES[:3]].mean() > 3 * counts.loc["P00", GENES[:3]].mean()
    qc = pd.read_csv(workdir / "results" / "study" / "qc" / "mapping.tsv", sep="\t")
    assert (qc.mapping_rate > 0.99).all()
    board = pd.read_csv(workdir / "results" / "leaderboard.tsv", sep="\t").set_index("group")
    assert board.loc["up", "roc_auc"] > 0.9


def test_unsorted_bam_is_refused_before_counting(tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    bam_study(workdir, n_per_condition=3)  # the fewest the 3 outer folds allow
    bad = workdir / "bams" / "P00.bam"
    with pysam.AlignmentFile(bad) as src:
        header = src.header.to_dict()
        reads = list(src)
    header["HD"]["SO"] = "unsorted"
    with pysam.AlignmentFile(bad, "wb", header=header) as out:
        for read in reversed(reads):
            out.write(read)
    cfg = config({"source": "bam", "units": "units.tsv", "gtf": "genes.gtf", "paired": False})
    (workdir / "bam.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(workdir, "--configfile", "bam.yaml", check=False)
    assert proc.returncode != 0
    assert "P00.bam" in proc.stdout + proc.stderr and "coordinate-sorted" in proc.stdout + proc.stderr
    assert not (workdir / "results" / "study" / "featurecounts").exists()


def sra_study(workdir):
    # Three runs per condition: the fewest the 3 outer folds allow (checked before any job).
    samples = ["A", "B", "C", "D", "E", "F"]
    pd.DataFrame({"sample": samples, "unit": "run1", "sra": [f"SRR000000{i}" for i in range(1, 7)]}).to_csv(
        workdir / "units.tsv", sep="\t", index=False
    )
    pd.DataFrame({"sample": samples, "condition": ["normal"] * 3 + ["tumour"] * 3}).to_csv(
        workdir / "samples.tsv", sep="\t", index=False
    )
    (workdir / "tx.fa").write_text(">t1\n" + "ACGT" * 100 + "\n")
    (workdir / "tx2gene.tsv").write_text("transcript\tgene\nt1\tGENE00\n")
    cfg = config({"source": "fastq", "units": "units.tsv", "transcriptome": "tx.fa", "tx2gene": "tx2gene.tsv"})
    cfg["datasets"]["study"]["gene_groups"] = {"ALL": "ALL"}
    (workdir / "sra.yaml").write_text(yaml.safe_dump(cfg))
    return ["--configfile", "sra.yaml"]


def test_sra_accessions_are_fetched_by_a_rule(tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    jobs = planned_jobs(workdir, *sra_study(workdir))
    assert jobs["sra_fetch"] == 6 and jobs["fastp_pe"] == 6 and jobs["salmon_quant"] == 6


@pytest.mark.skipif(shutil.which("prefetch") is None, reason="needs sra-toolkit (prefetch) on PATH")
def test_sra_offline_gives_a_clear_error(tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    proc = snakemake(workdir, *sra_study(workdir), "--until", "sra_fetch", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # Which accessions fail first depends on job order; each error names its own.
    assert re.search(r"SRR000000\d: field 'sra': prefetch could not fetch it", output) and "offline" in output
    assert not list((workdir / "results").rglob("*.fastq.gz"))
