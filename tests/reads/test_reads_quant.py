"""Quantifier outputs -> data contracts: tx2gene maps, salmon/pytximport gene matrices, featureCounts
tables, the mapping QC table and sample exclusion."""

import gzip
import json
import logging
import random
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from metasig.errors import InputError
from metasig.reads import quant

SALMON, FASTP, FEATURECOUNTS = (shutil.which(t) for t in ("salmon", "fastp", "featureCounts"))

# transcripts listed interleaved across genes so that gene order != file order
TX = pd.DataFrame(
    {
        "transcript": ["tZ1", "tA1", "tZ2", "tM1", "tA2", "tM2"],
        "gene": ["geneZ", "geneA", "geneZ", "geneM", "geneA", "geneM"],
    }
)


def write_quant(directory, counts, eff_lengths, percent_mapped=80.0, num_mapped=None):
    """A salmon output folder whose TPMs follow from counts and effective lengths as salmon's do."""
    directory.mkdir(parents=True, exist_ok=True)
    counts, eff = np.asarray(counts, float), np.asarray(eff_lengths, float)
    rate = counts / eff
    tpm = rate / rate.sum() * 1e6 if rate.sum() else np.zeros_like(rate)
    frame = pd.DataFrame(
        {
            "Name": TX["transcript"],
            "Length": (eff + 200).astype(int),
            "EffectiveLength": eff,
            "TPM": tpm,
            "NumReads": counts,
        }
    )
    frame.to_csv(directory / "quant.sf", sep="\t", index=False)
    (directory / "aux_info").mkdir(exist_ok=True)
    meta = {
        "salmon_version": "1.10.1",
        "num_processed": int(counts.sum() / (percent_mapped / 100)) if percent_mapped else 0,
        "num_mapped": int(num_mapped if num_mapped is not None else counts.sum()),
        "percent_mapped": percent_mapped,
    }
    (directory / "aux_info" / "meta_info.json").write_text(json.dumps(meta, indent=4))
    return directory


