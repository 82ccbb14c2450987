"""The simulated reads cohort: files, paired FASTQ integrity, truth bookkeeping, determinism and the
planted signature (in the truth; salmon's recovery of it is the workflow's test)."""

import re
import shutil

import numpy as np
import pandas as pd
import pysam
import pytest

from metasig.io import sha256_file
from metasig.reads import simulate

needs_mason = pytest.mark.skipif(
    shutil.which(simulate.MASON) is None, reason=f"{simulate.MASON} not on PATH (Debian package seqan-apps)"
)

SMALL = {"n_per_condition": 3, "n_genes": 20, "planted_genes": 4, "reads_per_sample": 2_000, "seed": 11}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    if shutil.which(simulate.MASON) is None:
        pytest.skip(f"{simulate.MASON} not on PATH (Debian package seqan-apps)")
    return simulate.simulate_cohort(tmp_path_factory.mktemp("cohort") / "sim", **SMALL)


def _read_tsv(path, **kw):
    return pd.read_csv(path, sep="\t", **kw)


def _fastq(path):
    with pysam.FastxFile(str(path)) as handle:
        return [(r.name, r.sequence, r.quality) for r in handle]


# ---- transcriptome (no mason needed) -------------------------------------------------------------


def test_transcriptome_ids_composition_and_structure():
    records, tx2gene = simulate.make_transcriptome(30, seed=3)
    assert list(tx2gene.columns) == ["transcript", "gene"]
    assert [r[0] for r in records] == list(tx2gene["transcript"])
    assert all(re.fullmatch(r"SIMT\d{4}-[123]", tx) for tx in tx2gene["transcript"])
    assert all(re.fullmatch(r"SIMG\d{4}", g) for g in tx2gene["gene"])
    assert tx2gene["gene"].nunique() == 30 and tx2gene["transcript"].is_unique
    assert tx2gene.groupby("gene").size().between(1, 3).all()
    assert tx2gene.groupby("gene").size().max() > 1  # some genes do have several transcripts
    seqs = [s for _, s in records]
    assert set("".join(seqs)) <= set("ACGT")
    gc = sum(s.count("G") + s.count("C") for s in seqs) / sum(map(len, seqs))
    assert 0.42 < gc < 0.48
    full = [s for tx, s in records if tx.endswith("-1")]
    assert min(map(len, full)) >= 780 and max(map(len, full)) <= 3000
    assert not any(re.search(r"A{7}|C{7}|G{7}|T{7}", s) for s in seqs)  # no long homopolymers
    # alternative transcripts are built from their gene's exons: they share sequence with transcript 1
    by_tx = dict(records)
    for tx, _gene in tx2gene.itertuples(index=False):
        if not tx.endswith("-1"):
            first = by_tx[tx.rsplit("-", 1)[0] + "-1"]
            assert by_tx[tx] != first and by_tx[tx][-60:] in first


def test_transcriptome_is_deterministic_per_seed():
    assert simulate.make_transcriptome(5, seed=1)[0] == simulate.make_transcriptome(5, seed=1)[0]
    assert simulate.make_transcriptome(5, seed=1)[0] != simulate.make_transcriptome(5, seed=2)[0]


# ---- the cohort ------------------------------------------------------------------------------------


@needs_mason
def test_cohort_files_and_sheets(cohort):
    for key in (
        "transcriptome",
        "tx2gene",
        "samples",
        "units",
        "truth_counts",
        "truth_genes",
        "truth_samples",
        "groups",
    ):
        assert cohort[key].is_file(), key
    sheet = _read_tsv(cohort["samples"])
    assert list(sheet.columns[:2]) == ["sample", "condition"]
    assert sheet["condition"].value_counts().to_dict() == {"control": 3, "treated": 3}
    units = _read_tsv(cohort["units"])
    assert list(units.columns) == ["sample", "unit", "fq1", "fq2"]
    assert list(units["sample"]) == list(sheet["sample"])
    for fq1, fq2 in zip(units["fq1"], units["fq2"]):
        assert fq1.endswith("_R1.fq.gz") and fq2.endswith("_R2.fq.gz")
        assert pd.io.common.file_exists(fq1) and pd.io.common.file_exists(fq2)
    # the transcriptome FASTA holds exactly the transcripts of tx2gene
    tx2gene = _read_tsv(cohort["tx2gene"])
    with pysam.FastxFile(str(cohort["transcriptome"])) as handle:
        assert [r.name for r in handle] == list(tx2gene["transcript"])


