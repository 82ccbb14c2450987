"""Labels from clinical annotations, and the TCGA sample-type filter.

Label config (one entry per label column to create)::

    labels:
      her2:
        column: HER2_Final_Status_nature2012      # the annotation column to read
        map: {Positive: positive, Negative: negative, Equivocal: null}   # optional
        missing: negative                          # a value, "drop" or "keep" (default "keep")

The new column ``her2`` gets ``map[value]`` for every value. A value that is not a key of ``map``
is an error listing the unexpected values (so a typo or a new category never turns silently into a
missing label); without ``map`` the values are copied as they are. ``missing`` says what an empty
cell, NaN or a value mapped to null becomes: a fill value (e.g. ``negative``, as the TCGA HER2
reference treats unannotated samples), ``drop`` (remove those samples from the dataset) or ``keep``
(leave them unlabelled: tasks on this label leave them out, other tasks still use them).
"""

import logging
import re

import numpy as np
import pandas as pd

from metasig.config import schema_defaults
from metasig.errors import InputError, few

log = logging.getLogger("metasig.data.sources")

MISSING_DROP, MISSING_KEEP = "drop", "keep"
_LABEL_KEYS = {"column", "map", "missing"}


def cell_text(value):
    """A cell as stripped text; None for NaN/None/empty. 1.0 -> '1' (a float-parsed integer code)."""
    if value is None:
        return None
    if isinstance(value, float):
        if np.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    if value is pd.NA or value is pd.NaT:
        return None
    text = str(value).strip()
    return text or None


def derive_labels(
    sheet: pd.DataFrame, labels_cfg: dict | None, file, *, config_file="config", where="labels"
) -> pd.DataFrame:
    """Return a copy of `sheet` with one new column per entry of `labels_cfg` (see the module doc).

    `file` names the annotation file in errors about its content (missing column, unexpected
    value); `config_file`/`where` name the config entry in errors about the config itself.
    Rows are removed only by ``missing: drop``; the row order is kept.
    """
    out = sheet.copy()
    if not labels_cfg:
        return out
    if not isinstance(labels_cfg, dict):
        raise InputError(
            config_file,
            where,
            f"must be a mapping of label name -> {{column, map, missing}}, got {type(labels_cfg).__name__}",
        )
    drop = pd.Series(False, index=out.index)
    for name, spec in labels_cfg.items():
        field = f"{where}.{name}"
        if not isinstance(spec, dict) or "column" not in spec:
            raise InputError(config_file, field, "needs at least 'column' (the annotation column to read)")
        unknown = set(spec) - _LABEL_KEYS
        if unknown:
            raise InputError(config_file, field, f"unknown key(s) {sorted(unknown)} (use {sorted(_LABEL_KEYS)})")
        column = str(spec["column"])
        name = str(name)
        if name == "sample":
            raise InputError(config_file, field, "'sample' is the sample ID column; choose another label name")
        if name in sheet.columns and name != column:
            raise InputError(
                config_file, field, f"label name '{name}' is already a column of {file}; choose another name"
            )
        if column not in out.columns:
            raise InputError(
                file,
                column,
                f"label column for '{name}' not found (columns: {few([c for c in out.columns if c != 'sample'], 10)})",
            )
        raw = out[column].map(cell_text)
        mapping = spec.get("map")
        if mapping is not None:
            if not isinstance(mapping, dict):
                raise InputError(
                    config_file, f"{field}.map", "must be a mapping of annotation value -> label (null for missing)"
                )
            table = {cell_text(k): (None if cell_text(v) is None else v) for k, v in mapping.items()}
            present = raw.dropna()
            unexpected = present[~present.isin(list(table))]
            if len(unexpected):
                counts = unexpected.value_counts()
                listing = ", ".join(f"{v!r} ({n} sample(s))" for v, n in counts.items())
                hint = ""
                if any(isinstance(k, bool) for k in mapping):
                    hint = " (YAML reads unquoted yes/no/true/false/on/off as booleans: quote such keys)"
                raise InputError(
                    file,
                    column,
                    f"unexpected value(s) for label '{name}': {listing}; add them to "
                    f"{field}.map (map a value to null to treat it as missing){hint}",
                )
            values = raw.map(table, na_action="ignore")
        else:
            values = raw
        missing = spec.get("missing", schema_defaults("label")["missing"])
        if missing is None:
            missing = MISSING_KEEP
        empty = values.isna()
        if missing == MISSING_DROP:
            drop |= empty
            out[name] = values.astype(object)
        elif missing == MISSING_KEEP:
            out[name] = values.astype(object).where(~empty, np.nan)
        else:
            out[name] = values.astype(object).where(~empty, missing)
        log.info(
            "label %s from %s:%s: %s; %d sample(s) without a value -> %s",
            name,
            file,
            column,
            dict(out.loc[~empty, name].value_counts()),
            int(empty.sum()),
            "dropped" if missing == MISSING_DROP else "left empty" if missing == MISSING_KEEP else repr(missing),
        )
        if missing == MISSING_DROP and empty.any() and "sample" in out.columns:
            # removed from the dataset: name them, so no sample disappears without a trace
            log.info("label %s: samples dropped for a missing value: %s", name, few(out.loc[empty, "sample"], 10))
    if drop.any():
        out = out.loc[~drop]
    return out.reset_index(drop=True)