def fastp_json(path, before, after, paired):
    """Mirror of fastp 0.23.2's JSON layout (checked against a real report in test_fastp_real_report)."""

    def block(n):
        out = {
            "total_reads": n,
            "total_bases": n * 60,
            "q20_bases": n * 60,
            "q30_bases": n * 60,
            "q20_rate": 1,
            "q30_rate": 1,
            "read1_mean_length": 60,
        }
        if paired:
            out["read2_mean_length"] = 60
        out["gc_content"] = 0.5
        return out

    mate = {"total_reads": before // (2 if paired else 1)}
    report = {
        "summary": {
            "fastp_version": "0.23.2",
            "sequencing": "paired end (60 cycles + 60 cycles)" if paired else "single end (60 cycles)",
            "before_filtering": block(before),
            "after_filtering": block(after),
        },
        "filtering_result": {
            "passed_filter_reads": after,
            "low_quality_reads": before - after,
            "too_many_N_reads": 0,
            "too_short_reads": 0,
            "too_long_reads": 0,
        },
        "duplication": {"rate": 0.0},
        "read1_before_filtering": mate,
        "read1_after_filtering": {},
        "command": "fastp",
    }
    if paired:
        report.update(
            {"read2_before_filtering": mate, "read2_after_filtering": {}, "insert_size": {}, "adapter_cutting": {}}
        )
    path.write_text(json.dumps(report, indent=4))
    return path


# ---------------------------------------------------------------- tx2gene


def test_tx2gene_from_tsv(tmp_path):
    good = tmp_path / "tx2gene.tsv"
    TX.assign(extra="x").to_csv(good, sep="\t", index=False)
    table = quant.tx2gene_table(tx2gene_tsv=good)
    assert list(table.columns) == ["transcript", "gene"]
    assert dict(zip(table["transcript"], table["gene"])) == dict(zip(TX["transcript"], TX["gene"]))

    bad = tmp_path / "bad.tsv"
    TX.rename(columns={"gene": "gene_id"}).to_csv(bad, sep="\t", index=False)
    with pytest.raises(InputError) as err:
        quant.tx2gene_table(tx2gene_tsv=bad)
    assert str(bad) in str(err.value) and "gene" in err.value.field

    clash = tmp_path / "clash.tsv"
    pd.concat([TX, pd.DataFrame({"transcript": ["tA1"], "gene": ["geneQ"]})]).to_csv(clash, sep="\t", index=False)
    with pytest.raises(InputError, match="more than one gene"):
        quant.tx2gene_table(tx2gene_tsv=clash)
    with pytest.raises(ValueError):
        quant.tx2gene_table()


GTF = (
    "#!genome-build test\n"
    'chr1\tt\tgene\t1\t900\t.\t+\t.\tgene_id "G1.3"; gene_name "ONE";\n'
    'chr1\tt\ttranscript\t1\t900\t.\t+\t.\tgene_id "G1.3"; transcript_id "T1.2"; gene_name "ONE";\n'
    'chr1\tt\texon\t1\t400\t.\t+\t.\tgene_id "G1.3"; transcript_id "T1.2"; exon_number "1";\n'
    'chr1\tt\texon\t600\t900\t.\t+\t.\tgene_id "G1.3"; transcript_id "T1.2"; exon_number "2";\n'
    'chr1\tt\ttranscript\t1\t400\t.\t+\t.\tgene_id "G1.3"; transcript_id "T1b.1";\n'
    'chr1\tt\ttranscript\t2000\t2500\t.\t-\t.\tgene_id "G2.1"; transcript_id "T2.5";\n'
)


def test_tx2gene_from_gtf(tmp_path):
    gtf = tmp_path / "genes.gtf"
    gtf.write_text(GTF)
    table = quant.tx2gene_table(gtf=gtf)
    assert sorted(map(tuple, table.to_numpy())) == [("T1.2", "G1.3"), ("T1b.1", "G1.3"), ("T2.5", "G2.1")]
    stripped = quant.tx2gene_table(gtf=gtf, strip_version=True)
    assert sorted(map(tuple, stripped.to_numpy())) == [("T1", "G1"), ("T1b", "G1"), ("T2", "G2")]

    # exon-only GTF (no transcript rows), gzipped
    exon_only = tmp_path / "exons.gtf.gz"
    with gzip.open(exon_only, "wt") as handle:
        handle.write("".join(line + "\n" for line in GTF.splitlines() if "\ttranscript\t" not in line))
    table = quant.tx2gene_table(gtf=exon_only)
    assert list(map(tuple, table.to_numpy())) == [("T1.2", "G1.3")]

    broken = tmp_path / "broken.gtf"
    broken.write_text('chr1\tt\ttranscript\t1\t9\t.\t+\t.\ttranscript_id "T9";\n')
    with pytest.raises(InputError, match="no gene_id") as err:
        quant.tx2gene_table(gtf=broken)
    assert str(broken) in str(err.value)


# ---------------------------------------------------------------- salmon -> genes


def test_salmon_to_matrix_keeps_library_totals(tmp_path):
    counts = {"s2": [20, 7.5, 45, 30, 15, 0], "s1": [0, 30, 12, 0, 16, 4]}
    lengths = {"s2": [800, 300, 600, 600, 200, 350], "s1": [810, 310, 590, 600, 210, 340]}
    dirs = {s: write_quant(tmp_path / s, counts[s], lengths[s]) for s in ("s2", "s1")}
    gene_counts, tpm = quant.salmon_to_matrix(dirs, TX)

    assert list(gene_counts.index) == ["s2", "s1"] == list(tpm.index)  # dict order, not sorted
    assert list(gene_counts.columns) == ["geneA", "geneM", "geneZ"] == list(tpm.columns)
    for sample, folder in dirs.items():
        # length-scaled counts keep each sample's library total
        assert gene_counts.loc[sample].sum() == pytest.approx(sum(counts[sample]))
        assert tpm.loc[sample].sum() == pytest.approx(1e6)
        sf = pd.read_csv(folder / "quant.sf", sep="\t").merge(TX, left_on="Name", right_on="transcript")
        assert tpm.loc[sample].to_dict() == pytest.approx(sf.groupby("gene")["TPM"].sum().to_dict())
    # tximport's length scaling: counts_g ∝ TPM_g x (gene length averaged over samples)
    sf = {s: pd.read_csv(dirs[s] / "quant.sf", sep="\t").merge(TX, left_on="Name", right_on="transcript") for s in dirs}
    gene_len = {
        s: sf[s].assign(w=sf[s]["TPM"] * sf[s]["EffectiveLength"]).groupby("gene")["w"].sum()
        / sf[s].groupby("gene")["TPM"].sum()
        for s in dirs
    }
    mean_len = pd.concat(gene_len, axis=1).mean(axis=1)
    expected = tpm.loc["s2"] * mean_len
    expected = expected / expected.sum() * sum(counts["s2"])
    assert gene_counts.loc["s2"].to_dict() == pytest.approx(expected.to_dict())


def test_equal_lengths_give_plain_gene_sums(tmp_path):
    counts = {"a": [10, 20, 30, 5, 1, 4], "b": [3, 0, 9, 50, 2, 6]}
    dirs = {s: write_quant(tmp_path / s, c, [500] * 6) for s, c in counts.items()}
    gene_counts, _ = quant.salmon_to_matrix(dirs, TX)
    for sample, values in counts.items():
        plain = pd.Series(values, index=TX["gene"]).groupby(level=0).sum()
        assert gene_counts.loc[sample].to_dict() == pytest.approx(plain.to_dict())


def test_transcript_missing_from_map_is_named(tmp_path):
    dirs = {"s1": write_quant(tmp_path / "s1", [1, 2, 3, 4, 5, 6], [500] * 6)}
    partial = TX[TX["transcript"] != "tM2"]
    with pytest.raises(InputError) as err:
        quant.salmon_to_matrix(dirs, partial)
    assert str(tmp_path / "s1" / "quant.sf") in str(err.value)
    assert "tM2" in str(err.value) and "1 of 6" in str(err.value)

    versioned = TX.assign(transcript=TX["transcript"] + ".1")
    with pytest.raises(InputError, match="version"):
        quant.salmon_to_matrix(dirs, versioned)


def test_quant_files_from_different_indexes_error(tmp_path):
    a = write_quant(tmp_path / "a", [1, 2, 3, 4, 5, 6], [500] * 6)
    b = write_quant(tmp_path / "b", [1, 2, 3, 4, 5, 6], [500] * 6)
    sf = pd.read_csv(b / "quant.sf", sep="\t")
    sf.iloc[::-1].to_csv(b / "quant.sf", sep="\t", index=False)  # same names, other order
    with pytest.raises(InputError, match="different index") as err:
        quant.salmon_to_matrix({"a": a, "b": b}, TX)
    assert str(b / "quant.sf") in str(err.value)
    (a / "quant.sf").unlink()
    with pytest.raises(InputError, match="not found"):
        quant.salmon_to_matrix({"a": a}, TX)


# ---------------------------------------------------------------- mapping QC


def test_mapping_qc_flags_and_excludes(tmp_path):
    dirs = {
        "good": write_quant(tmp_path / "good", [10, 20, 30, 40, 50, 60], [500] * 6, 85.0, 210),
        "low": write_quant(tmp_path / "low", [1, 2, 3, 4, 5, 6], [500] * 6, 21.0, 21),
        "edge": write_quant(tmp_path / "edge", [1, 2, 3, 4, 5, 6], [500] * 6, 29.6, 21),
    }
    jsons = {
        "good": [fastp_json(tmp_path / "g1.json", 200, 190, True), fastp_json(tmp_path / "g2.json", 100, 90, True)],
        "low": [fastp_json(tmp_path / "l.json", 100, 99, False)],
        "edge": [fastp_json(tmp_path / "e.json", 100, 98, False)],
    }
    samples = ["low", "good", "edge"]
    qc = quant.mapping_qc(samples, dirs, jsons, min_mapping_rate=0.30, exclude=True)
    assert list(qc.columns) == list(quant.QC_COLUMNS)
    qc = qc.set_index("sample")
    assert list(qc.index) == samples
    assert qc.loc["good", "reads_in"] == 150 and qc.loc["good", "reads_after_fastp"] == 140  # pairs, two units
    assert qc.loc["good", "read_unit"] == "pairs" and qc.loc["low", "read_unit"] == "reads"
    assert qc.loc["low", "reads_in"] == 100 and qc.loc["low", "reads_after_fastp"] == 99
    assert qc.loc["good", "mapping_rate"] == pytest.approx(0.85)
    assert qc.loc["good", "num_mapped"] == 210 and qc.loc["good", "library_size"] == pytest.approx(210)
    assert qc["flagged"].to_dict() == {"low": True, "good": False, "edge": True}
    assert qc["excluded"].to_dict() == {"low": True, "good": False, "edge": True}
    assert qc.loc["low", "reason"] == "mapping rate 0.21 < floor 0.30"
    assert qc.loc["edge", "reason"] == "mapping rate 0.296 < floor 0.300"  # never "0.30 < 0.30"
    assert qc.loc["good", "reason"] == ""

    kept = quant.mapping_qc(samples, dirs, jsons, min_mapping_rate=0.30, exclude=False)
    assert kept["flagged"].sum() == 2 and not kept["excluded"].any()
    assert kept.set_index("sample").loc["low", "reason"] == "mapping rate 0.21 < floor 0.30"

    (dirs["low"] / "aux_info" / "meta_info.json").unlink()
    with pytest.raises(InputError, match="meta_info.json"):
        quant.mapping_qc(samples, dirs, jsons, 0.3, True)


def test_apply_exclusion_drops_and_logs(tmp_path, caplog):
    names = [f"S{i}" for i in range(6)]
    matrix = pd.DataFrame(np.arange(12.0).reshape(6, 2), index=pd.Index(names, name="sample"), columns=["g1", "g2"])
    sheet = pd.DataFrame({"sample": names, "label": list("ababab")})
    qc = pd.DataFrame(
        {
            "sample": names,
            "flagged": [False, True, False, True, False, False],
            "excluded": [False, True, False, False, False, False],
            "reason": ["", "mapping rate 0.21 < floor 0.30", "", "mapping rate 0.25 < floor 0.30", "", ""],
        }
    )
    with caplog.at_level(logging.INFO, logger="metasig.reads"):
        kept_matrix, kept_sheet = quant.apply_exclusion(matrix, sheet, qc)
    assert list(kept_matrix.index) == ["S0", "S2", "S3", "S4", "S5"] == list(kept_sheet["sample"])
    assert kept_matrix.loc["S2", "g1"] == matrix.loc["S2", "g1"]
    excluded_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("excluded")]
    assert excluded_lines == ["excluded sample S1: mapping rate 0.21 < floor 0.30"]
    assert any("S3" in r.getMessage() and "kept" in r.getMessage() for r in caplog.records)

    qc["excluded"] = [True, True, True, False, False, False]
    with pytest.raises(InputError, match="only 3 sample"):
        quant.apply_exclusion(matrix, sheet, qc)


