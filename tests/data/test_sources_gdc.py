"""source: gdc against a loopback GDC API: POST /files and /cases answer format-faithful JSON pages
(filters, fields, size/from, pagination), GET /data/<file_id> serves STAR - Counts files."""

import gzip
import hashlib
import json
import logging
import math
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from metasig.errors import InputError

HEADER = (
    "gene_id",
    "gene_name",
    "gene_type",
    "unstranded",
    "stranded_first",
    "stranded_second",
    "tpm_unstranded",
    "fpkm_unstranded",
    "fpkm_uq_unstranded",
)
GENES = [
    ("ENSG00000000003.15", "TSPAN6", "protein_coding"),
    ("ENSG00000000005.6", "TNMD", "protein_coding"),
    ("ENSG00000000419.13", "DPM1", "protein_coding"),
    ("ENSG00000002586.20_PAR_Y", "CD99", "protein_coding"),
]
SUMMARY = ("N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous")


def star_counts(base):
    """A STAR - Counts file as the GDC serves it; gene i has unstranded base*(i+1), stranded_first
    that plus 1, stranded_second that plus 2."""
    lines = ["# gene-model: GENCODE v36", "\t".join(HEADER)]
    for name in SUMMARY:  # summary rows: counts in the three count columns, empty elsewhere
        lines.append(f"{name}\t\t\t9999999\t8888888\t7777777\t\t\t")
    for i, (gid, gname, gtype) in enumerate(GENES):
        u = base * (i + 1)
        lines.append(f"{gid}\t{gname}\t{gtype}\t{u}\t{u + 1}\t{u + 2}\t{u / 10:.4f}\t{u / 100:.4f}\t{u / 90:.4f}")
    return ("\n".join(lines) + "\n").encode()


# file_id, case, sample barcode, sample type, aliquot, count base
FILES = [
    (
        "f1000000-0000-0000-0000-000000000001",
        "TCGA-AA-0001",
        "TCGA-AA-0001-01A",
        "Primary Tumor",
        "TCGA-AA-0001-01A-11R-A001-07",
        10,
    ),
    (
        "f1000000-0000-0000-0000-000000000002",
        "TCGA-AA-0001",
        "TCGA-AA-0001-11A",
        "Solid Tissue Normal",
        "TCGA-AA-0001-11A-01R-A001-07",
        20,
    ),
    # two aliquots of one sample: the later file id has more counts and must win
    (
        "f1000000-0000-0000-0000-000000000003",
        "TCGA-AA-0002",
        "TCGA-AA-0002-01A",
        "Primary Tumor",
        "TCGA-AA-0002-01A-11R-A002-07",
        3,
    ),
    (
        "f1000000-0000-0000-0000-000000000004",
        "TCGA-AA-0002",
        "TCGA-AA-0002-01A",
        "Primary Tumor",
        "TCGA-AA-0002-01A-12R-A003-07",
        50,
    ),
    (
        "f1000000-0000-0000-0000-000000000005",
        "TCGA-AA-0004",
        "TCGA-AA-0004-01A",
        "Primary Tumor",
        "TCGA-AA-0004-01A-11R-A004-07",
        40,
    ),
    (
        "f1000000-0000-0000-0000-000000000006",
        "TCGA-AA-0005",
        "TCGA-AA-0005-01A",
        "Primary Tumor",
        "TCGA-AA-0005-01A-11R-A005-07",
        60,
    ),
]
CASES = {  # submitter_id -> case record as the GDC nests it
    "TCGA-AA-0001": {
        "demographic": {"vital_status": "Dead", "days_to_death": 300, "gender": "female"},
        "diagnoses": [{"days_to_last_follow_up": None, "ajcc_pathologic_stage": "Stage IIA"}],
    },
    "TCGA-AA-0002": {
        "demographic": {"vital_status": "Alive", "days_to_death": None, "gender": "female"},
        "diagnoses": [
            {"days_to_last_follow_up": 1000, "ajcc_pathologic_stage": "Stage I"},
            {"days_to_last_follow_up": 200, "ajcc_pathologic_stage": "Stage III"},
        ],
    },
    "TCGA-AA-0004": {
        "demographic": {"vital_status": "Not Reported", "gender": "male"},
        "diagnoses": [{"days_to_last_follow_up": 50}],
    },
    "TCGA-AA-0005": {
        "demographic": {"vital_status": "Alive", "days_to_death": None},
        "diagnoses": [{"days_to_last_follow_up": 0, "ajcc_pathologic_stage": None}],
    },
}


