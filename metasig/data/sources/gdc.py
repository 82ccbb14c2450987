"""``source: gdc``: open gene-expression files of one project from the NCI Genomic Data Commons API.

1. ``POST {api}/files``: the project's open "Gene Expression Quantification" files of one workflow
   (default ``STAR - Counts``), page by page until ``data.pagination`` says all pages are read.
   The configured sample types are part of the query (nothing else is downloaded) and are checked
   again on the answer.
2. ``GET {api}/data/{file_id}`` for every file, through ``metasig.data.download.fetch_many`` with the
   listed md5 (cached: a second run downloads nothing; a wrong checksum is an InputError naming the
   file id and URL, and nothing is returned).
3. Each STAR count file (``# gene-model: GENCODE v36`` comment, header ``gene_id gene_name
   gene_type unstranded ...``, four ``N_*`` summary rows that are skipped) gives one vector of
   ``counts_column``. Genes are versioned Ensembl IDs; the gene_id -> gene_name table travels in
   ``meta["gene_names"]`` (so it is written into the matrix file's metadata).
4. Samples are sample barcodes (``TCGA-A1-A0SB-01A``). Several files of one sample (repeat
   aliquots): the file with the most ``unstranded`` counts (library size) is kept; the log and
   ``meta["duplicates"]`` say which.
5. ``POST {api}/cases`` for the kept cases: ``vital_status``, survival ``time`` (days_to_death if
   Dead, else days_to_last_follow_up; missing or <= 0 -> NaN), ``event`` (1 Dead, 0 Alive, NaN when
   not reported) and every ``clinical_fields`` entry as a column named by its dotted path.

The API queries (1, 5) live in ``gdc_api``, the STAR count file reader (3) in ``gdc_counts``.
"""

import logging

import numpy as np
import pandas as pd

from metasig.config import schema_defaults
from metasig.data.sources.gdc_api import _values, clinical_table, list_files
from metasig.data.sources.gdc_counts import LIBRARY_COLUMN, read_star_counts
from metasig.errors import InputError

log = logging.getLogger("metasig.gdc")

DEFAULTS = {
    **schema_defaults("gdc"),  # api, workflow, counts_column, page_size, max_workers
    "sample_types": None,  # None or [] = every sample type
    "clinical_fields": [],
    "max_files": None,  # None = all files; a number = the first N (by file_id), for trials and tests
    "labels_table": None,  # a sample-level clinical table (e.g. Xena's) joined on the barcode, for labels
}
# STAR - Counts value columns and the unit each one is in
COLUMNS = {
    "unstranded": "counts",
    "stranded_first": "counts",
    "stranded_second": "counts",
    "tpm_unstranded": "tpm",
    "fpkm_unstranded": "fpkm",
    "fpkm_uq_unstranded": "fpkm",
}


def load(cfg: dict, cache_dir="cache", config_file="config", where="gdc"):
    """(matrix, sheet, meta) of one GDC project. `where` prefixes config field names in errors
    (e.g. ``datasets.brca``)."""
    from metasig.data import download

    opts = options(cfg, config_file, where)
    api = opts["api"]
    hits = list_files(opts, config_file, where)
    files, skipped = _select(hits, opts, config_file, where)
    urls = [f"{api}/data/{f['file_id']}" for f in files]
    items = [(u, f"md5:{f['md5sum']}") for u, f in zip(urls, files)]
    log.info(
        "GDC %s: downloading %d file(s) (%d worker(s)) into %s",
        opts["project"],
        len(items),
        opts["max_workers"],
        cache_dir,
    )
    try:
        paths = download.fetch_many(items, cache_dir=cache_dir, max_workers=opts["max_workers"])
    except InputError as exc:
        raise _name_file(exc, files, urls) from exc

    counts, names, gene_model, duplicates = _read_all(files, paths, urls, opts["counts_column"])
    samples = sorted(counts)
    genes = pd.Index(names.index, dtype=object)
    matrix = pd.DataFrame(
        np.vstack([counts[s][0] for s in samples]),
        index=pd.Index(samples, name="sample"),
        columns=genes,
        dtype="float64",
    )
    matrix.columns.name = None
    kept = {s: counts[s][1] for s in samples}

    sheet = pd.DataFrame(
        {
            "sample": samples,
            "case": [kept[s]["case"] for s in samples],
            "sample_type": [kept[s]["sample_type"] for s in samples],
        }
    )
    clinical = clinical_table(opts, sorted({kept[s]["case_id"] for s in samples}), config_file, where)
    case_of = [kept[s]["case_id"] for s in samples]
    extra = clinical.reindex(case_of).reset_index(drop=True)
    sheet = pd.concat([sheet, extra], axis=1)
    if opts["labels_table"]:
        sheet = join_labels_table(sheet, opts["labels_table"], cache_dir, config_file, f"{where}.labels_table")

    meta = {
        "source": "gdc",
        "unit": COLUMNS[opts["counts_column"]],
        "namespace": "ensembl",
        "api": api,
        "project": opts["project"],
        "workflow": opts["workflow"],
        "counts_column": opts["counts_column"],
        "sample_types": opts["sample_types"],
        "gene_model": gene_model,
        "files_listed": len(hits),
        "files_skipped": skipped,
        "n_files": len(files),
        "n_samples": len(samples),
        "files": {s: {"file_id": kept[s]["file_id"], "md5sum": kept[s]["md5sum"]} for s in samples},
        "duplicates": duplicates,
        "gene_names": {str(g): (None if pd.isna(n) else str(n)) for g, n in names.items()},
    }
    log.info(
        "GDC %s: %d samples x %d genes from %d file(s) (%d repeat aliquot file(s) dropped)",
        opts["project"],
        len(samples),
        len(genes),
        len(files),
        sum(len(d["dropped"]) for d in duplicates),
    )
    return matrix, sheet, meta


