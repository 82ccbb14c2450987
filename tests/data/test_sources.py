"""Data sources: built-in datasets, local tables in both orientations and formats, and checksummed
URL downloads through a loopback server (cache reuse, retries, checksum and host failures)."""

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metasig.data import download, retry, sources
from metasig.data.sources import builtin, table
from metasig.data.sources import url as url_source
from metasig.errors import InputError

try:
    from faultserver import closed_port_url, serve_directory
except ImportError:  # tests/ imported as a package
    from tests.faultserver import closed_port_url, serve_directory

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NSCLC = SHARED_DATA / "nsclc_gse103584_119patients.csv"
NSCLC_GENES = [
    "LRIG1",
    "HPGD",
    "GDF15",
    "CDH2",
    "POSTN",
    "VCAN",
    "PDGFRA",
    "VCAM1",
    "CD44",
    "CD48",
    "CD4",
    "LYL1",
    "SPI1",
    "CD37",
    "VIM",
    "LMO2",
    "EGR2",
    "BGN",
    "COL4A1",
    "COL5A1",
    "COL5A2",
]


# ---- built-in ----------------------------------------------------------------------------------


def test_wdbc_shape_names_and_labels():
    matrix, sheet, meta = sources.load(
        {"source": "builtin", "name": "wdbc", "unit": "features", "namespace": "feature"}, "wdbc"
    )
    assert matrix.shape == (569, 30)
    assert (matrix.dtypes == "float64").all()
    assert list(matrix.columns[:3]) == ["mean_radius", "mean_texture", "mean_perimeter"]
    assert "worst_fractal_dimension" in matrix.columns and "mean_concave_points" in matrix.columns
    assert matrix.index[0] == "wdbc_0001" and matrix.index[-1] == "wdbc_0569"
    assert list(sheet.columns) == ["sample", "diagnosis"]
    assert list(sheet["sample"]) == list(matrix.index)
    assert sheet["diagnosis"].value_counts().to_dict() == {"benign": 357, "malignant": 212}
    # sklearn's target 0 is malignant: the first WDBC case (radius 17.99) is malignant
    assert sheet["diagnosis"].iloc[0] == "malignant" and matrix["mean_radius"].iloc[0] == pytest.approx(17.99)
    assert meta["unit"] == "features" and meta["source"] == "builtin" and meta["name"] == "wdbc"


def test_gse7390_probes_and_clinical_sheet():
    from sksurv.datasets import load_breast_cancer

    matrix, sheet, meta = builtin.load("gse7390")
    X, y = load_breast_cancer()
    assert matrix.shape == (198, 76)
    assert not any(c.startswith("X") for c in matrix.columns)
    assert "200726_at" in matrix.columns
    assert matrix["200726_at"].tolist() == X["X200726_at"].tolist()
    assert matrix.index[0] == "gse7390_001"
    assert list(sheet.columns[:3]) == ["sample", "time", "event"]
    assert {"age", "size", "grade", "er"} <= set(sheet.columns)
    assert np.array_equal(sheet["time"].to_numpy(), y["t.tdm"]) and (sheet["time"] > 0).all()
    assert set(sheet["event"]) == {0, 1} and sheet["event"].sum() == y["e.tdm"].sum()
    for col in ("age", "size", "grade", "er"):
        assert pd.api.types.is_numeric_dtype(sheet[col]), col
    assert set(sheet["grade"].dropna()) == {1.0, 2.0, 3.0}
    assert sheet["grade"].isna().sum() == (X["grade"] == "unkown").sum() > 0
    assert (sheet["er"] == 1).sum() == (X["er"] == "positive").sum()
    assert meta["namespace"] == "probe"


def test_unknown_builtin_names_the_field():
    with pytest.raises(InputError) as err:
        sources.load({"source": "builtin", "name": "nope"}, "d", config_file="cfg.yaml")
    assert err.value.file == "cfg.yaml" and err.value.field == "datasets.d.name" and "wdbc" in err.value.problem


# ---- local tables ------------------------------------------------------------------------------

GENES = ["ZNF1", "ABC2", "TP53"]  # deliberately unsorted: order must be kept
SAMPLES = ["007", "S2", "S3", "S4"]  # '007' must stay a string


def _expected():
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.uniform(0, 10, (4, 3)).round(4), index=pd.Index(SAMPLES, name="sample"), columns=GENES)


def _write(frame, path, fmt):
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep="," if fmt == "csv" else "\t", index=False)