def case_id(submitter):
    return "c" + hashlib.md5(submitter.encode()).hexdigest()[:7] + "-0000-0000-0000-000000000000"


# ---------------------------------------------------------------- loopback GDC


def _values(obj, parts):
    found = [obj]
    for part in parts:
        nxt = []
        for item in found:
            for element in item if isinstance(item, list) else [item]:
                if isinstance(element, dict) and part in element:
                    nxt.append(element[part])
        found = nxt
    out = []
    for value in found:
        out.extend(value if isinstance(value, list) else [value])
    return out


def _matches(hit, filt):
    if not filt:
        return True
    op, content = filt["op"], filt["content"]
    if op == "and":
        return all(_matches(hit, f) for f in content)
    if op == "or":
        return any(_matches(hit, f) for f in content)
    if op in ("in", "="):
        want = content["value"] if isinstance(content["value"], list) else [content["value"]]
        return any(v in want for v in _values(hit, content["field"].split(".")))
    raise ValueError(f"filter op {op!r} not implemented in the test server")


def _project(obj, paths):
    """Only the requested fields, nested the way the GDC nests them."""
    if isinstance(obj, list):
        return [_project(o, paths) for o in obj]
    groups = {}
    for parts in paths:
        groups.setdefault(parts[0], []).append(parts[1:])
    out = {}
    for key, rests in groups.items():
        if key not in obj:
            continue
        subs = [r for r in rests if r]
        out[key] = _project(obj[key], subs) if subs and isinstance(obj[key], (dict, list)) else obj[key]
    return out


class FakeGDC:
    def __init__(self, files, cases, data):
        self.files, self.cases, self.data = files, cases, data  # data: file_id -> bytes
        self.log, self.lock = [], threading.Lock()
        self.ignore_filters = False

    def count(self, method, prefix):
        with self.lock:
            return sum(1 for m, p, _ in self.log if m == method and p.startswith(prefix))

    def bodies(self, path):
        with self.lock:
            return [b for m, p, b in self.log if m == "POST" and p == path]

    def page(self, records, body, key):
        filt = None if self.ignore_filters else body.get("filters")
        hits = [r for r in records if _matches(r, filt)]
        if body.get("sort"):
            field, _, order = body["sort"].partition(":")
            hits.sort(key=lambda r: str(r.get(field)), reverse=order == "desc")
        size, start = int(body.get("size", 10)), int(body.get("from", 0))
        fields = [f.split(".") for f in str(body.get("fields", "")).split(",") if f]
        chunk = [{"id": h[key], **_project(h, fields)} for h in hits[start : start + size]]
        total = len(hits)
        return {
            "data": {
                "hits": chunk,
                "pagination": {
                    "count": len(chunk),
                    "total": total,
                    "size": size,
                    "from": start,
                    "sort": body.get("sort", ""),
                    "page": start // size + 1,
                    "pages": math.ceil(total / size),
                },
            },
            "warnings": {},
        }


def _handler(gdc):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status, body, ctype="application/json", extra=()):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.loads(raw or b"{}")
            path = self.path.split("?")[0]
            with gdc.lock:
                gdc.log.append(("POST", path, body))
            if path == "/files":
                answer = gdc.page(gdc.files, body, "file_id")
            elif path == "/cases":
                answer = gdc.page(gdc.cases, body, "case_id")
            else:
                return self._send(404, b'{"message": "not found"}')
            self._send(200, json.dumps(answer).encode())

        def do_GET(self):
            path = self.path.split("?")[0]
            with gdc.lock:
                gdc.log.append((self.command, path, None))
            file_id = path.rsplit("/", 1)[-1]
            if not path.startswith("/data/") or file_id not in gdc.data:
                return self._send(404, b'{"message": "file not found"}')
            body = gdc.data[file_id]
            extra = [
                ("Content-Disposition", f"attachment; filename={file_id}.rna_seq.augmented_star_gene_counts.tsv"),
                ("Accept-Ranges", "bytes"),
            ]
            rng = self.headers.get("Range", "")
            if rng.startswith("bytes=") and rng[6:].split("-")[0].isdigit():
                start = int(rng[6:].split("-")[0])
                if start < len(body):
                    extra.append(("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}"))
                    return self._send(206, body[start:], "text/tab-separated-values", extra)
            self._send(200, body, "text/tab-separated-values", extra)

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    return Handler


@contextmanager
def serve(gdc):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(gdc))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def make_gdc(files=FILES, wrong_md5=()):
    data, hits = {}, []
    for file_id, case, sample, stype, aliquot, base in files:
        data[file_id] = star_counts(base)
        md5 = hashlib.md5(data[file_id]).hexdigest()
        if file_id in wrong_md5:
            md5 = "0" * 32
        hits.append(
            {
                "file_id": file_id,
                "file_name": f"{file_id}.rna_seq.augmented_star_gene_counts.tsv",
                "md5sum": md5,
                "file_size": len(data[file_id]),
                "data_type": "Gene Expression Quantification",
                "access": "open",
                "analysis": {"workflow_type": "STAR - Counts"},
                "cases": [
                    {
                        "case_id": case_id(case),
                        "submitter_id": case,
                        "project": {"project_id": "TCGA-XX"},
                        "samples": [
                            {
                                "sample_id": "s-" + sample,
                                "submitter_id": sample,
                                "sample_type": stype,
                                "portions": [{"analytes": [{"aliquots": [{"submitter_id": aliquot}]}]}],
                            }
                        ],
                    }
                ],
            }
        )
    cases = [{"case_id": case_id(c), "submitter_id": c, **rec} for c, rec in CASES.items()]
    return FakeGDC(hits, cases, data)


@pytest.fixture
def gdc_module():
    from metasig.data.sources import gdc

    return gdc


def cfg(api, **kw):
    return {
        "api": api,
        "project": "TCGA-XX",
        "workflow": "STAR - Counts",
        "counts_column": "unstranded",
        "sample_types": ["Primary Tumor"],
        "clinical_fields": ["diagnoses.ajcc_pathologic_stage", "demographic.gender"],
        "page_size": 2,
        "max_workers": 2,
        "max_files": None,
        **kw,
    }


# ---------------------------------------------------------------- tests


def test_load_reads_all_pages_and_builds_matrix_and_sheet(tmp_path, gdc_module, caplog):
    gdc = make_gdc()
    with serve(gdc) as api, caplog.at_level(logging.INFO, logger="metasig"):
        matrix, sheet, meta = gdc_module.load(cfg(api), tmp_path / "cache", "config.yaml")
    # 5 tumour files, page_size 2 -> 3 pages; the normal sample is never downloaded
    assert gdc.count("POST", "/files") == 3
    assert [b["from"] for b in gdc.bodies("/files")] == [0, 2, 4]
    assert gdc.count("GET", "/data/") == 5
    assert gdc.count("GET", f"/data/{FILES[1][0]}") == 0
    body = gdc.bodies("/files")[0]
    fields = body["filters"]["content"]
    assert {"op": "=", "content": {"field": "access", "value": "open"}} in fields
    assert {"op": "=", "content": {"field": "analysis.workflow_type", "value": "STAR - Counts"}} in fields
    assert {"op": "=", "content": {"field": "data_type", "value": "Gene Expression Quantification"}} in fields
    assert body["format"] == "JSON" and body["size"] == 2

    assert list(matrix.index) == ["TCGA-AA-0001-01A", "TCGA-AA-0002-01A", "TCGA-AA-0004-01A", "TCGA-AA-0005-01A"]
    assert matrix.index.name == "sample"
    assert list(matrix.columns) == [g[0] for g in GENES]  # versioned Ensembl IDs, no N_* rows
    assert (matrix.dtypes == "float64").all()
    assert matrix.loc["TCGA-AA-0001-01A"].tolist() == [10, 20, 30, 40]
    assert matrix.loc["TCGA-AA-0002-01A"].tolist() == [50, 100, 150, 200]  # the aliquot with more counts
    assert meta["unit"] == "counts" and meta["namespace"] == "ensembl" and meta["source"] == "gdc"
    assert meta["project"] == "TCGA-XX" and meta["api"] == api and meta["n_files"] == 5
    assert meta["gene_model"] == "GENCODE v36"
    assert meta["gene_names"]["ENSG00000000003.15"] == "TSPAN6" and len(meta["gene_names"]) == 4
    assert meta["files"]["TCGA-AA-0002-01A"]["file_id"] == FILES[3][0]
    json.dumps(meta)  # travels in the Parquet metadata

    # repeat aliquots: kept the larger one, said so
    assert meta["duplicates"] == [
        {"sample": "TCGA-AA-0002-01A", "kept": FILES[3][0], "kept_counts": 500.0, "dropped": [FILES[2][0]]}
    ]
    assert any(
        "TCGA-AA-0002-01A" in r.getMessage() and FILES[3][0] in r.getMessage() and "dropped" in r.getMessage()
        for r in caplog.records
    )

    # clinical: paged (4 cases, page_size 2), filtered on the kept case ids
    assert gdc.count("POST", "/cases") == 2
    case_filter = gdc.bodies("/cases")[0]["filters"]
    assert case_filter["op"] == "in" and case_filter["content"]["field"] == "case_id"
    assert sorted(case_filter["content"]["value"]) == sorted(case_id(c) for c in CASES)
    s = sheet.set_index("sample")
    assert list(sheet.columns[:6]) == ["sample", "case", "sample_type", "vital_status", "time", "event"]
    assert list(sheet["sample"]) == list(matrix.index)
    assert s.loc["TCGA-AA-0001-01A", "case"] == "TCGA-AA-0001"
    assert set(s["sample_type"]) == {"Primary Tumor"}
    # Dead -> days_to_death, event 1
    assert (s.loc["TCGA-AA-0001-01A", "time"], s.loc["TCGA-AA-0001-01A", "event"]) == (300, 1)
    # Alive -> days_to_last_follow_up, event 0
    assert (s.loc["TCGA-AA-0002-01A", "time"], s.loc["TCGA-AA-0002-01A", "event"]) == (1000, 0)
    # vital status not reported: no time, no event
    assert np.isnan(s.loc["TCGA-AA-0004-01A", "time"]) and np.isnan(s.loc["TCGA-AA-0004-01A", "event"])
    # follow-up 0 days is no usable time; still alive
    assert np.isnan(s.loc["TCGA-AA-0005-01A", "time"]) and s.loc["TCGA-AA-0005-01A", "event"] == 0
    assert s.loc["TCGA-AA-0002-01A", "vital_status"] == "Alive"
    # clinical fields by dotted path; lists -> first element
    assert s.loc["TCGA-AA-0001-01A", "diagnoses.ajcc_pathologic_stage"] == "Stage IIA"
    assert s.loc["TCGA-AA-0002-01A", "diagnoses.ajcc_pathologic_stage"] == "Stage I"
    assert pd.isna(s.loc["TCGA-AA-0005-01A", "diagnoses.ajcc_pathologic_stage"])
    assert s.loc["TCGA-AA-0004-01A", "demographic.gender"] == "male"


def test_second_load_uses_the_cache(tmp_path, gdc_module):
    gdc = make_gdc()
    with serve(gdc) as api:
        first = gdc_module.load(cfg(api), tmp_path / "cache")
        downloads = gdc.count("GET", "/data/")
        second = gdc_module.load(cfg(api), tmp_path / "cache")
    assert downloads == 5
    assert gdc.count("GET", "/data/") == downloads  # no /data request the second time
    pd.testing.assert_frame_equal(first[0], second[0])
    pd.testing.assert_frame_equal(first[1], second[1])


def test_column_choice_and_client_side_sample_type_filter(tmp_path, gdc_module):
    gdc = make_gdc()
    gdc.ignore_filters = True  # a server that lists everything: the sample types are checked again
    with serve(gdc) as api:
        matrix, sheet, meta = gdc_module.load(
            cfg(api, counts_column="stranded_second", clinical_fields=[]), tmp_path / "cache"
        )
        assert gdc.count("GET", f"/data/{FILES[1][0]}") == 0
    assert "TCGA-AA-0001-11A" not in matrix.index
    assert matrix.loc["TCGA-AA-0001-01A"].tolist() == [12, 22, 32, 42]
    # the duplicate rule ranks by library size (unstranded), whatever column is picked
    assert matrix.loc["TCGA-AA-0002-01A"].tolist() == [52, 102, 152, 202]
    assert meta["files_skipped"] == {"sample_type": 1}
    assert list(sheet.columns) == ["sample", "case", "sample_type", "vital_status", "time", "event"]

    with serve(make_gdc()) as api:
        everything, sheet, meta = gdc_module.load(
            cfg(api, sample_types=None, counts_column="tpm_unstranded"), tmp_path / "cache2"
        )
    assert "TCGA-AA-0001-11A" in everything.index and meta["unit"] == "tpm"
    assert sheet.set_index("sample").loc["TCGA-AA-0001-11A", "sample_type"] == "Solid Tissue Normal"
    assert everything.loc["TCGA-AA-0001-11A", "ENSG00000000003.15"] == pytest.approx(2.0)