def join_labels_table(sheet, table_cfg, cache_dir, config_file, where):
    """Labels that GDC's case records do not hold (e.g. TCGA's HER2 status): a sample-level table
    such as a Xena clinical matrix, `{url, sha256?, labels: {...}}`, joined on the sample barcode
    cut to the table's ID length (TCGA-A1-A0SB-01A -> TCGA-A1-A0SB-01), then labels derived."""
    from metasig.data.sources import labels, xena

    url = table_cfg["url"]
    path, _ = xena.fetch(
        url, cache_dir, {url: table_cfg.get("sha256")}, (url,), config_file, f"{where}.url", f"{where}.sha256"
    )
    table = xena.read_clinical(path, url)
    width = int(table["sample"].str.len().mode().iloc[0])
    key = sheet["sample"].str.slice(0, width)
    if not key.isin(table["sample"]).any():
        raise InputError(
            url,
            "sampleID",
            f"no sample of the GDC project matches this table's IDs "
            f"(e.g. {table['sample'].iloc[0]!r} vs {sheet['sample'].iloc[0]!r})",
        )
    extra = table.drop_duplicates("sample").set_index("sample").reindex(key)
    extra = extra[[c for c in extra.columns if c not in sheet.columns]].reset_index(drop=True)
    joined = pd.concat([sheet, extra], axis=1)
    return labels.derive_labels(
        joined, table_cfg.get("labels") or {}, url, config_file=config_file, where=f"{where}.labels"
    )


# ---------------------------------------------------------------- config


def options(cfg, config_file="config", where="gdc"):
    """The dataset's GDC settings with defaults filled in; bad values are InputErrors."""
    opts = {**DEFAULTS, **{k: v for k, v in (cfg or {}).items() if v is not None}}
    if not isinstance(opts.get("project"), str) or not opts["project"].strip():
        raise InputError(config_file, f"{where}.project", "a GDC project ID is required (e.g. TCGA-BRCA)")
    if not isinstance(opts["api"], str) or not opts["api"].startswith(("http://", "https://")):
        raise InputError(config_file, f"{where}.api", f"not an http(s) URL: {opts['api']!r}")
    opts["api"] = opts["api"].rstrip("/")
    if not isinstance(opts["workflow"], str) or not opts["workflow"]:
        raise InputError(config_file, f"{where}.workflow", f"not a workflow name: {opts['workflow']!r}")
    if opts["counts_column"] not in COLUMNS:
        raise InputError(
            config_file,
            f"{where}.counts_column",
            f"unknown column {opts['counts_column']!r} (use one of {list(COLUMNS)})",
        )
    types = opts["sample_types"]
    if isinstance(types, str):
        types = [types]
    if types is not None and (not isinstance(types, list) or not all(isinstance(t, str) for t in types)):
        raise InputError(config_file, f"{where}.sample_types", f"must be a list of sample type names, got {types!r}")
    opts["sample_types"] = list(types) if types else None
    fields = opts["clinical_fields"] or []
    if not isinstance(fields, list) or not all(isinstance(f, str) and f.strip(".") for f in fields):
        raise InputError(
            config_file, f"{where}.clinical_fields", f"must be a list of dotted GDC case fields, got {fields!r}"
        )
    opts["clinical_fields"] = list(dict.fromkeys(fields))
    for key, low in (("page_size", 1), ("max_workers", 1)):
        if not _is_int(opts[key]) or opts[key] < low:
            raise InputError(config_file, f"{where}.{key}", f"must be an integer >= {low}, got {opts[key]!r}")
    if opts["max_files"] is not None and (not _is_int(opts["max_files"]) or opts["max_files"] < 1):
        raise InputError(
            config_file, f"{where}.max_files", f"must be null or an integer >= 1, got {opts['max_files']!r}"
        )
    return opts


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------- files


