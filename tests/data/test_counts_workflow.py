"""Raw counts through the workflow with DESeq2's VST fitted inside the training folds, for a
binary and a multiclass task."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from workflow import snakemake, workflow_copy

pytestmark = pytest.mark.e2e  # runs Snakemake


def simulated_counts(per_class=20, genes=60, seed=3):
    """Negative-binomial counts with library sizes that vary 4-fold and three subtypes: normal,
    tumour_a (genes 0-3 up 3-fold) and tumour_b (genes 4-7 up 3-fold)."""
    rng = np.random.default_rng(seed)
    subtype = np.repeat(["normal", "tumour_a", "tumour_b"], per_class)
    n = len(subtype)
    base = rng.lognormal(4, 1, genes)
    fold = np.ones((n, genes))
    fold[subtype == "tumour_a", 0:4] = 3.0
    fold[subtype == "tumour_b", 4:8] = 3.0
    size = rng.uniform(0.5, 2.0, n)[:, None]
    mean = base * fold * size
    counts = rng.negative_binomial(5, 5 / (5 + mean))
    samples = [f"P{i:03d}" for i in range(n)]
    names = [f"GENE{j:03d}" for j in range(genes)]
    tissue = np.where(subtype == "normal", "normal", "tumour")
    sheet = pd.DataFrame({"sample": samples, "tissue": tissue, "subtype": subtype})
    return pd.DataFrame(counts, index=samples, columns=names), sheet, names[:8]


def test_counts_with_in_fold_vst(tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    counts, sheet, planted = simulated_counts()
    (workdir / "input").mkdir()
    counts.T.rename_axis("gene").to_csv(workdir / "input" / "counts.tsv", sep="\t")  # genes x samples
    sheet.to_csv(workdir / "input" / "samples.tsv", sep="\t", index=False)
    config = {
        "seed": 3,
        "cv": {"outer_folds": 4, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 200},
        "mlflow": {"enabled": False},
        "models": {"elasticnet": {"kind": "elasticnet", "search": {"C": [0.1, 1.0], "l1_ratio": [0.5]}}},
        "datasets": {
            "sim": {
                "source": "table",
                "matrix": "input/counts.tsv",
                "orientation": "genes_by_samples",
                "samples": "input/samples.tsv",
                "unit": "counts",
                "namespace": "symbol",
                "normalization": "vst",
                "gene_groups": {"planted": planted, "ALL": "ALL"},
                "tasks": {
                    "tissue": {"type": "binary", "label": "tissue", "positive": "tumour", "models": ["elasticnet"]},
                    "subtype": {"type": "multiclass", "label": "subtype", "models": ["elasticnet"]},
                },
            }
        },
    }
    (workdir / "counts.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "--configfile", "counts.yaml")

    board = pd.read_csv(workdir / "results" / "leaderboard.tsv", sep="\t").set_index(["task", "group"])
    for task in ("tissue", "subtype"):  # binary, and multiclass (macro one-vs-rest)
        assert board.loc[(task, "planted"), "roc_auc"] > 0.85, task
        assert abs(board.loc[(task, "planted"), "permuted_roc_auc"] - 0.5) < 0.2, task
    assert (workdir / "results" / "plots" / "sim" / "subtype" / "confusion.svg").is_file()
    # the normalize step leaves counts as they are: VST happens inside the folds
    normalized = pd.read_parquet(workdir / "results" / "sim" / "normalized.parquet")
    assert np.allclose(normalized.loc[counts.index, counts.columns].to_numpy(), counts.to_numpy())
    doc = json.loads(
        (workdir / "results" / "models" / "sim" / "tissue" / "planted" / "elasticnet" / "metrics.json").read_text()
    )
    assert doc["classes"] == ["normal", "tumour"]
    doc = json.loads(
        (workdir / "results" / "models" / "sim" / "subtype" / "planted" / "elasticnet" / "metrics.json").read_text()
    )
    assert doc["classes"] == ["normal", "tumour_a", "tumour_b"]
