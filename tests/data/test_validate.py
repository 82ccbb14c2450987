"""Each bad input is an InputError naming the file and the field, raised before any training."""

import numpy as np
import pandas as pd
import pytest

from metasig.data.checks import check_dataset
from metasig.data.sources import table
from metasig.errors import InputError

MF, SF = "results/d/matrix.parquet", "samples.tsv"


def good():
    rng = np.random.default_rng(1)
    samples = [f"s{i}" for i in range(8)]
    matrix = pd.DataFrame(
        rng.poisson(5, (8, 3)).astype(float), index=pd.Index(samples, name="sample"), columns=["G1", "G2", "G3"]
    )
    sheet = pd.DataFrame(
        {
            "sample": samples[::-1],
            "her2": ["pos", "neg"] * 4,
            "age": np.arange(8) + 40.0,
            "time": np.arange(1, 9) * 10.0,
            "event": [1, 0] * 4,
            "site": ["a", "b"] * 4,
        }
    )
    cfg = {
        "source": "table",
        "unit": "counts",
        "namespace": "symbol",
        "covariates": ["age"],
        "tasks": {
            "her2": {"type": "binary", "label": "her2", "positive": "pos", "models": ["m"]},
            "os": {"type": "survival", "time": "time", "event": "event", "models": ["c"]},
        },
    }
    return matrix, sheet, cfg


def fails(matrix, sheet, cfg, file, field, *words):
    with pytest.raises(InputError) as err:
        check_dataset(matrix, sheet, cfg, MF, SF)
    assert err.value.file == file and err.value.field == field, str(err.value)
    for word in words:
        assert word in err.value.problem, (word, str(err.value))
    return err.value


def test_good_dataset_passes():
    assert check_dataset(*good(), MF, SF) is None


def test_empty_matrix():
    matrix, sheet, cfg = good()
    fails(matrix.iloc[:, :0], sheet, cfg, MF, "(matrix)", "empty")
    fails(matrix.iloc[:0], sheet, cfg, MF, "(matrix)", "empty")


def test_duplicate_sample_ids_in_matrix_and_sheet():
    matrix, sheet, cfg = good()
    fails(matrix.rename(index={"s1": "s0"}), sheet, cfg, MF, "sample", "s0")
    sheet.loc[0, "sample"] = "s6"
    fails(matrix, sheet, cfg, SF, "sample", "duplicate", "s6")


def test_duplicate_gene_ids_from_a_real_file(tmp_path):
    (tmp_path / "m.csv").write_text("id,A,B,A\ns1,1,2,3\ns2,1,2,3\n")
    matrix, sheet = table.read(tmp_path / "m.csv")
    with pytest.raises(InputError) as err:
        check_dataset(matrix, sheet, {"unit": "tpm"}, tmp_path / "m.csv", SF)
    assert err.value.file.endswith("m.csv") and err.value.field == "genes" and "A" in err.value.problem


def test_nan_and_inf():
    matrix, sheet, cfg = good()
    matrix.loc["s3", "G2"] = np.nan
    fails(matrix, sheet, cfg, MF, "G2", "missing", "s3")
    matrix.loc["s3", "G2"] = np.inf
    fails(matrix, sheet, cfg, MF, "G2", "infinite", "s3")


def test_negative_counts_only_for_count_data():
    matrix, sheet, cfg = good()
    matrix.loc["s5", "G3"] = -2
    fails(matrix, sheet, cfg, MF, "G3", "negative", "s5")
    check_dataset(matrix, sheet, {**cfg, "unit": "log2"}, MF, SF)
    matrix.loc["s5", "G3"] = 2.5  # non-integer counts (e.g. salmon estimates) are fine
    check_dataset(matrix, sheet, cfg, MF, SF)


def test_sheet_and_matrix_mismatch_names_ids_on_each_side():
    matrix, sheet, cfg = good()
    sheet.loc[sheet["sample"] == "s2", "sample"] = "S2"
    err = fails(matrix, sheet, cfg, SF, "sample", "s2", "S2", "missing from the sample sheet", "not in the matrix")
    assert MF in err.problem
    fails(matrix, sheet[sheet["sample"] != "s4"], cfg, SF, "sample", "s4")
    fails(matrix, sheet.drop(columns="sample"), cfg, SF, "sample", "'sample' column")


def test_covariates():
    matrix, sheet, cfg = good()
    fails(matrix, sheet, {**cfg, "covariates": ["bmi"]}, SF, "bmi", "not found")
    fails(matrix, sheet, {**cfg, "covariates": ["site"]}, SF, "site", "not numeric", "'a'")
    fails(matrix, sheet, {**cfg, "covariates": ["her2"]}, SF, "her2", "leak")
    sheet["G1"] = 1.0
    fails(matrix, sheet, {**cfg, "covariates": ["G1"]}, SF, "G1", "gene")
    sheet["age"] = sheet["age"].astype(str)  # numbers stored as text are accepted
    check_dataset(matrix, sheet.drop(columns="G1"), cfg, MF, SF)


def test_task_targets():
    matrix, sheet, cfg = good()
    fails(matrix, sheet.assign(her2="pos"), cfg, SF, "her2", "one class")
    fails(matrix, sheet.drop(columns="her2"), cfg, SF, "her2", "not found")
    fails(matrix, sheet.assign(her2="neg"), cfg, SF, "her2", "positive class 'pos'")
    bad_time = sheet.copy()
    bad_time.loc[2, "time"] = 0
    fails(matrix, bad_time, cfg, SF, "time", "> 0")
    fails(matrix, sheet.assign(event=0), cfg, SF, "event", "no sample has an event")
