"""The seed example, config/examples/nsclc_metagenes.yaml, end to end. Its URL is answered by a
loopback server serving ../shared/data: the download code path is the real one, only the host differs."""

import json
from urllib.parse import urlsplit

import pandas as pd
import pytest
import yaml
from faultserver import serve_directory
from workflow import REPO, snakemake, workflow_copy

from metasig.publish.gate import decide

pytestmark = pytest.mark.e2e  # runs Snakemake

EXAMPLE = REPO / "config" / "examples" / "nsclc_metagenes.yaml"
REFERENCE_GATE = {"metric": "accuracy", "bound": "estimate", "min": 0.4, "beat_permuted": False}


@pytest.fixture(scope="module")
def nsclc_run(tmp_path_factory):
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "nsclc_gse103584_119patients.csv").is_file():
        pytest.skip(f"NSCLC table not found in {SHARED_DATA} (only present beside the project's own checkout)")
    workdir = workflow_copy(tmp_path_factory.mktemp("nsclc"))
    cfg = yaml.safe_load(EXAMPLE.read_text())
    public = cfg["datasets"]["nsclc"]["url"]
    with serve_directory(SHARED_DATA) as base:
        cfg["datasets"]["nsclc"]["url"] = base.rstrip("/") + "/nsclc_gse103584_119patients.csv"
        (workdir / "nsclc.yaml").write_text(yaml.safe_dump(cfg))
        snakemake(workdir, "--configfile", "nsclc.yaml")
    return workdir, public


def test_every_metagene_group_gets_a_model(nsclc_run):
    workdir, public = nsclc_run
    assert urlsplit(public).scheme == "https"
    board = pd.read_csv(workdir / "results" / "leaderboard.tsv", sep="\t")
    groups = {"metagene_19", "metagene_10", "metagene_9", "metagene_4", "metagene_3", "metagene_21", "ALL"}
    assert set(board.group) == groups
    assert len(board) == len(groups) * 2
    matrix_meta = json.loads((workdir / "results" / "nsclc" / "groups.json").read_text())
    assert matrix_meta["metagene_10"]["genes"] == ["CDH2", "POSTN", "VCAN", "PDGFRA"]
    assert matrix_meta["ALL"]["missing"] == []


def test_permuted_control_is_at_chance(nsclc_run):
    """One permutation on 119 patients is noisy (SD ~0.05 per job); on average it must sit at 0.5."""
    board = pd.read_csv(nsclc_run[0] / "results" / "leaderboard.tsv", sep="\t")
    assert abs(board.permuted_roc_auc.mean() - 0.5) < 0.05, board[["group", "model", "permuted_roc_auc"]]
    assert board.permuted_roc_auc.between(0.25, 0.75).all()


def test_reference_gate_admits_what_the_default_gate_questions(nsclc_run):
    workdir, _ = nsclc_run
    docs = [json.loads(p.read_text()) for p in (workdir / "results" / "models").rglob("metrics.json")]
    reference = [decide(doc, REFERENCE_GATE)[0] for doc in docs]
    assert all(reference), "accuracy > 0.4 should let every group through, as in the reference"
    board = pd.read_csv(workdir / "results" / "leaderboard.tsv", sep="\t")
    # The default gate is stricter: a model only passes when its lower bound beats chance.
    assert (board.gate_passed <= (board.roc_auc_ci_low > board.permuted_roc_auc_ci_high)).all()
    assert (~board.gate_passed).sum() >= 1
    index = json.loads((workdir / "results" / "registry" / "index.json").read_text())
    assert {m["group"] for m in index["models"]} == set(board[board.gate_passed].group)


def test_second_run_downloads_nothing(nsclc_run):
    """The server is gone now: reloading the dataset must come from the download cache."""
    workdir, _ = nsclc_run
    snakemake(workdir, "--configfile", "nsclc.yaml", "--forcerun", "load_dataset", "--until", "load_dataset")
    cached = [p for p in (workdir / "cache").rglob("*") if p.is_file() and p.suffix != ".json" and p.name != ".lock"]
    assert len(cached) == 1
