"""Read a local expression table (CSV, TSV or Parquet, optionally compressed) in either orientation
into the matrix contract (samples x genes float64) plus the sample annotations it carries."""

from pathlib import Path

import numpy as np
import pandas as pd

from metasig.errors import InputError, few

FORMATS = ("csv", "tsv", "parquet")
_COMPRESSION = (".gz", ".bz2", ".xz", ".zip", ".zst")
_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_SEP = {"csv": ",", "tsv": "\t"}
_GZIP = b"\x1f\x8b"
# Text that pandas would turn into NaN by default. In gene columns these still mean "no value"
# (the matrix check reports them); in IDs and sheet columns they stay text (a sample called NA).
NA_TOKENS = {"NA", "N/A", "n/a", "NaN", "nan", "-nan", "NULL", "null", "None", "#N/A", "<NA>"}


def detect_format(name, fmt=None, file=None, field="format"):
    """The configured format, else the one the file name implies (ignoring a compression suffix)."""
    if fmt:
        if fmt not in FORMATS:
            raise InputError(file or name, field, f"unknown format '{fmt}' (use one of {list(FORMATS)})")
        return fmt
    lower = str(name).lower()
    for comp in _COMPRESSION:
        if lower.endswith(comp):
            lower = lower[: -len(comp)]
            break
    for suffix, found in _SUFFIX.items():
        if lower.endswith(suffix):
            return found
    raise InputError(
        file or name,
        field,
        f"cannot tell the format of '{Path(str(name)).name}' from its name; set format to one of {list(FORMATS)}",
    )


def read(path, fmt=None, orientation="samples_by_genes", id_column=None, sheet_columns=(), display=None, encoding=None):
    """Return (matrix, sheet).

    matrix: samples x genes float64, str index named 'sample', gene order as in the file.
    sheet: 'sample' then `sheet_columns` (samples_by_genes only), one row per matrix row.
    `display` is the name used in error messages (e.g. the URL a cached file came from);
    `encoding` of a text table (default UTF-8, e.g. latin-1 for a file saved by older Excel).
    """
    path = Path(path)
    where = str(display or path)
    fmt = detect_format(display or path.name, fmt, file=where)
    sheet_columns = list(sheet_columns or [])
    if orientation not in ("samples_by_genes", "genes_by_samples"):
        raise InputError(where, "orientation", f"unknown orientation '{orientation}'")
    if sheet_columns and orientation != "samples_by_genes":
        raise InputError(
            where,
            "sheet_columns",
            "sheet_columns only apply to a samples_by_genes table; "
            "give a separate sample sheet ('samples') for a genes_by_samples table",
        )
    frame, id_pos = _read_frame(path, fmt, id_column, where, encoding)
    if frame.shape[0] == 0:
        raise InputError(where, "(rows)", "the table has no data rows")
    ids = frame.iloc[:, id_pos]
    id_name = frame.columns[id_pos]
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise InputError(where, id_name, f"ID column has an empty value (data row {row + 1})")
    ids = ids.astype(str).str.strip()
    keep = [i for i in range(frame.shape[1]) if i != id_pos]
    names = [frame.columns[i] for i in keep]
    for col in sheet_columns:
        if col == id_name:
            raise InputError(where, col, "this is the ID column; it cannot also be a sheet column")
        if col not in names:
            hint = ""
            if col in set(ids):  # the annotation is a row: the table is the other way round
                hint = (
                    "; it is a row of the table, which looks like genes x samples: set `orientation: genes_by_samples`"
                )
            raise InputError(where, col, f"sheet column not found in the table (columns: {few(names, 10)}){hint}")
    gene_pos = [i for i in keep if frame.columns[i] not in sheet_columns]
    body = frame.iloc[:, gene_pos]
    what = "gene" if orientation == "samples_by_genes" else "sample"
    row_what = "sample" if orientation == "samples_by_genes" else "gene"
    values = _numeric(body, ids, where, what, row_what)
    if orientation == "samples_by_genes":
        matrix = pd.DataFrame(values, index=pd.Index(ids.to_numpy(), name="sample"), columns=_str_columns(body))
        sheet = pd.DataFrame({"sample": ids.to_numpy()})
        for col in sheet_columns:
            sheet[col] = frame[col].to_numpy()
    else:
        matrix = pd.DataFrame(values.T, index=pd.Index(_str_columns(body), name="sample"), columns=ids.to_numpy())
        sheet = pd.DataFrame({"sample": matrix.index.to_numpy()})
    matrix.columns.name = None
    return matrix, sheet


def read_sample_sheet(path, display=None, encoding=None):
    """A separate sample sheet: TSV (or CSV by extension) with a 'sample' column, IDs as strings.
    Only empty cells are missing: 'NA', 'None', 'null' are kept as text (see metasig.learn.tasks)."""
    path = Path(path)
    where = str(display or path)
    lower = path.name.lower()
    for comp in _COMPRESSION:
        lower = lower[: -len(comp)] if lower.endswith(comp) else lower
    fmt = "csv" if lower.endswith(".csv") else "tsv"
    compression = _compression(path, where, fmt)
    try:
        sheet = pd.read_csv(
            path,
            sep=_SEP[fmt],
            dtype={"sample": str},
            keep_default_na=False,
            na_values=[""],
            encoding=encoding or "utf-8",
            compression=compression,
        )
    except UnicodeDecodeError as exc:
        raise InputError(where, "(file)", _encoding_problem(exc)) from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(where, "(file)", f"cannot parse the sample sheet: {exc}") from exc
    if "sample" not in sheet.columns:
        raise InputError(
            where,
            "sample",
            f"the sample sheet needs a 'sample' column (columns: "
            f"{few(list(sheet.columns), 10)}){_separator_hint(sheet.columns, fmt, path.name)}",
        )
    if sheet["sample"].isna().any():
        row = int(np.flatnonzero(sheet["sample"].isna().to_numpy())[0])
        raise InputError(where, "sample", f"empty sample ID (data row {row + 1})")
    sheet["sample"] = sheet["sample"].astype(str).str.strip()
    return sheet[["sample"] + [c for c in sheet.columns if c != "sample"]]


