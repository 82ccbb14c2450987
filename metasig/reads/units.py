"""The units sheet (which reads belong to which sample), read and checked before the workflow plans
any job: JSON schema per row, duplicate units, samples missing on either side, layouts, files. Each
failure is an InputError naming the sheet, the column and the row.

Snakemake imports this module while it builds the DAG, so it stays light: no pysam here (the file
checks live in fastq.py and bam.py).
"""

from pathlib import Path

import jsonschema
import pandas as pd
import yaml

from metasig.errors import InputError, few

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schemas" / "units.schema.yaml"
COLUMNS = ("sample", "unit", "fq1", "fq2", "sra", "bam")
UNIT_READ_COLUMNS = ("fq1", "sra", "bam")  # exactly one per unit (fq2 goes with fq1)
PATH_FIELDS = ("fq1", "fq2", "bam")


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
            raise InputError(where, column, f"column missing (columns found: {few(header, 10)})")
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
        given = [k for k in UNIT_READ_COLUMNS if k in row]
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
                f"sample sheet (its samples: {few(samples)})",
            )
    with_units = {row["sample"] for row in rows}
    without = [s for s in samples if s not in with_units]
    if without:
        raise InputError(
            where,
            "sample",
            f"{len(without)} sample(s) of the sample sheet have no unit: {few(without)}; "
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
