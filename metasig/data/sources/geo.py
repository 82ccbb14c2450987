"""NCBI GEO series matrix + platform annotation -> the matrix contract.

Config (``source: geo``)::

    series: GSE28497
    base: https://ftp.ncbi.nlm.nih.gov/geo/series          # default
    platform: GPL96          # optional; else the series matrix's !Series_platform_id
    collapse: max_mean       # max_mean (default) | mean | max_var | keep
    labels: {subtype: {column: subtype}}                    # characteristics keys are columns
    # optional: matrix_url, platform_url, geo_root, symbol_column, unit, and sha256 pins keyed by
    # URL, file name, 'series_matrix' or 'platform' (hex = sha256; also "sha256:<hex>" / "md5:<hex>")

Files, following GEO's folder rule (the accession with its last three digits replaced by ``nnn``):
``{base}/GSE28nnn/GSE28497/matrix/GSE28497_series_matrix.txt.gz`` and
``{geo_root}/platforms/GPLnnn/GPL96/annot/GPL96.annot.gz`` (``geo_root`` defaults to ``base``
without its ``/series``). ``platform_url`` may also point at a SOFT ``GPLxxx_family.soft.gz``:
the platform table is read between ``!platform_table_begin`` and ``!platform_table_end``.

The sample sheet has ``sample`` (GSM accession), ``title``, ``source_name`` and one column per
``!Sample_characteristics_ch1`` key (``key: value`` cells; keys may differ between samples, a
sample without a key gets an empty cell; a key repeated for one sample is joined with "; ").

Probes are mapped to gene symbols with the platform table's ``ID`` and ``Gene symbol`` columns.
Probes without a symbol are dropped. A probe annotated with several symbols (``A /// B``) is
assigned to the first one only (``A``); the count of such probes is in meta. ``collapse`` then
makes one column per gene by the rules shared with every source's ``id_map``
(`metasig.data.id_map`): ``max_mean`` keeps the probe with the highest mean over all samples
(ties: the first in the file), ``max_var`` the one with the highest variance, ``mean`` averages the
gene's probes per sample. Here ``keep`` keeps every probe of the series matrix as its own column
(namespace ``probe``) and needs no platform file (a dataset-level ``id_map`` can map them later).
The rules use all samples and no label, so they do not leak label information into the evaluation.
"""

import csv
import io
import logging
import re

import numpy as np
import pandas as pd

from metasig.config import schema_defaults
from metasig.data.id_map import collapse
from metasig.data.sources.labels import config_prefix, derive_labels, label_counts
from metasig.data.sources.xena import _READ_ERRORS, fetch, open_text, read_error
from metasig.errors import InputError, few

log = logging.getLogger("metasig.data.sources")

DEFAULT_BASE = schema_defaults("geo")["base"]
COLLAPSE = ("max_mean", "mean", "max_var", "keep")  # keep: probes as they are, no platform (see the doc)
_CONFIG_KEYS = {
    "source",
    "series",
    "base",
    "geo_root",
    "platform",
    "matrix_url",
    "platform_url",
    "collapse",
    "labels",
    "sha256",
    "unit",
    "symbol_column",
}
_SYMBOL_COLUMNS = ("gene symbol", "gene_symbol", "symbol")
_RESERVED = {"sample", "title", "source_name"}


def nnn_folder(accession):
    """GEO's range folder: GSE28497 -> GSE28nnn, GSE1234 -> GSE1nnn, GPL96 -> GPLnnn."""
    match = re.fullmatch(r"([A-Z]{3})(\d+)", str(accession).strip().upper())
    if not match:
        raise ValueError(f"not a GEO accession: {accession!r}")
    prefix, digits = match.groups()
    return f"{prefix}{digits[:-3]}nnn"


def series_matrix_url(series, base=DEFAULT_BASE):
    return f"{base.rstrip('/')}/{nnn_folder(series)}/{series}/matrix/{series}_series_matrix.txt.gz"


def platform_annot_url(platform, geo_root):
    return f"{geo_root.rstrip('/')}/platforms/{nnn_folder(platform)}/{platform}/annot/{platform}.annot.gz"


