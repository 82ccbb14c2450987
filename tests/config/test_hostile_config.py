"""Hostile configs and inputs (issue 10, C2 C4 C5 C8 C9): each fails before any work with a message
naming the file, the field and what is wrong, and leaves nothing on disk."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from workflow import snakemake, workflow_copy

from metasig import config as mconfig
from metasig import io
from metasig.data import checks as validate
from metasig.data import steps
from metasig.errors import InputError


@pytest.fixture
def default(monkeypatch):
    monkeypatch.chdir(REPO)
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def with_gmt(cfg, gmt, **extra):
    cfg["datasets"]["wdbc"]["gene_groups"]["sets"] = {"gmt": str(gmt), **extra}
    return cfg


def raises(cfg, file="my.yaml"):
    with pytest.raises(InputError) as err:
        mconfig.check(cfg, file)
    return err.value


# ---- C2: GMT files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,field,problem",
    [
        ("", "(file)", "the GMT file is empty"),
        ("\n  \n", "(file)", "the GMT file is empty"),
        ("SET_A\tdesc\tG1\nSET_B desc G2 G3\n", "line 2", "not tab-separated"),
        ("SET_A,desc,G1,G2\n", "line 1", "not tab-separated"),
        (
            "SET_A\tdesc\tG1\nSET_B\tdesc\tG2\nSET_A\tagain\tG3\n",
            "line 3",
            "gene set 'SET_A' is defined twice (lines 1 and 3)",
        ),
    ],
    ids=["empty", "blank lines only", "spaces", "commas", "duplicate set"],
)
def test_bad_gmt_is_a_config_error_naming_the_file(default, tmp_path, text, field, problem):
    gmt = tmp_path / "sets.gmt"
    gmt.write_text(text)
    err = raises(with_gmt(default, gmt))
    assert (err.file, err.field) == (str(gmt), field)
    assert problem in err.problem


def test_gmt_set_clashing_with_another_group_is_an_error(default, tmp_path):
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("mean\tdesc\tmean_radius\n")  # `mean` is an inline group of wdbc already
    err = raises(with_gmt(default, gmt))
    assert (err.file, err.field) == ("my.yaml", "datasets.wdbc.gene_groups.sets")
    assert "group name 'mean'" in err.problem and "rename one" in err.problem


def test_real_gmt_set_names_become_safe_names_and_keep_the_original(default, tmp_path):
    gmt = tmp_path / "sets.gmt"
    gmt.write_text(
        "GO:0006915 apoptotic process\tGO\tmean_radius\tmean_area\n"
        "R-HSA-109581 Apoptosis/cell death\tReactome\tworst_area\n"
        "GO_0006915 apoptotic_process\tclash after cleaning\tmean_texture\n"
    )
    cfg = with_gmt(default, gmt)
    mconfig.check(cfg, "my.yaml")
    groups = mconfig.expanded_groups(cfg, "wdbc")
    safe = ["GO_0006915_apoptotic_process", "R-HSA-109581_Apoptosis_cell_death", "GO_0006915_apoptotic_process_2"]
    assert list(groups)[-3:] == safe
    assert groups["R-HSA-109581_Apoptosis_cell_death"] == ["worst_area"]
    assert mconfig.group_originals(cfg, "wdbc") == {
        safe[0]: "GO:0006915 apoptotic process",
        safe[1]: "R-HSA-109581 Apoptosis/cell death",
        safe[2]: "GO_0006915 apoptotic_process",
    }
    assert {j[2] for j in mconfig.jobs(cfg) if j[0] == "wdbc"} >= set(safe)
    # `sets:` may name a set as written in the GMT file or by its safe name
    cfg = with_gmt(default, gmt, sets=["GO:0006915 apoptotic process", "R-HSA-109581_Apoptosis_cell_death"])
    assert list(mconfig.expanded_groups(cfg, "wdbc"))[-2:] == safe[:2]


def test_groups_json_and_log_show_the_gmt_name(tmp_path, caplog):
    matrix = pd.DataFrame(np.ones((3, 2)), index=["S1", "S2", "S3"], columns=["G1", "G2"])
    io.write_matrix(matrix, tmp_path / "m.parquet", "log2", "symbol")
    with caplog.at_level(logging.INFO, logger="metasig"):
        steps.gene_groups(
            tmp_path / "m.parquet",
            {"GO_1_x": ["G1", "G9"]},
            [],
            tmp_path / "groups.json",
            "my.yaml",
            originals={"GO_1_x": "GO:1 x"},
        )
    doc = json.loads((tmp_path / "groups.json").read_text())
    assert doc["GO_1_x"] == {"genes": ["G1"], "missing": ["G9"], "gmt_name": "GO:1 x"}
    assert "GO_1_x (GMT set 'GO:1 x'): 1/2 genes present" in caplog.text


# ---- C4: model parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model,section,key,accepted",
    [
        ("elasticnet", "search", "Cc", "did you mean 'C'?"),
        ("coxph", "params", "penaliser", "did you mean 'penalizer'?"),
        ("linear_sweep", "search", "l1_ratio", "accepted: C, alpha"),
        ("xgboost", "params", "depth", "max_depth"),
    ],
)
def test_unknown_model_parameter_is_named_with_its_config_path(default, model, section, key, accepted):
    default["models"][model][section] = {key: [1] if section == "search" else 1}
    err = raises(default)
    assert (err.file, err.field) == ("my.yaml", f"models.{model}.{section}.{key}")
    assert f"unknown parameter for model kind {default['models'][model]['kind']}" in err.problem
    assert accepted in err.problem


def test_known_model_parameters_pass(default):
    default["models"]["elasticnet"]["search"] = {"C": [0.1, 1.0]}
    default["models"]["xgboost"]["params"] = {"max_depth": 2, "device": "cpu"}
    mconfig.check(default, "my.yaml")


# ---- C8: config file and keys ----------------------------------------------------------------------------


def test_unknown_keys_are_named(default):
    default["modles"] = {}
    err = raises(default)
    assert err.field == "modles" and "unknown key 'modles'" in err.problem and "did you mean 'models'?" in err.problem
    del default["modles"]
    default["datasets"]["wdbc"]["tasks"]["malignancy"]["lable"] = "diagnosis"
    err = raises(default)
    assert err.field == "datasets.wdbc.tasks.malignancy.lable" and "did you mean 'label'?" in err.problem


@pytest.mark.parametrize(
    "path",
    [("models", "my model"), ("datasets", "wdbc", "gene_groups", "GO:0001"), ("datasets", "wdbc", "tasks", "a/b")],
)
def test_name_rule_is_stated_in_words(default, path):
    node = default
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = {"kind": "coxph"} if path[0] == "models" else ["mean_radius"]
    err = raises(default)
    assert err.field == ".".join(path)
    assert f"'{path[-1]}' is not a valid name" in err.problem and "only letters, digits, '_' and '-'" in err.problem


def test_name_rule_in_a_list_of_names(default):
    default["datasets"]["wdbc"]["tasks"]["malignancy"]["models"] = ["elasticnet", "my model"]
    err = raises(default)
    assert err.field == "datasets.wdbc.tasks.malignancy.models.1"
    assert "'my model' is not a valid name" in err.problem


BROKEN_YAML = "models:\n  a: {kind: elasticnet\ndatasets:\n  x: 1\n"


def test_yaml_syntax_error_names_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN_YAML)
    with pytest.raises(InputError) as err:
        mconfig.load(bad)
    assert (err.value.file, err.value.field) == (str(bad), "line 3, column 9")
    assert "not valid YAML" in err.value.problem and "began at line 2, column 6" in err.value.problem
    # Snakemake reads a --configfile before the workflow runs; this command checks one the same way
    assert mconfig.main([str(bad)]) == 1
    assert f"{bad}: field 'line 3, column 9'" in capsys.readouterr().err


@pytest.mark.e2e  # runs Snakemake
def test_workflow_names_the_line_of_a_broken_default_config(tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    (workdir / "config" / "config.yaml").write_text(BROKEN_YAML)
    proc = snakemake(workdir, "-n", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config/config.yaml: field 'line 3, column 9': not valid YAML" in output, output[-2000:]


# ---- C5: folds against class sizes -------------------------------------------------------------------------


def sheet_with(counts, column="status"):
    labels = [c for c, n in counts.items() for _ in range(n)]
    return pd.DataFrame({"sample": [f"S{i:02d}" for i in range(len(labels))], column: labels})


BINARY = {"type": "binary", "label": "status", "positive": "yes", "models": ["elasticnet"]}


def test_outer_folds_larger_than_a_class():
    with pytest.raises(InputError) as err:
        validate.check_folds(
            sheet_with({"yes": 4, "no": 20}),
            BINARY,
            {"outer_folds": 5, "inner_folds": 3},
            "s.tsv",
            "datasets.d.tasks.t",
        )
    assert (err.value.file, err.value.field) == ("s.tsv", "status")
    assert "class 'yes' has 4 sample(s), fewer than outer_folds = 5" in err.value.problem
    assert "at most 4" in err.value.problem


def test_inner_folds_larger_than_a_class_in_an_outer_training_part():
    # 6 samples in 5 folds: a test part can hold 2, leaving 4 for the inner folds
    with pytest.raises(InputError) as err:
        validate.check_folds(
            sheet_with({"yes": 6, "no": 20}),
            BINARY,
            {"outer_folds": 5, "inner_folds": 5},
            "s.tsv",
            "datasets.d.tasks.t",
        )
    assert (
        "class 'yes' has 6 sample(s), so an outer training part (4 of 5 folds) holds as few as 4, "
        "fewer than inner_folds = 5" in err.value.problem
    )
    validate.check_folds(sheet_with({"yes": 6, "no": 20}), BINARY, {"outer_folds": 5, "inner_folds": 4}, "s.tsv", "w")


def test_survival_folds_need_events():
    sheet = pd.DataFrame({"sample": [f"S{i}" for i in range(12)], "time": range(1, 13), "event": [1, 1, 1] + [0] * 9})
    task = {"type": "survival", "time": "time", "event": "event", "models": ["coxph"]}
    with pytest.raises(InputError) as err:
        validate.check_folds(sheet, task, {"outer_folds": 5, "inner_folds": 3}, "s.tsv", "datasets.d.tasks.t")
    assert err.value.field == "event" and "class 'events (event = 1)' has 3 sample(s)" in err.value.problem


# ---- C5 + C9 through the workflow ------------------------------------------------------------------------


def table_dataset(workdir, name, counts):
    """A small table dataset: 6 genes, a 'status' label with the given class sizes."""
    sheet = sheet_with(counts)
    rng = np.random.default_rng(0)
    matrix = pd.DataFrame(rng.poisson(50, (len(sheet), 6)), index=sheet["sample"], columns=[f"G{i}" for i in range(6)])
    (workdir / "input").mkdir(exist_ok=True)
    matrix.rename_axis("sample").to_csv(workdir / "input" / f"{name}.csv")
    sheet.to_csv(workdir / "input" / f"{name}_samples.tsv", sep="\t", index=False)
    return {
        "source": "table",
        "matrix": f"input/{name}.csv",
        "samples": f"input/{name}_samples.tsv",
        "unit": "counts",
        "namespace": "symbol",
        "normalization": "log2cpm",
        "gene_groups": {"ALL": "ALL"},
        "tasks": {"t": dict(BINARY)},
    }


def run_study(workdir, datasets):
    cfg = {
        "seed": 1,
        "models": {"elasticnet": {"kind": "elasticnet"}},
        "mlflow": {"enabled": False},
        "datasets": datasets,
    }
    (workdir / "study.yaml").write_text(yaml.safe_dump(cfg))
    # --keep-going: without the up-front check the good dataset's jobs would run to the end
    proc = snakemake(workdir, "--configfile", "study.yaml", "--keep-going", check=False)
    return proc.returncode, proc.stdout + proc.stderr


def written(workdir):
    return [
        p
        for d in ("results", "logs", "benchmarks")
        if (workdir / d).exists()
        for p in (workdir / d).rglob("*")
        if p.is_file()
    ]


@pytest.mark.e2e  # runs Snakemake
def test_bad_second_dataset_leaves_nothing_of_the_first(tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    good = table_dataset(workdir, "first", {"yes": 12, "no": 12})
    bad = table_dataset(workdir, "second", {"yes": 12, "no": 12})
    pd.read_csv(workdir / "input" / "second_samples.tsv", sep="\t").assign(status="yes").to_csv(
        workdir / "input" / "second_samples.tsv", sep="\t", index=False
    )
    code, output = run_study(workdir, {"first": good, "second": bad})
    assert code != 0
    assert "input/second_samples.tsv: field 'status': the label has only one class ('yes')" in output, output[-3000:]
    assert written(workdir) == []


@pytest.mark.e2e  # runs Snakemake
def test_folds_larger_than_a_class_stop_the_workflow_before_any_job(tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    code, output = run_study(workdir, {"toy": table_dataset(workdir, "toy", {"yes": 4, "no": 20})})
    assert code != 0
    assert "input/toy_samples.tsv: field 'status': class 'yes' has 4 sample(s), fewer than outer_folds = 5" in output, (
        output[-3000:]
    )
    assert written(workdir) == []


@pytest.mark.e2e  # runs Snakemake
def test_input_check_is_redone_when_an_input_changes(tmp_path):
    ds = table_dataset(tmp_path, "d", {"yes": 12, "no": 12})
    datasets = {"d": (ds, {"ALL": "ALL"}, {"t": {"outer_folds": 5, "inner_folds": 3}})}
    args = ("my.yaml", "cache", tmp_path / "marker")
    assert steps.check_inputs(datasets, *args, base_dir=tmp_path) is True
    assert steps.check_inputs(datasets, *args, base_dir=tmp_path) is False  # unchanged: not read again
    sheet = tmp_path / "input" / "d_samples.tsv"
    pd.read_csv(sheet, sep="\t").assign(status="yes").to_csv(sheet, sep="\t", index=False)
    with pytest.raises(InputError, match="only one class"):
        steps.check_inputs(datasets, *args, base_dir=tmp_path)


@pytest.mark.e2e  # runs Snakemake
def test_reads_dataset_sample_sheet_is_checked_before_any_job(tmp_path):
    ds = table_dataset(tmp_path, "d", {"yes": 3, "no": 12})
    ds = {**ds, "source": "fastq", "units": "units.tsv", "transcriptome": "tx.fa"}
    with pytest.raises(InputError) as err:
        steps.check_inputs(
            {"d": (ds, {"ALL": "ALL"}, {"t": {"outer_folds": 5, "inner_folds": 3}})},
            "my.yaml",
            "cache",
            tmp_path / "marker",
            base_dir=tmp_path,
        )
    assert err.value.file == "input/d_samples.tsv" and "class 'yes' has 3 sample(s)" in err.value.problem
    assert not (tmp_path / "marker").exists()
