"""A probe-level table through the workflow: labels derived by config, probes mapped to symbols by
`id_map` so a symbol gene group finds its genes, and a one-sample subtype left out of the
multiclass task with its reason in metrics.json."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from workflow import snakemake, workflow_copy

pytestmark = pytest.mark.e2e  # runs Snakemake


def probe_study(workdir, per_class=16, seed=5):
    """Three probes per gene (G00..G11); ER-positive samples have genes G00-G02 up on every probe."""
    rng = np.random.default_rng(seed)
    er = np.repeat(["Positive", "Negative"], per_class)
    subtype = np.where(er == "Positive", "luminal", "basal")
    subtype[-1] = "rare"  # one sample of its own subtype
    n, genes = len(er), [f"G{g:02d}" for g in range(12)]
    probes = [f"{1000 + 3 * g + k}_at" for g in range(len(genes)) for k in range(3)]
    values = rng.normal(6, 1, (n, len(probes)))
    values[er == "Positive", :9] += 2.0
    samples = [f"S{i:03d}" for i in range(n)]
    (workdir / "input").mkdir()
    pd.DataFrame(values, index=pd.Index(samples, name="sample"), columns=probes).to_csv(workdir / "input" / "p.csv")
    status = er.astype(object)
    status[0] = "Indeterminate"  # mapped to missing and dropped
    sheet = pd.DataFrame({"sample": samples, "ER_status": status, "subtype": subtype})
    sheet.to_csv(workdir / "input" / "samples.tsv", sep="\t", index=False)
    annotation = pd.DataFrame({"ID": probes, "Gene": [genes[i // 3] for i in range(len(probes))]})
    annotation.to_csv(workdir / "input" / "probes.tsv", sep="\t", index=False)
    return {
        "source": "table",
        "matrix": "input/p.csv",
        "samples": "input/samples.tsv",
        "unit": "microarray",
        "namespace": "symbol",
        "labels": {"er": {"column": "ER_status", "map": {"Positive": "pos", "Negative": "neg", "Indeterminate": None}}},
        "id_map": {"file": "input/probes.tsv", "from": "ID", "to": "Gene", "collapse": "max_mean"},
        "gene_groups": {"er_genes": ["G00", "G01", "G02", "NOT_MEASURED"]},
        "tasks": {
            "er": {"type": "binary", "label": "er", "positive": "pos", "models": ["elasticnet"]},
            "subtype": {"type": "multiclass", "label": "subtype", "models": ["elasticnet"]},
        },
    }


def test_mapped_probe_table_with_derived_labels_and_a_left_out_class(tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    config = {
        "seed": 5,
        "cv": {"outer_folds": 3, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 100},
        "mlflow": {"enabled": False},
        "models": {"elasticnet": {"kind": "elasticnet", "search": {"C": [1.0], "l1_ratio": [0.5]}}},
        "datasets": {"arr": probe_study(workdir)},
    }
    (workdir / "mapped.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "--configfile", "mapped.yaml")

    groups = json.loads((workdir / "results" / "arr" / "groups.json").read_text())
    assert groups["er_genes"] == {"genes": ["G00", "G01", "G02"], "missing": ["NOT_MEASURED"], "mapped": 3}
    assert (
        "er_genes: 3/4 genes present (3 found only after ID mapping)"
        in (workdir / "logs" / "arr" / "gene_groups.log").read_text()
    )
    models = workdir / "results" / "models" / "arr"
    er = json.loads((models / "er" / "er_genes" / "elasticnet" / "metrics.json").read_text())
    assert (er["n_samples"], er["left_out"]) == (31, {"missing er": 1})  # S000: Indeterminate -> missing
    assert er["metrics"]["roc_auc"]["estimate"] > 0.8
    subtype = json.loads((models / "subtype" / "er_genes" / "elasticnet" / "metrics.json").read_text())
    assert subtype["left_out"] == {"class 'rare' < min_class_size 3": 1} and subtype["classes"] == ["basal", "luminal"]
    assert (workdir / "results" / "plots" / "arr" / "subtype" / "leaderboard.svg").is_file()
