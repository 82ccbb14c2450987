"""The random-gene-set control in the gate and the leaderboard: K, median, 95th percentile and the
empirical p-value of each model's gate metric, checked against values computed here by hand, and
`gate.beat_random`, which also goes through the gate TSV and its reader as the workflow does."""

import math

import pandas as pd
import pytest

from metasig.config import gate_defaults
from metasig.learn.random_sets_file import read_random_sets, write_random_sets
from metasig.publish.gate import decide, gate_task
from metasig.publish.gate_table import read_gates, write_gates
from metasig.publish.leaderboard import leaderboard, to_markdown


def doc(group, auc, model="enet"):
    block = {"estimate": auc, "ci_low": auc - 0.03, "ci_high": min(auc + 0.03, 1.0)}
    return {
        "dataset": "d",
        "task": "t",
        "group": group,
        "model": model,
        "kind": "binary",
        "n_samples": 100,
        "n_features": 5,
        "metrics": {"roc_auc": block},
        "permuted": {"roc_auc": {"estimate": 0.5, "ci_low": 0.45, "ci_high": 0.55}},
    }


def random_table(tmp_path, name, aucs):
    """A random_sets.tsv with these ROC-AUCs, read back through its reader."""
    rows = [
        {"set": i, "seed": i, "n_genes": 5, "genes_sha1": f"{i:012x}", "roc_auc": a, "genes": [f"g{i}", f"h{i}"]}
        for i, a in enumerate(aucs, start=1)
    ]
    path = tmp_path / f"{name}.tsv"
    write_random_sets(rows, path)
    return read_random_sets(path)


def hand_p(signature, values):
    """(1 + #random >= signature) / (1 + K), written out."""
    above = 0
    for v in values:
        if v >= signature:
            above += 1
    return (1 + above) / (1 + len(values))


RANDOM_STRONG = [0.80 + 0.01 * i for i in range(20)]  # 0.80 .. 0.99: a good score is no news here
RANDOM_WEAK = [0.50 + 0.01 * i for i in range(20)]  # 0.50 .. 0.69


@pytest.fixture
def setup(tmp_path):
    docs = [doc("special", 0.90), doc("ordinary", 0.90), doc("untested", 0.95)]
    random = {
        ("d", "t", "special", "enet"): random_table(tmp_path, "special", RANDOM_WEAK),
        ("d", "t", "ordinary", "enet"): random_table(tmp_path, "ordinary", RANDOM_STRONG),
    }
    return docs, random


def test_leaderboard_columns_match_a_hand_computation(setup, tmp_path):
    docs, random = setup
    gates = gate_task(docs, gate_defaults("binary"), random)
    write_gates(gates, tmp_path / "gate.tsv")
    board = leaderboard(docs, read_gates([tmp_path / "gate.tsv"])).set_index("group")
    for group, values in (("special", RANDOM_WEAK), ("ordinary", RANDOM_STRONG)):
        row = board.loc[group]
        ordered = sorted(values)
        assert row["random_sets"] == 20
        assert row["random_median"] == pytest.approx((ordered[9] + ordered[10]) / 2)
        assert row["random_p95"] == pytest.approx(ordered[18] + 0.05 * (ordered[19] - ordered[18]))
        assert row["random_p"] == pytest.approx(hand_p(0.90, values))
    assert board.loc["special", "random_p"] == pytest.approx(1 / 21)
    assert board.loc["ordinary", "random_p"] == pytest.approx(11 / 21)  # 0.90 .. 0.99 reach 0.90
    untested = board.loc["untested"]
    assert pd.isna(untested["random_sets"]) and math.isnan(untested["random_p"])
    text = to_markdown(board.reset_index())
    assert "random sets" in text and "20: 0.595, 0.681, p = 0.048" in text


def test_gate_beat_random(setup):
    docs, random = setup
    gate = {**gate_defaults("binary"), "beat_random": True, "random_p": 0.05}
    rows = gate_task(docs, gate, random).set_index("group")
    assert rows.loc["special", "passed"]
    assert "beats 20 random gene sets (p = 0.048)" in rows.loc["special", "reason"]
    assert not rows.loc["ordinary", "passed"]
    assert "does not beat 20 random gene sets" in rows.loc["ordinary", "reason"]
    assert not rows.loc["untested", "passed"]
    assert "no random gene sets" in rows.loc["untested", "reason"]
    # off by default: the same models pass on their metric and permuted control alone
    assert gate_task(docs, gate_defaults("binary"), random)["passed"].all()
    # the threshold is configurable and inclusive
    ordinary = random[("d", "t", "ordinary", "enet")]
    from metasig.publish.gate import random_control

    control = random_control(docs[1], "roc_auc", ordinary)
    assert decide(docs[1], {**gate, "random_p": 11 / 21}, control)[0]
    assert not decide(docs[1], {**gate, "random_p": 10 / 21}, control)[0]
