"""A public source through the real workflow: a UCSC Xena hub answered by a loopback server that
serves format-faithful files written here, with a fault on the first request."""

import gzip

import numpy as np
import pandas as pd
import pytest
import yaml
from faultserver import serve_directory
from workflow import snakemake, workflow_copy

pytestmark = pytest.mark.e2e  # runs Snakemake

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
    clinical = pd.DataFrame(
        {"sampleID": barcodes, "HER2_Final_Status_nature2012": status, "age": rng.integers(30, 80, n)}
    )
    clinical.to_csv(folder / "BRCA_clinicalMatrix", sep="\t", index=False)
    return status


def test_xena_dataset_through_the_workflow(tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    status = write_hub(tmp_path / "hub")
    config = {
        "seed": 2,
        "mlflow": {"enabled": False},
        "cache": "cache",
        "cv": {"outer_folds": 3, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 200},
        "models": {"elasticnet": {"kind": "elasticnet", "search": {"C": [1.0], "l1_ratio": [0.5]}}},
        "datasets": {
            "brca": {
                "source": "xena",
                "unit": "log2",
                "namespace": "symbol",
                "xena": {
                    "cohorts": [
                        {
                            "name": "BRCA",
                            "expression": "TCGA.BRCA.sampleMap/HiSeqV2_PANCAN.gz",
                            "clinical": "TCGA.BRCA.sampleMap/BRCA_clinicalMatrix",
                        }
                    ],
                    "sample_types": ["01"],
                    "labels": {
                        "her2": {
                            "column": "HER2_Final_Status_nature2012",
                            "map": {"Positive": "positive", "Negative": "negative"},
                            "missing": "negative",
                        }
                    },
                },
                "gene_groups": {"amplicon": ["ERBB2", "GRB7"], "ALL": "ALL"},
                "tasks": {
                    "her2": {"type": "binary", "label": "her2", "positive": "positive", "models": ["elasticnet"]}
                },
            }
        },
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


def write_geo(root, n=24, seed=3):
    """GSE99999_series_matrix.txt.gz (probes x GSMs, characteristics) and GPL96.annot.gz under a
    GEO-like folder layout; subtype 'T-ALL' raises the CD3E probes."""
    rng = np.random.default_rng(seed)
    gsms = [f"GSM9{i:05d}" for i in range(n)]
    subtype = ["T-ALL" if i % 2 else "B-ALL" for i in range(n)]
    probes = {f"{i}_at": f"GENE{i}" for i in range(20)} | {"900_at": "CD3E", "901_s_at": "CD3E", "902_at": ""}
    values = rng.normal(7, 1, (len(probes), n))
    values[20:22, [i for i in range(n) if i % 2]] += 3
    quote = lambda items: "\t".join(f'"{x}"' for x in items)  # noqa: E731
    lines = [
        '!Series_geo_accession\t"GSE99999"',
        '!Series_platform_id\t"GPL96"',
        "!Sample_title\t" + quote([f"patient {i}" for i in range(n)]),
        "!Sample_geo_accession\t" + quote(gsms),
        "!Sample_characteristics_ch1\t" + quote([f"subtype: {s}" for s in subtype]),
        "!series_matrix_table_begin",
        quote(["ID_REF"] + gsms),
    ]
    lines += [f'"{p}"\t' + "\t".join(f"{v:.3f}" for v in row) for p, row in zip(probes, values)]
    lines.append("!series_matrix_table_end")
    series = root / "geo" / "series" / "GSE99nnn" / "GSE99999" / "matrix"
    series.mkdir(parents=True)
    with gzip.open(series / "GSE99999_series_matrix.txt.gz", "wt") as out:
        out.write("\n".join(lines) + "\n")
    platform = root / "geo" / "platforms" / "GPLnnn" / "GPL96" / "annot"
    platform.mkdir(parents=True)
    with gzip.open(platform / "GPL96.annot.gz", "wt") as out:
        out.write("^Annotation\n!platform_table_begin\nID\tGene symbol\n")
        out.write("".join(f"{p}\t{s}\n" for p, s in probes.items()) + "!platform_table_end\n")
    return dict(zip(gsms, subtype))


def test_geo_dataset_through_the_workflow(tmp_path):
    workdir = workflow_copy(tmp_path / "wf")
    truth = write_geo(tmp_path / "ftp")
    config = {
        "seed": 2,
        "mlflow": {"enabled": False},
        "cv": {"outer_folds": 3, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 200},
        "models": {"elasticnet": {"kind": "elasticnet", "search": {"C": [1.0], "l1_ratio": [0.5]}}},
        "datasets": {
            "leukemia": {
                "source": "geo",
                "unit": "microarray",
                "namespace": "symbol",
                "geo": {
                    "series": "GSE99999",
                    "collapse": "max_mean",
                    "labels": {"subtype": {"column": "subtype", "missing": "drop"}},
                },
                "gene_groups": {"tcell": ["CD3E"], "ALL": "ALL"},
                "tasks": {
                    "subtype": {"type": "binary", "label": "subtype", "positive": "T-ALL", "models": ["elasticnet"]}
                },
            }
        },
    }
    with serve_directory(tmp_path / "ftp") as ftp:
        config["datasets"]["leukemia"]["geo"]["base"] = ftp + "geo/series"
        (workdir / "geo.yaml").write_text(yaml.safe_dump(config))
        snakemake(workdir, "--configfile", "geo.yaml")

    matrix = pd.read_parquet(workdir / "results" / "leukemia" / "matrix.parquet")
    assert "CD3E" in matrix.columns and matrix.shape == (24, 21)  # 20 genes + CD3E; the unannotated probe is gone
    sheet = pd.read_csv(workdir / "results" / "leukemia" / "samples.tsv", sep="\t").set_index("sample")
    assert sheet["subtype"].to_dict() == truth
    board = pd.read_csv(workdir / "results" / "leaderboard.tsv", sep="\t").set_index("group")
    assert board.loc["tcell", "roc_auc"] > 0.9


def test_gdc_dataset_through_the_workflow(tmp_path):
    """GDC: paged listing, md5-checked STAR counts and case records from a loopback API, through
    the workflow to a survival model; a wrong md5 would stop it (tested in test_sources_gdc)."""
    import hashlib

    from test_sources_gdc import HEADER, SUMMARY, FakeGDC, case_id, serve

    rng = np.random.default_rng(5)
    genes = [(f"ENSG{i:011d}.1", f"G{i}", "protein_coding") for i in range(15)]
    hits, cases, data = [], [], {}
    for i in range(16):
        case, sample = f"TCGA-BB-{i:04d}", f"TCGA-BB-{i:04d}-01A"
        lines = ["# gene-model: GENCODE v36", "\t".join(HEADER)]
        lines += [f"{name}\t\t\t100\t90\t80\t\t\t" for name in SUMMARY]
        lines += [
            f"{g}\t{n}\t{t}\t{c}\t{c}\t{c}\t1.0\t1.0\t1.0" for (g, n, t), c in zip(genes, rng.poisson(300, len(genes)))
        ]
        file_id = f"f2000000-0000-0000-0000-{i:012d}"
        data[file_id] = ("\n".join(lines) + "\n").encode()
        hits.append(
            {
                "file_id": file_id,
                "file_name": f"{file_id}.tsv",
                "md5sum": hashlib.md5(data[file_id]).hexdigest(),
                "file_size": len(data[file_id]),
                "data_type": "Gene Expression Quantification",
                "access": "open",
                "analysis": {"workflow_type": "STAR - Counts"},
                "cases": [
                    {
                        "case_id": case_id(case),
                        "submitter_id": case,
                        "project": {"project_id": "TCGA-BB"},
                        "samples": [
                            {
                                "sample_id": f"s-{sample}",
                                "submitter_id": sample,
                                "sample_type": "Primary Tumor",
                                "portions": [{"analytes": [{"aliquots": [{"submitter_id": sample + "-01R"}]}]}],
                            }
                        ],
                    }
                ],
            }
        )
        dead = i % 3 == 0
        cases.append(
            {
                "case_id": case_id(case),
                "submitter_id": case,
                "demographic": {
                    "vital_status": "Dead" if dead else "Alive",
                    "days_to_death": 100 + 10 * i if dead else None,
                },
                "diagnoses": [{"days_to_last_follow_up": None if dead else 500 + 7 * i}],
            }
        )
    workdir = workflow_copy(tmp_path / "wf")
    config = {
        "seed": 2,
        "mlflow": {"enabled": False},
        "cv": {"outer_folds": 3, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 200},
        "models": {"coxph": {"kind": "coxph", "search": {"penalizer": [1.0], "l1_ratio": [0.0]}}},
        "datasets": {
            "project": {
                "source": "gdc",
                "unit": "counts",
                "namespace": "ensembl",
                "gdc": {"project": "TCGA-BB", "sample_types": ["Primary Tumor"], "page_size": 5, "max_workers": 2},
                "gene_groups": {"ALL": "ALL"},
                "tasks": {"os": {"type": "survival", "time": "time", "event": "event", "models": ["coxph"]}},
            }
        },
    }
    gdc = FakeGDC(hits, cases, data)
    with serve(gdc) as api:
        config["datasets"]["project"]["gdc"]["api"] = api
        (workdir / "gdc.yaml").write_text(yaml.safe_dump(config))
        snakemake(workdir, "--configfile", "gdc.yaml")
    assert gdc.count("POST", "/files") == 4 and gdc.count("GET", "/data/") == 16
    matrix = pd.read_parquet(workdir / "results" / "project" / "matrix.parquet")
    assert matrix.shape == (16, 15) and not any(c.startswith("N_") for c in matrix.columns)
    sheet = pd.read_csv(workdir / "results" / "project" / "samples.tsv", sep="\t").set_index("sample")
    assert sheet.loc["TCGA-BB-0000-01A", "event"] == 1 and sheet.loc["TCGA-BB-0000-01A", "time"] == 100
    assert sheet.loc["TCGA-BB-0001-01A", "event"] == 0 and sheet.loc["TCGA-BB-0001-01A", "time"] == 507
    assert (workdir / "results" / "plots" / "project" / "os" / "km.svg").is_file()