def _select(hits, opts, config_file, where):
    """The file records to download: one case, one sample, a wanted sample type, an md5."""
    files, skipped = [], {"not_one_sample": 0, "sample_type": 0}
    for hit in hits:
        cases = hit.get("cases") or []
        samples = (cases[0].get("samples") or []) if len(cases) == 1 else []
        if len(cases) != 1 or len(samples) != 1:
            skipped["not_one_sample"] += 1
            log.warning(
                "GDC file %s is linked to %d case(s) and %d sample(s), not one; left out",
                hit.get("file_id"),
                len(cases),
                len(samples),
            )
            continue
        sample = samples[0]
        if opts["sample_types"] and sample.get("sample_type") not in opts["sample_types"]:
            skipped["sample_type"] += 1
            continue
        file_id = hit.get("file_id") or hit.get("id")
        md5 = hit.get("md5sum")
        if not file_id or not sample.get("submitter_id"):
            raise InputError(
                f"{opts['api']}/files",
                "file_id" if not file_id else "cases.samples.submitter_id",
                f"a file hit lacks it: {str(hit)[:200]}",
            )
        if not isinstance(md5, str) or len(md5) != 32:
            raise InputError(
                f"{opts['api']}/data/{file_id}", "md5sum", f"the GDC file listing gives no md5 for file {file_id}"
            )
        aliquots = _values(sample, "portions.analytes.aliquots.submitter_id")
        files.append(
            {
                "file_id": file_id,
                "file_name": hit.get("file_name"),
                "md5sum": md5.lower(),
                "case": cases[0].get("submitter_id"),
                "case_id": cases[0].get("case_id"),
                "sample": sample["submitter_id"],
                "sample_type": sample.get("sample_type"),
                "aliquot": aliquots[0] if aliquots else None,
            }
        )
    if not files:
        raise InputError(
            config_file,
            f"{where}.sample_types",
            f"none of the {len(hits)} listed GDC file(s) is usable ({skipped['sample_type']} of another sample "
            f"type than {opts['sample_types']}, {skipped['not_one_sample']} not linked to exactly one sample)",
        )
    files.sort(key=lambda f: f["file_id"])  # ties between repeat aliquots go the same way every run
    return files, {k: v for k, v in skipped.items() if v}


def _name_file(exc, files, urls):
    """A download error that names the GDC file id and its URL (same type: DownloadInterrupted stays
    recognisable as worth retrying later)."""
    text = str(exc)
    for record, url in zip(files, urls):
        if url in text or record["file_id"] in text:
            return type(exc)(
                url,
                "md5sum" if "md5" in text.lower() or "checksum" in text.lower() else "file_id",
                f"GDC file {record['file_id']} ({record['file_name']}, sample {record['sample']}): {exc.problem}",
            )
    return exc


def _read_all(files, paths, urls, column):
    """Parse every file; one vector per sample (repeat aliquots: most library counts wins)."""
    best, genes, names, gene_model, dupes = {}, None, None, None, {}
    for record, path, url in zip(files, paths, urls):
        table, model = read_star_counts(path, column, display=url)
        ids = table.index
        if genes is None:
            genes, names, gene_model = ids, table["gene_name"], model
        elif not ids.equals(genes):
            diff = ids.symmetric_difference(genes)
            raise InputError(
                url,
                "gene_id",
                f"GDC file {record['file_id']} lists other genes than "
                f"{files[0]['file_id']} ({len(diff)} differ, e.g. {', '.join(map(str, diff[:3]))}); "
                "mixed gene models cannot share one matrix",
            )
        library = float(table[LIBRARY_COLUMN].sum())
        values = table[column].to_numpy(dtype="float64")
        entry = (values, record, library)
        sample = record["sample"]
        if sample in best:
            dupes.setdefault(sample, [best[sample]])
            dupes[sample].append(entry)
            if library > best[sample][2]:
                best[sample] = entry
        else:
            best[sample] = entry
    duplicates = []
    for sample, entries in sorted(dupes.items()):
        kept = best[sample]
        dropped = [e for e in entries if e is not kept]
        log.warning(
            "GDC sample %s has %d files (repeat aliquots): kept %s (aliquot %s, %d counts); dropped %s",
            sample,
            len(entries),
            kept[1]["file_id"],
            kept[1]["aliquot"],
            kept[2],
            "; ".join(f"{e[1]['file_id']} (aliquot {e[1]['aliquot']}, {e[2]:.0f} counts)" for e in dropped),
        )
        duplicates.append(
            {
                "sample": sample,
                "kept": kept[1]["file_id"],
                "kept_counts": kept[2],
                "dropped": [e[1]["file_id"] for e in dropped],
            }
        )
    return {s: (v[0], v[1]) for s, v in best.items()}, names, gene_model, duplicates