def label_counts(sheet: pd.DataFrame, labels_cfg: dict | None) -> dict:
    """{label: {value: count}} for the derived label columns ('(missing)' counts empty cells); for meta."""
    out = {}
    for name in labels_cfg or {}:
        column = sheet[str(name)]
        counts = {str(k): int(v) for k, v in column.value_counts().items()}
        if column.isna().any():
            counts["(missing)"] = int(column.isna().sum())
        out[str(name)] = counts
    return out


# ---- TCGA sample types ---------------------------------------------------------------------------

_BARCODE = re.compile(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}-(\d{2})", re.IGNORECASE)


def sample_type(barcode) -> str | None:
    """The two-digit TCGA sample type of a barcode ('TCGA-A1-A0SB-01A...' -> '01'), else None.
    01 primary solid tumour, 02 recurrent, 06 metastatic, 10 blood normal, 11 solid tissue normal."""
    match = _BARCODE.match(str(barcode).strip())
    return match.group(1) if match else None


_PARTICIPANT = re.compile(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}(?![A-Z0-9])", re.IGNORECASE)


def participant(barcode) -> str | None:
    """The TCGA participant of a barcode, its first 12 characters ('TCGA-A1-A0SB-01A...' ->
    'TCGA-A1-A0SB'): tumour, normal and repeat aliquots of one patient share it. None otherwise."""
    match = _PARTICIPANT.match(str(barcode).strip())
    return match.group(0).upper() if match else None


def _types(types, file, field):
    if types is None:
        return None
    if isinstance(types, (str, int)):
        types = [types]
    out = []
    for t in types:
        text = str(t).strip()
        if not text.isdigit() or len(text) > 2:
            raise InputError(
                file,
                field,
                f"a TCGA sample type is a two-digit code such as '01' (primary tumour) or '11' (normal), got {t!r}",
            )
        out.append(text.zfill(2))
    return out


def sample_type_filter(sheet_or_ids, types=("01",), *, file="samples", field="sample_types"):
    """Keep the samples whose TCGA barcode has one of `types` (two digits after the third dash).

    Takes a DataFrame with a 'sample' column (returns the kept rows, index reset), or a list /
    Index / Series of IDs (returns the same kind). `types=None` keeps everything. IDs that are not
    TCGA barcodes are dropped; if no ID is a TCGA barcode at all that is an error (the filter was
    configured for data it does not apply to).
    """
    wanted = _types(types, file, field)
    frame = isinstance(sheet_or_ids, pd.DataFrame)
    ids = pd.Series(sheet_or_ids["sample"] if frame else list(sheet_or_ids), dtype=object).astype(str)
    if wanted is None:
        return sheet_or_ids
    kinds = ids.map(sample_type)
    if len(ids) and kinds.isna().all():
        raise InputError(
            file,
            field,
            f"sample type filter {wanted} set, but no sample ID is a TCGA barcode "
            f"(TCGA-XX-XXXX-NN...; e.g. {few(ids.head(3), 3)})",
        )
    keep = kinds.isin(wanted).to_numpy()
    if frame:
        return sheet_or_ids.loc[keep].reset_index(drop=True)
    if isinstance(sheet_or_ids, pd.Index):
        return sheet_or_ids[keep]
    if isinstance(sheet_or_ids, pd.Series):
        return sheet_or_ids.loc[keep]
    return [i for i, k in zip(sheet_or_ids, keep) if k]


def config_prefix(cfg: dict, allowed: set, config_file, where: str, source: str) -> str:
    """Field prefix for a source's errors ('datasets.x.geo.'), after refusing unknown keys."""
    if where and not where.endswith("."):
        where += "."
    unknown = set(cfg) - allowed
    if unknown:
        raise InputError(
            config_file,
            where.rstrip(".") or f"({source})",
            f"unknown key(s) {sorted(unknown)} (use {sorted(allowed - {'source'})})",
        )
    return where