@needs_mason
def test_fastq_pairs_match(cohort):
    units = _read_tsv(cohort["units"])
    for fq1, fq2 in zip(units["fq1"], units["fq2"]):
        left, right = _fastq(fq1), _fastq(fq2)
        assert len(left) == len(right) == SMALL["reads_per_sample"]
        assert [n for n, _, _ in left] == [n for n, _, _ in right]
        assert len({n for n, _, _ in left}) == len(left)
        for _name, seq, qual in left[:200] + right[:200]:
            assert len(seq) == len(qual) == 75
            assert set(seq) <= set("ACGTN")
            assert all(33 <= ord(q) <= 33 + 41 for q in qual)


@needs_mason
def test_truth_bookkeeping(cohort):
    truth = _read_tsv(cohort["truth_counts"], index_col="gene")
    per_sample = _read_tsv(cohort["truth_samples"], index_col="sample")
    assert list(truth.columns) == list(per_sample.index)
    assert truth.shape[0] == SMALL["n_genes"] and (truth >= 0).all().all()
    assert (truth.sum() == per_sample["transcript_pairs"]).all()
    assert (per_sample["transcript_pairs"] + per_sample["background_pairs"] == SMALL["reads_per_sample"]).all()
    assert per_sample["background_pairs"].between(20, 250).all()  # 5% of 2,000 by default
    gmt = dict(line.split("\t", 1) for line in cohort["groups"].read_text().splitlines())
    assert set(gmt) == {simulate.PLANTED_SET, simulate.NULL_SET}
    planted = gmt[simulate.PLANTED_SET].split("\t")[1:]
    null = gmt[simulate.NULL_SET].split("\t")[1:]
    assert len(planted) == len(null) == SMALL["planted_genes"] and not set(planted) & set(null)
    genes = _read_tsv(cohort["truth_genes"], index_col="gene")
    assert sorted(genes.index[genes["set"] == simulate.PLANTED_SET]) == sorted(planted)
    assert sorted(genes.index[genes["set"] == simulate.NULL_SET]) == sorted(null)
    assert genes["set"].notna().all() and genes["direction"].notna().all()
    assert (genes.loc[planted, "log2fc"].abs() == 2.0).all() and (genes.loc[null, "log2fc"] == 0).all()
    assert set(genes.loc[planted, "direction"]) == {"up", "down"}


@needs_mason
def test_without_background_truth_sums_equal_reads(tmp_path):
    paths = simulate.simulate_cohort(tmp_path / "sim", **{**SMALL, "n_per_condition": 1, "background": 0.0})
    truth = _read_tsv(paths["truth_counts"], index_col="gene")
    assert (truth.sum() == SMALL["reads_per_sample"]).all()


@needs_mason
def test_same_seed_same_files_other_seed_differs(cohort, tmp_path):
    again = simulate.simulate_cohort(tmp_path / "again", **SMALL)
    for key in ("transcriptome", "truth_counts", "groups", "tx2gene"):
        assert sha256_file(again[key]) == sha256_file(cohort[key]), key
    units_a, units_b = _read_tsv(cohort["units"]), _read_tsv(again["units"])
    for col in ("fq1", "fq2"):
        for a, b in zip(units_a[col], units_b[col]):
            assert sha256_file(a) == sha256_file(b)
            assert _fastq(a)[:5] == _fastq(b)[:5]
    other = simulate.simulate_cohort(tmp_path / "other", **{**SMALL, "seed": 12})
    assert sha256_file(other["truth_counts"]) != sha256_file(cohort["truth_counts"])
    assert _fastq(_read_tsv(other["units"])["fq1"][0])[0] != _fastq(units_a["fq1"][0])[0]