@pytest.mark.parametrize("fmt,name", [("csv", "m.csv"), ("tsv", "m.tsv.gz"), ("parquet", "m.parquet")])
def test_samples_by_genes_with_sheet_columns(tmp_path, fmt, name):
    expected = _expected()
    raw = expected.reset_index().rename(columns={"sample": "id"})
    raw.insert(2, "status", ["dead", "alive", "alive", "dead"])
    raw["age"] = [50, 60, 70, 80]
    _write(raw, tmp_path / name, fmt)
    matrix, sheet = table.read(tmp_path / name, id_column="id", sheet_columns=["status", "age"])
    pd.testing.assert_frame_equal(matrix, expected)
    assert list(sheet.columns) == ["sample", "status", "age"]
    assert sheet["sample"].tolist() == SAMPLES and sheet["status"].tolist() == ["dead", "alive", "alive", "dead"]


@pytest.mark.parametrize("fmt,name", [("csv", "g.csv.gz"), ("tsv", "g.txt"), ("parquet", "g.pq")])
def test_genes_by_samples(tmp_path, fmt, name):
    expected = _expected()
    raw = expected.T.reset_index().rename(columns={"index": "gene"})
    _write(raw, tmp_path / name, fmt)
    matrix, sheet = table.read(tmp_path / name, orientation="genes_by_samples")  # id column: the first
    pd.testing.assert_frame_equal(matrix, expected)
    assert sheet["sample"].tolist() == SAMPLES


def test_parquet_with_index_and_explicit_format(tmp_path):
    expected = _expected()
    expected.to_parquet(tmp_path / "noext")
    matrix, _ = table.read(tmp_path / "noext", fmt="parquet")
    pd.testing.assert_frame_equal(matrix, expected)


def test_non_numeric_value_names_file_column_and_value(tmp_path):
    (tmp_path / "m.csv").write_text("id,A,B\ns1,1.0,2\ns2,oops,3\n")
    with pytest.raises(InputError) as err:
        table.read(tmp_path / "m.csv")
    assert err.value.file.endswith("m.csv") and err.value.field == "A"
    assert "'oops'" in err.value.problem and "s2" in err.value.problem and "sheet_columns" in err.value.problem
    (tmp_path / "g.tsv").write_text("gene\ts1\ts2\nTP53\t1\tx?\n")
    with pytest.raises(InputError) as err:
        table.read(tmp_path / "g.tsv", orientation="genes_by_samples")
    assert err.value.field == "s2" and "'x?'" in err.value.problem and "TP53" in err.value.problem


def test_table_config_errors(tmp_path):
    (tmp_path / "m.csv").write_text("id,A\ns1,1\n")
    with pytest.raises(InputError) as err:
        table.read(tmp_path / "m.csv", id_column="Case_ID")
    assert err.value.field == "Case_ID" and "id, A" in err.value.problem
    with pytest.raises(InputError) as err:
        table.read(tmp_path / "m.csv", sheet_columns=["Status"])
    assert err.value.field == "Status"
    (tmp_path / "m.xlsx").write_text("x")
    with pytest.raises(InputError) as err:
        sources.load({"source": "table", "matrix": "m.xlsx"}, "d", base_dir=tmp_path, config_file="c.yaml")
    assert err.value.file == "c.yaml" and err.value.field == "datasets.d.format"


def test_duplicate_header_is_kept_not_renamed(tmp_path):
    # pandas would rename the second A to 'A.1' and hide the duplicate gene from validation
    (tmp_path / "m.csv").write_text("id,A,A\ns1,1,2\n")
    matrix, _ = table.read(tmp_path / "m.csv")
    assert list(matrix.columns) == ["A", "A"]


def test_load_table_merges_separate_sample_sheet(tmp_path):
    expected = _expected()
    raw = expected.reset_index()
    raw["grp"] = ["a", "b", "a", "b"]
    raw.to_csv(tmp_path / "m.csv", index=False)
    pd.DataFrame({"sample": SAMPLES[::-1], "age": [1, 2, 3, 4]}).to_csv(tmp_path / "s.tsv", sep="\t", index=False)
    cfg = {
        "source": "table",
        "matrix": "m.csv",
        "sheet_columns": ["grp"],
        "samples": "s.tsv",
        "unit": "tpm",
        "namespace": "symbol",
    }
    matrix, sheet, meta = sources.load(cfg, "d", base_dir=tmp_path)
    pd.testing.assert_frame_equal(matrix, expected)
    assert list(sheet.columns) == ["sample", "grp", "age"]
    assert sheet["sample"].tolist() == SAMPLES and sheet["age"].tolist() == [4, 3, 2, 1]
    assert meta["unit"] == "tpm" and meta["source"] == "table"
    assert meta["sha256"] == hashlib.sha256((tmp_path / "m.csv").read_bytes()).hexdigest()
    # a sheet that lacks a matrix sample is an error naming the sheet and the sample
    pd.DataFrame({"sample": SAMPLES[:3], "age": [1, 2, 3]}).to_csv(tmp_path / "s.tsv", sep="\t", index=False)
    with pytest.raises(InputError) as err:
        sources.load(cfg, "d", base_dir=tmp_path)
    assert err.value.file == "s.tsv" and err.value.field == "sample" and "S4" in err.value.problem


