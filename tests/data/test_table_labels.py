"""Table sources derive labels as the Xena and GEO sources do (column, map, missing), and a task's
`min_class_size` leaves a too-small multiclass class out with its reason, recorded in metrics.json
and shown in the report, while a binary task with a class that small stops with a clear error."""

import logging

import numpy as np
import pandas as pd
import pytest

from metasig import io
from metasig.config import check, check_labels_source
from metasig.data import checks as validate
from metasig.data import sources
from metasig.data.groups_file import write_groups
from metasig.errors import InputError
from metasig.learn import steps as learn_steps
from metasig.learn import tasks
from metasig.logs import logged

HER2 = ["Positive", "Negative", "Equivocal", "", "Negative", "Positive"]


def _table(tmp_path, her2=HER2, separate=True):
    """A 6-sample table; the annotation in a separate sample sheet or as a sheet column."""
    samples = [f"s{i}" for i in range(len(her2))]
    matrix = pd.DataFrame(
        np.arange(len(her2) * 3, dtype=float).reshape(-1, 3), index=samples, columns=["G1", "G2", "G3"]
    )
    if separate:
        matrix.rename_axis("sample").to_csv(tmp_path / "m.csv")
        pd.DataFrame({"sample": samples, "HER2_status": her2}).to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
        extra = {"samples": "samples.tsv"}
    else:
        matrix.assign(HER2_status=her2).rename_axis("sample").to_csv(tmp_path / "m.csv")
        extra = {"sheet_columns": ["HER2_status"]}
    return {"source": "table", "matrix": "m.csv", "unit": "log2", "namespace": "symbol", **extra}


MAP = {"Positive": "pos", "Negative": "neg", "Equivocal": None}


@pytest.mark.parametrize("separate", [True, False])
@pytest.mark.parametrize(
    "missing, samples, her2",
    [
        ("keep", ["s0", "s1", "s2", "s3", "s4", "s5"], ["pos", "neg", None, None, "neg", "pos"]),
        ("drop", ["s0", "s1", "s4", "s5"], ["pos", "neg", "neg", "pos"]),
        ("neg", ["s0", "s1", "s2", "s3", "s4", "s5"], ["pos", "neg", "neg", "neg", "neg", "pos"]),
    ],
)
def test_table_labels_map_and_missing(tmp_path, separate, missing, samples, her2):
    cfg = {**_table(tmp_path, separate=separate), "labels": {"her2": {"column": "HER2_status", "map": MAP}}}
    cfg["labels"]["her2"]["missing"] = missing
    matrix, sheet, meta = sources.load(cfg, "d", base_dir=tmp_path)
    assert list(sheet["sample"]) == samples and list(matrix.index) == samples  # dropped samples leave both
    assert [None if pd.isna(v) else v for v in sheet["her2"]] == her2
    assert matrix.loc["s5", "G1"] == 15.0  # rows still belong to their sample
    assert meta["labels"]["her2"]["pos"] == 2


def test_table_labels_without_map_copy_the_column_and_unexpected_values_are_named(tmp_path):
    cfg = {**_table(tmp_path), "labels": {"her2": {"column": "HER2_status"}}}
    _, sheet, _ = sources.load(cfg, "d", base_dir=tmp_path)
    assert [None if pd.isna(v) else v for v in sheet["her2"]] == [v or None for v in HER2]
    cfg["labels"]["her2"]["map"] = {"Positive": "pos", "Negative": "neg"}
    with pytest.raises(InputError) as err:
        sources.load(cfg, "d", base_dir=tmp_path)
    assert (err.value.file, err.value.field) == ("samples.tsv", "HER2_status")
    assert "unexpected value(s) for label 'her2': 'Equivocal' (1 sample(s))" in err.value.problem
    cfg["labels"] = {"her2": {"column": "HER2"}}
    with pytest.raises(InputError, match="samples.tsv: field 'HER2': label column for 'her2' not found"):
        sources.load(cfg, "d", base_dir=tmp_path)


