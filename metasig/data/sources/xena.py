"""UCSC Xena hub files -> the matrix contract.

Config (``source: xena``)::

    hub: https://tcga.xenahubs.net/download          # default
    cohorts:
      - name: BRCA                                     # becomes the 'cohort' column
        expression: TCGA.BRCA.sampleMap/HiSeqV2_PANCAN.gz   # relative to hub, or a full URL
        clinical: TCGA.BRCA.sampleMap/BRCA_clinicalMatrix    # optional
    sample_types: ["01"]      # optional TCGA sample-type filter (default: keep all)
    labels: {her2: {column: HER2_Final_Status_nature2012, map: {...}, missing: negative}}
    sha256: {TCGA.BRCA.sampleMap/HiSeqV2_PANCAN.gz: <hex>}   # optional pins, by path or URL
                              # (hex = sha256; also "sha256:<hex>" or "md5:<hex>")
    unit: log2                # default (HiSeqV2 is log2(norm_count + 1))

Expression files are genes x samples TSVs (usually gzip), first header cell ``sample``, gene
symbols in the first column and sample barcodes as the other columns. Clinical matrices are TSVs
with ``sampleID`` first and one row per sample. Each cohort's expression is joined to its clinical
rows (inner join: samples without a clinical row are left out and counted), filtered by sample
type, labelled, and given a ``cohort`` column; several cohorts are combined on the genes they all
share (the others are counted as dropped). A gene listed twice in one file is averaged. A
``patient`` column (last; unless the clinical matrix has one) holds each TCGA barcode's participant
(its first 12 characters; other IDs as they are), for grouped CV (``cv.group_by: patient``).
"""

import gzip
import io
import logging
import re
import zlib

import numpy as np
import pandas as pd

from metasig.config import schema_defaults
from metasig.data.sources.labels import config_prefix, derive_labels, label_counts, participant, sample_type_filter
from metasig.errors import InputError, few
from metasig.io import sha256_file

log = logging.getLogger("metasig.data.sources")

DEFAULT_HUB = schema_defaults("xena")["hub"]
_COHORT_KEYS = {"name", "expression", "clinical", "hub"}
_CONFIG_KEYS = {"source", "hub", "cohorts", "sample_types", "labels", "sha256", "unit", "namespace"}
_READ_ERRORS = (
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    OSError,
    UnicodeDecodeError,
    pd.errors.ParserError,
    pd.errors.EmptyDataError,
)


def is_url(text):
    return "://" in str(text)


def pinned_checksum(pins, *keys):
    """(checksum for download.fetch_url, the pin's key) for the first of `keys` (URL, relative
    path, file name) found in `pins`, else (None, None). A bare 64-hex value is a sha256, a bare
    32-hex value an md5; "sha256:<hex>" / "md5:<hex>" are passed on as they are."""
    for key in keys:
        if pins and key in pins and pins[key]:
            value = str(pins[key]).strip()
            if re.fullmatch(r"[0-9a-fA-F]{64}", value):
                value = f"sha256:{value.lower()}"
            elif re.fullmatch(r"[0-9a-fA-F]{32}", value):
                value = f"md5:{value.lower()}"
            return value, key
    return None, None


