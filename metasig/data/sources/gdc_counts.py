"""GDC ``STAR - Counts`` files: one TSV per aliquot (``# gene-model: GENCODE v36`` comment, header
``gene_id gene_name gene_type unstranded ...``, four ``N_*`` summary rows that are skipped).
"""

import gzip
from pathlib import Path

import pandas as pd

from metasig.errors import InputError

LIBRARY_COLUMN = "unstranded"  # ranks repeat aliquots of one sample


def read_star_counts(path, column="unstranded", display=None):
    """(table indexed by gene_id with gene_name, `column` and unstranded; gene model or None) of one
    STAR - Counts file, without the N_unmapped/N_multimapping/N_noFeature/N_ambiguous rows."""
    path = Path(path)
    where = str(display or path)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    model, skip = None, 0
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            skip += 1
            text = line.lstrip("#").strip()
            if text.lower().startswith("gene-model:"):
                model = text.split(":", 1)[1].strip()
    wanted = list(dict.fromkeys(["gene_id", "gene_name", column, LIBRARY_COLUMN]))
    try:
        header = pd.read_csv(
            path, sep="\t", skiprows=skip, nrows=0, compression="gzip" if magic == b"\x1f\x8b" else None
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(where, "(file)", f"not a STAR - Counts TSV: {exc}") from exc
    absent = [c for c in wanted if c not in header.columns]
    if absent:
        raise InputError(
            where,
            absent[0],
            f"column not in the STAR - Counts file (columns: {', '.join(map(str, header.columns[:9]))})",
        )
    table = pd.read_csv(
        path,
        sep="\t",
        skiprows=skip,
        usecols=wanted,
        dtype={"gene_id": str, "gene_name": str},
        compression="gzip" if magic == b"\x1f\x8b" else None,
    )
    table = table[~table["gene_id"].str.startswith("N_")]
    if table.empty:
        raise InputError(where, "gene_id", "the STAR - Counts file has no gene rows")
    if table["gene_id"].duplicated().any():
        dup = table.loc[table["gene_id"].duplicated(), "gene_id"].iloc[0]
        raise InputError(where, "gene_id", f"gene {dup} is listed twice")
    for col in dict.fromkeys([column, LIBRARY_COLUMN]):
        values = pd.to_numeric(table[col], errors="coerce")
        if values.isna().any():
            bad = table.loc[values.isna(), "gene_id"].iloc[0]
            raise InputError(where, col, f"not a number for gene {bad}: {table.loc[values.isna(), col].iloc[0]!r}")
        table[col] = values.astype("float64")
    return table.set_index("gene_id"), model
