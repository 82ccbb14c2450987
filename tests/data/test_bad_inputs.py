"""Bad tables fail through the real workflow before any training, with a message naming the file
and the field, and leave no output behind."""

import numpy as np
import pandas as pd
import pytest
import yaml
from workflow import snakemake, workflow_copy

pytestmark = pytest.mark.e2e  # runs Snakemake

GENES = [f"G{i}" for i in range(6)]


def good_tables(n=24, seed=0):
    rng = np.random.default_rng(seed)
    samples = [f"S{i:02d}" for i in range(n)]
    matrix = pd.DataFrame(rng.poisson(50, (n, len(GENES))), index=samples, columns=GENES)
    sheet = pd.DataFrame(
        {
            "sample": samples,
            "status": ["yes", "no"] * (n // 2),
            "time": rng.uniform(10, 100, n).round(1),
            "event": [1, 0, 0] * (n // 3),
        }
    )
    return matrix, sheet


def config_for(task, groups=None):
    return {
        "seed": 1,
        "models": {"elasticnet": {"kind": "elasticnet"}, "coxph": {"kind": "coxph"}},
        "mlflow": {"enabled": False},
        "datasets": {
            "toy": {
                "source": "table",
                "matrix": "input/matrix.csv",
                "samples": "input/samples.tsv",
                "unit": "counts",
                "namespace": "symbol",
                "normalization": "log2cpm",
                "gene_groups": groups or {"ALL": "ALL"},
                "tasks": {"t": task},
            }
        },
    }


BINARY = {"type": "binary", "label": "status", "positive": "yes", "models": ["elasticnet"]}
SURVIVAL = {"type": "survival", "time": "time", "event": "event", "models": ["coxph"]}


def dup_sample(m, s):
    m.index = [m.index[1]] + list(m.index[1:])
    return m, s


def non_numeric(m, s):
    m = m.astype(object)
    m.iloc[3, 2] = "n/a?"
    return m, s


def negative(m, s):
    m.iloc[5, 1] = -4
    return m, s


def one_class(m, s):
    s["status"] = "yes"
    return m, s


def zero_time(m, s):
    s.loc[2, "time"] = 0
    return m, s


def mismatch(m, s):
    s.loc[0, "sample"] = "S_UNKNOWN"
    return m, s


CASES = [
    # (name, mutation, task, groups, text the error must contain: file, field)
    ("duplicate sample IDs", dup_sample, BINARY, None, ["matrix.csv", "S01"]),
    ("non-numeric value", non_numeric, BINARY, None, ["matrix.csv", "G2"]),
    ("negative counts", negative, BINARY, None, ["matrix.csv", "G1"]),
    ("label with one class", one_class, BINARY, None, ["samples.tsv", "status"]),
    ("survival time <= 0", zero_time, SURVIVAL, None, ["samples.tsv", "time"]),
    ("sheet / matrix mismatch", mismatch, BINARY, None, ["samples.tsv", "S_UNKNOWN"]),
    (
        "group with no genes present",
        lambda m, s: (m, s),
        BINARY,
        {"absent": ["NOPE1", "NOPE2"]},
        ["gene_groups.absent", "NOPE1"],
    ),
]


@pytest.mark.parametrize("name,mutate,task,groups,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_table_fails_early_and_cleanly(tmp_path, name, mutate, task, groups, expected):
    workdir = workflow_copy(tmp_path / "wf")
    matrix, sheet = mutate(*good_tables())
    (workdir / "input").mkdir()
    matrix.rename_axis("sample").to_csv(workdir / "input" / "matrix.csv")
    sheet.to_csv(workdir / "input" / "samples.tsv", sep="\t", index=False)
    (workdir / "bad.yaml").write_text(yaml.safe_dump(config_for(task, groups)))

    proc = snakemake(workdir, "--configfile", "bad.yaml", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"{name}: workflow should have failed"
    assert "InputError" in output or "field" in output
    for text in expected:
        assert text in output, f"{name}: error does not mention {text!r}:\n{output[-3000:]}"
    results = workdir / "results"
    left = [p for p in results.rglob("*") if p.is_file()] if results.exists() else []
    assert not [p for p in left if p.suffix in (".parquet", ".json", ".tsv")], left
    assert not (results / "models").exists()