def open_text(path, display):
    """Text stream of a plain or gzip file (detected by its magic bytes, not by its name)."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="strict", newline="")
    return open(path, encoding="utf-8", newline="")


def read_error(display, path, exc):
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        problem = f"the gzip data is truncated or corrupt ({exc}); delete {path} and download it again"
    else:
        problem = f"cannot read the file: {type(exc).__name__}: {exc}"
    return InputError(display, "(file)", problem)


def fetch(url, cache_dir, pins, keys, config_file, field, pins_field):
    """download.fetch_url with the pinned checksum (if any); returns (path, {url, sha256})."""
    # looked up on the module at call time, so tests can replace download.fetch_url
    from metasig.data import download

    checksum, key = pinned_checksum(pins, *keys)
    path = download.fetch_url(
        url,
        cache_dir,
        checksum,
        field=field,
        config_file=config_file,
        checksum_field=f"{pins_field}.{key}" if key else pins_field,
    )
    return path, {"url": url, "sha256": sha256_file(path)}


def read_expression(path, display):
    """Genes x samples TSV -> (samples x genes float64 with index 'sample', number of gene IDs that
    occurred more than once and were averaged)."""
    try:
        with open_text(path, display) as fh:
            header = fh.readline().rstrip("\r\n").split("\t")
            if len(header) < 2:
                raise InputError(
                    display,
                    "(header)",
                    "expected a tab-separated genes x samples table "
                    "(first header cell 'sample', then one column per sample)",
                )
            samples = [h.strip().strip('"') for h in header[1:]]
            frame = pd.read_csv(fh, sep="\t", header=None, index_col=0, dtype={0: str}, low_memory=False)
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(display, "(rows)", "the expression table has no gene rows") from None
    except _READ_ERRORS as exc:
        raise read_error(display, path, exc) from exc
    if frame.shape[1] != len(samples):
        raise InputError(
            display, "(rows)", f"rows have {frame.shape[1] + 1} cells but the header has {len(samples) + 1}"
        )
    dup = pd.Index(samples)[pd.Index(samples).duplicated()]
    if len(dup):
        raise InputError(display, dup[0], f"sample column occurs more than once ({len(dup)} duplicated sample ID(s))")
    if frame.shape[0] == 0:
        raise InputError(display, "(rows)", "the expression table has no gene rows")
    genes = frame.index.to_series()
    if genes.isna().any():
        raise InputError(
            display, header[0] or "sample", f"empty gene ID (data row {int(np.flatnonzero(genes.isna())[0]) + 1})"
        )
    frame.index = genes.astype(str).str.strip().to_numpy()
    frame.columns = samples
    for col in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            converted = pd.to_numeric(frame[col], errors="coerce")
            bad = converted.isna() & frame[col].notna()
            if bad.any():
                gene = frame.index[int(np.flatnonzero(bad.to_numpy())[0])]
                raise InputError(
                    display,
                    col,
                    f"non-numeric value {frame[col][bad].iloc[0]!r} (gene {gene}; {int(bad.sum())} such value(s))",
                )
            frame[col] = converted
    frame = frame.astype("float64")
    duplicated = frame.index.duplicated(keep=False)
    names = pd.unique(frame.index[duplicated])
    if len(names):
        log.info(
            "%s: %d gene ID(s) occur more than once (%s); their rows were averaged", display, len(names), few(names)
        )
        frame = frame.groupby(level=0, sort=False).mean()
    matrix = frame.T
    matrix.index = pd.Index(matrix.index.astype(str), name="sample")
    matrix.columns = pd.Index([str(c) for c in matrix.columns])
    return matrix, len(names)


def read_clinical(path, display):
    """Xena clinical matrix -> sheet with 'sample' first (all annotation columns kept as text)."""
    try:
        with open_text(path, display) as fh:
            sheet = pd.read_csv(fh, sep="\t", dtype=str, low_memory=False)
    except pd.errors.EmptyDataError:
        raise InputError(display, "(file)", "the clinical matrix is empty") from None
    except _READ_ERRORS as exc:
        raise read_error(display, path, exc) from exc
    first = str(sheet.columns[0]).strip()
    if first not in ("sampleID", "sample"):
        raise InputError(display, first, "the first column of a Xena clinical matrix must be 'sampleID'")
    sheet = sheet.rename(columns={sheet.columns[0]: "sample"})
    if "sample" in sheet.columns[1:]:
        raise InputError(display, "sample", "a clinical column is named 'sample' besides the sampleID column")
    if sheet["sample"].isna().any():
        raise InputError(
            display, first, f"empty sample ID (data row {int(np.flatnonzero(sheet['sample'].isna())[0]) + 1})"
        )
    sheet["sample"] = sheet["sample"].str.strip()
    dup = sheet["sample"][sheet["sample"].duplicated()]
    if len(dup):
        raise InputError(display, first, f"sample {dup.iloc[0]} has more than one row ({len(dup)} duplicated ID(s))")
    return sheet


def _cohorts(cfg, config_file, where):
    cohorts = cfg.get("cohorts")
    if not cohorts or not isinstance(cohorts, list):
        raise InputError(config_file, f"{where}cohorts", "needs a list of cohorts, each {name, expression, clinical}")
    names = set()
    for i, cohort in enumerate(cohorts):
        field = f"{where}cohorts[{i}]"
        if not isinstance(cohort, dict):
            raise InputError(config_file, field, "each cohort is a mapping {name, expression, clinical}")
        unknown = set(cohort) - _COHORT_KEYS
        if unknown:
            raise InputError(config_file, field, f"unknown key(s) {sorted(unknown)} (use {sorted(_COHORT_KEYS)})")
        for key in ("name", "expression"):
            if not cohort.get(key):
                raise InputError(config_file, f"{field}.{key}", "missing")
        if str(cohort["name"]) in names:
            raise InputError(config_file, f"{field}.name", f"cohort '{cohort['name']}' is listed twice")
        names.add(str(cohort["name"]))
    return cohorts


def load(cfg: dict, cache_dir="cache", config_file="config", where=""):
    """Download and parse the configured Xena cohorts; returns (matrix, sheet, meta).

    `where` prefixes config field names in errors (e.g. 'datasets.brca.').
    """
    where = config_prefix(cfg, _CONFIG_KEYS, config_file, where, "xena")
    pins = cfg.get("sha256") or {}
    sample_types = cfg.get("sample_types")
    if sample_types is not None:
        sample_types = [
            str(t).strip().zfill(2)
            for t in (sample_types if isinstance(sample_types, (list, tuple)) else [sample_types])
        ]
    matrices, sheets, files, summary = [], [], [], {}
    for i, cohort in enumerate(_cohorts(cfg, config_file, where)):
        name = str(cohort["name"])
        hub = str(cohort.get("hub") or cfg.get("hub") or DEFAULT_HUB).rstrip("/")
        field = f"{where}cohorts[{i}]"
        expr_ref = str(cohort["expression"])
        expr_url = expr_ref if is_url(expr_ref) else f"{hub}/{expr_ref.lstrip('/')}"
        expr_path, info = fetch(
            expr_url, cache_dir, pins, (expr_url, expr_ref), config_file, f"{field}.expression", f"{where}sha256"
        )
        files.append({"cohort": name, "kind": "expression", **info})
        matrix, duplicate_genes = read_expression(expr_path, expr_url)
        stats = {
            "expression_samples": int(matrix.shape[0]),
            "genes": int(matrix.shape[1]),
            "duplicate_genes_averaged": int(duplicate_genes),
        }
        label_file = expr_url
        if cohort.get("clinical"):
            clin_ref = str(cohort["clinical"])
            clin_url = clin_ref if is_url(clin_ref) else f"{hub}/{clin_ref.lstrip('/')}"
            clin_path, info = fetch(
                clin_url, cache_dir, pins, (clin_url, clin_ref), config_file, f"{field}.clinical", f"{where}sha256"
            )
            files.append({"cohort": name, "kind": "clinical", **info})
            clinical = read_clinical(clin_path, clin_url)
            if "cohort" in clinical.columns:
                raise InputError(
                    clin_url,
                    "cohort",
                    "the clinical matrix has a 'cohort' column, which metasig adds itself (the cohort name); rename it",
                )
            shared = matrix.index.intersection(pd.Index(clinical["sample"]))
            if len(shared) == 0:
                raise InputError(
                    clin_url,
                    "sampleID",
                    f"no sample ID is shared with the expression file {expr_url} "
                    f"(expression: {few(matrix.index, 3)}; clinical: {few(clinical['sample'], 3)})",
                )
            stats["without_clinical"] = int(matrix.shape[0] - len(shared))
            stats["clinical_without_expression"] = int(clinical.shape[0] - len(shared))
            if stats["without_clinical"]:
                log.info(
                    "cohort %s: %d of %d expression sample(s) have no row in %s and were left out",
                    name,
                    stats["without_clinical"],
                    matrix.shape[0],
                    clin_url,
                )
            sheet = pd.DataFrame({"sample": matrix.index[matrix.index.isin(shared)]})
            sheet = sheet.merge(clinical, on="sample", how="left", validate="one_to_one")
            label_file = clin_url
        else:
            sheet = pd.DataFrame({"sample": matrix.index.to_numpy()})
            for label, spec in (cfg.get("labels") or {}).items():
                if isinstance(spec, dict) and spec.get("column") not in (None, "cohort"):
                    raise InputError(
                        config_file,
                        f"{field}.clinical",
                        f"label '{label}' reads column '{spec['column']}', but cohort {name} has no clinical matrix",
                    )
        if sample_types is not None:
            before = len(sheet)
            sheet = sample_type_filter(sheet, sample_types, file=config_file, field=f"{where}sample_types")
            stats["other_sample_types"] = int(before - len(sheet))
            if sheet.empty:
                raise InputError(
                    config_file,
                    f"{where}sample_types",
                    f"cohort {name}: no sample has sample type {sample_types} (e.g. {few(matrix.index, 3)})",
                )
        sheet.insert(1, "cohort", name)  # before the labels, so a label may map the cohort name
        sheet = derive_labels(sheet, cfg.get("labels"), label_file, config_file=config_file, where=f"{where}labels")
        if sheet.empty:
            raise InputError(
                config_file, f"{where}labels", f"cohort {name}: no sample is left after dropping missing labels"
            )
        stats["samples"] = len(sheet)
        summary[name] = stats
        matrices.append(matrix.loc[sheet["sample"].to_numpy()])
        sheets.append(sheet)

    matrix, dropped = _common_genes(matrices, [str(c["name"]) for c in cfg["cohorts"]], config_file, where)
    sheet = pd.concat(sheets, ignore_index=True, sort=False)
    dup = sheet["sample"][sheet["sample"].duplicated()]
    if len(dup):
        raise InputError(config_file, f"{where}cohorts", f"sample {dup.iloc[0]} occurs in more than one cohort")
    label_names = list((cfg.get("labels") or {}).keys())
    front = ["sample", "cohort"] + [n for n in label_names if n not in ("sample", "cohort")]
    sheet = sheet[front + [c for c in sheet.columns if c not in front]]
    if "patient" not in sheet.columns:  # for cv.group_by: patient (tumour, normal, aliquots of one person)
        sheet["patient"] = [participant(s) or s for s in sheet["sample"]]
    matrix.index.name = "sample"
    meta = {
        "source": "xena",
        "unit": cfg.get("unit") or "log2",
        "namespace": cfg.get("namespace") or "symbol",
        "files": files,
        "cohorts": summary,
        "genes_dropped": dropped,
        "sample_types": sample_types,
        "labels": label_counts(sheet, cfg.get("labels")),
    }
    return matrix, sheet, meta


def _common_genes(matrices, names, config_file, where):
    if len(matrices) == 1:
        return matrices[0], 0
    common = matrices[0].columns
    for m in matrices[1:]:
        common = common.intersection(m.columns, sort=False)
    union = matrices[0].columns
    for m in matrices[1:]:
        union = union.union(m.columns, sort=False)
    if len(common) == 0:
        raise InputError(config_file, f"{where}cohorts", f"the cohorts {names} share no gene ID")
    dropped = int(len(union) - len(common))
    if dropped:
        log.info("combining cohorts %s: kept the %d gene(s) they all share, dropped %d", names, len(common), dropped)
    return pd.concat([m.loc[:, common] for m in matrices], axis=0), dropped
