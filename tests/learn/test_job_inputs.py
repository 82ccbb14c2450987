"""What a training job reads and imports: only its group's matrix columns (the whole library only for
in-fold DESeq2), the heavy model libraries only when a model needs them, and its thread count does
not change its results."""

import json
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import pytest

from metasig import io
from metasig.learn import steps

GENES = [f"G{j:03d}" for j in range(40)]


def _matrix(n=30, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.poisson(40, size=(n, len(GENES))).astype(float), columns=GENES)
    frame.index = pd.Index([f"s{i:02d}" for i in range(n)], name="sample")
    return frame


@pytest.fixture
def study(tmp_path):
    """A counts matrix, a sheet with a label and a covariate, and two groups (one with the covariate)."""
    matrix = _matrix()
    io.write_matrix(matrix, tmp_path / "m.parquet", "counts", "symbol", extra={"source": "test"})
    sheet = pd.DataFrame({"sample": matrix.index, "status": ["yes", "no"] * 15, "age": np.arange(30.0)})
    io.write_sheet(sheet, tmp_path / "s.tsv")
    groups = {"small": {"genes": ["G017", "G003", "G029"]}, "mixed": {"genes": ["G008", "age", "G001"]}}
    io.write_json(groups, tmp_path / "g.json")
    return tmp_path, matrix


def test_read_matrix_columns_subset_in_the_asked_order_with_metadata(study):
    folder, matrix = study
    part, meta = io.read_matrix(folder / "m.parquet", columns=["G012", "G002"])
    assert list(part.columns) == ["G012", "G002"]
    assert part.index.name == "sample" and list(part.index) == list(matrix.index)
    pd.testing.assert_frame_equal(part, matrix[["G012", "G002"]])
    assert (meta["unit"], meta["namespace"], meta["source"]) == ("counts", "symbol", "test")
    whole, whole_meta = io.read_matrix(folder / "m.parquet")
    pd.testing.assert_frame_equal(whole, matrix)
    assert whole_meta == meta
    assert io.matrix_columns(folder / "m.parquet") == GENES
    empty, _ = io.read_matrix(folder / "m.parquet", columns=[])
    assert empty.shape == (30, 0) and list(empty.index) == list(matrix.index)


def test_read_matrix_in_column_chunks_equals_a_whole_read(study, monkeypatch):
    import pyarrow.parquet as pq

    folder, matrix = study
    matrix.iloc[3, 5] = matrix.iloc[0, 39] = np.nan
    io.write_matrix(matrix, folder / "nan.parquet", "counts", "symbol")
    monkeypatch.setattr(io, "READ_CHUNK", 7)  # 40 genes: 6 chunks, the last one short
    chunked, _ = io.read_matrix(folder / "nan.parquet")
    pd.testing.assert_frame_equal(chunked, pq.read_table(folder / "nan.parquet").to_pandas())
    pd.testing.assert_frame_equal(chunked, matrix)
    assert chunked.isna().sum().sum() == 2
    # the layout of a whole read too: column-major, so fold copies sum in the same order as before
    assert chunked.to_numpy().flags.f_contiguous and chunked.iloc[[0, 2]].to_numpy().flags.f_contiguous
    part, _ = io.read_matrix(folder / "nan.parquet", columns=["G039", "G005", "G020"])
    pd.testing.assert_frame_equal(part, matrix[["G039", "G005", "G020"]])


def test_read_matrix_spilled_to_a_mapped_file_equals_a_read_in_memory(study, tmp_path):
    folder, matrix = study
    spill = tmp_path / "spill"
    spill.mkdir()
    mapped, _ = io.read_matrix(folder / "m.parquet", spill_dir=spill)
    pd.testing.assert_frame_equal(mapped, matrix)
    backing = mapped.to_numpy()
    while not isinstance(backing, np.memmap):
        backing = backing.base
    assert backing.filename.startswith(str(spill)) and mapped.to_numpy().flags.f_contiguous
    assert not mapped.to_numpy().flags.writeable  # shared by the job's workers: nobody changes it
    empty, _ = io.read_matrix(folder / "m.parquet", columns=[], spill_dir=spill)  # nothing to map
    assert empty.shape == (30, 0)


def test_read_matrix_frees_the_parsed_file_before_trimming_the_heap(study, monkeypatch):
    """The heap is given back once the parsed footer (70 MB at 20,000 columns) is garbage: trimmed
    while the reader still held it, the job kept that memory through all its fits."""
    import gc

    import pyarrow.parquet as pq

    folder, matrix = study
    alive = []
    monkeypatch.setattr(
        io, "_return_freed_heap", lambda: alive.append(sum(isinstance(o, pq.ParquetFile) for o in gc.get_objects()))
    )
    io.read_matrix(folder / "m.parquet")
    assert alive == [0]


def test_read_matrix_of_another_writer_is_read_whole(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}, index=pd.Index(["x", "y"], name="sample"))
    frame.to_parquet(tmp_path / "ints.parquet")  # an integer column: not a write_matrix file
    read, meta = io.read_matrix(tmp_path / "ints.parquet")
    pd.testing.assert_frame_equal(read, frame)
    assert meta == {}


