"""FASTQ (and transcriptome FASTA) files read to the end with pysam before any tool runs, each failure
an InputError naming the file and the record:

- a truncated gzip or a malformed record is named with its record number; quality strings must
  match their sequences and be Phred+33;
- mate files are read in lockstep: same number of records, same read names in the same order.

Speed: htslib (through pysam) parses the records; Python only collects each record's name, sequence
and quality and checks them a chunk at a time with C-level string and numpy operations, so a check
costs little more than decompressing the file.
"""

import gzip
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import pysam

from metasig.errors import InputError
from metasig.reads.units import _given, _resolve

UNIT_STATS = ("sample", "unit", "layout", "reads", "min_len", "max_len", "mean_len", "qual_min", "qual_max", "encoding")
CHUNK = 1 << 15  # records checked at once: big enough to amortise numpy calls, small in memory
PHRED33_LOW, PHRED33_HIGH = ord("!"), ord("~")
# Sequence letters: IUPAC nucleotide codes in either case, and '.' (an old no-call symbol).
_SEQ_LETTERS = b"ACGTUNRYKMSWBDHVacgtunrykmswbdhv."
_COMPRESSED = {b"BZh": "bzip2", b"\xfd7zXZ": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


class _Fastq:
    """One FASTQ file read a chunk at a time, with running statistics. Records are counted from 1."""

    def __init__(self, path, min_length=1):
        self.path = Path(path)
        self.where = str(path)
        self.min_length = min_length
        self.reads = self.bases = 0
        self.min_len, self.max_len = None, 0
        self.qual_low, self.qual_high = 255, 0
        _check_start(self.path, self.where)
        try:
            self.handle = pysam.FastxFile(str(self.path), persist=False)  # one reused record: faster
        except (OSError, ValueError) as exc:
            raise InputError(self.where, "(file)", f"cannot open: {exc}") from exc
        self.records = iter(self.handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()

    def chunk(self, names=False):
        """Parse and check up to CHUNK further records; return their names (or None) and count."""
        ids, seqs, quals = [], [], []
        try:
            for record in islice(self.records, CHUNK):
                if names:
                    ids.append(record.name)
                seqs.append(record.sequence)
                quals.append(record.quality)
        except UnicodeDecodeError as exc:
            raise InputError(
                self.where,
                "(record)",
                f"record {self.reads + len(quals) + 1}: a byte that is not "
                f"text ({exc.object[exc.start : exc.end]!r}); not a FASTQ file or a corrupt one",
            ) from exc
        except ValueError as exc:
            raise self._parse_error(exc, self.reads + len(quals) + 1) from exc
        self._check(seqs, quals)
        return (ids if names else None), len(quals)

    def _parse_error(self, exc, number):
        text = str(exc)
        if "truncated quality" in text:
            return InputError(
                self.where,
                "quality",
                f"record {number}: the quality string and the sequence differ "
                "in length (or the file ends inside this record)",
            )
        if "unknown problem parsing" in text:
            return InputError(
                self.where,
                "(file)",
                f"record {number}: cannot be read: the file ends early or is "
                f"corrupt (a truncated gzip or download?) after {number - 1} complete record(s)",
            )
        return InputError(self.where, "(file)", f"record {number}: cannot be parsed: {text}")

    def _check(self, seqs, quals):
        if not quals:
            return
        first = self.reads + 1
        try:
            qual = "".join(quals)
        except TypeError:  # a record without qualities: kseq parsed it as FASTA
            k = next(i for i, q in enumerate(quals) if q is None)
            raise InputError(
                self.where,
                "quality",
                f"record {first + k}: no quality line (a FASTA record, or a record without its '+' line)",
            ) from None
        lengths = list(map(len, quals))  # kseq has already checked len(quality) == len(sequence)
        short, longest = min(lengths), max(lengths)
        if short < self.min_length:
            k = next(i for i, n in enumerate(lengths) if n < self.min_length)
            raise InputError(
                self.where,
                "sequence",
                f"record {first + k}: read of length {lengths[k]}, shorter than the minimum {self.min_length}",
            )
        if "".join(seqs).encode("utf-8").translate(None, _SEQ_LETTERS):
            k = next(i for i, s in enumerate(seqs) if s.encode("utf-8").translate(None, _SEQ_LETTERS))
            letter = next(c for c in seqs[k] if c.encode("utf-8") not in _SEQ_LETTERS)
            raise InputError(
                self.where,
                "sequence",
                f"record {first + k}: character {letter!r} in the sequence "
                "(expected nucleotide letters A, C, G, T, N or other IUPAC codes)",
            )
        if qual:
            codes = np.frombuffer(qual.encode("utf-8"), dtype=np.uint8)  # non-ASCII encodes to bytes > 127
            low, high = int(codes.min()), int(codes.max())
            if low < PHRED33_LOW or high > PHRED33_HIGH:
                k, char = next((i, c) for i, q in enumerate(quals) for c in q if not "!" <= c <= "~")
                raise InputError(
                    self.where,
                    "quality",
                    f"record {first + k}: quality character {char!r} outside the Phred+33 range '!'..'~'",
                )
            self.qual_low, self.qual_high = min(self.qual_low, low), max(self.qual_high, high)
        self.reads += len(quals)
        self.bases += len(qual)
        self.min_len = short if self.min_len is None else min(self.min_len, short)
        self.max_len = max(self.max_len, longest)

    def drain(self):
        """Read (and check) what is left."""
        while self.chunk()[1]:
            pass

    def finish(self):
        """Read what is left; return the statistics of the whole file."""
        self.drain()
        return self.stats()

    def stats(self):
        if self.reads == 0:
            raise InputError(self.where, "(file)", "no FASTQ records: the file is empty")
        if self.qual_low >= ord("@") and self.qual_high > ord("J"):
            raise InputError(
                self.where,
                "quality",
                f"quality characters span {chr(self.qual_low)!r}..{chr(self.qual_high)!r} "
                "(none below '@', some above 'J'): this looks like Phred+64 (Illumina 1.3-1.7), which "
                "is not supported; convert it to Phred+33 first (e.g. seqtk seq -Q64 -V)",
            )
        has_quality = self.qual_high > 0
        return {
            "reads": self.reads,
            "min_len": self.min_len,
            "max_len": self.max_len,
            "mean_len": self.bases / self.reads,
            "qual_min": self.qual_low - 33 if has_quality else None,
            "qual_max": self.qual_high - 33 if has_quality else None,
            "encoding": "phred33",
            "bases": self.bases,
        }


def _check_start(path, where):
    """Cheap checks pysam would not make: the file exists, is plain or gzip, and starts like FASTQ
    (kseq skips anything before the first '@' or '>' without a word)."""
    if not path.is_file():
        raise InputError(where, "(file)", "FASTQ file not found")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    for signature, name in _COMPRESSED.items():
        if magic.startswith(signature[:4]):
            raise InputError(where, "(file)", f"compressed with {name}; FASTQ must be plain text or gzip")
    head = magic[:1]
    _check_gzip_name(path, where, magic)
    if magic[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as handle:
                head = handle.read(1)
        except (OSError, EOFError) as exc:
            raise InputError(where, "(file)", f"record 1: cannot be read: corrupt or truncated gzip ({exc})") from exc
    if not head:
        raise InputError(where, "(file)", "no FASTQ records: the file is empty")
    if head == b">":
        raise InputError(where, "(file)", "this is FASTA (starts with '>'), not FASTQ: reads need quality strings")
    if head != b"@":
        raise InputError(where, "(file)", f"record 1: does not start with '@' (first byte {head!r}); not a FASTQ file")


def _check_gzip_name(path, where, magic):
    """A name ending in .gz promises gzip: tools that trust the name (salmon, fastp) would fail later."""
    if Path(path).name.lower().endswith(".gz") and magic[:2] != b"\x1f\x8b":
        raise InputError(
            where,
            "(file)",
            "the name ends in .gz but the file is not gzip-compressed; "
            "compress it with gzip, or drop the .gz from its name (and from the sheet)",
        )


def fasta_ids(path) -> list:
    """Record IDs (first word of each '>' header) of a FASTA file, plain or gzip."""
    path, where = Path(path), str(path)
    if not path.is_file():
        raise InputError(where, "(file)", "transcriptome FASTA not found")
    with open(path, "rb") as handle:
        magic = handle.read(2)
    _check_gzip_name(path, where, magic)
    try:
        with pysam.FastxFile(str(path)) as records:
            ids = [record.name for record in records]
    except (OSError, ValueError) as exc:
        raise InputError(where, "(file)", f"cannot be read as FASTA: {exc}") from exc
    if not ids:
        raise InputError(where, "(file)", "no FASTA records ('>' headers) in the transcriptome")
    return ids


def check_fastq(path, min_length=1) -> dict:
    """Read a FASTQ (plain or gzip) to the end. Returns reads, min_len, max_len, mean_len, qual_min
    and qual_max (Phred scores), encoding ('phred33') and bases; raises InputError naming the file and
    the record at the first problem."""
    with _Fastq(path, min_length) as reader:
        return reader.finish()


def _mate_name(name):
    """Read name without its mate suffix (pysam has already cut the name at the first whitespace)."""
    name = name.removesuffix("/1")
    name = name.removesuffix("/2")
    return name


def _strip_mates(names):
    """_mate_name on a whole chunk at once: one joined string, C-level replaces."""
    return ("\n".join(names) + "\n").replace("/1\n", "\n").replace("/2\n", "\n")


def check_pair(fq1, fq2, min_length=1) -> dict:
    """Read the two mate files of a paired-end unit in lockstep: each is checked as by check_fastq,
    and they must hold the same number of records with matching names (mate suffixes /1, /2 and
    comments ignored). Returns reads (pairs), min_len, max_len, mean_len (over both mates), qual_min,
    qual_max, encoding, and each file's own statistics under mate1 and mate2."""
    with _Fastq(fq1, min_length) as one, _Fastq(fq2, min_length) as two:
        while True:
            before = one.reads
            names1, n1 = one.chunk(names=True)
            names2, n2 = two.chunk(names=True)
            if n1 != n2:
                one.drain()
                two.drain()
                raise InputError(
                    fq2,
                    "records",
                    f"{two.reads} record(s), but the first-mate file {fq1} has {one.reads}; "
                    "the two files of a pair must hold the same reads in the same order",
                )
            if not n1:
                break
            if names1 != names2 and _strip_mates(names1) != _strip_mates(names2):
                for k, (a, b) in enumerate(zip(names1, names2)):
                    if _mate_name(a) != _mate_name(b):
                        raise InputError(
                            fq2,
                            "name",
                            f"record {before + k + 1}: read name {b!r} does not match {a!r} "
                            f"(record {before + k + 1} of {fq1}); mates must be in the same order",
                        )
        mate1, mate2 = one.stats(), two.stats()
    bases = mate1["bases"] + mate2["bases"]
    return {
        "reads": mate1["reads"],
        "min_len": min(mate1["min_len"], mate2["min_len"]),
        "max_len": max(mate1["max_len"], mate2["max_len"]),
        "mean_len": bases / (2 * mate1["reads"]),
        "qual_min": _combine(min, mate1["qual_min"], mate2["qual_min"]),
        "qual_max": _combine(max, mate1["qual_max"], mate2["qual_max"]),
        "encoding": "phred33",
        "bases": bases,
        "mate1": mate1,
        "mate2": mate2,
    }


def _combine(pick, a, b):
    values = [v for v in (a, b) if v is not None]
    return pick(values) if values else None


def check_units(units_df, base_dir=".", workers=1) -> pd.DataFrame:
    """Check the FASTQ of every local-FASTQ unit (SRA and BAM units are skipped), `workers` units
    at a time. Returns one row per checked unit: sample, unit, layout ('paired'/'single'), reads,
    min_len, max_len, mean_len, qual_min, qual_max, encoding. Errors name the FASTQ file and the
    record, then the unit."""
    sheet = units_df.attrs.get("file", "units sheet")
    rows = [row for row in units_df.to_dict("records") if _given(row.get("fq1"))]
    jobs = [(row, str(base_dir), sheet) for row in rows]
    if workers > 1 and len(rows) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            out = list(pool.map(_check_unit, *zip(*jobs)))
    else:
        out = [_check_unit(*job) for job in jobs]
    return pd.DataFrame(out, columns=list(UNIT_STATS))


def _check_unit(row, base_dir, sheet):
    base = Path(base_dir)
    paired = _given(row.get("fq2"))
    try:
        if paired:
            stats = check_pair(_resolve(row["fq1"], base), _resolve(row["fq2"], base))
        else:
            stats = check_fastq(_resolve(row["fq1"], base))
    except InputError as err:
        raise InputError(
            err.file, err.field, f"{err.problem} [sample {row['sample']}, unit {row['unit']} of {sheet}]"
        ) from err
    return {
        "sample": row["sample"],
        "unit": row["unit"],
        "layout": "paired" if paired else "single",
        **{k: stats[k] for k in UNIT_STATS[3:]},
    }