@needs_mason
def test_planted_genes_change_and_null_genes_do_not(tmp_path):
    fc = 4.0
    paths = simulate.simulate_cohort(
        tmp_path / "sim", n_per_condition=4, n_genes=40, planted_genes=6, fold_change=fc, reads_per_sample=4_000, seed=5
    )
    truth = _read_tsv(paths["truth_counts"], index_col="gene")
    genes = _read_tsv(paths["truth_genes"], index_col="gene")
    condition = _read_tsv(paths["samples"], index_col="sample")["condition"]
    # scale by the unchanged genes so that the planted ones do not shift everyone's share
    unchanged = genes.index[genes["log2fc"] == 0]
    scaled = truth / truth.loc[unchanged].sum() * 1e4
    lfc = np.log2(scaled.loc[:, condition == "treated"].mean(axis=1) + 0.5) - np.log2(
        scaled.loc[:, condition == "control"].mean(axis=1) + 0.5
    )
    planted = genes.index[genes["set"] == simulate.PLANTED_SET]
    null = genes.index[genes["set"] == simulate.NULL_SET]
    assert len(planted) == len(null) == 6
    signed = lfc[planted] * np.sign(genes.loc[planted, "log2fc"])
    assert abs(signed.mean() - np.log2(fc)) < 0.5
    assert (signed > 1).all()
    assert lfc[null].abs().mean() < 0.6  # biological noise only (dispersion 0.1, 4 vs 4)


@needs_mason
def test_units_per_sample_and_low_mapping(tmp_path):
    paths = simulate.simulate_cohort(
        tmp_path / "sim", **{**SMALL, "n_per_condition": 1, "units_per_sample": 2, "low_mapping": {"S02": 0.6}}
    )
    units = _read_tsv(paths["units"])
    assert list(units["unit"]) == ["run1", "run2"] * 2
    assert units["fq1"].is_unique
    per_sample = _read_tsv(paths["truth_samples"], index_col="sample")
    for _sample, rows in units.groupby("sample"):
        n = sum(len(_fastq(fq)) for fq in rows["fq1"])
        assert n == sum(len(_fastq(fq)) for fq in rows["fq2"]) == SMALL["reads_per_sample"]
    assert 0.5 < per_sample.loc["S02", "background_pairs"] / SMALL["reads_per_sample"] < 0.7
    assert per_sample.loc["S01", "background_pairs"] / SMALL["reads_per_sample"] < 0.15


def test_bad_arguments():
    with pytest.raises(ValueError, match="planted_genes"):
        simulate._choose_sets(np.random.default_rng(0), [f"G{i}" for i in range(8)], np.arange(8.0), 4)
    with pytest.raises(ValueError, match="not simulated"):
        simulate._choose_sets(np.random.default_rng(0), ["A", "B", "C", "D"], np.arange(4.0), ["X"])


@needs_mason
def test_bad_low_mapping_sample(tmp_path):
    with pytest.raises(ValueError, match="S99"):
        simulate.simulate_cohort(tmp_path / "sim", **{**SMALL, "low_mapping": {"S99": 0.5}})


@needs_mason
def test_cli(tmp_path, capsys):
    simulate.main(
        [
            str(tmp_path / "cli"),
            "--samples-per-condition",
            "1",
            "--reads",
            "500",
            "--genes",
            "12",
            "--planted",
            "2",
            "--seed",
            "3",
        ]
    )
    out = capsys.readouterr().out
    assert "truth_counts" in out and (tmp_path / "cli" / "S02_R2.fq.gz").is_file()
    assert _read_tsv(tmp_path / "cli" / "truth_samples.tsv")["read_pairs"].eq(500).all()