def test_read_matrix_unknown_or_repeated_columns_are_named(study):
    folder, _ = study
    with pytest.raises(KeyError, match="no column NOPE, sample"):
        io.read_matrix(folder / "m.parquet", columns=["G001", "NOPE", "sample"])
    with pytest.raises(ValueError, match="more than once: G001"):
        io.read_matrix(folder / "m.parquet", columns=["G001", "G002", "G001"])


def _recording(monkeypatch):
    asked = []
    real = io.read_matrix

    def read_matrix(path, columns=None, spill_dir=None):
        asked.append(None if columns is None else list(columns))
        return real(path, columns=columns, spill_dir=spill_dir)

    monkeypatch.setattr(io, "read_matrix", read_matrix)
    return asked


@pytest.mark.parametrize("group", ["small", "mixed"])
def test_a_job_reads_only_its_groups_gene_columns(study, monkeypatch, group):
    folder, matrix = study
    asked = _recording(monkeypatch)
    task = {"type": "binary", "label": "status", "positive": "yes"}
    X, y, classes, subset = steps.feature_frame(
        folder / "m.parquet", folder / "s.tsv", folder / "g.json", group, task, ["age"], "none"
    )
    wanted = io.read_json(folder / "g.json")[group]["genes"]
    genes = [g for g in wanted if g in GENES]
    assert asked == [genes]
    assert list(X.columns) == wanted and subset is None
    pd.testing.assert_frame_equal(X[genes], matrix[genes], check_names=False)
    if "age" in wanted:
        assert X["age"].tolist() == list(np.arange(30.0))
    assert list(y) == [1, 0] * 15


def test_the_frame_follows_the_sheets_samples_in_its_order(study):
    """In file order the matrix is used as read; otherwise rows follow the sheet (a subset too)."""
    folder, matrix = study
    task = {"type": "binary", "label": "status", "positive": "yes"}
    sheet = io.read_sheet(folder / "s.tsv")
    for order in (sheet, sheet.iloc[::-1], sheet.iloc[[4, 0, 9, 7]]):
        io.write_sheet(order, folder / "t.tsv")
        X, y, _, _ = steps.feature_frame(
            folder / "m.parquet", folder / "t.tsv", folder / "g.json", "small", task, [], "none"
        )
        assert list(X.index) == list(order["sample"]) and len(y) == len(order)
        pd.testing.assert_frame_equal(X, matrix.loc[order["sample"], ["G017", "G003", "G029"]], check_names=False)


def test_in_fold_deseq2_reads_the_whole_library(study, monkeypatch):
    folder, _ = study
    asked = _recording(monkeypatch)
    task = {"type": "binary", "label": "status", "positive": "yes"}
    X, _, _, subset = steps.feature_frame(
        folder / "m.parquet", folder / "s.tsv", folder / "g.json", "mixed", task, ["age"], "deseq2"
    )
    assert asked == [None]
    assert list(X.columns) == GENES + ["age"]
    assert subset == [GENES.index("G008"), GENES.index("G001")]


def test_a_wide_job_maps_its_matrix_and_leaves_no_file_behind(study, monkeypatch, tmp_path):
    """Over PROCESS_MIN_VALUES the job's matrix lives in a mapped file, which its worker processes
    share; the file goes when the job ends, and the results are those of a matrix in memory (they
    were not when joblib rebuilt a column-major file in the workers: rows came back scrambled)."""
    from metasig.learn import nested_cv

    folder, _ = study
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    spilled = []
    real = io.read_matrix

    def read_matrix(path, columns=None, spill_dir=None):
        spilled.append(spill_dir)
        return real(path, columns=columns, spill_dir=spill_dir)

    monkeypatch.setattr(io, "read_matrix", read_matrix)
    docs = []
    for limit in (10**9, 10):  # in memory, then mapped
        monkeypatch.setattr(nested_cv, "PROCESS_MIN_VALUES", limit)
        _train_small(folder, f"job{limit}", threads=2)
        docs.append((folder / f"job{limit}" / "metrics.json").read_bytes())
    assert spilled[0] is None and str(spilled[1]).startswith(str(tmp_path / "tmp"))
    assert list((tmp_path / "tmp").iterdir()) == []
    assert docs[0] == docs[1]


def _train_small(folder, name, threads):
    steps.train(
        folder / "m.parquet",
        folder / "s.tsv",
        folder / "g.json",
        folder / name,
        {"dataset": "d", "task": "t", "group": "small", "model": "enet"},
        {"type": "binary", "label": "status", "positive": "yes"},
        {"kind": "elasticnet", "search": {"C": [0.1, 1.0], "l1_ratio": [0.5]}},
        {"outer_folds": 2, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 20, "permuted_repeats": 1},
        {"scale": True},
        "none",
        [],
        3,
        threads=threads,
    )


def test_job_results_do_not_depend_on_its_thread_count(study):
    folder, _ = study
    docs = []
    for threads in (1, 2):
        _train_small(folder, f"job{threads}", threads)
        docs.append((folder / f"job{threads}" / "metrics.json").read_bytes())
    assert docs[0] == docs[1]
    assert json.loads(docs[0])["features"] == ["G017", "G003", "G029"]


def test_the_job_path_does_not_import_model_libraries_it_may_not_need():
    heavy = ["xgboost", "lifelines", "skops", "pydeseq2", "mlflow", "matplotlib", "sksurv"]
    code = (
        "import sys, metasig.learn.steps, metasig.learn.job, metasig.learn.models\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
