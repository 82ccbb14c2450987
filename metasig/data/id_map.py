"""Feature-ID mapping for any source (a dataset's ``id_map``), and the collapse rules the GEO source
shares: probes, versioned Ensembl IDs or other IDs -> the gene IDs the gene groups are written in.

Config (dataset level)::

    id_map:
      file: input/probe2symbol.tsv   # TSV, or CSV by its .csv name; may be gzipped; has a header
      from: probe_id                 # the file's column holding the matrix's IDs
      to: symbol                     # the file's column holding the gene IDs to use instead
      collapse: max_mean             # several IDs of one gene: max_mean | mean | max_var | keep
      strip_version: false           # ENSG00000141510.16 -> ENSG00000141510 (matrix and `from`)

Collapse rules, for the IDs (matrix columns) that map to one gene:

- ``max_mean``: the ID with the highest mean over all samples (ties: the first in the matrix);
- ``max_var``: the ID with the highest variance over all samples (ties: the first);
- ``mean``: the per-sample mean of the IDs (a missing cell is left out of its mean);
- ``keep``: no collapse: every mapped ID stays its own column, named ``<gene>|<ID>`` (e.g.
  ``ESR1|205225_at``), and a gene group naming ESR1 selects all of ESR1's columns.

Genes come in the order of their first ID in the matrix. IDs the file does not map (absent, or an
empty target) are dropped and counted; an ID on several rows takes its first row's target (counted).
Every rule uses all samples and no label: choosing a probe before the folds are split is unsupervised
and leaks no label information into the evaluation. ``strip_version`` without ``file`` maps each ID to
itself without its version; IDs that then coincide are collapsed by the same rule.
"""

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from metasig.errors import InputError, few

log = logging.getLogger("metasig.data")

COLLAPSE = ("max_mean", "mean", "max_var", "keep")
KEEP_SEP = "|"  # keep: '<gene>|<ID>'; gene IDs never contain it
_ENSEMBL_VERSION = re.compile(r"^(ENS[A-Z]*\d{6,})\.\d+")  # ENSG…, ENST…, ENSMUSG…; '_PAR_Y' tails stay


def strip_versions(ids):
    """Ensembl IDs without their version suffix; other IDs unchanged."""
    return [_ENSEMBL_VERSION.sub(r"\1", str(i)) for i in ids]


