"""Queries of the NCI Genomic Data Commons API for ``source: gdc``: the project's gene-expression file
listing and the case records (vital status, survival time and event, configured clinical fields),
each read page by page until ``data.pagination`` says all pages are read.
"""

import logging

import numpy as np
import pandas as pd

from metasig.errors import InputError

log = logging.getLogger("metasig.gdc")

FILE_FIELDS = [
    "file_id",
    "file_name",
    "md5sum",
    "file_size",
    "cases.case_id",
    "cases.submitter_id",
    "cases.samples.sample_id",
    "cases.samples.submitter_id",
    "cases.samples.sample_type",
    "cases.samples.portions.analytes.aliquots.submitter_id",  # only for the log of repeat aliquots
]
CASE_FIELDS = [
    "case_id",
    "submitter_id",
    "demographic.vital_status",
    "demographic.days_to_death",
    "diagnoses.days_to_last_follow_up",
]


def files_filter(opts):
    content = [
        {"op": "=", "content": {"field": "cases.project.project_id", "value": opts["project"]}},
        {"op": "=", "content": {"field": "data_type", "value": "Gene Expression Quantification"}},
        {"op": "=", "content": {"field": "analysis.workflow_type", "value": opts["workflow"]}},
        {"op": "=", "content": {"field": "access", "value": "open"}},
    ]
    if opts["sample_types"]:
        content.append({"op": "in", "content": {"field": "cases.samples.sample_type", "value": opts["sample_types"]}})
    return {"op": "and", "content": content}


def list_files(opts, config_file="config", where="gdc"):
    """Every file hit of the project's query (all pages; the first max_files when set)."""
    hits = query_all(
        f"{opts['api']}/files",
        files_filter(opts),
        FILE_FIELDS,
        opts["page_size"],
        limit=opts["max_files"],
        sort="file_id:asc",
    )
    if not hits:
        raise InputError(
            config_file,
            f"{where}.project",
            f"the GDC lists no open '{opts['workflow']}' gene-expression files for project "
            f"{opts['project']}"
            + (f" and sample types {opts['sample_types']}" if opts["sample_types"] else "")
            + f" ({opts['api']}/files)",
        )
    return hits


def query_all(url, filters, fields, page_size, limit=None, sort=None):
    """POST `url` page by page (size/from) until data.pagination says every page was read."""
    from metasig.data import download

    hits, offset, page = [], 0, 0
    while True:
        payload = {"filters": filters, "fields": ",".join(fields), "format": "JSON", "size": page_size, "from": offset}
        if sort:
            payload["sort"] = sort
        answer = download.post_json(url, payload)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("hits"), list):
            raise InputError(url, "data.hits", f"unexpected GDC answer (no data.hits list): {str(answer)[:200]}")
        if answer.get("warnings"):
            log.warning("GDC %s warns: %s", url, answer["warnings"])
        pagination = data.get("pagination") or {}
        page += 1
        hits.extend(data["hits"])
        offset += len(data["hits"])
        total, pages = pagination.get("total"), pagination.get("pages")
        if limit is not None and len(hits) >= limit:
            return hits[:limit]
        if not data["hits"]:
            break
        if pages is not None and pagination.get("page", page) >= pages:
            break
        if total is not None and offset >= total:
            break
        if total is None and pages is None and len(data["hits"]) < page_size:
            break
    if total is not None and len(hits) != total:
        raise InputError(
            url, "data.pagination", f"the GDC said {total} hit(s) but {len(hits)} arrived in {page} page(s)"
        )
    return hits


def clinical_table(opts, case_ids, config_file="config", where="gdc"):
    """One row per case_id: vital_status, time, event and the configured clinical fields."""
    fields = list(dict.fromkeys(CASE_FIELDS + opts["clinical_fields"]))
    filters = {"op": "in", "content": {"field": "case_id", "value": list(case_ids)}}
    hits = query_all(f"{opts['api']}/cases", filters, fields, opts["page_size"], sort="case_id:asc") if case_ids else []
    rows = {}
    for hit in hits:
        case_id = hit.get("case_id") or hit.get("id")
        vital = _first(hit, "demographic.vital_status")
        death = _number(_first(hit, "demographic.days_to_death"))
        follow = [_number(v) for v in _values(hit, "diagnoses.days_to_last_follow_up")]
        follow = max((v for v in follow if not np.isnan(v)), default=np.nan)
        dead = isinstance(vital, str) and vital.strip().lower() == "dead"
        alive = isinstance(vital, str) and vital.strip().lower() == "alive"
        time = death if dead else follow if alive else np.nan
        if not time > 0:  # missing, zero or negative: no usable survival time
            time = np.nan
        row = {"vital_status": vital, "time": time, "event": 1.0 if dead else 0.0 if alive else np.nan}
        for field in opts["clinical_fields"]:
            row[field] = _first(hit, field)
        rows[case_id] = row
    columns = [
        "vital_status",
        "time",
        "event",
        *[f for f in opts["clinical_fields"] if f not in ("vital_status", "time", "event")],
    ]
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns)
    missing = [c for c in case_ids if c not in rows]
    if missing:
        log.warning(
            "GDC %s: no clinical record for %d case(s) (e.g. %s); their clinical columns are empty",
            opts["project"],
            len(missing),
            ", ".join(missing[:3]),
        )
    unusable = int(table["time"].isna().sum()) + len(missing)
    if unusable:
        log.info("GDC %s: %d case(s) without a usable survival time (time left empty)", opts["project"], unusable)
    return table


def _values(obj, path):
    """Every value at a dotted path, walking into lists (GDC nests e.g. diagnoses as a list)."""
    found = [obj]
    for part in path.split("."):
        nxt = []
        for item in found:
            items = item if isinstance(item, list) else [item]
            for element in items:
                if isinstance(element, dict) and part in element:
                    nxt.append(element[part])
        found = nxt
    flat = []
    for value in found:
        flat.extend(value if isinstance(value, list) else [value])
    return flat


def _first(obj, path):
    """The value at a dotted path; of a list, the first element that is set."""
    return next((v for v in _values(obj, path) if v is not None), None)


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan
