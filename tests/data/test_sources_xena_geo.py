"""UCSC Xena and NCBI GEO sources: format-faithful fixtures written here (gzip Xena TSVs for two
TCGA cohorts with clinical matrices; a GEO series matrix with characteristics and a GPL annotation /
SOFT platform table), served by replacing metasig.data.download.fetch_url with a recorder that maps URLs
to the fixture files. Labels, the TCGA sample-type filter, cohort combination and probe collapsing
are checked, and so are the errors (file, field, problem) for bad inputs."""

import gzip
import hashlib
import importlib
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import metasig
from metasig.data.sources import geo, labels, xena
from metasig.errors import InputError

try:
    from faultserver import serve_directory
except ImportError:  # tests/ imported as a package
    from tests.faultserver import serve_directory

HUB = "https://tcga.xenahubs.net/download"
BRCA_EXPR = "TCGA.BRCA.sampleMap/HiSeqV2_PANCAN.gz"
BRCA_CLIN = "TCGA.BRCA.sampleMap/BRCA_clinicalMatrix"
KIRC_EXPR = "TCGA.KIRC.sampleMap/HiSeqV2_PANCAN.gz"
KIRC_CLIN = "TCGA.KIRC.sampleMap/KIRC_clinicalMatrix"
HER2 = {
    "her2": {
        "column": "HER2_Final_Status_nature2012",
        "map": {"Positive": "positive", "Negative": "negative", "Equivocal": None},
        "missing": "negative",
    }
}

GEO_MATRIX_URL = "https://ftp.ncbi.nlm.nih.gov/geo/series/GSE28nnn/GSE28497/matrix/GSE28497_series_matrix.txt.gz"
GEO_ANNOT_URL = "https://ftp.ncbi.nlm.nih.gov/geo/platforms/GPLnnn/GPL96/annot/GPL96.annot.gz"


# ---- a stand-in for metasig.data.download.fetch_url -----------------------------------------------------


class Served:
    """URL -> local file; records every call as (url, checksum, field)."""

    def __init__(self):
        self.files, self.calls, self.checksum_fields = {}, [], []

    def fetch_url(
        self,
        url,
        cache_dir="cache",
        checksum=None,
        *,
        progress=None,
        field="url",
        config_file="config",
        checksum_field="checksum",
    ):
        self.calls.append((url, checksum, field))
        self.checksum_fields.append(checksum_field)
        if url not in self.files:
            raise InputError(config_file, field, f"download of {url} failed: HTTP 404 Not Found")
        return Path(self.files[url])

    @property
    def urls(self):
        return [c[0] for c in self.calls]


@pytest.fixture
def served(monkeypatch):
    server = Served()
    try:
        module = importlib.import_module("metasig.data.download")
    except ImportError:  # the download module is written in parallel; stand in for it
        module = types.ModuleType("metasig.data.download")
        monkeypatch.setitem(sys.modules, "metasig.data.download", module)
        monkeypatch.setattr(metasig, "download", module, raising=False)
    monkeypatch.setattr(module, "fetch_url", server.fetch_url, raising=False)
    return server