def test_real_nsclc_table():
    if not NSCLC.is_file():
        pytest.skip(f"shared NSCLC table not found at {NSCLC}")
    cfg = {
        "source": "table",
        "matrix": str(NSCLC),
        "id_column": "Case_ID",
        "sheet_columns": ["SurvivalStatus", "PathologicalMstage"],
        "unit": "fpkm",
        "namespace": "symbol",
    }
    matrix, sheet, meta = sources.load(cfg, "nsclc")
    assert matrix.shape == (119, 21)
    assert list(matrix.columns) == NSCLC_GENES
    assert matrix.index[0] == "R01-005" and (matrix.dtypes == "float64").all()
    assert list(sheet.columns) == ["sample", "SurvivalStatus", "PathologicalMstage"]
    assert sheet["SurvivalStatus"].value_counts().to_dict() == {0: 77, 1: 42}
    sums = dict(line.split()[::-1] for line in (SHARED_DATA / "SHA256SUMS").read_text().splitlines())
    assert meta["sha256"] == sums[NSCLC.name]


# ---- URL downloads -----------------------------------------------------------------------------


@pytest.fixture
def no_sleep(monkeypatch):
    """The url source waits 1, 2, 4 s between retries; record the waits instead of sleeping."""
    waits = []
    monkeypatch.setattr(retry.time, "sleep", waits.append)
    return waits


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    raw = _expected().reset_index()
    raw["label"] = ["x", "y", "x", "y"]
    raw.to_csv(root / "data.csv", index=False)
    with gzip.open(root / "data.tsv.gz", "wt") as handle:
        raw.to_csv(handle, sep="\t", index=False)
    return root


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _url_cfg(url, sha):
    return {
        "source": "url",
        "url": url,
        "sha256": sha,
        "sheet_columns": ["label"],
        "unit": "tpm",
        "namespace": "symbol",
    }


def test_url_download_then_cache_hit(tmp_path, served, no_sleep):
    cache = tmp_path / "cache"
    sha = _sha(served / "data.csv")
    with serve_directory(served) as base:
        cfg = _url_cfg(base + "data.csv", sha)
        matrix, sheet, meta = sources.load(cfg, "d", cache_dir=cache)
        assert base.count("/data.csv") == 1
        pd.testing.assert_frame_equal(matrix, _expected())
        assert sheet["label"].tolist() == ["x", "y", "x", "y"]
        assert meta == {
            "source": "url",
            "url": base + "data.csv",
            "sha256": sha,
            "file": "data.csv",
            "unit": "tpm",
            "namespace": "symbol",
        }
        cached = download.cache_folder(base + "data.csv", cache) / "data.csv"
        assert cached.is_file() and _sha(cached) == sha
        # second run: nothing downloaded
        again, _, _ = sources.load(cfg, "d", cache_dir=cache)
        assert base.count() == 1
        pd.testing.assert_frame_equal(again, matrix)
        # same content under another URL: the cached copy is linked, not downloaded
        shutil.copy(served / "data.csv", served / "copy.csv")
        sources.load(_url_cfg(base + "copy.csv?x=1", sha), "d", cache_dir=cache)
        assert base.count() == 1
    assert no_sleep == []


def test_url_gzip_tsv_format_from_url(tmp_path, served, no_sleep):
    with serve_directory(served) as base:
        matrix, _, _ = sources.load(
            _url_cfg(base + "data.tsv.gz", _sha(served / "data.tsv.gz")), "d", cache_dir=tmp_path / "c"
        )
    pd.testing.assert_frame_equal(matrix, _expected())