def test_dataset_labels_only_where_the_sheet_passes_through_them():
    with pytest.raises(InputError) as err:
        check_labels_source("xena", "c.yaml", "datasets.brca")
    assert err.value.field == "datasets.brca.labels" and "datasets.brca.xena.labels" in err.value.problem
    with pytest.raises(InputError, match="put the labels in the sample sheet"):
        check_labels_source("fastq", "c.yaml", "datasets.rna")
    check_labels_source("table", "c.yaml", "datasets.t")


# ---- min_class_size ------------------------------------------------------------------------------


def _sheet(counts, column="subtype"):
    labels = [c for c, n in counts.items() for _ in range(n)]
    return pd.DataFrame({"sample": [f"s{i:02d}" for i in range(len(labels))], column: labels})


MULTI = {"type": "multiclass", "label": "subtype", "models": ["m"]}


@pytest.mark.parametrize("k, m", [(2, 2), (3, 2), (3, 3), (5, 3), (5, 5), (10, 3)])
def test_default_min_class_size_is_the_smallest_class_the_folds_accept(k, m):
    """The default is found here by asking check_folds itself, class size by class size."""
    folds = {"outer_folds": k, "inner_folds": m}
    binary = {"type": "binary", "label": "subtype", "positive": "x"}
    accepted = None
    for n in range(2, 60):
        try:
            validate.check_folds(_sheet({"x": n, "y": 60}), binary, folds, "s.tsv", "t")
        except InputError:
            continue
        accepted = n
        break
    assert tasks.min_class_size(MULTI, folds) == accepted
    assert tasks.min_class_size({**MULTI, "min_class_size": 7}, folds) == 7
    assert tasks.min_class_size(MULTI) == 2  # without folds


def test_small_multiclass_class_is_left_out_with_the_reason(caplog):
    sheet = _sheet({"a": 6, "b": 6, "c": 1, "d": 2})
    folds = {"outer_folds": 3, "inner_folds": 2}  # the default min_class_size is then 3
    left = tasks.left_out(sheet, MULTI, "s.tsv", folds)
    assert left == {"class 'c' < min_class_size 3": ["s12"], "class 'd' < min_class_size 3": ["s13", "s14"]}
    samples, y = tasks.target(sheet, MULTI, "s.tsv", folds=folds)
    assert sorted(set(y)) == ["a", "b"] and len(samples) == 12
    # before: class 'c' (1 sample) stopped the run; now the dataset check passes and logs why
    cfg = {"unit": "log2", "tasks": {"t": MULTI}}
    matrix = pd.DataFrame(np.ones((len(sheet), 2)), index=sheet["sample"], columns=["G1", "G2"])
    with caplog.at_level(logging.INFO, logger="metasig"):
        validate.check_dataset(matrix, sheet, cfg, "m.tsv", "s.tsv", folds={"t": folds}, where="datasets.d")
    assert "task t: class 'c' left out (1 sample(s): s12): fewer than min_class_size 3" in caplog.text
    # an explicit min_class_size wins over the folds' default
    assert tasks.left_out(sheet, {**MULTI, "min_class_size": 2}, "s.tsv", folds) == {
        "class 'c' < min_class_size 2": ["s12"]
    }


def test_missing_labels_and_small_classes_are_counted_apart():
    sheet = _sheet({"a": 4, "b": 4, "c": 1, "": 2})
    left = tasks.left_out(sheet, MULTI, "s.tsv", {"outer_folds": 3, "inner_folds": 2})
    assert left == {"missing subtype": ["s09", "s10"], "class 'c' < min_class_size 3": ["s08"]}


def test_binary_class_below_min_class_size_is_an_error():
    sheet = _sheet({"yes": 3, "no": 10}, "status")
    task = {"type": "binary", "label": "status", "positive": "yes", "min_class_size": 4}
    with pytest.raises(InputError) as err:
        tasks.target(sheet, task, "s.tsv")
    assert (err.value.file, err.value.field) == ("s.tsv", "status")
    assert "class 'yes' has 3 sample(s), fewer than the task's min_class_size 4" in err.value.problem
    assert "binary task cannot leave out one of its two classes" in err.value.problem
    assert tasks.left_out(sheet, task) == {}  # nothing is left out silently instead
    tasks.target(sheet, {**task, "min_class_size": 3}, "s.tsv")
    # with the default, the folds check names the class and the fold settings
    with pytest.raises(InputError) as err:
        validate.check_folds(sheet, {**task, "min_class_size": None}, {"outer_folds": 5, "inner_folds": 3}, "s", "t")
    assert "class 'yes' has 3 sample(s), fewer than outer_folds = 5" in err.value.problem