# ---------------------------------------------------------------- featureCounts

FC_TXT = (
    '# Program:featureCounts v2.0.3; Command:"featureCounts" "-a" "g.gtf" "-o" "fc.txt" '
    '"bams/a.bam" "bams/b.bam" \n'
    "Geneid\tChr\tStart\tEnd\tStrand\tLength\tbams/a.bam\tbams/b.bam\n"
    "G2\tchr1\t1000\t1500\t+\t501\t2\t2\n"
    "G1\tchr1;chr1\t50;400\t300;600\t+;+\t452\t5\t3\n"
)


def test_featurecounts_fixture(tmp_path):
    path = tmp_path / "fc.txt"
    path.write_text(FC_TXT)
    matrix = quant.featurecounts_to_matrix(path, {"bams/b.bam": "B", "bams/a.bam": "A"})
    assert list(matrix.index) == ["B", "A"] and list(matrix.columns) == ["G1", "G2"]
    assert matrix.loc["A"].tolist() == [5.0, 2.0] and matrix.loc["B"].tolist() == [3.0, 2.0]
    with pytest.raises(InputError, match="match none") as err:
        quant.featurecounts_to_matrix(path, {"other/x.bam": "X", "bams/a.bam": "A"})
    assert str(path) in str(err.value)


def _write_bams(tmp_path):
    pysam = pytest.importorskip("pysam")
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "chr1", "LN": 5000}]}
    plan = {"a": [100] * 5 + [1200] * 2 + [3000], "b": [100] * 3 + [1200] * 2 + [3000] * 6}
    bams = {}
    for name, starts in plan.items():
        bam = tmp_path / f"{name}.bam"
        with pysam.AlignmentFile(str(bam), "wb", header=header) as out:
            for i, start in enumerate(starts):
                read = pysam.AlignedSegment(out.header)
                read.query_name, read.flag, read.reference_id, read.reference_start = f"r{i}", 0, 0, start
                read.mapping_quality, read.cigarstring = 60, "50M"
                read.query_sequence = "A" * 50
                read.query_qualities = pysam.qualitystring_to_array("I" * 50)
                out.write(read)
        pysam.index(str(bam))
        bams[str(bam)] = name.upper()
    gtf = tmp_path / "g.gtf"
    gtf.write_text(
        'chr1\tt\texon\t50\t300\t.\t+\t.\tgene_id "G1"; transcript_id "T1";\n'
        'chr1\tt\texon\t1000\t1500\t.\t+\t.\tgene_id "G2"; transcript_id "T2";\n'
    )
    return bams, gtf