def read_map(path, source, target, display=None, strip=False, encoding=None):
    """Return (mapping {ID: target}, IDs with several different targets) from an ID-map file.
    `display` names the file in errors; `strip` strips Ensembl versions of the `source` column."""
    from metasig.data.sources.table import _compression, _encoding_problem, _separator_hint

    path = Path(path)
    where = str(display or path)
    if not path.is_file():
        raise InputError(where, "(file)", "ID map file not found")
    name = path.name.lower().removesuffix(".gz")
    fmt = "csv" if name.endswith(".csv") else "tsv"
    try:
        frame = pd.read_csv(
            path,
            sep="," if fmt == "csv" else "\t",
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding=encoding or "utf-8",
            compression=_compression(path, where, fmt),
        )
    except UnicodeDecodeError as exc:
        raise InputError(where, "(file)", _encoding_problem(exc)) from exc
    except pd.errors.EmptyDataError as exc:
        raise InputError(
            where, "(file)", f"the ID map is empty: it needs a header with the columns '{source}' and '{target}'"
        ) from exc
    except pd.errors.ParserError as exc:
        raise InputError(where, "(file)", f"cannot parse the ID map as {fmt}: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    for field, column in (("from", source), ("to", target)):
        if column not in frame.columns:
            raise InputError(
                where,
                column,
                f"column named by id_map.{field} not found (columns: {few(frame.columns, 10)})"
                f"{_separator_hint(frame.columns, fmt, path.name)}",
            )
    ids = frame[source].str.strip()
    targets = frame[target].str.strip()
    usable = ids.notna() & (ids != "") & targets.notna() & (targets != "")
    if not usable.any():
        raise InputError(where, target, f"no row of the ID map has both a '{source}' and a '{target}' value")
    ids = pd.Series(strip_versions(ids[usable]) if strip else ids[usable].to_numpy())
    targets = pd.Series(targets[usable].to_numpy())
    first = ~ids.duplicated()
    mapping = dict(zip(ids[first], targets[first]))
    several = set(ids[targets.to_numpy() != ids.map(mapping).to_numpy()])
    return mapping, several


def collapse(matrix: pd.DataFrame, mapping, how: str) -> pd.DataFrame:
    """Matrix columns -> one column per target of `mapping` ({ID: target}; absent = dropped) by the
    rule `how` (see the module doc)."""
    if isinstance(mapping, pd.Series):
        mapping = mapping.to_dict()
    return collapse_targets(matrix, [mapping.get(str(c)) for c in matrix.columns], how)


def collapse_targets(matrix: pd.DataFrame, targets, how: str) -> pd.DataFrame:
    """As `collapse`, with the target of each column given by position (None: dropped), so that
    repeated or version-stripped IDs are handled column by column."""
    if how not in COLLAPSE:
        raise ValueError(f"unknown collapse {how!r}; expected one of {COLLAPSE}")
    pos = [j for j, t in enumerate(targets) if t is not None]
    genes = [str(targets[j]) for j in pos]
    values = matrix.iloc[:, pos]
    order = list(dict.fromkeys(genes))
    if how == "keep":
        out = values.set_axis([f"{g}{KEEP_SEP}{matrix.columns[j]}" for g, j in zip(genes, pos)], axis=1)
    elif how == "mean":
        out = values.T.groupby(np.array(genes, dtype=object), sort=False).mean().T.loc[:, order]
    else:
        score = values.mean(axis=0) if how == "max_mean" else values.var(axis=0)
        frame = pd.DataFrame({"pos": range(len(pos)), "gene": genes, "score": score.to_numpy()})
        best = frame.sort_values("score", ascending=False, kind="mergesort", na_position="last")
        best = best.drop_duplicates("gene", keep="first").set_index("gene")["pos"]
        out = values.iloc[:, best.loc[order].to_numpy()].set_axis(order, axis=1)
    out.columns = pd.Index([str(c) for c in out.columns])
    out.index.name = "sample"
    return out.astype("float64")


def keep_gene(column: str) -> str:
    """The gene of a `keep` column ('ESR1|205225_at' -> 'ESR1'); other columns are their own gene."""
    return str(column).split(KEEP_SEP, 1)[0]


def apply(matrix: pd.DataFrame, cfg: dict | None, base_dir=".", config_file="config", where="id_map", encoding=None):
    """Map the matrix's feature IDs as the dataset's `id_map` config says (see the module doc).
    Returns (matrix, record): the record (None without `id_map`) goes into the matrix's metadata
    for the gene-groups step: the settings, the counts, and `as_is`, the genes that were already
    IDs of the matrix (the others are found only thanks to the mapping)."""
    if not cfg:
        return matrix, None
    how = cfg.get("collapse") or "max_mean"
    if how not in COLLAPSE:
        raise InputError(config_file, f"{where}.collapse", f"unknown collapse {how!r} (use one of {list(COLLAPSE)})")
    strip, file = bool(cfg.get("strip_version")), cfg.get("file")
    if not file and not strip:
        raise InputError(config_file, where, "needs a file (with its from and to columns) or strip_version: true")
    for key in ("from", "to") if file else ():
        if not cfg.get(key):
            raise InputError(config_file, f"{where}.{key}", f"needed with id_map.file: the file's column of {key} IDs")
    ids = [str(c) for c in matrix.columns]
    keys = strip_versions(ids) if strip else ids
    stripped = sum(a != b for a, b in zip(ids, keys))
    if strip and not stripped:
        log.warning("id_map: strip_version is set but no matrix ID has an Ensembl version (e.g. %s)", few(ids, 3))
    if file:
        mapping, several = read_map(Path(base_dir) / file, cfg["from"], cfg["to"], str(file), strip, encoding)
    else:
        mapping, several = {k: k for k in keys}, set()
    targets = [mapping.get(k) for k in keys]
    unmapped = [i for i, t in zip(ids, targets) if t is None]
    if ids and len(unmapped) == len(ids):
        hint = ""
        if not strip and any(_ENSEMBL_VERSION.match(i) for i in ids):
            hint = "; the matrix's IDs carry Ensembl versions (.N): set id_map.strip_version: true"
        raise InputError(
            str(file),
            cfg["from"],
            f"none of the matrix's {len(ids)} IDs is in this column (matrix IDs: {few(ids, 3)}; "
            f"ID map: {few(list(mapping)[:3], 3)}){hint}",
        )
    out = collapse_targets(matrix, targets, how)
    original = set(ids)
    several_used = sum(k in several for k, t in zip(keys, targets) if t is not None)
    log.info(
        "id_map%s: %d ID(s) -> %d %s by %s; %d unmapped ID(s) dropped%s; %d version suffix(es) stripped; "
        "%d ID(s) with several targets took the first row's",
        f" {file}" if file else "",
        len(ids),
        out.shape[1],
        "column(s)" if how == "keep" else "gene(s)",
        how,
        len(unmapped),
        f" (e.g. {few(unmapped)})" if unmapped else "",
        stripped,
        several_used,
    )
    record = {
        "file": str(file) if file else None,
        "from": cfg.get("from"),
        "to": cfg.get("to"),
        "collapse": how,
        "strip_version": strip,
        "ids": len(ids),
        "unmapped": len(unmapped),
        "versions_stripped": stripped,
        "several_targets": several_used,
        "features": int(out.shape[1]),
        "as_is": sorted({t for t in targets if t is not None and t in original}),
    }
    return out, record


def mapped_genes(genes, record, covariates=()) -> int:
    """How many of a resolved group's genes were found only thanks to the mapping (not IDs of the
    matrix as loaded); 0 without an ID map."""
    if not record:
        return 0
    gene_of = keep_gene if record.get("collapse") == "keep" else str
    as_is, covariates = set(record.get("as_is") or []), set(covariates)
    return len({gene_of(g) for g in genes if g not in covariates} - as_is)
