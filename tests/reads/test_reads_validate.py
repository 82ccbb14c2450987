"""Raw-read validation: every bad FASTQ, units sheet or BAM is an InputError naming the file and
the field or record, found before any tool runs."""

import gzip
import os
import time
from pathlib import Path

import pysam
import pytest

from metasig.errors import InputError
from metasig.reads import bam as reads_bam
from metasig.reads import fastq as reads_fastq
from metasig.reads import units as reads_units
from metasig.reads.bam import check_bam
from metasig.reads.fastq import check_fastq, check_pair, check_units
from metasig.reads.units import read_units

NGS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ngs"
BASES = "ACGT"


def records(n, length=30, suffix="", start=0, quality=None):
    """n reads with varied lengths (length, length-1, length-2) and Phred+33 qualities."""
    out = []
    for i in range(start, start + n):
        size = length - i % 3
        seq = "".join(BASES[(i * 7 + j) % 4] for j in range(size))
        qual = quality(size) if quality else "".join(chr(33 + 2 + (i + j) % 39) for j in range(size))  # '#'..'I'
        out.append((f"read{i}{suffix}", seq, qual))
    return out


def write_fastq(path, recs, comment=""):
    text = "".join(f"@{name}{comment}\n{seq}\n+\n{qual}\n" for name, seq, qual in recs)
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def fails(call, *args, file=None, field=None, words=(), **kwargs):
    with pytest.raises(InputError) as err:
        call(*args, **kwargs)
    error = err.value
    if file is not None:
        assert error.file == str(file), str(error)
        assert str(file) in str(error)
    if field is not None:
        assert error.field == field, str(error)
    for word in words:
        assert str(word) in str(error), (word, str(error))
    return error


# ---- FASTQ -----------------------------------------------------------------------------------


def test_good_pair_gz_and_plain(tmp_path):
    fq1 = write_fastq(tmp_path / "s_1.fq.gz", records(50, suffix="/1"), comment=" 1:N:0:ACGT")
    fq2 = write_fastq(tmp_path / "s_2.fq", records(50, length=28, suffix="/2"), comment=" 2:N:0:ACGT")
    stats = check_pair(fq1, fq2)
    assert stats["reads"] == 50
    assert stats["mate1"]["reads"] == stats["mate2"]["reads"] == 50
    assert (stats["min_len"], stats["max_len"]) == (26, 30)
    assert (stats["mate1"]["min_len"], stats["mate1"]["max_len"]) == (28, 30)
    expected_mean = (sum(len(r[1]) for r in records(50)) + sum(len(r[1]) for r in records(50, length=28))) / 100
    assert stats["mean_len"] == pytest.approx(expected_mean)
    assert (stats["qual_min"], stats["qual_max"], stats["encoding"]) == (2, 40, "phred33")
    single = check_fastq(fq1)
    assert single == stats["mate1"]
    # the same reads, plain text, give the same statistics
    assert check_fastq(write_fastq(tmp_path / "plain.fq", records(50, suffix="/1"))) == single


def test_many_chunks_counted_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(reads_fastq, "CHUNK", 7)  # records split over many chunks, the last one partial
    fq1 = write_fastq(tmp_path / "a_1.fq", records(45, suffix="/1"))
    fq2 = write_fastq(tmp_path / "a_2.fq", records(45, suffix="/2"))
    assert check_pair(fq1, fq2)["reads"] == 45
    bad = records(45, suffix="/2")
    bad[38] = ("other", *bad[38][1:])
    fails(
        check_pair,
        fq1,
        write_fastq(tmp_path / "b_2.fq", bad),
        field="name",
        words=("record 39", "'other'", "'read38/1'"),
    )