def test_multiclass_with_one_class_left_is_an_error():
    with pytest.raises(InputError) as err:
        tasks.target(_sheet({"a": 8, "b": 2, "c": 1}), MULTI, "s.tsv", folds={"outer_folds": 3, "inner_folds": 2})
    assert "only class 'a' is left after leaving out the classes smaller than min_class_size 3" in err.value.problem
    assert "'b' (2)" in err.value.problem and "'c' (1)" in err.value.problem


def test_explicit_min_class_size_below_the_folds_points_at_it():
    with pytest.raises(InputError) as err:
        validate.check_folds(
            _sheet({"a": 6, "b": 6, "c": 2}),
            {**MULTI, "min_class_size": 2},
            {"outer_folds": 3, "inner_folds": 2},
            "s.tsv",
            "datasets.d.tasks.t",
        )
    assert "class 'c' has 2 sample(s), fewer than outer_folds = 3" in err.value.problem
    assert "raise datasets.d.tasks.t.min_class_size above 2 to leave it out" in err.value.problem


def test_min_class_size_on_a_survival_task_is_a_config_error(tmp_path):
    config = {
        "models": {"cox": {"kind": "coxph"}},
        "datasets": {
            "d": {
                "source": "builtin",
                "name": "gse7390",
                "unit": "microarray",
                "namespace": "probe",
                "gene_groups": {"ALL": "ALL"},
                "tasks": {"s": {"type": "survival", "time": "t", "event": "e", "models": ["cox"], "min_class_size": 3}},
            }
        },
    }
    with pytest.raises(InputError) as err:
        check(config, "c.yaml", tmp_path)
    assert err.value.field == "datasets.d.tasks.s.min_class_size" and "not survival" in err.value.problem


def test_left_out_class_is_in_the_log_metrics_leaderboard_and_report(tmp_path):
    from metasig.publish.leaderboard import leaderboard
    from metasig.report.leaderboard import sample_note

    rng = np.random.default_rng(0)
    sheet = _sheet({"a": 8, "b": 8, "rare": 1})
    matrix = pd.DataFrame(rng.normal(size=(len(sheet), 5)), index=sheet["sample"], columns=[f"G{j}" for j in range(5)])
    matrix.index.name = "sample"
    io.write_matrix(matrix, tmp_path / "matrix.parquet", "log2", "symbol")
    io.write_sheet(sheet, tmp_path / "samples.tsv")
    write_groups({"ALL": {"genes": list(matrix.columns), "missing": []}}, tmp_path / "groups.json")
    cv = {"outer_folds": 2, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 10, "permuted_repeats": 1, "n_jobs": 1}
    with logged(tmp_path / "train.log"):
        learn_steps.train(
            tmp_path / "matrix.parquet",
            tmp_path / "samples.tsv",
            tmp_path / "groups.json",
            tmp_path / "job",
            {"dataset": "d", "task": "t", "group": "ALL", "model": "enet"},
            MULTI,
            {"kind": "elasticnet", "search": {"C": [1.0], "l1_ratio": [0.5]}},
            cv,
            {"scale": True},
            "none",
            [],
            1,
        )
    reason = "class 'rare' < min_class_size 4"  # 2 outer x 2 inner folds need 4 samples of a class
    assert f"1 sample(s) left out: {reason} (1: s16)" in (tmp_path / "train.log").read_text()
    doc = io.read_json(tmp_path / "job" / "metrics.json")
    assert (doc["n_samples"], doc["n_left_out"], doc["left_out"]) == (16, 1, {reason: 1})
    assert doc["classes"] == ["a", "b"]
    assert leaderboard([doc]).loc[0, "n_left_out"] == 1
    assert sample_note(doc) == f"\n(n = 16 samples; 1 left out: {reason} (1))"