def test_url_retries_after_http_500(tmp_path, served, no_sleep):
    with serve_directory(served, fail_first=2) as base:
        matrix, _, _ = sources.load(
            _url_cfg(base + "data.csv", _sha(served / "data.csv")), "d", cache_dir=tmp_path / "c"
        )
        assert [r.status for r in base.requests] == [500, 500, 200]
    assert no_sleep == [1, 2]
    assert matrix.shape == (4, 3)


def test_url_persistent_http_error_names_url(tmp_path, served, no_sleep):
    with serve_directory(served) as base:
        url = base + "missing.csv"
        with pytest.raises(InputError) as err:
            sources.load(_url_cfg(url, "0" * 64), "d", cache_dir=tmp_path / "c", config_file="c.yaml")
        assert base.count("/missing.csv") == 1  # a client error is not retried
    assert err.value.file == "c.yaml" and err.value.field == "datasets.d.url"
    assert url in err.value.problem and "HTTP 404" in err.value.problem


def test_url_wrong_checksum_leaves_nothing(tmp_path, served, no_sleep):
    cache = tmp_path / "c"
    wrong = "ab" * 32
    with serve_directory(served) as base:
        url = base + "data.csv"
        with pytest.raises(InputError) as err:
            sources.load(_url_cfg(url, wrong), "d", cache_dir=cache)
    assert err.value.field == "datasets.d.sha256"
    assert url in err.value.problem and wrong in err.value.problem and _sha(served / "data.csv") in err.value.problem
    assert [p for p in cache.rglob("*") if p.is_file()] == []
    assert not (cache / "urls").exists()


def test_url_unreachable_host_names_url(tmp_path, no_sleep):
    url = closed_port_url("data.csv")
    with pytest.raises(InputError) as err:
        url_source.fetch(url, "0" * 64, tmp_path / "c", field="datasets.d.url", retries=1)
    assert err.value.field == "datasets.d.url"
    assert url in err.value.problem and "cannot reach" in err.value.problem
    assert no_sleep == [1]


def test_loopback_fault_hook(tmp_path, served):
    import requests

    with serve_directory(served, hook=lambda method, path: 503 if path.endswith("copy.csv") else None) as base:
        assert requests.get(base + "data.csv", timeout=5).status_code == 200
        assert requests.get(base + "copy.csv", timeout=5).status_code == 503
        base.fail_next(1, 502)
        assert requests.get(base + "data.csv", timeout=5).status_code == 502
        assert [r.status for r in base.requests] == [200, 503, 502]


def test_url_damaged_cache_or_stray_temp_file_is_redownloaded(tmp_path, served, no_sleep):
    cache = tmp_path / "c"
    sha = _sha(served / "data.csv")
    with serve_directory(served) as base:
        folder = download.cache_folder(base + "data.csv", cache)
        folder.mkdir(parents=True)
        (folder / "data.csv.part").write_text("half a downl")  # left by a killed run
        cfg = _url_cfg(base + "data.csv", sha)
        sources.load(cfg, "d", cache_dir=cache)
        (folder / "data.csv").write_text("tampered")
        sources.load(cfg, "d", cache_dir=cache)
        assert base.count("/data.csv") == 2
    assert _sha(folder / "data.csv") == sha


def test_url_progress_bar_goes_to_stderr(tmp_path, served, capsys):
    with serve_directory(served) as base:
        path = url_source.fetch(base + "data.csv", _sha(served / "data.csv"), tmp_path / "c", progressbar=True)
    assert path.name == "data.csv"
    err = capsys.readouterr().err
    assert "100%" in err and "B/s" in err


def test_real_nsclc_table_by_url_from_loopback(tmp_path, no_sleep):
    if not NSCLC.is_file():
        pytest.skip(f"shared NSCLC table not found at {NSCLC}")
    sums = dict(line.split()[::-1] for line in (SHARED_DATA / "SHA256SUMS").read_text().splitlines())
    cfg = {
        "source": "url",
        "sha256": sums[NSCLC.name],
        "id_column": "Case_ID",
        "sheet_columns": ["SurvivalStatus", "PathologicalMstage"],
        "unit": "fpkm",
        "namespace": "symbol",
    }
    with serve_directory(SHARED_DATA, fail_first=1) as base:
        matrix, sheet, meta = sources.load({**cfg, "url": base + NSCLC.name}, "nsclc", cache_dir=tmp_path / "c")
        assert [r.status for r in base.requests] == [500, 200]
    assert matrix.shape == (119, 21) and list(matrix.columns) == NSCLC_GENES
    assert sheet["SurvivalStatus"].sum() == 42 and meta["sha256"] == sums[NSCLC.name]