@pytest.mark.skipif(FEATURECOUNTS is None, reason="featureCounts not installed")
def test_featurecounts_real_output(tmp_path):
    bams, gtf = _write_bams(tmp_path)
    out = tmp_path / "counts.txt"
    subprocess.run([FEATURECOUNTS, "-T", "1", "-a", str(gtf), "-o", str(out), *bams], check=True, capture_output=True)
    matrix = quant.featurecounts_to_matrix(out, bams)
    assert list(matrix.index) == ["A", "B"]
    assert matrix.loc["A"].to_dict() == {"G1": 5.0, "G2": 2.0}
    assert matrix.loc["B"].to_dict() == {"G1": 3.0, "G2": 2.0}

    qc = quant.featurecounts_qc(out.with_name(out.name + ".summary"), bams, min_mapping_rate=0.6, exclude=True)
    qc = qc.set_index("sample")
    assert qc.loc["A", "reads_in"] == 8 and qc.loc["A", "num_mapped"] == 7
    assert qc.loc["A", "mapping_rate"] == pytest.approx(7 / 8) and not qc.loc["A", "flagged"]
    assert qc.loc["B", "mapping_rate"] == pytest.approx(5 / 11)
    assert qc.loc["B", "excluded"] and qc.loc["B", "reason"].endswith("0.45 < floor 0.60")
    assert qc.loc["A", "library_size"] == matrix.loc["A"].sum()