def test_truncated_gzip_names_file_and_record(tmp_path):
    full = write_fastq(tmp_path / "full.fq.gz", records(3000, length=60))
    data = full.read_bytes()
    cut = tmp_path / "cut.fq.gz"
    cut.write_bytes(data[: len(data) // 2])
    error = fails(check_fastq, cut, file=cut, field="(file)", words=("record", "truncated"))
    number = int(error.problem.split("record ")[1].split(":")[0])
    assert 1 < number < 3000
    # a mate file cut short is named too, not its intact partner
    fails(check_pair, full, cut, file=cut, words=("record",))
    # a gzip cut inside its header
    stub = tmp_path / "stub.fq.gz"
    stub.write_bytes(data[:5])
    fails(check_fastq, stub, file=stub, field="(file)")


def test_mate_count_mismatch_names_both_files_and_counts(tmp_path):
    fq1 = write_fastq(tmp_path / "m_1.fq", records(40, suffix="/1"))
    fq2 = write_fastq(tmp_path / "m_2.fq.gz", records(37, suffix="/2"))
    fails(check_pair, fq1, fq2, file=fq2, field="records", words=(fq1, "37", "40"))
    fails(check_pair, fq2, fq1, file=fq1, field="records", words=(fq2, "37", "40"))


def test_mate_name_mismatch_names_record_and_both_names(tmp_path):
    fq1 = write_fastq(tmp_path / "n_1.fq", records(10, suffix="/1"))
    recs = records(10, suffix="/2")
    recs[2] = ("read99/2", *recs[2][1:])
    fq2 = write_fastq(tmp_path / "n_2.fq", recs)
    fails(check_pair, fq1, fq2, file=fq2, field="name", words=("record 3", "read99/2", "read2/1", fq1))
    # mates without suffixes, and a suffix on one side only, still pair up
    plain = write_fastq(tmp_path / "p.fq", records(10))
    assert check_pair(plain, write_fastq(tmp_path / "q.fq", records(10, suffix="/2")))["reads"] == 10


def test_quality_length_mismatch(tmp_path):
    recs = records(5)
    recs[1] = (recs[1][0], recs[1][1], recs[1][2][:-4])
    path = write_fastq(tmp_path / "q.fq", recs)
    fails(check_fastq, path, file=path, field="quality", words=("record 2",))
    recs[1] = (recs[1][0], recs[1][1], recs[1][2] + "IIIIIII")
    fails(check_fastq, write_fastq(tmp_path / "q2.fq", recs), field="quality", words=("record 2",))


def test_record_without_quality_line(tmp_path):
    path = tmp_path / "noplus.fq"
    path.write_text("@r1\nACGT\n+\nIIII\n@r2\nACGT\nIIII\n@r3\nACGT\n+\nIIII\n")
    fails(check_fastq, path, file=path, field="quality", words=("record 2", "'+'"))


def test_quality_outside_phred33(tmp_path):
    recs = records(6)
    recs[4] = (recs[4][0], recs[4][1], recs[4][2][:3] + " " + recs[4][2][4:])
    path = write_fastq(tmp_path / "space.fq", recs)
    fails(check_fastq, path, file=path, field="quality", words=("record 5", "' '", "Phred+33"))


def test_phred64_looking_file_is_refused(tmp_path):
    path = write_fastq(tmp_path / "old.fq", records(20, quality=lambda n: "".join("@FHh"[j % 4] for j in range(n))))
    fails(check_fastq, path, file=path, field="quality", words=("Phred+64", "not supported", "convert"))
    # high qualities that start below '@' are ordinary Phred+33 (e.g. newer instruments)
    ok = write_fastq(tmp_path / "new.fq", records(20, quality=lambda n: "".join("#FK~"[j % 4] for j in range(n))))
    assert check_fastq(ok)["qual_max"] == ord("~") - 33


def test_empty_files(tmp_path):
    empty = tmp_path / "empty.fq"
    empty.write_text("")
    fails(check_fastq, empty, file=empty, field="(file)", words=("empty",))
    empty_gz = tmp_path / "empty.fq.gz"
    with gzip.open(empty_gz, "wt"):
        pass
    fails(check_fastq, empty_gz, file=empty_gz, field="(file)", words=("empty",))
    good = write_fastq(tmp_path / "g.fq", records(3))
    fails(check_pair, good, empty, file=empty, words=("empty",))


def test_not_fastq(tmp_path):
    fasta = tmp_path / "x.fa"
    fasta.write_text(">t1\nACGT\n")
    fails(check_fastq, fasta, file=fasta, field="(file)", words=("FASTA",))
    text = tmp_path / "notes.fq"
    text.write_text("hello\n@r1\nACGT\n+\nIIII\n")
    fails(check_fastq, text, file=text, field="(file)", words=("record 1", "'@'"))
    bad_seq = tmp_path / "seq.fq"
    bad_seq.write_text("@r1\nACGT\n+\nIIII\n@r2\nAC7T\n+\nIIII\n")
    fails(check_fastq, bad_seq, file=bad_seq, field="sequence", words=("record 2", "'7'"))
    missing = tmp_path / "gone.fq"
    fails(check_fastq, missing, file=missing, field="(file)", words=("not found",))


def test_min_length(tmp_path):
    recs = records(4, length=10) + [("short", "ACG", "III")]
    path = write_fastq(tmp_path / "short.fq", recs)
    assert check_fastq(path)["min_len"] == 3
    fails(check_fastq, path, min_length=5, file=path, field="sequence", words=("record 5", "length 3"))


# ---- units sheet -----------------------------------------------------------------------------


@pytest.fixture
def reads_dir(tmp_path):
    """A folder with FASTQ and BAM files and a writer for units sheets beside them."""
    for name in ("A_L1_1.fq.gz", "A_L1_2.fq.gz", "A_L2_1.fq.gz", "A_L2_2.fq.gz"):
        suffix = "/1" if "_1." in name else "/2"
        write_fastq(tmp_path / name, records(12, suffix=suffix))
    write_fastq(tmp_path / "B_1.fq", records(9))
    (tmp_path / "C.bam").write_bytes(b"")
    return tmp_path


GOOD_UNITS = [
    ("sample", "unit", "fq1", "fq2", "sra", "bam"),
    ("A", "L1", "A_L1_1.fq.gz", "A_L1_2.fq.gz", "", ""),
    ("A", "L2", "A_L2_1.fq.gz", "A_L2_2.fq.gz", "", ""),
    ("B", "run1", "B_1.fq", "", "", ""),
    ("D", "run1", "", "", "SRR1234567", ""),
    ("C", "aln", "", "", "", "C.bam"),
]
SAMPLES = ["A", "B", "C", "D"]


def units_sheet(folder, rows, name="units.tsv"):
    path = Path(folder) / name
    path.write_text("".join("\t".join(row) + "\n" for row in rows))
    return path


def test_good_units_sheet(reads_dir):
    sheet = units_sheet(reads_dir, GOOD_UNITS)
    units = read_units(sheet, samples=SAMPLES, base_dir=reads_dir)
    assert list(units.columns) == ["sample", "unit", "fq1", "fq2", "sra", "bam", "kind"]
    assert list(units["kind"]) == ["fastq", "fastq", "fastq", "sra", "bam"]
    assert units.loc[2, "fq2"] is None and units.loc[3, "sra"] == "SRR1234567"
    assert units.attrs["file"] == str(sheet)
    # only the columns in use are needed, and absolute paths work from anywhere
    minimal = units_sheet(reads_dir, [("sample", "unit", "fq1"), ("B", "r1", str(reads_dir / "B_1.fq"))], "min.tsv")
    assert list(read_units(minimal, samples=["B"])["fq1"]) == [str(reads_dir / "B_1.fq")]

    stats = check_units(units, base_dir=reads_dir)
    assert list(stats["unit"]) == ["L1", "L2", "run1"]  # SRA and BAM units skipped
    assert list(stats["layout"]) == ["paired", "paired", "single"]
    assert list(stats["reads"]) == [12, 12, 9]
    assert set(reads_fastq.UNIT_STATS) == set(stats.columns)


def test_check_units_error_names_fastq_record_and_unit(reads_dir):
    units = read_units(units_sheet(reads_dir, GOOD_UNITS), samples=SAMPLES, base_dir=reads_dir)
    write_fastq(reads_dir / "A_L2_2.fq.gz", records(11, suffix="/2"))
    fails(
        check_units,
        units,
        base_dir=reads_dir,
        file=reads_dir / "A_L2_2.fq.gz",
        field="records",
        words=("11", "12", "sample A, unit L2", "units.tsv"),
    )


def bad_sheet(reads_dir, change, field, *words, samples=SAMPLES):
    rows = [list(r) for r in GOOD_UNITS]
    change(rows)
    sheet = units_sheet(reads_dir, rows)
    return fails(read_units, sheet, samples=samples, base_dir=reads_dir, file=sheet, field=field, words=words)


def test_units_duplicate_unit(reads_dir):
    def dup(rows):
        rows[2][1] = "L1"

    bad_sheet(reads_dir, dup, "unit", "row 2", "'L1'", "'A'", "twice", "row 1")


def test_units_unknown_sample(reads_dir):
    def unknown(rows):
        rows[3][0] = "Z"

    bad_sheet(
        reads_dir, unknown, "sample", "row 3", "'Z'", "not in the sample sheet", samples=["A", "B", "C", "D", "Z2"]
    )


def test_units_sample_without_units(reads_dir):
    bad_sheet(reads_dir, lambda rows: None, "sample", "no unit", "E", samples=SAMPLES + ["E"])
    # without a sample list, nothing is known about missing samples
    assert len(read_units(units_sheet(reads_dir, GOOD_UNITS), base_dir=reads_dir)) == 5


def test_units_missing_file(reads_dir):
    def missing(rows):
        rows[2][3] = "nowhere/A_L2_2.fq.gz"

    error = bad_sheet(reads_dir, missing, "fq2", "row 2", "sample A, unit L2", "file not found", "nowhere/A_L2_2.fq.gz")
    assert str(reads_dir / "nowhere") in error.problem  # where it looked

    def missing_bam(rows):
        rows[5][5] = "gone.bam"

    bad_sheet(reads_dir, missing_bam, "bam", "row 5", "gone.bam")


def test_units_bad_sra_accession(reads_dir):
    def bad(rows):
        rows[4][4] = "SRP123456"

    bad_sheet(reads_dir, bad, "sra", "row 4", "'SRP123456'", "SRA run accession")


def test_units_two_read_sources(reads_dir):
    def both(rows):
        rows[3][5] = "C.bam"

    bad_sheet(reads_dir, both, "fq1/bam", "row 3", "exactly one")

    def none(rows):
        rows[3][2] = ""

    bad_sheet(reads_dir, none, "fq1", "row 3", "no reads")

    def fq2_only(rows):
        rows[3][2], rows[3][3] = "", "B_1.fq"

    bad_sheet(reads_dir, fq2_only, "fq2", "row 3", "without fq1")


def test_units_sheet_shape_errors(reads_dir):
    def unknown_column(rows):
        rows[0][3] = "fq_2"

    bad_sheet(reads_dir, unknown_column, "fq_2", "unknown column")

    def no_unit_column(rows):
        for row in rows:
            del row[1]

    bad_sheet(reads_dir, no_unit_column, "unit", "column missing")

    def empty_unit(rows):
        rows[3][1] = "  "

    bad_sheet(reads_dir, empty_unit, "unit", "row 3", "missing value")

    def spaced(rows):
        rows[3][1] = "run 1"

    bad_sheet(reads_dir, spaced, "unit", "row 3", "'run 1'", "whitespace")

    def reused(rows):
        rows[2][2] = "A_L1_1.fq.gz"

    bad_sheet(reads_dir, reused, "fq1", "row 2", "already given", "fq1 of row 1")

    def mixed(rows):
        rows[2][3] = ""

    bad_sheet(reads_dir, mixed, "fq2", "sample 'A'", "paired-end and single-end")
    header_only = units_sheet(reads_dir, GOOD_UNITS[:1], "empty.tsv")
    fails(read_units, header_only, file=header_only, field="(rows)")
    gone = reads_dir / "none.tsv"
    fails(read_units, gone, file=gone, field="(file)", words=("not found",))


def test_units_schema_describes_every_field():
    schema = reads_units.load_schema()
    assert set(schema["properties"]) == set(reads_units.COLUMNS)
    assert all(spec.get("description") for spec in schema["properties"].values())


# ---- BAM -------------------------------------------------------------------------------------


def write_bam(path, sort_order, order, references=(("chr1", 1000), ("chr2", 500))):
    """A tiny BAM: `order` is a list of (reference index or None for unmapped, position)."""
    header = {"HD": {"VN": "1.6", "SO": sort_order}, "SQ": [{"SN": n, "LN": ln} for n, ln in references]}
    if sort_order is None:
        del header["HD"]["SO"]
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for i, (tid, pos) in enumerate(order):
            read = pysam.AlignedSegment(out.header)
            read.query_name = f"r{i}"
            read.query_sequence = "ACGTACGTAC"
            read.query_qualities = pysam.qualitystring_to_array("IIIIIIIIII")
            if tid is None:
                read.flag, read.reference_id, read.reference_start = 4, -1, -1
            else:
                read.flag, read.reference_id, read.reference_start = 0, tid, pos
                read.mapping_quality, read.cigarstring = 60, "10M"
            out.write(read)
    return Path(path)


UNSORTED = [(1, 5), (0, 300), (0, 20), (None, 0), (0, 100)]


def test_bam_not_sorted(tmp_path):
    for order in ("unsorted", "queryname", None):
        bam = write_bam(tmp_path / f"{order}.bam", order, UNSORTED)
        fails(check_bam, bam, file=bam, field="@HD SO", words=("not coordinate-sorted", "samtools sort"))
    # sorted by samtools, the same reads pass
    sorted_bam = tmp_path / "sorted.bam"
    pysam.sort("-o", str(sorted_bam), str(tmp_path / "unsorted.bam"))
    stats = check_bam(sorted_bam)
    assert (stats["mapped"], stats["unmapped"], stats["n_references"]) == (4, 1, 2)


def test_bam_without_index_gets_one(tmp_path):
    bam = write_bam(tmp_path / "s.bam", "coordinate", [(0, 10), (0, 20), (1, 5), (None, 0)])
    assert not (tmp_path / "s.bam.bai").exists()
    stats = check_bam(bam)
    assert (tmp_path / "s.bam.bai").is_file() and stats["index_created"] is True
    assert stats["index"] == str(tmp_path / "s.bam.bai")
    assert (stats["n_references"], stats["mapped"], stats["unmapped"]) == (2, 3, 1)
    again = check_bam(bam)  # the index is now found, not rebuilt
    assert again["index_created"] is False and again["mapped"] == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_bam_index_not_creatable(tmp_path, monkeypatch):
    bam = write_bam(tmp_path / "ro.bam", "coordinate", [(0, 10), (1, 5)])
    real_access = os.access
    monkeypatch.setattr(reads_bam.os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    fails(check_bam, bam, file=bam, field="(index)", words=("not writable", "samtools index"))
    assert not (tmp_path / "ro.bam.bai").exists()


def test_bam_other_problems(tmp_path):
    liar = write_bam(tmp_path / "liar.bam", "coordinate", UNSORTED)  # header says sorted, records are not
    fails(check_bam, liar, file=liar, field="(index)", words=("samtools sort",))
    assert not (tmp_path / "liar.bam.bai").exists()
    good = write_bam(tmp_path / "good.bam", "coordinate", [(0, 10)])
    cut = tmp_path / "cut.bam"
    cut.write_bytes(good.read_bytes()[:-28])  # without its end-of-file block
    fails(check_bam, cut, file=cut, field="(file)", words=("truncated",))
    text = tmp_path / "text.bam"
    text.write_text("not a bam\n")
    fails(check_bam, text, file=text, field="(file)")
    no_sq = write_bam(tmp_path / "nosq.bam", "coordinate", [], references=())
    fails(check_bam, no_sq, file=no_sq, field="@SQ")
    fails(check_bam, tmp_path / "none.bam", file=tmp_path / "none.bam", field="(file)", words=("not found",))


# ---- real reads ------------------------------------------------------------------------------


def test_real_chr21_pair():
    if not NGS.is_dir():
        pytest.skip(f"real reads not found at {NGS} (../shared/data/ngs beside the checkout)")
    fq1, fq2 = NGS / "a.chr21.1.fq.gz", NGS / "a.chr21.2.fq.gz"
    started = time.perf_counter()
    stats = check_pair(fq1, fq2)
    seconds = time.perf_counter() - started
    assert stats["reads"] > 1000
    assert stats["encoding"] == "phred33" and 0 <= stats["qual_min"] < stats["qual_max"] <= 42
    assert 0 < stats["min_len"] <= stats["mean_len"] <= stats["max_len"] <= 300
    print(f"check_pair on the chr21 pair: {stats['reads']} pairs in {seconds:.3f} s")
    # mates of different samples do not pair up
    with pytest.raises(InputError) as err:
        check_pair(fq1, NGS / "b.chr21.2.fq.gz")
    assert err.value.field in ("name", "records") and str(NGS / "b.chr21.2.fq.gz") in str(err.value)