def _gz(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        fh.write(text)
    return path


def _plain(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")
    return path


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _tsv(rows):
    return "".join("\t".join(str(c) for c in row) + "\n" for row in rows)


# ---- Xena fixtures -------------------------------------------------------------------------------

# BRCA: five primary tumours (-01), one normal (-11); A2-A04P has no clinical row
BRCA_SAMPLES = [
    "TCGA-A1-A0SB-01",
    "TCGA-A1-A0SD-01",
    "TCGA-A1-A0SE-01",
    "TCGA-A1-A0SF-01",
    "TCGA-A1-A0SB-11",
    "TCGA-A2-A04P-01",
    "TCGA-A2-A04Q-01",
]
BRCA_GENES = {
    "TP53": [10.1, 9.8, 10.4, 9.9, 10.0, 10.2, 9.7],
    "ERBB2": [15.0, 11.0, 11.2, 12.0, 10.5, 11.1, 14.8],
    "GRB7": [12.5, 8.1, 8.4, 9.0, 7.9, 8.2, 12.0],
    "ESR1": [11.0, 13.2, 12.9, 12.5, 10.0, 13.0, 9.1],
}
BRCA_ERBB2_DUP = [14.0, 10.0, 11.0, 12.0, 10.5, 11.1, 14.0]  # a second ERBB2 row: averaged
BRCA_CLINICAL = [
    [
        "sampleID",
        "AJCC_Stage_nature2012",
        "ER_Status_nature2012",
        "HER2_Final_Status_nature2012",
        "_PATIENT",
        "_cohort",
    ],
    ["TCGA-A1-A0SB-01", "Stage IIA", "Positive", "Positive", "TCGA-A1-A0SB", "TCGA Breast Cancer (BRCA)"],
    ["TCGA-A1-A0SD-01", "Stage IIA", "Positive", "Negative", "TCGA-A1-A0SD", "TCGA Breast Cancer (BRCA)"],
    ["TCGA-A1-A0SE-01", "", "Positive", "", "TCGA-A1-A0SE", "TCGA Breast Cancer (BRCA)"],
    ["TCGA-A1-A0SF-01", "Stage IIB", "Negative", "Equivocal", "TCGA-A1-A0SF", "TCGA Breast Cancer (BRCA)"],
    ["TCGA-A1-A0SB-11", "", "", "", "TCGA-A1-A0SB", "TCGA Breast Cancer (BRCA)"],
    ["TCGA-A2-A04Q-01", "Stage I", "Negative", "Positive", "TCGA-A2-A04Q", "TCGA Breast Cancer (BRCA)"],
    ["TCGA-ZZ-ZZZZ-01", "Stage I", "Negative", "Negative", "TCGA-ZZ-ZZZZ", "TCGA Breast Cancer (BRCA)"],
]
KIRC_SAMPLES = ["TCGA-B0-5691-01", "TCGA-B0-5692-01", "TCGA-B0-5693-11"]
KIRC_GENES = {"TP53": [9.0, 9.1, 9.2], "ERBB2": [10.0, 10.1, 10.2], "ESR1": [8.0, 8.1, 8.2], "VHL": [11.0, 11.1, 11.2]}
KIRC_CLINICAL = [
    ["sampleID", "pathologic_stage", "_PATIENT", "_cohort"],
    ["TCGA-B0-5691-01", "Stage I", "TCGA-B0-5691", "TCGA Kidney Clear Cell Carcinoma (KIRC)"],
    ["TCGA-B0-5692-01", "Stage III", "TCGA-B0-5692", "TCGA Kidney Clear Cell Carcinoma (KIRC)"],
    ["TCGA-B0-5693-11", "", "TCGA-B0-5693", "TCGA Kidney Clear Cell Carcinoma (KIRC)"],
]


def _xena_expression(samples, genes, extra_rows=()):
    rows = [["sample"] + samples] + [[g] + v for g, v in genes.items()] + [list(r) for r in extra_rows]
    return _tsv(rows)


@pytest.fixture
def xena_files(tmp_path, served):
    d = tmp_path / "xena"
    paths = {
        BRCA_EXPR: _gz(d / "brca_expr.gz", _xena_expression(BRCA_SAMPLES, BRCA_GENES, [["ERBB2"] + BRCA_ERBB2_DUP])),
        BRCA_CLIN: _plain(d / "brca_clin.tsv", _tsv(BRCA_CLINICAL)),
        KIRC_EXPR: _gz(d / "kirc_expr.gz", _xena_expression(KIRC_SAMPLES, KIRC_GENES)),
        KIRC_CLIN: _plain(d / "kirc_clin.tsv", _tsv(KIRC_CLINICAL)),
    }
    for rel, path in paths.items():
        served.files[f"{HUB}/{rel}"] = path
    return paths


def _brca(**extra):
    return {"hub": HUB, "cohorts": [{"name": "BRCA", "expression": BRCA_EXPR, "clinical": BRCA_CLIN}], **extra}


def _two(**extra):
    return {
        "hub": HUB,
        "cohorts": [
            {"name": "BRCA", "expression": BRCA_EXPR, "clinical": BRCA_CLIN},
            {"name": "KIRC", "expression": KIRC_EXPR, "clinical": KIRC_CLIN},
        ],
        **extra,
    }


# ---- labels and sample types ---------------------------------------------------------------------


def _sheet():
    return pd.DataFrame(
        {"sample": ["a", "b", "c", "d", "e"], "status": ["Positive", "Negative", np.nan, "Equivocal", "  "]}
    )


@pytest.mark.parametrize(
    "missing, expected",
    [
        ("negative", ["positive", "negative", "negative", "negative", "negative"]),
        ("keep", ["positive", "negative", None, None, None]),
        ("drop", ["positive", "negative"]),
    ],
)
def test_derive_labels_missing_modes(missing, expected):
    cfg = {
        "y": {
            "column": "status",
            "map": {"Positive": "positive", "Negative": "negative", "Equivocal": None},
            "missing": missing,
        }
    }
    out = labels.derive_labels(_sheet(), cfg, "clin.tsv")
    got = [None if pd.isna(v) else v for v in out["y"]]
    assert got == expected
    assert list(out["sample"]) == ["a", "b", "c", "d", "e"][: len(expected)]
    assert list(out.index) == list(range(len(expected)))


def test_derive_labels_without_map_copies_and_default_keeps():
    out = labels.derive_labels(_sheet(), {"y": {"column": "status"}}, "clin.tsv")
    assert [None if pd.isna(v) else v for v in out["y"]] == ["Positive", "Negative", None, "Equivocal", None]


def test_derive_labels_errors_name_file_and_column():
    with pytest.raises(InputError) as err:
        labels.derive_labels(_sheet(), {"y": {"column": "HER2_status"}}, "clin.tsv")
    assert err.value.file == "clin.tsv" and err.value.field == "HER2_status" and "status" in err.value.problem
    with pytest.raises(InputError) as err:
        labels.derive_labels(_sheet(), {"y": {"column": "status", "map": {"Positive": 1, "Negative": 0}}}, "clin.tsv")
    assert err.value.file == "clin.tsv" and err.value.field == "status"
    assert "'Equivocal' (1 sample(s))" in err.value.problem and "labels.y.map" in err.value.problem
    with pytest.raises(InputError, match="unknown key"):
        labels.derive_labels(_sheet(), {"y": {"column": "status", "mapping": {}}}, "clin.tsv", config_file="c.yaml")


def test_sample_type_filter_kinds():
    ids = ["TCGA-A1-A0SB-01A-11R-A144-07", "TCGA-A1-A0SB-11", "TCGA-A1-A0SD-01", "TCGA-A1-A0SD-06", "weird"]
    assert labels.sample_type_filter(ids) == ["TCGA-A1-A0SB-01A-11R-A144-07", "TCGA-A1-A0SD-01"]
    assert list(labels.sample_type_filter(pd.Index(ids), ["11", 6])) == ["TCGA-A1-A0SB-11", "TCGA-A1-A0SD-06"]
    sheet = pd.DataFrame({"sample": ids, "x": range(5)})
    out = labels.sample_type_filter(sheet, [1])
    assert list(out["x"]) == [0, 2] and list(out.index) == [0, 1]
    assert labels.sample_type_filter(ids, None) is ids
    assert labels.sample_type("TCGA-A1-A0SB-11A") == "11" and labels.sample_type("GSM1") is None
    with pytest.raises(InputError, match="no sample ID is a TCGA barcode"):
        labels.sample_type_filter(["GSM1", "GSM2"], ["01"])
    with pytest.raises(InputError, match="two-digit"):
        labels.sample_type_filter(ids, ["tumour"])


# ---- Xena --------------------------------------------------------------------------------------


def test_xena_brca_her2_missing_negative(xena_files, served):
    matrix, sheet, meta = xena.load(_brca(sample_types=["01"], labels=HER2), "cache", "config.yaml")
    assert served.urls == [f"{HUB}/{BRCA_EXPR}", f"{HUB}/{BRCA_CLIN}"]
    # A2-A04P has no clinical row, the -11 normal is filtered out
    kept = ["TCGA-A1-A0SB-01", "TCGA-A1-A0SD-01", "TCGA-A1-A0SE-01", "TCGA-A1-A0SF-01", "TCGA-A2-A04Q-01"]
    assert matrix.shape == (5, 4) and list(matrix.index) == kept and matrix.index.name == "sample"
    assert list(matrix.columns) == ["TP53", "ERBB2", "GRB7", "ESR1"] and (matrix.dtypes == "float64").all()
    assert list(sheet["sample"]) == kept and list(sheet.columns[:3]) == ["sample", "cohort", "her2"]
    assert sheet["her2"].tolist() == ["positive", "negative", "negative", "negative", "positive"]
    assert set(sheet["cohort"]) == {"BRCA"} and "HER2_Final_Status_nature2012" in sheet.columns
    # the duplicated ERBB2 row is averaged
    assert matrix.loc["TCGA-A1-A0SB-01", "ERBB2"] == pytest.approx(14.5)
    assert matrix.loc["TCGA-A1-A0SD-01", "GRB7"] == pytest.approx(8.1)
    assert meta["unit"] == "log2" and meta["namespace"] == "symbol" and meta["source"] == "xena"
    assert [f["url"] for f in meta["files"]] == served.urls
    assert meta["files"][0]["sha256"] == hashlib.sha256(xena_files[BRCA_EXPR].read_bytes()).hexdigest()
    stats = meta["cohorts"]["BRCA"]
    assert stats["without_clinical"] == 1 and stats["clinical_without_expression"] == 1
    assert stats["other_sample_types"] == 1 and stats["duplicate_genes_averaged"] == 1 and stats["samples"] == 5
    assert meta["labels"] == {"her2": {"negative": 3, "positive": 2}} and meta["sample_types"] == ["01"]


def test_xena_drop_missing_no_type_filter_pins_and_unit(xena_files, served):
    her2 = {"her2": {**HER2["her2"], "missing": "drop"}}
    pin = "ab" * 32
    matrix, sheet, meta = xena.load(
        _brca(labels=her2, unit="log2_norm_count", sha256={BRCA_EXPR: pin}), "cache", "config.yaml"
    )
    # the normal (no HER2 value) and the empty / equivocal tumours are dropped
    assert list(sheet["sample"]) == ["TCGA-A1-A0SB-01", "TCGA-A1-A0SD-01", "TCGA-A2-A04Q-01"]
    assert sheet["her2"].tolist() == ["positive", "negative", "positive"]
    assert list(matrix.index) == list(sheet["sample"]) and meta["unit"] == "log2_norm_count"
    assert served.calls[0] == (f"{HUB}/{BRCA_EXPR}", f"sha256:{pin}", "cohorts[0].expression")
    assert served.checksum_fields[0] == f"sha256.{BRCA_EXPR}"
    assert served.calls[1] == (f"{HUB}/{BRCA_CLIN}", None, "cohorts[0].clinical")


def test_xena_two_cohorts_common_genes_and_cohort_label(xena_files, served):
    matrix, sheet, meta = xena.load(_two(sample_types=["01"]), "cache", "config.yaml", where="datasets.pancan")
    assert served.urls == [f"{HUB}/{BRCA_EXPR}", f"{HUB}/{BRCA_CLIN}", f"{HUB}/{KIRC_EXPR}", f"{HUB}/{KIRC_CLIN}"]
    assert list(matrix.columns) == ["TP53", "ERBB2", "ESR1"]  # GRB7 (BRCA only) and VHL (KIRC only) dropped
    assert meta["genes_dropped"] == 2
    assert matrix.shape == (7, 3) and list(matrix.index) == list(sheet["sample"])
    assert sheet["cohort"].value_counts().to_dict() == {"BRCA": 5, "KIRC": 2}
    assert "TCGA-B0-5693-11" not in set(sheet["sample"])
    assert matrix.loc["TCGA-B0-5692-01", "ERBB2"] == pytest.approx(10.1)
    # clinical columns of both cohorts are kept; a cohort without a column has empty cells there
    assert sheet.loc[sheet["cohort"] == "KIRC", "ER_Status_nature2012"].isna().all()
    assert sheet.loc[sheet["cohort"] == "KIRC", "pathologic_stage"].tolist() == ["Stage I", "Stage III"]


def test_xena_expression_only_cohort(xena_files, served):
    cfg = {"hub": HUB, "cohorts": [{"name": "KIRC", "expression": KIRC_EXPR}]}
    matrix, sheet, _ = xena.load(cfg, "cache", "config.yaml")
    assert matrix.shape == (3, 4) and list(sheet.columns) == ["sample", "cohort", "patient"]
    assert sheet["patient"].tolist() == [s[:12] for s in sheet["sample"]]  # the TCGA participant
    assert served.urls == [f"{HUB}/{KIRC_EXPR}"]
    # a label may map the cohort name; one that needs a clinical column says the cohort has none
    _, sheet, _ = xena.load(
        {**cfg, "labels": {"organ": {"column": "cohort", "map": {"KIRC": "kidney"}}}}, "cache", "config.yaml"
    )
    assert sheet["organ"].tolist() == ["kidney"] * 3
    with pytest.raises(InputError) as err:
        xena.load({**cfg, "labels": HER2}, "cache", "config.yaml")
    assert err.value.field == "cohorts[0].clinical" and "no clinical matrix" in err.value.problem


def test_xena_label_column_missing_in_one_cohort(xena_files, served):
    with pytest.raises(InputError) as err:
        xena.load(_two(labels=HER2), "cache", "config.yaml")
    assert err.value.file == f"{HUB}/{KIRC_CLIN}" and err.value.field == "HER2_Final_Status_nature2012"
    assert "not found" in err.value.problem


def test_xena_unexpected_label_value(xena_files, served):
    her2 = {"her2": {**HER2["her2"], "map": {"Positive": "positive", "Negative": "negative"}}}
    with pytest.raises(InputError) as err:
        xena.load(_brca(labels=her2), "cache", "config.yaml")
    assert err.value.file == f"{HUB}/{BRCA_CLIN}" and err.value.field == "HER2_Final_Status_nature2012"
    assert "'Equivocal'" in err.value.problem


def test_xena_no_shared_samples(tmp_path, xena_files, served):
    served.files[f"{HUB}/{BRCA_CLIN}"] = _plain(tmp_path / "other.tsv", _tsv(KIRC_CLINICAL))
    with pytest.raises(InputError) as err:
        xena.load(_brca(), "cache", "config.yaml")
    assert err.value.file == f"{HUB}/{BRCA_CLIN}" and err.value.field == "sampleID"
    assert "no sample ID is shared" in err.value.problem and BRCA_EXPR in err.value.problem


def test_xena_truncated_gzip_names_the_file(xena_files, served):
    _truncate(xena_files[BRCA_EXPR])
    with pytest.raises(InputError) as err:
        xena.load(_brca(), "cache", "config.yaml")
    assert err.value.file == f"{HUB}/{BRCA_EXPR}" and "truncated or corrupt" in err.value.problem


def test_xena_bad_clinical_header_and_config(tmp_path, xena_files, served):
    served.files[f"{HUB}/{BRCA_CLIN}"] = _plain(tmp_path / "bad.tsv", "patient\tx\nTCGA-A1-A0SB-01\t1\n")
    with pytest.raises(InputError, match="sampleID") as err:
        xena.load(_brca(), "cache", "config.yaml")
    assert err.value.field == "patient"
    with pytest.raises(InputError) as err:
        xena.load({"cohorts": [{"name": "BRCA"}]}, "cache", "config.yaml", where="datasets.b")
    assert err.value.file == "config.yaml" and err.value.field == "datasets.b.cohorts[0].expression"


# ---- GEO -----------------------------------------------------------------------------------------

GSMS = ["GSM706001", "GSM706002", "GSM706003", "GSM706004", "GSM706005"]
# probe -> (platform symbol or None if absent from the platform table, base level)
PROBES = {
    "1007_s_at": ("DDR1 /// MIR4640", 8.0),
    "1053_at": ("RFC2", 5.0),
    "117_at": ("HSPA6", 6.0),
    "121_at": ("PAX8", 7.0),
    "1294_at": ("UBA7 /// MIR5193", 3.0),
    "AFFX-BioB-5_at": ("", 9.0),
    "200_at": ("RFC2", 9.0),
    "201_at": ("RFC2", 7.0),
    "202_at": ("DDR1", 4.0),
    "999_unannotated_at": (None, 2.0),
}


def _probe_values():
    return {p: [base + 0.1 * j for j in range(len(GSMS))] for p, (_, base) in PROBES.items()}


def _series_matrix(truncated=False):

    def q(items):
        return "\t".join(f'"{i}"' for i in items)

    values = _probe_values()
    lines = [
        '!Series_title\t"Pediatric ALL subtypes (test)"',
        '!Series_geo_accession\t"GSE28497"',
        '!Series_platform_id\t"GPL96"',
        "",
        "!Sample_title\t" + q(["B-ALL 1", "B-ALL 2", "T-ALL 1", "T-ALL 2", "MLL 1"]),
        "!Sample_geo_accession\t" + q(GSMS),
        "!Sample_status\t" + q(["Public on Apr 01 2011"] * 5),
        "!Sample_source_name_ch1\t" + q(["bone marrow"] * 4 + ["peripheral blood"]),
        "!Sample_characteristics_ch1\t"
        + q(["cell type: B-ALL", "cell type: B-ALL", "cell type: T-ALL", "cell type: T-ALL", "cell type: MLL"]),
        "!Sample_characteristics_ch1\t" + q(["gender: F", "gender: M", "age: 10", "gender: F", ""]),
        "!Sample_characteristics_ch1\t" + q(["age: 5", "age: 7", "gender: M", "age: 3", ""]),
        "!Sample_platform_id\t" + q(["GPL96"] * 5),
        "!series_matrix_table_begin",
        q(["ID_REF"] + GSMS),
    ]
    for probe, vals in values.items():
        cells = [f"{v:.3f}" for v in vals]
        if probe == "117_at":
            cells[2] = "null"
        lines.append(f'"{probe}"\t' + "\t".join(cells))
    if not truncated:
        lines.append("!series_matrix_table_end")
    return "\n".join(lines) + "\n"


def _annot():
    head = [
        "^Annotation",
        "!Annotation_date = Jun 13 2018",
        "!Annotation_platform = GPL96",
        "!Annotation_platform_title = [HG-U133A] Affymetrix Human Genome U133A Array",
        "#ID = Identifier for the platform feature",
        "#Gene symbol = A gene symbol",
        "^PLATFORM = GPL96",
        "!platform_table_begin",
        "ID\tGene title\tGene symbol\tGene ID\tChromosome annotation",
    ]
    rows = [
        f"{p}\ttitle of {p}\t{sym}\t{i}\tChromosome 6"
        for i, (p, (sym, _)) in enumerate(PROBES.items())
        if sym is not None
    ]
    return "\n".join(head + rows + ["!platform_table_end"]) + "\n"


def _family_soft():
    head = [
        "^DATABASE = GeoMiame",
        "!Database_name = Gene Expression Omnibus (GEO)",
        "^PLATFORM = GPL96",
        "!Platform_title = [HG-U133A] Affymetrix Human Genome U133A Array",
        "#ID = Affymetrix Probe Set ID",
        "#Gene Symbol = ",
        "!platform_table_begin",
        "ID\tGB_ACC\tSPOT_ID\tSpecies Scientific Name\tGene Title\tGene Symbol\tENTREZ_GENE_ID",
    ]
    rows = [
        f'{p}\tU48705\t\tHomo sapiens\ttitle "quoted\t{sym}\t780' for p, (sym, _) in PROBES.items() if sym is not None
    ]
    tail = [
        "!platform_table_end",
        "^SAMPLE = GSM706001",
        "!Sample_title = B-ALL 1",
        "!sample_table_begin",
        "ID_REF\tVALUE",
        "1007_s_at\t8.0",
        "EXTRA_at\t1.0",
        "!sample_table_end",
    ]
    return "\n".join(head + rows + tail) + "\n"


@pytest.fixture
def geo_files(tmp_path, served):
    paths = {
        "matrix": _gz(tmp_path / "geo" / "GSE28497_series_matrix.txt.gz", _series_matrix()),
        "annot": _gz(tmp_path / "geo" / "GPL96.annot.gz", _annot()),
        "soft": _gz(tmp_path / "geo" / "GPL96_family.soft.gz", _family_soft()),
    }
    served.files[GEO_MATRIX_URL] = paths["matrix"]
    served.files[GEO_ANNOT_URL] = paths["annot"]
    served.files["https://example.org/GPL96_family.soft.gz"] = paths["soft"]
    return paths


def test_geo_folder_rule():
    assert geo.nnn_folder("GSE28497") == "GSE28nnn" and geo.nnn_folder("GSE1234") == "GSE1nnn"
    assert geo.nnn_folder("GSE123") == "GSEnnn" and geo.nnn_folder("GPL96") == "GPLnnn"
    assert geo.nnn_folder("GPL13158") == "GPL13nnn"
    assert geo.series_matrix_url("GSE103584") == (
        "https://ftp.ncbi.nlm.nih.gov/geo/series/GSE103nnn/GSE103584/matrix/GSE103584_series_matrix.txt.gz"
    )


def test_geo_max_mean_sheet_and_urls(geo_files, served):
    matrix, sheet, meta = geo.load({"series": "GSE28497"}, "cache", "config.yaml")
    assert served.urls == [GEO_MATRIX_URL, GEO_ANNOT_URL]
    assert list(matrix.index) == GSMS and matrix.index.name == "sample"
    # genes in order of their first probe; no symbol / not in the platform -> dropped
    assert list(matrix.columns) == ["DDR1", "RFC2", "HSPA6", "PAX8", "UBA7"] and (matrix.dtypes == "float64").all()
    # max_mean: RFC2 <- 200_at (base 9 beats 7 and 5), DDR1 <- 1007_s_at (8 beats 4)
    assert matrix["RFC2"].tolist() == pytest.approx([9.0, 9.1, 9.2, 9.3, 9.4])
    assert matrix["DDR1"].tolist() == pytest.approx([8.0, 8.1, 8.2, 8.3, 8.4])
    assert np.isnan(matrix.loc["GSM706003", "HSPA6"]) and matrix.loc["GSM706004", "HSPA6"] == pytest.approx(6.3)
    assert meta["namespace"] == "symbol" and meta["unit"] == "microarray" and meta["source"] == "geo"
    assert meta["platform"] == "GPL96" and meta["probes"] == 10 and meta["probes_without_symbol"] == 2
    assert meta["probes_multi_symbol"] == 2 and meta["genes"] == 5
    assert [f["kind"] for f in meta["files"]] == ["series_matrix", "platform"]
    assert meta["files"][0]["sha256"] == hashlib.sha256(geo_files["matrix"].read_bytes()).hexdigest()
    # the sheet: accession, title, source, one column per characteristics key (keys differ per sample)
    assert list(sheet.columns) == ["sample", "title", "source_name", "cell type", "gender", "age"]
    assert list(sheet["sample"]) == GSMS and sheet["title"].iloc[2] == "T-ALL 1"
    assert sheet["gender"].tolist()[:4] == ["F", "M", "M", "F"] and pd.isna(sheet["gender"].iloc[4])
    assert sheet["age"].tolist()[:4] == ["5", "7", "10", "3"]
    assert sheet["source_name"].iloc[4] == "peripheral blood"


def test_geo_mean_collapse_with_soft_platform_and_labels(geo_files, served):
    cfg = {
        "series": "GSE28497",
        "collapse": "mean",
        "platform_url": "https://example.org/GPL96_family.soft.gz",
        "labels": {
            "subtype": {"column": "cell type", "map": {"B-ALL": "B", "T-ALL": "T", "MLL": None}, "missing": "drop"}
        },
    }
    matrix, sheet, meta = geo.load(cfg, "cache", "config.yaml")
    assert served.urls == [GEO_MATRIX_URL, "https://example.org/GPL96_family.soft.gz"]
    assert list(matrix.columns) == ["DDR1", "RFC2", "HSPA6", "PAX8", "UBA7"]  # sample-table probes ignored
    assert matrix["RFC2"].tolist() == pytest.approx([7.0, 7.1, 7.2, 7.3])  # mean of bases 5, 9, 7
    assert matrix["DDR1"].tolist() == pytest.approx([6.0, 6.1, 6.2, 6.3])  # mean of 8 and 4
    assert list(sheet["sample"]) == GSMS[:4] and list(matrix.index) == GSMS[:4]
    assert list(sheet.columns[:2]) == ["sample", "subtype"] and sheet["subtype"].tolist() == ["B", "B", "T", "T"]
    assert meta["labels"] == {"subtype": {"B": 2, "T": 2}}


def test_geo_keep_probes_needs_no_platform(geo_files, served):
    matrix, _, meta = geo.load({"series": "GSE28497", "collapse": "keep"}, "cache", "config.yaml")
    assert served.urls == [GEO_MATRIX_URL]
    assert list(matrix.columns) == list(PROBES) and matrix.shape == (5, 10)
    assert meta["namespace"] == "probe" and meta["platform"] == "GPL96"
    assert matrix.loc["GSM706005", "999_unannotated_at"] == pytest.approx(2.4)


def test_geo_errors(tmp_path, geo_files, served):
    with pytest.raises(InputError) as err:
        geo.load({"series": "GSE28497", "labels": {"subtype": {"column": "disease state"}}}, "cache", "config.yaml")
    assert err.value.file == GEO_MATRIX_URL and err.value.field == "disease state" and "cell type" in err.value.problem
    with pytest.raises(InputError) as err:
        geo.load({"series": "GSE28497", "collapse": "median"}, "cache", "config.yaml", where="datasets.all")
    assert err.value.field == "datasets.all.collapse"
    with pytest.raises(InputError) as err:
        geo.load({"series": "GSE28497", "platform": "GPL570"}, "cache", "config.yaml")
    assert err.value.field == "platform" and "GPL96" in err.value.problem
    # a series matrix cut before its table end, then a truncated gzip: errors name the URL
    _gz(geo_files["matrix"], _series_matrix(truncated=True))
    with pytest.raises(InputError) as err:
        geo.load({"series": "GSE28497", "collapse": "keep"}, "cache", "config.yaml")
    assert err.value.file == GEO_MATRIX_URL and "truncated" in err.value.problem
    _gz(geo_files["matrix"], _series_matrix())
    _truncate(geo_files["annot"])
    with pytest.raises(InputError) as err:
        geo.load({"series": "GSE28497"}, "cache", "config.yaml")
    assert err.value.file == GEO_ANNOT_URL and "truncated or corrupt" in err.value.problem
    _truncate(geo_files["matrix"])
    with pytest.raises(InputError) as err:
        geo.load({"series": "GSE28497"}, "cache", "config.yaml")
    assert err.value.file == GEO_MATRIX_URL and "truncated or corrupt" in err.value.problem


# ---- through the real downloader and a loopback server -------------------------------------------


def test_xena_and_geo_over_loopback_with_real_download(tmp_path):
    download = pytest.importorskip("metasig.data.download")
    assert callable(download.fetch_url)
    root = tmp_path / "www"
    expr = _gz(root / "xena" / BRCA_EXPR, _xena_expression(BRCA_SAMPLES, BRCA_GENES))
    _plain(root / "xena" / BRCA_CLIN, _tsv(BRCA_CLINICAL))
    _gz(root / "geo/series/GSE28nnn/GSE28497/matrix/GSE28497_series_matrix.txt.gz", _series_matrix())
    _gz(root / "geo/platforms/GPLnnn/GPL96/annot/GPL96.annot.gz", _annot())
    sha = hashlib.sha256(expr.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    with serve_directory(root) as base:
        cfg = _brca(hub=base + "xena", sample_types=["01"], labels=HER2, sha256={BRCA_EXPR: sha})
        matrix, sheet, meta = xena.load(cfg, cache, "config.yaml")
        assert matrix.shape == (5, 4) and sheet["her2"].tolist().count("positive") == 2
        assert meta["files"][0] == {
            "cohort": "BRCA",
            "kind": "expression",
            "url": f"{base}xena/{BRCA_EXPR}",
            "sha256": sha,
        }
        matrix, _, meta = geo.load({"series": "GSE28497", "base": base + "geo/series"}, cache, "config.yaml")
        assert list(matrix.columns) == ["DDR1", "RFC2", "HSPA6", "PAX8", "UBA7"]
        paths = [r.path for r in base.requests if r.status == 200]
        assert "/geo/series/GSE28nnn/GSE28497/matrix/GSE28497_series_matrix.txt.gz" in paths
        assert "/geo/platforms/GPLnnn/GPL96/annot/GPL96.annot.gz" in paths
        # a wrong pin is the downloader's checksum error, naming the pin's config field
        with pytest.raises(InputError) as err:
            xena.load(_brca(hub=base + "xena", sha256={BRCA_CLIN: "0" * 64}), tmp_path / "cache2", "config.yaml")
        assert err.value.field == f"sha256.{BRCA_CLIN}" and "checksum" in err.value.problem