# ---------------------------------------------------------------- real tools, tiny inputs


def _simulate(tmp_path, seed=3):
    """Six 400-bp transcripts of three genes, 60-bp paired reads from 200-bp fragments, plus junk pairs."""
    rng = random.Random(seed)
    seqs = {t: "".join(rng.choice("ACGT") for _ in range(400)) for t in TX["transcript"]}
    (tmp_path / "tx.fa").write_text("".join(f">{t}\n{s}\n" for t, s in seqs.items()))
    comp = str.maketrans("ACGT", "TGCA")
    n = 0
    with open(tmp_path / "r1.fq", "w") as r1, open(tmp_path / "r2.fq", "w") as r2:
        for k, (_t, s) in enumerate(seqs.items()):
            for _ in range(10 * (k + 1)):
                p = rng.randint(0, 200)
                frag = s[p : p + 200]
                r1.write(f"@p{n}\n{frag[:60]}\n+\n{'I' * 60}\n")
                r2.write(f"@p{n}\n{frag.translate(comp)[::-1][:60]}\n+\n{'I' * 60}\n")
                n += 1
        for _ in range(30):
            junk = "".join(rng.choice("ACGT") for _ in range(60))
            r1.write(f"@p{n}\n{junk}\n+\n{'I' * 60}\n")
            r2.write(f"@p{n}\n{junk}\n+\n{'I' * 60}\n")
            n += 1
    return n