def _str_columns(frame):
    return [str(c).strip() for c in frame.columns]


def _compression(path, where, fmt):
    """Compression from the file's first bytes for gzip, so a name that lies is named in plain words."""
    with open(path, "rb") as handle:
        gz = handle.read(2) == _GZIP
    named_gz = str(where).lower().split("?")[0].endswith(".gz") or path.name.lower().endswith(".gz")
    if gz and not named_gz:
        raise InputError(
            where,
            "(file)",
            f"the file is gzip-compressed but its name does not end in .gz; "
            f"rename it to '{path.name}.gz' (or decompress it with gunzip)",
        )
    if named_gz and not gz:
        raise InputError(
            where,
            "(file)",
            "the name ends in .gz but the file is not gzip-compressed; "
            "drop the .gz from its name (or compress it with gzip)",
        )
    return "gzip" if gz else "infer"


def _encoding_problem(exc):
    return (
        f"the file is not UTF-8 text ({exc.reason}: byte 0x{exc.object[exc.start]:02x} at position "
        f"{exc.start}); if it was saved as Latin-1 / Windows-1252 (e.g. by older Excel), set "
        "`encoding: latin-1` in the dataset's config, or save it again as UTF-8"
    )


def _separator_hint(columns, fmt, name):
    """A .tsv whose header is one comma-separated cell (or the reverse) was read with the wrong separator."""
    if len(columns) != 1:
        return ""
    other = {"tsv": ",", "csv": "\t"}[fmt]
    if other not in str(columns[0]):
        return ""
    said, real = (
        ("tab-separated (.tsv)", "comma-separated") if fmt == "tsv" else ("comma-separated (.csv)", "tab-separated")
    )
    fix = "rename it to .csv or set `format: csv`" if fmt == "tsv" else "rename it to .tsv or set `format: tsv`"
    return f"; '{name}' is read as {said} but its header is {real}: {fix}"


def _read_frame(path, fmt, id_column, where, encoding=None):
    """Read the raw table; return it with the file's own column names (duplicates kept) and the
    position of the ID column."""
    if not path.is_file():
        raise InputError(where, "(file)", "file not found")
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
            # a Parquet written by pandas may carry the IDs as its index
            if not isinstance(frame.index, pd.RangeIndex) or frame.index.name is not None:
                frame = frame.reset_index()
            raw = [str(c) for c in frame.columns]
        else:
            sep = _SEP[fmt]
            text = {"encoding": encoding or "utf-8", "compression": _compression(path, where, fmt)}
            # pandas renames duplicate headers (TP53 -> TP53.1), which would hide duplicate IDs:
            # read the header row verbatim and restore it afterwards.
            header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False, **text).iloc[0]
            mangled = list(pd.read_csv(path, sep=sep, nrows=0, **text).columns)
            raw = [h.strip() if h.strip() else m for h, m in zip(header.tolist(), mangled)]
            hint = _separator_hint(raw, fmt, Path(str(where)).name)
            if hint:
                raise InputError(where, "(format)", f"the header has a single column{hint}")
            id_pos = _id_position(raw, id_column, where)
            # only empty cells are NaN here; NA_TOKENS in gene columns are handled by _numeric
            frame = pd.read_csv(
                path,
                sep=sep,
                dtype={mangled[id_pos]: str},
                low_memory=False,
                keep_default_na=False,
                na_values=[""],
                **text,
            )
    except InputError:
        raise
    except UnicodeDecodeError as exc:
        raise InputError(where, "(file)", _encoding_problem(exc)) from exc
    except LookupError as exc:  # an unknown encoding name
        raise InputError(where, "encoding", f"unknown encoding {encoding!r} (e.g. utf-8, latin-1, cp1252)") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as exc:
        raise InputError(where, "(file)", f"cannot read as {fmt}: {exc}") from exc
    frame.columns = raw
    return frame, _id_position(raw, id_column, where)


def _id_position(columns, id_column, where):
    if not columns:
        raise InputError(where, "(header)", "the table has no columns")
    if id_column is None:
        return 0
    hits = [i for i, c in enumerate(columns) if c == id_column]
    if not hits:
        raise InputError(where, id_column, f"id_column not found in the table header (columns: {few(columns, 10)})")
    if len(hits) > 1:
        raise InputError(where, id_column, f"id_column occurs {len(hits)} times in the header")
    return hits[0]


def _numeric(body, ids, where, what, row_what):
    """float64 values; a non-numeric cell is an error naming its column, row and value."""
    out = np.empty(body.shape, dtype="float64")
    for j in range(body.shape[1]):
        col = body.iloc[:, j]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            out[:, j] = col.to_numpy(dtype="float64", na_value=np.nan)
            continue
        text = col.astype(str).str.strip()
        col = col.where(~text.isin(NA_TOKENS))  # 'NA' in a value column means no value, as pandas reads it
        converted = pd.to_numeric(col, errors="coerce")
        bad = converted.isna() & col.notna() & (text != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            hint = " (if it is a sample annotation, list it under sheet_columns)" if what == "gene" else ""
            raise InputError(
                where,
                body.columns[j],
                f"{what} column has a non-numeric value {col.iloc[i]!r} ({row_what} {ids.iloc[i]}; "
                f"{int(bad.sum())} such value(s)){hint}",
            )
        out[:, j] = converted.to_numpy(dtype="float64", na_value=np.nan)
    return out
