"""Reads to models through the real workflow and the real tools (mason, fastp, salmon, MultiQC):
a simulated cohort with a planted signature, a units-sheet dataset with a failed sample, bad
FASTQ files, and the real chr21 Illumina reads."""

import gzip
import shutil

import pandas as pd
import pytest
import yaml
from scipy.stats import spearmanr
from workflow import snakemake, workflow_copy

from metasig.io import read_matrix

TOOLS = ("salmon", "fastp", "mason_frag_sequencing")
missing = [tool for tool in TOOLS if shutil.which(tool) is None]
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        bool(missing), reason=f"needs {', '.join(missing)} on PATH (make bootstrap installs them as root)"
    ),
]

READS = ["--configfile", "resources/test_configs/reads.yaml"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    workdir = workflow_copy(tmp_path_factory.mktemp("reads"))
    snakemake(workdir, *READS)
    return workdir


def test_salmon_counts_follow_the_simulated_truth(cohort):
    counts, meta = read_matrix(cohort / "results" / "sim" / "matrix.parquet")
    assert meta["unit"] == "counts"
    truth = pd.read_csv(cohort / "results" / "sim" / "simulated" / "truth_counts.tsv", sep="\t", index_col=0)
    truth = truth.T.loc[counts.index, counts.columns]  # genes x samples -> samples x genes
    for sample in counts.index:
        expressed = truth.loc[sample] > 0
        rho = spearmanr(counts.loc[sample, expressed], truth.loc[sample, expressed])[0]
        assert rho >= 0.9, f"{sample}: Spearman {rho:.3f}"


def test_planted_group_is_found_and_the_null_group_is_not(cohort):
    board = pd.read_csv(cohort / "results" / "leaderboard.tsv", sep="\t").set_index("group")
    assert board.loc["planted", "roc_auc"] >= 0.9
    assert abs(board.loc["unchanged", "roc_auc"] - 0.5) <= 0.15
    assert board.loc["planted", "gate_passed"] and not board.loc["unchanged", "gate_passed"]


def test_qc_outputs(cohort):
    qc = pd.read_csv(cohort / "results" / "sim" / "qc" / "mapping.tsv", sep="\t")
    assert len(qc) == 40 and qc.mapping_rate.between(0.85, 1.0).all() and not qc.flagged.any()
    assert (qc.reads_in == 8000).all()
    assert "fastp" in (cohort / "results" / "sim" / "qc" / "multiqc.html").read_text(errors="ignore").lower()
    tpm, meta = read_matrix(cohort / "results" / "sim" / "tpm.parquet")
    assert meta["unit"] == "tpm" and (tpm.sum(axis=1) - 1e6).abs().max() < 1
    assert (cohort / "results" / "plots" / "sim" / "mapping.svg").stat().st_size > 1000


def fastq_dataset(cohort, workdir, samples, extra=None):
    """A `source: fastq` dataset over the simulated files, through a real units sheet."""
    sim = cohort / "results" / "sim" / "simulated"
    sheet = pd.read_csv(sim / "samples.tsv", sep="\t").set_index("sample").loc[samples].reset_index()
    units = pd.DataFrame(
        {
            "sample": samples,
            "unit": "lane1",
            "fq1": [str(sim / f"{s}_R1.fq.gz") for s in samples],
            "fq2": [str(sim / f"{s}_R2.fq.gz") for s in samples],
        }
    )
    for sample, (fq1, fq2) in (extra or {}).items():
        sheet.loc[len(sheet)] = {"sample": sample, "condition": "treated"}
        units.loc[len(units)] = {"sample": sample, "unit": "lane1", "fq1": str(fq1), "fq2": str(fq2)}
    sheet.to_csv(workdir / "samples.tsv", sep="\t", index=False)
    units.to_csv(workdir / "units.tsv", sep="\t", index=False)
    config = yaml.safe_load((workdir / "resources" / "test_configs" / "reads.yaml").read_text())
    config["cv"] = {"outer_folds": 3, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 200}
    config["datasets"] = {
        "rnaseq": {
            "source": "fastq",
            "units": "units.tsv",
            "samples": "samples.tsv",
            "transcriptome": str(sim / "transcriptome.fa.gz"),
            "tx2gene": str(sim / "tx2gene.tsv"),
            "unit": "counts",
            "namespace": "feature",
            "min_mapping_rate": 0.5,
            "exclude_low_mapping": True,
            "gene_groups": {"ALL": "ALL"},
            "tasks": {
                "condition": {"type": "binary", "label": "condition", "positive": "treated", "models": ["elasticnet"]}
            },
        }
    }
    (workdir / "rnaseq.yaml").write_text(yaml.safe_dump(config))
    return ["--configfile", "rnaseq.yaml"]


def write_fastq(path, names, seq="ACGT" * 20):
    with gzip.open(path, "wt") as out:
        for name in names:
            out.write(f"@{name}\n{seq}\n+\n{'I' * len(seq)}\n")


def test_units_sheet_dataset_flags_and_excludes_a_sample_that_does_not_map(cohort, tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    # a failed library: 300 real read pairs drowned in 3,000 pairs of a telomere-like repeat
    sim = cohort / "results" / "sim" / "simulated"
    names = [f"junk{i}" for i in range(3000)]
    for mate, repeat in ((1, "TTAGGC"), (2, "GCCTAA")):
        with gzip.open(sim / f"S02_R{mate}.fq.gz", "rt") as real:
            head = "".join(line for _, line in zip(range(4 * 300), real))
        write_fastq(tmp_path / f"junk_{mate}.fq.gz", names, seq=repeat * 12)
        with gzip.open(tmp_path / f"junk_{mate}.fq.gz", "at") as out:
            out.write(head)
    samples = [f"S{i:02d}" for i in list(range(1, 7)) + list(range(21, 27))]
    args = fastq_dataset(
        cohort, workdir, samples, extra={"JUNK": (tmp_path / "junk_1.fq.gz", tmp_path / "junk_2.fq.gz")}
    )
    snakemake(workdir, *args)
    qc = pd.read_csv(workdir / "results" / "rnaseq" / "qc" / "mapping.tsv", sep="\t").set_index("sample")
    assert qc.loc["JUNK", "flagged"] and qc.loc["JUNK", "excluded"]
    assert "mapping rate" in qc.loc["JUNK", "reason"]
    assert not qc.drop("JUNK").flagged.any()
    kept = pd.read_csv(workdir / "results" / "rnaseq" / "samples.tsv", sep="\t")
    assert "JUNK" not in set(kept["sample"]) and len(kept) == 12
    assert "excluded sample JUNK" in (workdir / "logs" / "rnaseq" / "load.log").read_text()


@pytest.mark.parametrize("fault", ["truncated gzip", "mate count mismatch"])
def test_bad_fastq_stops_before_any_tool(cohort, tmp_path, fault):
    workdir = workflow_copy(tmp_path / "wf")
    names = [f"r{i}" for i in range(2000)]
    write_fastq(tmp_path / "bad_1.fq.gz", names)
    write_fastq(tmp_path / "bad_2.fq.gz", names if fault == "truncated gzip" else names[:-5])
    if fault == "truncated gzip":
        data = (tmp_path / "bad_1.fq.gz").read_bytes()
        (tmp_path / "bad_1.fq.gz").write_bytes(data[: len(data) // 2])
    args = fastq_dataset(
        cohort,
        workdir,
        ["S01", "S02", "S03", "S21", "S22"],
        extra={"BAD": (tmp_path / "bad_1.fq.gz", tmp_path / "bad_2.fq.gz")},
    )
    proc = snakemake(workdir, *args, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "bad_1.fq.gz" in output
    assert (
        ("truncated" in output.lower() or "corrupt" in output.lower())
        if fault == "truncated gzip"
        else "1995" in output
    )
    assert not (workdir / "results" / "rnaseq" / "fastp").exists()


def test_real_chr21_reads_quantify(tmp_path):
    from conftest import SHARED_DATA

    ngs = SHARED_DATA / "ngs"
    if not ngs.is_dir():
        pytest.skip(f"real reads not found at {ngs} (only present beside the project's own checkout)")
    workdir = workflow_copy(tmp_path / "wf")
    with gzip.open(ngs / "transcriptome.chr21.fa.gz", "rt") as fasta:
        ids = [line[1:].split()[0] for line in fasta if line.startswith(">")]
    pd.DataFrame({"transcript": ids, "gene": ids}).to_csv(workdir / "tx2gene.tsv", sep="\t", index=False)
    # Each real sample four times under other names: the fewest a 2 x 2 nested CV of the study's
    # task allows, and the study's classes are checked before any job runs.
    real = ["a", "b"] * 4
    samples = [f"{r}{i // 2}" for i, r in enumerate(real)]
    pd.DataFrame({"sample": samples, "batch": ["x" if r == "a" else "y" for r in real]}).to_csv(
        workdir / "samples.tsv", sep="\t", index=False
    )
    for sample, r in zip(samples, real):  # one file per unit and mate, as the units check asks
        for mate in (1, 2):
            shutil.copy(ngs / f"{r}.chr21.{mate}.fq.gz", workdir / f"{sample}_{mate}.fq.gz")
    pd.DataFrame(
        {
            "sample": samples,
            "unit": "lane1",
            "fq1": [f"{s}_1.fq.gz" for s in samples],
            "fq2": [f"{s}_2.fq.gz" for s in samples],
        }
    ).to_csv(workdir / "units.tsv", sep="\t", index=False)
    config = {
        "models": {"elasticnet": {"kind": "elasticnet"}},
        "mlflow": {"enabled": False},
        "cv": {"outer_folds": 2, "inner_folds": 2},
        "datasets": {
            "chr21": {
                "source": "fastq",
                "units": "units.tsv",
                "samples": "samples.tsv",
                "transcriptome": str(ngs / "transcriptome.chr21.fa.gz"),
                "tx2gene": "tx2gene.tsv",
                "unit": "counts",
                "namespace": "ensembl",
                "gene_groups": {"ALL": "ALL"},
                "tasks": {"batch": {"type": "multiclass", "label": "batch", "models": ["elasticnet"]}},
            }
        },
    }
    (workdir / "chr21.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(workdir, "--configfile", "chr21.yaml", "--until", "mapping_qc", "multiqc")
    qc = pd.read_csv(workdir / "results" / "chr21" / "qc" / "mapping.tsv", sep="\t").set_index("sample")
    print("chr21 mapping rates:", qc.mapping_rate.round(3).to_dict())
    # These reads were picked for mapping to chr21's *genome*; only those from mature transcripts
    # map to its transcriptome (about 22% here), the rest are intronic or intergenic.
    assert qc.mapping_rate.between(0.1, 1.0).all(), qc
    assert proc.returncode == 0
