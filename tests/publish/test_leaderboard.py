import math

import pandas as pd

from metasig.config import gate_defaults
from metasig.publish.gate import gate_task
from metasig.publish.leaderboard import leaderboard, to_markdown


def block(e, lo, hi):
    return {"estimate": e, "ci_low": lo, "ci_high": hi}


def doc(d, t, g, m, auc, kind="binary", perm=0.5):
    if kind == "survival":
        metrics = {"c_index": block(auc, auc - 0.05, auc + 0.05), "ibs": block(0.2, 0.18, 0.22)}
        permuted = {"c_index": block(perm, perm - 0.05, perm + 0.05), "ibs": block(0.25, 0.23, 0.27)}
    else:
        metrics = {"accuracy": block(0.9, 0.85, 0.95), "roc_auc": block(auc, auc - 0.05, auc + 0.03)}
        permuted = {"roc_auc": block(perm, perm - 0.05, perm + 0.05), "accuracy": block(0.6, 0.5, 0.7)}
    return {
        "dataset": d,
        "task": t,
        "group": g,
        "model": m,
        "kind": kind,
        "n_samples": 50,
        "n_features": 4,
        "metrics": metrics,
        "permuted": permuted,
    }


def frames():
    binary = [
        doc("wdbc", "malig", "ALL", "lr", 0.95),
        doc("wdbc", "malig", "ALL", "rf", 0.99),
        doc("wdbc", "malig", "g1", "lr", 0.52),
    ]
    surv = [doc("gse", "os", "ALL", "cox", 0.6, kind="survival"), doc("gse", "os", "g2", "cox", 0.7, kind="survival")]
    gates = pd.concat([gate_task(binary, gate_defaults("binary")), gate_task(surv, gate_defaults("survival"))])
    return binary + surv, gates


def test_columns_rows_and_sorting():
    docs, gates = frames()
    lb = leaderboard(docs, gates)
    assert len(lb) == 5
    assert list(lb.columns[:8]) == [
        "dataset",
        "task",
        "group",
        "model",
        "kind",
        "n_samples",
        "n_left_out",
        "n_features",
    ]
    cols = list(lb.columns)
    assert cols.index("roc_auc") < cols.index("roc_auc_ci_low") < cols.index("roc_auc_ci_high")
    assert cols.index("ibs_ci_high") < cols.index("permuted_roc_auc") < cols.index("gate_passed")
    assert cols[-7:] == [
        "gate_passed",
        "gate_reason",
        "no_signal",
        "random_sets",
        "random_median",
        "random_p95",
        "random_p",
    ]
    # datasets/tasks alphabetical; inside a task by the gate metric, best first
    assert list(zip(lb["dataset"], lb["model"], lb["group"])) == [
        ("gse", "cox", "g2"),
        ("gse", "cox", "ALL"),
        ("wdbc", "rf", "ALL"),
        ("wdbc", "lr", "ALL"),
        ("wdbc", "lr", "g1"),
    ]
    weak = lb[lb["group"] == "g1"].iloc[0]
    assert not weak["gate_passed"] and weak["no_signal"]
    assert "no signal beyond chance" in weak["gate_reason"]
    assert math.isnan(lb.loc[0, "roc_auc"]) and lb.loc[0, "c_index"] == 0.7
    assert lb.loc[2, "permuted_roc_auc_ci_high"] == 0.55


def test_without_gate_rows():
    docs, _ = frames()
    lb = leaderboard(docs[:3])
    assert lb["gate_passed"].isna().all() and "c_index" not in lb.columns
    assert list(lb["model"]) == ["rf", "lr", "lr"]  # ranked by the first metric (roc_auc)


def test_markdown():
    docs, gates = frames()
    text = to_markdown(leaderboard(docs, gates), metrics=["roc_auc", "c_index"])
    lines = text.strip().splitlines()
    assert len(lines) == 2 + 5
    assert lines[0].startswith("| dataset | task | group | model | roc_auc | c_index |")
    rf = next(line for line in lines if "| rf |" in line)
    assert "0.990 [0.940, 1.020]" in rf and "| pass |" in rf and "roc_auc: 0.500 [0.450, 0.550]" in rf
    g1 = next(line for line in lines if "| g1 |" in line)
    assert "fail (no signal)" in g1 and "| – |" in g1
    full = to_markdown(leaderboard(docs, gates), reasons=True)
    assert "ibs" in full.splitlines()[0] and "passed: roc_auc ci_low" in full


def test_pooled_columns_next_to_their_metric():
    docs, gates = frames()
    docs[0]["metrics"]["roc_auc"]["pooled"] = 0.91  # per-fold estimate 0.95, pooled 0.91
    lb = leaderboard(docs, gates)
    cols = list(lb.columns)
    assert cols.index("roc_auc_ci_high") + 1 == cols.index("roc_auc_pooled")
    assert "accuracy_pooled" not in cols and "c_index_pooled" not in cols and "permuted_roc_auc_pooled" not in cols
    row = lb[(lb["model"] == "lr") & (lb["group"] == "ALL")].iloc[0]
    assert row["roc_auc"] == 0.95 and row["roc_auc_pooled"] == 0.91
    assert lb["roc_auc_pooled"].notna().sum() == 1  # documents without the field: NaN
    assert "pooled" not in to_markdown(lb).splitlines()[0]  # the compact table shows the estimate only


def test_leaderboard_step_writes_the_table_and_logs_it_readably(tmp_path, caplog):
    import logging

    from metasig.learn.metrics_file import write_metrics
    from metasig.publish import steps
    from metasig.publish.gate_table import write_gates

    docs, gates = frames()
    metrics_files = []
    for i, d in enumerate(docs):
        metrics_files.append(tmp_path / f"m{i}.json")
        write_metrics(d, metrics_files[-1])
    write_gates(gates, tmp_path / "gate.tsv")
    with caplog.at_level(logging.INFO, logger="metasig"):
        steps.leaderboard(metrics_files, [tmp_path / "gate.tsv"], tmp_path / "leaderboard.tsv")
    assert len(pd.read_csv(tmp_path / "leaderboard.tsv", sep="\t")) == len(docs)
    rf = next(line for line in caplog.text.splitlines() if "| rf |" in line)
    assert "0.990 [0.940, 1.020]" in rf and "| pass |" in rf
