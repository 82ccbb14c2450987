"""A public source through the real workflow: a UCSC Xena hub answered by a loopback server that
serves format-faithful files written here, with a fault on the first request."""

import gzip

import numpy as np
import pandas as pd
import yaml

from loopback import serve_directory
from workflow import snakemake, workflow_copy

GENES = [f"GENE{i}" for i in range(30)] + ["ERBB2", "GRB7"]


def write_hub(root, n=40, seed=1):
    """TCGA.BRCA.sampleMap/HiSeqV2_PANCAN.gz (genes x samples) and BRCA_clinicalMatrix."""
    rng = np.random.default_rng(seed)
    barcodes = [f"TCGA-AA-{i:04d}-{'11' if i % 10 == 9 else '01'}" for i in range(n)]
    status = np.array(["Positive" if i % 4 == 0 else ("Negative" if i % 4 in (1, 2) else "") for i in range(n)])
    values = rng.normal(8, 1, (len(GENES), n))
    values[-2:, status == "Positive"] += 3  # the amplicon is up in HER2-positive tumours
    folder = root / "TCGA.BRCA.sampleMap"
    folder.mkdir(parents=True)
    expression = pd.DataFrame(values.round(4), index=pd.Index(GENES, name="sample"), columns=barcodes)
    with gzip.open(folder / "HiSeqV2_PANCAN.gz", "wt") as out:
        expression.to_csv(out, sep="\t")
    clinical = pd.DataFrame({"sampleID": barcodes, "HER2_Final_Status_nature2012": status, "age": rng.integers(30, 80, n)})
    clinical.to_csv(folder / "BRCA_clinicalMatrix", sep="\t", index=False)
    return status


def test_xena_dataset_through_the_workflow(tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    status = write_hub(tmp_path / "hub")
    config = {
        "seed": 2, "mlflow": {"enabled": False}, "cache": "cache",
        "cv": {"outer_folds": 3, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 200},
        "models": {"elasticnet": {"kind": "elasticnet", "search": {"C": [1.0], "l1_ratio": [0.5]}}},
        "datasets": {"brca": {
            "source": "xena", "unit": "log2", "namespace": "symbol",
            "xena": {
                "cohorts": [{"name": "BRCA", "expression": "TCGA.BRCA.sampleMap/HiSeqV2_PANCAN.gz",
                             "clinical": "TCGA.BRCA.sampleMap/BRCA_clinicalMatrix"}],
                "sample_types": ["01"],
                "labels": {"her2": {"column": "HER2_Final_Status_nature2012",
                                    "map": {"Positive": "positive", "Negative": "negative"}, "missing": "negative"}},
            },
            "gene_groups": {"amplicon": ["ERBB2", "GRB7"], "ALL": "ALL"},
            "tasks": {"her2": {"type": "binary", "label": "her2", "positive": "positive", "models": ["elasticnet"]}},
        }},
    }
    with serve_directory(tmp_path / "hub", fail_first=1) as hub:  # the first request gets HTTP 500
        config["datasets"]["brca"]["xena"]["hub"] = hub.rstrip("/")
        (workdir / "xena.yaml").write_text(yaml.safe_dump(config))
        snakemake(workdir, "--configfile", "xena.yaml")
        first = hub.count()
        # a second load downloads nothing
        snakemake(workdir, "--configfile", "xena.yaml", "--forcerun", "load_dataset", "--until", "load_dataset")
        assert hub.count() == first

    sheet = pd.read_csv(workdir / "results" / "brca" / "samples.tsv", sep="\t")
    primary = [i for i in range(len(status)) if i % 10 != 9]
    assert len(sheet) == len(primary) and sheet["sample"].str.endswith("-01").all()
    expected = ["positive" if status[i] == "Positive" else "negative" for i in primary]
    assert sheet.set_index("sample").loc[[f"TCGA-AA-{i:04d}-01" for i in primary], "her2"].tolist() == expected
    assert (sheet["cohort"] == "BRCA").all()
    board = pd.read_csv(workdir / "results" / "leaderboard.tsv", sep="\t").set_index("group")
    assert board.loc["amplicon", "roc_auc"] > 0.9
