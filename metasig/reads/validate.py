"""Checks on raw reads before any tool runs, each failure an InputError naming the file and the
field (column, record, header tag):

- the units sheet: JSON schema per row, duplicate units, samples missing on either side, files;
- FASTQ files read to the end with pysam: a truncated gzip or a malformed record is named with its
  record number; quality strings must match their sequences and be Phred+33;
- mate files read in lockstep: same number of records, same read names in the same order;
- BAM files: readable, @SQ lines, coordinate-sorted, indexed (an index is built when possible).

Speed: htslib (through pysam) parses the records; Python only collects each record's name, sequence
and quality and checks them a chunk at a time with C-level string and numpy operations, so a check
costs little more than decompressing the file.
"""

import gzip
import os
from itertools import islice
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pysam
import yaml

from metasig import io
from metasig.errors import InputError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schemas" / "units.schema.yaml"
COLUMNS = ("sample", "unit", "fq1", "fq2", "sra", "bam")
READ_SOURCES = ("fq1", "sra", "bam")  # exactly one per unit (fq2 goes with fq1)
PATH_FIELDS = ("fq1", "fq2", "bam")
UNIT_STATS = ("sample", "unit", "layout", "reads", "min_len", "max_len", "mean_len", "qual_min", "qual_max", "encoding")
CHUNK = 1 << 15  # records checked at once: big enough to amortise numpy calls, small in memory
PHRED33_LOW, PHRED33_HIGH = ord("!"), ord("~")
# Sequence letters: IUPAC nucleotide codes in either case, and '.' (an old no-call symbol).
_SEQ_LETTERS = b"ACGTUNRYKMSWBDHVacgtunrykmswbdhv."
_COMPRESSED = {b"BZh": "bzip2", b"\xfd7zXZ": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


def _few(items, n=5):
    items = [str(i) for i in items]
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def _given(value):
    """A cell holds a value (not None/NaN/blank)."""
    return isinstance(value, str) and value.strip() != ""


# ---- units sheet -----------------------------------------------------------------------------


def load_schema():
    return yaml.safe_load(SCHEMA_PATH.read_text())


def read_units(path, samples=None, base_dir=".") -> pd.DataFrame:
    """Read and check a units sheet (TSV). Returns one row per unit with columns sample, unit, fq1,
    fq2, sra, bam (None where not given) and kind ('fastq', 'sra' or 'bam'), in sheet order;
    `attrs["file"]` holds the sheet's path. `samples`: the sample sheet's IDs, when known; every
    unit must belong to one of them and each of them needs a unit. Paths stay as written; relative
    ones are checked against `base_dir`."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputError(where, "(file)", "units sheet not found")
    header = _header(path, where)
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(where, "(table)", f"not a readable tab-separated table: {exc}") from exc
    table.columns = header
    schema = load_schema()
    allowed = list(schema["properties"])
    unknown = [c for c in header if c not in allowed]
    if unknown:
        raise InputError(where, unknown[0], f"unknown column (allowed columns: {', '.join(allowed)})")
    for column in ("sample", "unit"):
        if column not in header:
            raise InputError(where, column, f"column missing (columns found: {_few(header, 10)})")
    if table.empty:
        raise InputError(where, "(rows)", "the units sheet has no rows")

    validator = jsonschema.Draft202012Validator(schema)
    rows = []
    for number, raw in enumerate(table.to_dict("records"), start=1):
        row = {k: v.strip() for k, v in raw.items() if _given(v)}
        errors = list(validator.iter_errors(row))
        if errors:
            field, problem = _describe(min(errors, key=_priority), row, schema)
            raise InputError(where, field, f"{_label(number, row)}: {problem}")
        rows.append(row)

    _check_unique_units(rows, where)
    if samples is not None:
        _check_samples(rows, [str(s) for s in samples], where)
    _check_layouts(rows, where)
    _check_files(rows, Path(base_dir), where)

    units = pd.DataFrame([{c: r.get(c) for c in COLUMNS} for r in rows], columns=list(COLUMNS), dtype=object)
    units["kind"] = ["bam" if "bam" in r else "sra" if "sra" in r else "fastq" for r in rows]
    units.attrs["file"] = where
    return units


def _header(path, where):
    """Column names as written (pandas would rename a repeated one to 'name.1')."""
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        first = handle.readline().rstrip("\r\n")
    header = [c.strip() for c in first.split("\t")]
    if not first.strip():
        raise InputError(where, "(header)", "the first line must name the columns (sample, unit, fq1, fq2, sra, bam)")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise InputError(where, repeated[0], "column appears more than once in the header")
    return header


def _label(number, row):
    return f"row {number} (sample {row.get('sample', '?')}, unit {row.get('unit', '?')})"


_PRIORITY = {"required": 0, "additionalProperties": 1, "type": 2, "dependentRequired": 3, "oneOf": 4}


def _priority(error):
    return _PRIORITY.get(error.validator, 5), list(error.absolute_path)


def _describe(error, row, schema):
    """(field, sentence) for a schema error; oneOf and dependentRequired messages of jsonschema
    dump the whole row, so those get plain sentences."""
    kind = error.validator
    if kind == "required":
        missing = [k for k in error.validator_value if k not in row]
        return missing[0], "missing value (this column is required)"
    if kind == "oneOf":
        given = [k for k in READ_SOURCES if k in row]
        if not given:
            return "fq1", "no reads given: fill fq1 (and fq2 if paired-end), or sra, or bam"
        return "/".join(
            given
        ), f"{' and '.join(given)} are both given; a unit takes exactly one of fq1 (+ fq2), sra or bam"
    if kind == "dependentRequired":
        return "fq2", "fq2 is given without fq1 (a single-end unit uses fq1; fq2 only holds second mates)"
    field = ".".join(str(p) for p in error.absolute_path) or "(row)"
    described = schema["properties"].get(field, {}).get("description")
    if kind in ("pattern", "minLength", "type") and described:
        return field, f"{error.instance!r} is not valid: expected {described.strip()}"
    return field, error.message


def _check_unique_units(rows, where):
    first = {}
    for number, row in enumerate(rows, start=1):
        key = (row["sample"], row["unit"])
        if key in first:
            raise InputError(
                where,
                "unit",
                f"{_label(number, row)}: unit '{key[1]}' of sample '{key[0]}' is listed "
                f"twice (also row {first[key]}); the units of a sample need distinct names",
            )
        first[key] = number


def _check_samples(rows, samples, where):
    known = set(samples)
    for number, row in enumerate(rows, start=1):
        if row["sample"] not in known:
            raise InputError(
                where,
                "sample",
                f"{_label(number, row)}: sample '{row['sample']}' is not in the "
                f"sample sheet (its samples: {_few(samples)})",
            )
    with_units = {row["sample"] for row in rows}
    without = [s for s in samples if s not in with_units]
    if without:
        raise InputError(
            where,
            "sample",
            f"{len(without)} sample(s) of the sample sheet have no unit: {_few(without)}; "
            "add their reads here or drop them from the sample sheet",
        )


def _check_layouts(rows, where):
    """The units of a sample are quantified together: all aligned (BAM) or all reads, and local
    FASTQ units all paired-end or all single-end (salmon takes one layout per run)."""
    seen = {}
    for number, row in enumerate(rows, start=1):
        kind = "bam" if "bam" in row else "paired" if "fq2" in row else "single" if "fq1" in row else None
        if kind is None:  # SRA: layout known only after download
            continue
        earlier = seen.setdefault(row["sample"], (kind, number))
        clash = {earlier[0], kind}
        if "bam" in clash and len(clash) > 1:
            raise InputError(
                where,
                "bam",
                f"{_label(number, row)}: sample '{row['sample']}' mixes BAM and FASTQ units "
                f"(see row {earlier[1]}); a sample's units are either all aligned (bam) or all reads",
            )
        if len(clash) > 1:
            raise InputError(
                where,
                "fq2",
                f"{_label(number, row)}: sample '{row['sample']}' mixes paired-end and "
                f"single-end units (see row {earlier[1]}); salmon quantifies one layout per sample",
            )


def _resolve(value, base):
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _check_files(rows, base, where):
    used = {}
    for number, row in enumerate(rows, start=1):
        for field in PATH_FIELDS:
            if field not in row:
                continue
            full = _resolve(row[field], base)
            if not full.is_file():
                looked = "" if str(full) == row[field] else f" (looked for {full})"
                raise InputError(where, field, f"{_label(number, row)}: file not found: {row[field]}{looked}")
            key = full.resolve()
            if key in used:
                raise InputError(
                    where,
                    field,
                    f"{_label(number, row)}: {row[field]} is already given as "
                    f"{used[key]}; each file holds the reads of one unit and one mate",
                )
            used[key] = f"{field} of row {number}"


# ---- FASTQ -----------------------------------------------------------------------------------


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


# ---- transcriptome and transcript -> gene map --------------------------------------------------

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


def check_transcript_ids(transcriptome, tx2gene=None, gtf=None, max_unmatched=MAX_UNMATCHED):
    """Transcriptome FASTA IDs and the transcript -> gene map must describe the same transcripts,
    checked before salmon runs: otherwise tximport finds no gene for the quantified transcripts
    after hours of work. Raises InputError naming both files and a few IDs; returns the counts."""
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
            f"(more than {max_unmatched:.0%} unmatched; e.g. FASTA {_few(unmatched, 3)}; map "
            f"{_few(sorted(mapped)[:3], 3)}){hint}",
        )
    return {"transcripts": len(ids), "unmatched": len(unmatched)}


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


# ---- BAM -------------------------------------------------------------------------------------


def _open_bam(path, where):
    try:
        return pysam.AlignmentFile(str(path), "r", check_sq=False)
    except OSError as exc:
        if "EOF marker" in str(exc):
            raise InputError(where, "(file)", "truncated: no BGZF end-of-file marker; copy or write it again") from exc
        raise InputError(where, "(file)", f"cannot read: {exc}") from exc
    except ValueError as exc:
        raise InputError(where, "(file)", f"not a BAM file: {exc}") from exc


def _index_of(path):
    for candidate in (f"{path}.bai", path.with_suffix(".bai"), f"{path}.csi"):
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def check_bam(path) -> dict:
    """Check an aligned BAM before counting: readable, @SQ lines, SO:coordinate in @HD and an index
    (.bai/.csi beside it; built with samtools index when missing and the folder is writable).
    Returns n_references, mapped and unmapped (from the index), index and index_created."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputError(where, "(file)", "BAM file not found")
    with _open_bam(path, where) as bam:
        if not bam.is_bam:
            raise InputError(where, "(file)", f"not a BAM file ({bam.format}); convert it with samtools view -b")
        header = bam.header.to_dict()
    references = header.get("SQ") or []
    if not references:
        raise InputError(
            where, "@SQ", "the header has no @SQ lines (reference sequences); was it written without its header?"
        )
    order = (header.get("HD") or {}).get("SO")
    if order != "coordinate":
        raise InputError(
            where, "@HD SO", f"not coordinate-sorted: sort with samtools sort (the header says SO:{order or '(none)'})"
        )
    index, created = _index_of(path), False
    if index is None:
        index, created = _build_index(path, where, references), True
    with _open_bam(path, where) as bam:
        if not bam.has_index():
            raise InputError(where, "(index)", f"htslib does not find the index {index}")
        return {
            "n_references": bam.nreferences,
            "mapped": bam.mapped,
            "unmapped": bam.unmapped,
            "index": str(index),
            "index_created": created,
        }


def _build_index(path, where, references):
    folder = path.parent
    if not os.access(folder, os.W_OK):
        raise InputError(
            where,
            "(index)",
            f"no index (.bai/.csi) beside the BAM and its folder {folder} is not "
            f"writable; run samtools index on it where you can write",
        )
    csi = max(int(r.get("LN", 0)) for r in references) >= 1 << 29  # BAI cannot address longer references
    target = Path(f"{path}.csi" if csi else f"{path}.bai")
    try:
        with io.atomic_path(target) as tmp:
            pysam.index(*(["-c"] if csi else []), "-o", str(tmp), str(path))
    except pysam.SamtoolsError as exc:
        raise InputError(
            where,
            "(index)",
            "samtools index failed: the records are probably not in coordinate "
            "order although the header says SO:coordinate; sort with samtools sort",
        ) from exc
    except OSError as exc:
        raise InputError(where, "(index)", f"cannot write the index {target}: {exc}") from exc
    return target