@pytest.mark.skipif(FASTP is None, reason="fastp not installed")
def test_fastp_real_report(tmp_path):
    pairs = _simulate(tmp_path)
    subprocess.run(
        [
            FASTP,
            "-w",
            "1",
            "-i",
            str(tmp_path / "r1.fq"),
            "-I",
            str(tmp_path / "r2.fq"),
            "-o",
            str(tmp_path / "o1.fq"),
            "-O",
            str(tmp_path / "o2.fq"),
            "-j",
            str(tmp_path / "pe.json"),
            "-h",
            str(tmp_path / "pe.html"),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            FASTP,
            "-w",
            "1",
            "-i",
            str(tmp_path / "r1.fq"),
            "-o",
            str(tmp_path / "o.fq"),
            "-j",
            str(tmp_path / "se.json"),
            "-h",
            str(tmp_path / "se.html"),
        ],
        check=True,
        capture_output=True,
    )
    assert quant._fastp_counts([tmp_path / "pe.json"], "s")[::2] == (pairs, "pairs")
    assert quant._fastp_counts([tmp_path / "se.json"], "s")[::2] == (pairs, "reads")
    # the fixture writer mirrors the real layout
    real = json.loads((tmp_path / "pe.json").read_text())
    fake = json.loads(fastp_json(tmp_path / "fake.json", 10, 10, True).read_text())
    assert set(fake["summary"]["before_filtering"]) == set(real["summary"]["before_filtering"])
    assert set(fake["summary"]) == set(real["summary"])
    assert set(fake) == set(real)


@pytest.mark.skipif(SALMON is None or FASTP is None, reason="salmon/fastp not installed")
def test_real_salmon_end_to_end(tmp_path):
    pairs = _simulate(tmp_path)

    def run(*args):
        subprocess.run([str(a) for a in args], check=True, capture_output=True)

    run(
        FASTP,
        "-w",
        "1",
        "-i",
        tmp_path / "r1.fq",
        "-I",
        tmp_path / "r2.fq",
        "-o",
        tmp_path / "t1.fq",
        "-O",
        tmp_path / "t2.fq",
        "-j",
        tmp_path / "fastp.json",
        "-h",
        tmp_path / "fastp.html",
    )
    run(SALMON, "index", "-t", tmp_path / "tx.fa", "-i", tmp_path / "idx", "-k", "21", "-p", "1")
    run(
        SALMON,
        "quant",
        "-i",
        tmp_path / "idx",
        "-l",
        "A",
        "-1",
        tmp_path / "t1.fq",
        "-2",
        tmp_path / "t2.fq",
        "--validateMappings",
        "-p",
        "1",
        "-o",
        tmp_path / "q",
    )
    gene_counts, tpm = quant.salmon_to_matrix({"s": tmp_path / "q"}, TX)
    sf = pd.read_csv(tmp_path / "q" / "quant.sf", sep="\t")
    assert gene_counts.loc["s"].sum() == pytest.approx(sf["NumReads"].sum())
    assert tpm.loc["s"].sum() == pytest.approx(1e6, rel=1e-4)
    # planted: geneM (transcripts 4 and 6: 40 + 60 fragments) is the most abundant
    assert gene_counts.loc["s"].idxmax() == "geneM"

    qc = quant.mapping_qc(["s"], {"s": tmp_path / "q"}, {"s": [tmp_path / "fastp.json"]}, 0.9, True).iloc[0]
    assert qc["reads_in"] == pairs and qc["read_unit"] == "pairs"
    assert 0.75 < qc["mapping_rate"] < 0.9  # 210 of 240 pairs come from the transcriptome
    assert qc["flagged"] and qc["excluded"] and "< floor 0.90" in qc["reason"]
    assert qc["library_size"] == pytest.approx(qc["num_mapped"], rel=0.01)