def _cells(line):
    """The values of a '!Key<TAB>"v1"<TAB>"v2"' line, quotes removed."""
    return [c.strip().strip('"').strip() for c in line.rstrip("\r\n").split("\t")[1:]]


def read_series_matrix(path, display):
    """Return (matrix: samples x probes float64, sheet, header) from a series matrix file.

    header: {'platforms': [...], 'sample_platforms': [...]} from the file's header lines.
    """
    samples = titles = sources = platforms_per_sample = None
    series_platforms = []
    characteristics = []  # one list of cells per !Sample_characteristics_ch1 line
    table, begun, ended = [], False, False
    try:
        with open_text(path, display) as fh:
            for line in fh:
                if begun:
                    if line.startswith("!series_matrix_table_end"):
                        ended = True
                        break
                    table.append(line)
                    continue
                if line.startswith("!series_matrix_table_begin"):
                    begun = True
                elif line.startswith("!Sample_geo_accession"):
                    samples = _cells(line)
                elif line.startswith("!Sample_title"):
                    titles = _cells(line)
                elif line.startswith("!Sample_source_name_ch1"):
                    sources = _cells(line)
                elif line.startswith("!Sample_platform_id"):
                    platforms_per_sample = _cells(line)
                elif line.startswith("!Sample_characteristics_ch1"):
                    characteristics.append(_cells(line))
                elif line.startswith("!Series_platform_id"):
                    series_platforms.extend(_cells(line))
    except _READ_ERRORS as exc:
        raise read_error(display, path, exc) from exc
    if not samples:
        raise InputError(display, "!Sample_geo_accession", "not found: this is not a GEO series matrix file")
    if not begun:
        raise InputError(display, "!series_matrix_table_begin", "not found: the file has no data table")
    if not ended:
        raise InputError(display, "!series_matrix_table_end", "not found: the file is truncated")
    if not table:
        raise InputError(display, "ID_REF", "the data table is empty")
    try:
        frame = pd.read_csv(
            io.StringIO("".join(table)),
            sep="\t",
            dtype={"ID_REF": str},
            na_values=["null", "NULL", "NA", "NaN", ""],
            low_memory=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(display, "ID_REF", f"cannot parse the data table: {exc}") from exc
    header = [str(c).strip() for c in next(csv.reader(io.StringIO(table[0]), delimiter="\t"))]
    if header[0] != "ID_REF":
        raise InputError(display, header[0], "the data table's first column must be 'ID_REF'")
    columns = header[1:]
    if len(set(columns)) != len(columns):
        dup = pd.Index(columns)[pd.Index(columns).duplicated()][0]
        raise InputError(display, dup, "sample column occurs more than once in the data table")
    if set(columns) != set(samples):
        only_table = [c for c in columns if c not in set(samples)]
        only_header = [s for s in samples if s not in set(columns)]
        raise InputError(
            display,
            "!Sample_geo_accession",
            "the data table's columns and the sample accessions differ "
            f"(only in the table: {few(only_table)}; only in the header: {few(only_header)})",
        )
    probes = frame.iloc[:, 0]
    if probes.isna().any():
        raise InputError(display, "ID_REF", f"empty probe ID (table row {int(np.flatnonzero(probes.isna())[0]) + 1})")
    probes = probes.astype(str).str.strip()
    if probes.duplicated().any():
        raise InputError(display, "ID_REF", f"probe {probes[probes.duplicated()].iloc[0]} has more than one row")
    body = frame.iloc[:, 1:]
    body.columns = columns
    for col in columns:
        if not pd.api.types.is_numeric_dtype(body[col]):
            converted = pd.to_numeric(body[col], errors="coerce")
            bad = converted.isna() & body[col].notna()
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise InputError(
                    display,
                    col,
                    f"non-numeric value {body[col].iloc[i]!r} (probe {probes.iloc[i]}; {int(bad.sum())} such value(s))",
                )
            body[col] = converted
    matrix = pd.DataFrame(
        body.to_numpy(dtype="float64").T, index=pd.Index(columns, name="sample"), columns=probes.to_numpy()
    )

    n = len(samples)

    def pad(cells):
        return [c or None for c in (list(cells or []) + [None] * n)[:n]]

    by_sample = {s: {} for s in samples}
    keys = []
    for cells in characteristics:
        for sample, cell in zip(samples, pad(cells)):
            if not cell:
                continue
            key, sep, value = cell.partition(":")
            key, value = (key.strip(), value.strip()) if sep else ("characteristics", cell.strip())
            if key in _RESERVED:
                key = f"{key}_ch1"
            if key not in keys:
                keys.append(key)
            seen = by_sample[sample]
            seen[key] = f"{seen[key]}; {value}" if key in seen else value
    sheet = pd.DataFrame({"sample": samples, "title": pad(titles), "source_name": pad(sources)})
    for key in keys:
        sheet[key] = [by_sample[s].get(key) for s in samples]
    sheet = sheet.set_index("sample").loc[columns].reset_index()
    return (
        matrix,
        sheet,
        {"platforms": series_platforms, "sample_platforms": sorted(set(pad(platforms_per_sample)) - {None})},
    )


def read_platform(path, display, symbol_column=None):
    """Return (mapping, multi): mapping is probe ID -> first gene symbol (a Series; probes without a
    symbol are absent), multi the IDs of probes annotated with several symbols."""
    lines, begun, ended = [], False, False
    try:
        with open_text(path, display) as fh:
            for line in fh:
                low = line[:30].lower()
                if low.startswith("!platform_table_begin"):
                    begun, lines = True, []
                    continue
                if low.startswith("!platform_table_end"):
                    ended = True
                    break
                if begun or (line.strip() and line[0] not in "!#^"):
                    lines.append(line)
    except _READ_ERRORS as exc:
        raise read_error(display, path, exc) from exc
    if begun and not ended:
        raise InputError(display, "!platform_table_end", "not found: the file is truncated")
    if not lines:
        raise InputError(
            display, "(table)", "no platform table found (expected a header line with 'ID' and 'Gene symbol')"
        )
    header = [h.strip() for h in lines[0].rstrip("\r\n").split("\t")]
    if "ID" not in header:
        raise InputError(display, "ID", f"the platform table has no 'ID' column (columns: {few(header, 8)})")
    if symbol_column:
        if symbol_column not in header:
            raise InputError(
                display, symbol_column, f"symbol_column not in the platform table (columns: {few(header, 8)})"
            )
        symbol = symbol_column
    else:
        lower = {h.lower(): h for h in reversed(header)}
        symbol = next((lower[c] for c in _SYMBOL_COLUMNS if c in lower), None)
        if symbol is None:
            raise InputError(
                display,
                "Gene symbol",
                f"the platform table has no gene symbol column (columns: {few(header, 8)}); set symbol_column",
            )
    table = pd.read_csv(
        io.StringIO("".join(lines)),
        sep="\t",
        dtype=str,
        usecols=["ID", symbol],
        quoting=csv.QUOTE_NONE,
        keep_default_na=False,
    )
    ids = table["ID"].str.strip().str.strip('"')
    symbols = table[symbol].str.strip().str.strip('"')
    multi = symbols.str.contains("///", regex=False)
    first = symbols.str.split("///", n=1).str[0].str.strip()
    keep = (first != "") & (ids != "")
    mapping = pd.Series(first[keep].to_numpy(), index=ids[keep].to_numpy())
    mapping = mapping[~mapping.index.duplicated()]
    return mapping, pd.Index(ids[multi & keep].to_numpy())


def load(cfg: dict, cache_dir="cache", config_file="config", where=""):
    """Download and parse a GEO series (and its platform annotation); returns (matrix, sheet, meta).

    `where` prefixes config field names in errors (e.g. 'datasets.leukemia.').
    """
    where = config_prefix(cfg, _CONFIG_KEYS, config_file, where, "geo")
    series = str(cfg.get("series") or "").strip().upper()
    if not re.fullmatch(r"GSE\d+", series):
        raise InputError(
            config_file,
            f"{where}series",
            f"a GEO series accession such as GSE28497 is needed, got {cfg.get('series')!r}",
        )
    how = cfg.get("collapse") or "max_mean"
    if how not in COLLAPSE:
        raise InputError(config_file, f"{where}collapse", f"unknown collapse {how!r} (use one of {list(COLLAPSE)})")
    base = str(cfg.get("base") or DEFAULT_BASE).rstrip("/")
    geo_root = str(cfg.get("geo_root") or base.removesuffix("/series")).rstrip("/")
    pins = cfg.get("sha256") or {}

    matrix_url = str(cfg.get("matrix_url") or series_matrix_url(series, base))
    path, info = fetch(
        matrix_url,
        cache_dir,
        pins,
        (matrix_url, matrix_url.rsplit("/", 1)[-1], "series_matrix"),
        config_file,
        f"{where}matrix_url" if cfg.get("matrix_url") else f"{where}series",
        f"{where}sha256",
    )
    files = [{"kind": "series_matrix", **info}]
    probes, sheet, header = read_series_matrix(path, matrix_url)

    platform = str(cfg.get("platform") or "").strip().upper() or None
    found = header["platforms"] or header["sample_platforms"]
    if platform is None:
        if len(found) != 1:
            raise InputError(
                config_file,
                f"{where}platform",
                f"the series matrix names {len(found)} platform(s) "
                f"({few(found)}); set platform (and matrix_url for a multi-platform series)",
            )
        platform = found[0].upper()
    elif found and platform not in [p.upper() for p in found]:
        raise InputError(
            config_file, f"{where}platform", f"{platform} is not a platform of {matrix_url} ({few(found)})"
        )

    meta = {
        "source": "geo",
        "series": series,
        "platform": platform,
        "collapse": how,
        "unit": cfg.get("unit") or "microarray",
        "probes": int(probes.shape[1]),
    }
    if how == "keep":
        matrix = probes
        meta["namespace"] = "probe"
    else:
        if not re.fullmatch(r"GPL\d+", platform or ""):
            raise InputError(config_file, f"{where}platform", f"not a GEO platform accession: {platform!r}")
        platform_url = str(cfg.get("platform_url") or platform_annot_url(platform, geo_root))
        ppath, info = fetch(
            platform_url,
            cache_dir,
            pins,
            (platform_url, platform_url.rsplit("/", 1)[-1], "platform"),
            config_file,
            f"{where}platform_url" if cfg.get("platform_url") else f"{where}platform",
            f"{where}sha256",
        )
        files.append({"kind": "platform", **info})
        mapping, multi = read_platform(ppath, platform_url, cfg.get("symbol_column"))
        without = int((~probes.columns.isin(mapping.index)).sum())
        if without == probes.shape[1]:
            raise InputError(
                platform_url,
                "ID",
                f"no probe of {matrix_url} has a gene symbol in this platform table "
                f"(series probes: {few(probes.columns, 3)}; platform IDs: {few(mapping.index, 3)})",
            )
        matrix = collapse(probes, mapping, how)
        multi_used = int(probes.columns.isin(multi).sum())
        log.info(
            "%s: %d probe(s) -> %d gene(s) by %s; %d probe(s) without a gene symbol dropped; "
            "%d probe(s) with several symbols assigned to the first",
            series,
            probes.shape[1],
            matrix.shape[1],
            how,
            without,
            multi_used,
        )
        meta.update(
            {
                "namespace": "symbol",
                "probes_without_symbol": without,
                "probes_multi_symbol": multi_used,
                "genes": int(matrix.shape[1]),
            }
        )
    matrix.index.name = "sample"
    sheet = derive_labels(sheet, cfg.get("labels"), matrix_url, config_file=config_file, where=f"{where}labels")
    if sheet.empty:
        raise InputError(config_file, f"{where}labels", "no sample is left after dropping missing labels")
    matrix = matrix.loc[sheet["sample"].to_numpy()]
    label_names = [str(n) for n in (cfg.get("labels") or {})]
    front = ["sample"] + label_names
    sheet = sheet[front + [c for c in sheet.columns if c not in front]]
    meta["files"] = files
    meta["labels"] = label_counts(sheet, cfg.get("labels"))
    return matrix, sheet, meta