def test_max_files_stops_paging(tmp_path, gdc_module):
    gdc = make_gdc()
    with serve(gdc) as api:
        matrix, _, meta = gdc_module.load(cfg(api, max_files=2, page_size=2), tmp_path / "cache")
    assert gdc.count("POST", "/files") == 1 and gdc.count("GET", "/data/") == 2
    assert meta["n_files"] == 2 and list(matrix.index) == ["TCGA-AA-0001-01A", "TCGA-AA-0002-01A"]


def test_wrong_md5_is_an_input_error_naming_the_file(tmp_path, gdc_module):
    bad = FILES[4][0]
    gdc = make_gdc(wrong_md5={bad})
    with serve(gdc) as api, pytest.raises(InputError) as err:
        gdc_module.load(cfg(api), tmp_path / "cache")
    text = str(err.value)
    assert bad in text and f"{api}/data/{bad}" in text
    # no copy of the file that failed its checksum stays in the cache
    cached = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert not any(p.read_bytes() == gdc.data[bad] for p in cached)


def test_config_errors_name_the_field(gdc_module):
    with pytest.raises(InputError, match=r"datasets\.brca\.counts_column.*unknown column"):
        gdc_module.options({"project": "TCGA-BRCA", "counts_column": "reads"}, "c.yaml", "datasets.brca")
    with pytest.raises(InputError, match=r"datasets\.brca\.project"):
        gdc_module.options({}, "c.yaml", "datasets.brca")
    with pytest.raises(InputError, match=r"gdc\.page_size"):
        gdc_module.options({"project": "TCGA-BRCA", "page_size": 0})
    opts = gdc_module.options({"project": "TCGA-BRCA"})
    assert opts["api"] == "https://api.gdc.cancer.gov" and opts["workflow"] == "STAR - Counts"
    assert opts["counts_column"] == "unstranded" and opts["sample_types"] is None


def test_empty_listing_names_the_project(tmp_path, gdc_module):
    with serve(make_gdc(files=[])) as api, pytest.raises(InputError, match=r"gdc\.project.*no open 'STAR - Counts'"):
        gdc_module.load(cfg(api), tmp_path / "cache")


def test_read_star_counts_skips_summary_rows(tmp_path, gdc_module):
    path = tmp_path / "x.tsv.gz"
    path.write_bytes(gzip.compress(star_counts(7)))
    table, model = gdc_module.read_star_counts(path, "stranded_first")
    assert model == "GENCODE v36"
    assert list(table.index) == [g[0] for g in GENES]
    assert table["stranded_first"].tolist() == [8, 15, 22, 29]
    with pytest.raises(InputError, match="column not in the STAR - Counts file"):
        gdc_module.read_star_counts(path, "reads")


def test_labels_from_a_sample_level_table_joined_on_the_barcode(tmp_path, gdc_module):
    """HER2 status is not in GDC's case records: take it from a Xena-style clinical matrix whose
    IDs are 15-character sample barcodes (TCGA-AA-0001-01) against GDC's 16 (TCGA-AA-0001-01A)."""
    from faultserver import serve_directory

    table = tmp_path / "hub" / "BRCA_clinicalMatrix"
    table.parent.mkdir()
    table.write_text(
        "sampleID\tHER2_Final_Status_nature2012\n"
        "TCGA-AA-0001-01\tPositive\nTCGA-AA-0002-01\tNegative\nTCGA-AA-0004-01\t\n"
    )
    labels = {
        "her2": {
            "column": "HER2_Final_Status_nature2012",
            "map": {"Positive": "positive", "Negative": "negative"},
            "missing": "negative",
        }
    }
    gdc = make_gdc()
    with serve(gdc) as api, serve_directory(tmp_path / "hub") as hub:
        _, sheet, _ = gdc_module.load(
            cfg(api, labels_table={"url": hub + "BRCA_clinicalMatrix", "labels": labels}), tmp_path / "cache"
        )
    her2 = sheet.set_index("sample")["her2"].to_dict()
    assert her2 == {
        "TCGA-AA-0001-01A": "positive",
        "TCGA-AA-0002-01A": "negative",
        "TCGA-AA-0004-01A": "negative",
        "TCGA-AA-0005-01A": "negative",
    }  # 0004: empty; 0005: absent
