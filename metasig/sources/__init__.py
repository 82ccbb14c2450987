"""Every data source produces the same thing: (matrix, sheet, meta).

matrix: samples x genes float64 with str sample IDs (index 'sample') and str gene IDs;
sheet: a DataFrame with 'sample' first, one row per sample, labels and covariates;
meta: 'unit', 'namespace', 'source' and provenance (url + sha256, file checksum, package version).
Deeper checks (duplicates, NaN, labels per task) are in metasig.validate.
"""

import importlib
from pathlib import Path

from metasig import validate
from metasig.errors import InputError
from metasig.io import sha256_file
from metasig.sources import builtin, table, url as url_source

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
        path = url_source.fetch(address, sha, cache_dir, config_file=config_file,
                                field=f"{where}.url", sha_field=f"{where}.sha256")
        matrix, sheet = _read_table(path, dataset_cfg, address, config_file, where)
        meta = {"source": "url", "url": address, "sha256": sha.lower(), "file": url_source.file_name(address)}
    elif source in PUBLIC:
        module = importlib.import_module(f"metasig.sources.{source}")
        matrix, sheet, meta = module.load(dataset_cfg[source], cache_dir, config_file, where=f"{where}.{source}")
    else:
        raise InputError(config_file, f"{where}.source", f"unknown source {source!r} (use one of {list(SOURCES)})")
    if dataset_cfg.get("samples"):
        sheet = merge_samples(sheet, base / dataset_cfg["samples"], dataset_cfg["samples"],
                              str(dataset_cfg.get("matrix") or dataset_cfg.get("url") or dataset_name))
    for key in ("unit", "namespace"):
        if dataset_cfg.get(key):
            meta[key] = dataset_cfg[key]
    return matrix, sheet.reset_index(drop=True), meta


def _read_table(path, cfg, display, config_file, where):
    # a URL's query string is not part of its file name (…/data.csv?raw=1 is a CSV)
    name = url_source.file_name(display) if display else path.name
    fmt = table.detect_format(name, cfg.get("format"), file=config_file, field=f"{where}.format")
    return table.read(path, fmt=fmt, orientation=cfg.get("orientation", "samples_by_genes"),
                      id_column=cfg.get("id_column"), sheet_columns=cfg.get("sheet_columns", []),
                      display=display)


def merge_samples(sheet, samples_path, samples_name, matrix_name):
    """Join a separate sample sheet onto the one from the matrix (same samples on both sides)."""
    samples_path = Path(samples_path)
    if not samples_path.is_file():
        raise InputError(samples_name, "(file)", "sample sheet not found")
    extra = table.read_sample_sheet(samples_path, display=samples_name)
    validate.check_unique(sheet["sample"], matrix_name, "sample", "sample")
    validate.check_unique(extra["sample"], samples_name, "sample", "sample")
    validate.check_same_samples(sheet["sample"], extra["sample"], matrix_name, samples_name)
    clash = [c for c in extra.columns if c != "sample" and c in sheet.columns]
    if clash:
        raise InputError(samples_name, clash[0], "column is both in the sample sheet and in the matrix's sheet_columns")
    return sheet.merge(extra, on="sample", how="left", validate="one_to_one")
