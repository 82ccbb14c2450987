"""Rule adapters of the data stage: load and check a dataset, normalize, resolve gene groups."""

import logging
from pathlib import Path

from metasig import io
from metasig.logs import logged

log = logging.getLogger("metasig")

__all__ = ["logged", "read_checked", "load_dataset", "check_inputs", "normalize", "gene_groups"]


def read_checked(dataset_cfg, name, cache, config_file, groups, reads=None, base_dir=".", folds=None):
    """Read a source and run every check on it (tables, labels, folds, gene groups); return
    (matrix, sheet, meta). `folds`: {task: {"outer_folds", "inner_folds"}} (see validate.check_folds)."""
    from metasig.data import checks as validate
    from metasig.data import groups as genesets
    from metasig.data import id_map, sources
    from metasig.data.sources import reads as reads_source

    if reads:
        matrix, sheet, meta = reads_source.load(dataset_cfg, reads)
    else:
        matrix, sheet, meta = sources.load(dataset_cfg, name, base_dir, cache, config_file)
    # feature IDs -> the gene IDs of the groups, for any source, before the checks see the matrix
    matrix, mapped = id_map.apply(
        matrix,
        dataset_cfg.get("id_map"),
        base_dir,
        config_file,
        f"datasets.{name}.id_map",
        dataset_cfg.get("encoding"),
    )
    if mapped:
        meta["id_map"] = mapped
    matrix_file = (
        dataset_cfg.get("matrix")
        or dataset_cfg.get("url")
        or (reads or {}).get("qc")
        or f"builtin:{dataset_cfg.get('name')}"
    )
    validate.check_dataset(
        matrix,
        sheet,
        dataset_cfg,
        matrix_file,
        sheet_file=dataset_cfg.get("samples", matrix_file),
        folds=folds,
        where=f"datasets.{name}",
    )
    covariates = list(dataset_cfg.get("covariates", []))
    genesets.resolve(
        groups,
        list(matrix.columns) + covariates,
        config_file,
        field_prefix=f"datasets.{name}.gene_groups",
        id_map=meta.get("id_map"),
        covariates=covariates,
    )
    return matrix, sheet, meta


def load_dataset(
    dataset_cfg, name, matrix_out, samples_out, cache, config_file, groups, reads=None, base_dir=".", folds=None
):
    """Read a source, check it (tables, labels, folds, gene groups) and write the two data contracts.
    Nothing is written unless every check passes. `reads`: for reads datasets, which workflow
    input is which (see metasig.data.sources.reads)."""
    matrix, sheet, meta = read_checked(dataset_cfg, name, cache, config_file, groups, reads, base_dir, folds)
    io.write_matrix(matrix, matrix_out, meta["unit"], meta["namespace"], extra=meta)
    io.write_sheet(sheet, samples_out)
    log.info("%s: %d samples x %d genes (%s, %s)", name, *matrix.shape, meta["unit"], meta["namespace"])


LOCAL_SOURCES = ("builtin", "table")  # fully checkable before any job: no download, no reads to quantify


SHEET_SOURCES = ("fastq", "bam")  # a local sample sheet, checkable before the reads are quantified


def check_inputs(datasets, config_file, cache, marker_dir, base_dir="."):
    """Check every local dataset's inputs before any job runs, so that a bad dataset stops the
    run before another dataset's outputs are written. datasets: {name: (dataset_cfg, groups, folds)}.
    Downloaded sources (url, xena, gdc, geo) and simulated reads can only be checked once fetched
    or made: their load_dataset job does it. A passed check leaves a marker keyed by the
    configuration, the input files' size and mtime and metasig's code, so an unchanged study is not
    re-read at every Snakemake call (dry runs stay fast)."""
    import hashlib
    import json

    from metasig.data import checks as validate
    from metasig.data.sources.table import read_sample_sheet

    base = Path(base_dir)
    checked = {d: v for d, v in datasets.items() if v[0].get("source") in LOCAL_SOURCES + SHEET_SOURCES}
    if not checked:
        return False
    files = sorted(
        {str(base / ds[k]) for ds, _, _ in checked.values() for k in ("matrix", "samples") if ds.get(k)}
        | {str(base / ds["id_map"]["file"]) for ds, _, _ in checked.values() if (ds.get("id_map") or {}).get("file")}
        | {
            str(base / g["gmt"])
            for ds, _, _ in checked.values()
            for g in ds["gene_groups"].values()
            if isinstance(g, dict)
        }
        # the whole package's code: the checks use learn/ and config.py as well as data/
        | {str(p) for p in Path(__file__).parents[1].rglob("*.py")}
    )

    def stamp(path):
        st = Path(path).stat()
        return [path, st.st_size, st.st_mtime_ns]

    key = json.dumps({"datasets": checked, "files": [stamp(f) for f in files]}, sort_keys=True, default=str)
    marker = Path(marker_dir) / f"inputs-{hashlib.sha256(key.encode()).hexdigest()[:16]}.ok"
    if marker.exists():
        return False
    for name, (ds, groups, folds) in checked.items():
        if ds["source"] in LOCAL_SOURCES:
            read_checked(ds, name, cache, config_file, groups, base_dir=base_dir, folds=folds)
        else:
            sheet = read_sample_sheet(base / ds["samples"], ds["samples"], ds.get("encoding"))
            for tname, task in ds["tasks"].items():
                validate.check_folds(sheet, task, folds[tname], ds["samples"], f"datasets.{name}.tasks.{tname}")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)
    return True


def normalize(matrix_in, matrix_out, method):
    from metasig.data.normalize import normalize as apply

    matrix, meta = io.read_matrix(matrix_in)
    io.write_matrix(
        apply(matrix, method), matrix_out, meta["unit"], meta["namespace"], extra={**meta, "normalization": method}
    )
    log.info("normalized %d x %d with %s", *matrix.shape, method)


def gene_groups(matrix_in, groups, covariates, groups_out, config_file, originals=None):
    """Resolve the groups against the matrix; `originals`: group -> its GMT set name, for sets
    renamed to a safe name (kept in the JSON as `gmt_name` and shown in the log)."""
    from metasig.data import groups as genesets
    from metasig.data.groups_file import write_groups

    matrix, meta = io.read_matrix(matrix_in)
    resolved = genesets.resolve(
        groups,
        list(matrix.columns) + list(covariates),
        config_file,
        field_prefix="gene_groups",
        id_map=meta.get("id_map"),
        covariates=covariates,
    )
    for group, original in (originals or {}).items():
        resolved[group]["gmt_name"] = original
    log.info("gene groups:\n%s", genesets.missing_report(resolved))
    write_groups(resolved, groups_out)
