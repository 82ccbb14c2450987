"""Every data source produces the same thing: (matrix, sheet, meta).

matrix: samples x genes float64 with str sample IDs (index 'sample') and str gene IDs;
sheet: a DataFrame with 'sample' first, one row per sample, labels and covariates;
meta: 'unit', 'namespace', 'source' and provenance (url + sha256, file checksum, package version).
Deeper checks (duplicates, NaN, labels per task) are in metasig.data.checks.
"""

import importlib
from pathlib import Path

from metasig.config import check_labels_source, schema_defaults
from metasig.data import checks as validate
from metasig.data.sources import builtin, table
from metasig.data.sources import url as url_source
from metasig.data.sources.labels import derive_labels, label_counts
from metasig.errors import InputError
from metasig.io import sha256_file

SOURCES = ("builtin", "table", "url", "xena", "gdc", "geo")
PUBLIC = ("xena", "gdc", "geo")  # their settings sit under a key named after the source


def load(dataset_cfg: dict, dataset_name: str, base_dir=".", cache_dir="cache", config_file="config"):
    """Load one configured dataset; returns (matrix, sheet, meta)."""
    where = f"datasets.{dataset_name}"
    source = dataset_cfg.get("source")
    base = Path(base_dir)
    if source == "builtin":
        matrix, sheet, meta = builtin.load(dataset_cfg.get("name"), config_file, f"{where}.name")
    elif source == "table":
        path = base / dataset_cfg["matrix"]
        if not path.is_file():
            raise InputError(config_file, f"{where}.matrix", f"file not found: {dataset_cfg['matrix']}")
        matrix, sheet = _read_table(path, dataset_cfg, None, config_file, where)
        meta = {"source": "table", "matrix": str(dataset_cfg["matrix"]), "sha256": sha256_file(path)}
    elif source == "url":
        address, sha = dataset_cfg["url"], dataset_cfg["sha256"]
        path = url_source.fetch(
            address, sha, cache_dir, config_file=config_file, field=f"{where}.url", sha_field=f"{where}.sha256"
        )
        matrix, sheet = _read_table(path, dataset_cfg, address, config_file, where)
        meta = {"source": "url", "url": address, "sha256": sha.lower(), "file": url_source.file_name(address)}
    elif source in PUBLIC:
        module = importlib.import_module(f"metasig.data.sources.{source}")
        matrix, sheet, meta = module.load(dataset_cfg[source], cache_dir, config_file, where=f"{where}.{source}")
    else:
        raise InputError(config_file, f"{where}.source", f"unknown source {source!r} (use one of {list(SOURCES)})")
    matrix_name = str(dataset_cfg.get("matrix") or dataset_cfg.get("url") or dataset_name)
    if dataset_cfg.get("samples"):
        sheet = merge_samples(
            sheet,
            base / dataset_cfg["samples"],
            dataset_cfg["samples"],
            matrix_name,
            encoding=dataset_cfg.get("encoding"),
            matrix=matrix,
            orientation=dataset_cfg.get("orientation", schema_defaults("dataset")["orientation"]),
        )
    if dataset_cfg.get("labels"):
        matrix, sheet = _derive_labels(matrix, sheet, dataset_cfg, matrix_name, config_file, where)
        meta["labels"] = label_counts(sheet, dataset_cfg["labels"])
    for key in ("unit", "namespace"):
        if dataset_cfg.get(key):
            meta[key] = dataset_cfg[key]
    check_library(matrix, dataset_cfg, meta.get("unit"), matrix_name)
    return matrix, sheet.reset_index(drop=True), meta


def _derive_labels(matrix, sheet, dataset_cfg, matrix_name, config_file, where):
    """The dataset's `labels` (as the Xena and GEO sources derive theirs), read from the sample
    sheet, or from the matrix's sheet_columns without one; samples dropped for a missing label
    leave the matrix too."""
    check_labels_source(dataset_cfg.get("source"), config_file, where)
    annotations = dataset_cfg.get("samples") or matrix_name
    sheet = derive_labels(sheet, dataset_cfg["labels"], annotations, config_file=config_file, where=f"{where}.labels")
    if sheet.empty:
        raise InputError(config_file, f"{where}.labels", "no sample is left after dropping missing labels")
    return matrix.loc[sheet["sample"].to_numpy()], sheet


def check_library(matrix, dataset_cfg, unit, matrix_file):
    """In-fold DESeq2 size factors cannot scale a sample without counts: catch it at load, naming
    the sample and the method really used (with 'auto' resolved), not deep inside training."""
    from metasig.config import resolve_normalization
    from metasig.data.normalize import IN_FOLD

    method = resolve_normalization(dataset_cfg, unit)
    chosen = dataset_cfg.get("normalization", "auto")  # only to say whether 'auto' picked it
    if method not in IN_FOLD or matrix.empty:
        return
    empty = (matrix.fillna(0) == 0).all(axis=1)
    if empty.any():
        names = [str(s) for s in matrix.index[empty]]
        how = f"normalization '{method}'" + (f" (what 'auto' picks for unit {unit})" if chosen == "auto" else "")
        raise InputError(
            matrix_file,
            names[0],
            f"sample has no counts (library size 0; {len(names)} such sample(s): "
            f"{', '.join(names[:5])}); {how} cannot compute its size factor: remove the sample(s) "
            "or check how the counts were produced",
        )


def _read_table(path, cfg, display, config_file, where):
    # a URL's query string is not part of its file name (…/data.csv?raw=1 is a CSV)
    name = url_source.file_name(display) if display else path.name
    fmt = table.detect_format(name, cfg.get("format"), file=config_file, field=f"{where}.format")
    return table.read(
        path,
        fmt=fmt,
        orientation=cfg.get("orientation", schema_defaults("dataset")["orientation"]),
        id_column=cfg.get("id_column"),
        sheet_columns=cfg.get("sheet_columns", []),
        display=display,
        encoding=cfg.get("encoding"),
    )


def merge_samples(sheet, samples_path, samples_name, matrix_name, encoding=None, matrix=None, orientation=None):
    """Join a separate sample sheet onto the one from the matrix (same samples on both sides).
    `matrix`, when given, lets a sheet whose IDs are the matrix's columns be recognised as a
    matrix read the wrong way round."""
    samples_path = Path(samples_path)
    if not samples_path.is_file():
        raise InputError(samples_name, "(file)", "sample sheet not found")
    extra = table.read_sample_sheet(samples_path, display=samples_name, encoding=encoding)
    ids = set(extra["sample"])
    if matrix is not None and not ids & set(sheet["sample"].astype(str)):
        columns = {str(c) for c in matrix.columns}
        if len(ids & columns) >= max(1, len(ids) // 2):  # the sheet's samples were read as genes
            actual = "samples_by_genes" if orientation == "genes_by_samples" else "genes_by_samples"
            raise InputError(
                matrix_name,
                "orientation",
                f"the sample sheet's IDs are read as gene names: the table "
                f"looks like {actual.replace('_by_', ' x ')}: set `orientation: {actual}`",
            )
    validate.check_unique(sheet["sample"], matrix_name, "sample", "sample")
    validate.check_unique(extra["sample"], samples_name, "sample", "sample")
    validate.check_same_samples(sheet["sample"], extra["sample"], matrix_name, samples_name)
    clash = [c for c in extra.columns if c != "sample" and c in sheet.columns]
    if clash:
        raise InputError(samples_name, clash[0], "column is both in the sample sheet and in the matrix's sheet_columns")
    return sheet.merge(extra, on="sample", how="left", validate="one_to_one")
