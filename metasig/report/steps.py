"""Rule adapters of the report stage: QC figures and each task's figures."""

import logging

import pandas as pd

from metasig import io
from metasig.data.normalize import IN_FOLD
from metasig.learn.metrics_file import read_metrics
from metasig.logs import logged
from metasig.publish.gate_table import read_gate

log = logging.getLogger("metasig")

__all__ = ["logged", "qc_plots", "plot_task", "plot_random_sets", "plot_mapping"]


def qc_plots(matrix_in, samples_in, colour_by, qc_out, pca_out):
    from metasig.report.pca import pca_plot
    from metasig.report.qc import qc_plot

    matrix, meta = io.read_matrix(matrix_in)
    transformed = meta.get("normalization") not in (None, "none", *IN_FOLD)
    unit = "log2" if transformed else meta["unit"]
    sheet = io.read_sheet(samples_in).set_index("sample").loc[matrix.index].reset_index()
    qc_plot(matrix, unit, qc_out)
    pca_plot(matrix, sheet, colour_by, pca_out)


def plot_task(figure, metrics_files, prediction_files, importance_files, gate_file, gate_cfg, out):
    """One figure of a task. Curves show the best model of each gene group; single-model figures
    (confusion, Kaplan-Meier, importance) show the task's best model, by the gate metric."""
    from metasig.report.confusion import confusion_plot
    from metasig.report.curves import calibration_plot, roc_pr_plot
    from metasig.report.importance import importance_plot
    from metasig.report.leaderboard import leaderboard_plot
    from metasig.report.survival import km_plot

    docs = [read_metrics(f) for f in metrics_files]
    metric = gate_cfg["metric"]
    order = sorted(range(len(docs)), key=lambda i: -docs[i]["metrics"][metric]["estimate"])
    best = order[0]
    best_per_group = {}
    for i in order:
        best_per_group.setdefault(docs[i]["group"], i)

    def label(i):
        return f"{docs[i]['group']} / {docs[i]['model']}"

    def predictions(i):
        return pd.read_csv(prediction_files[i], sep="\t", dtype={"sample": str})

    if figure == "leaderboard":
        leaderboard_plot(docs, read_gate(gate_file), out, metric, gate=gate_cfg)
    elif figure in ("roc_pr", "calibration"):
        by_job = {label(i): predictions(i) for i in best_per_group.values()}
        if figure == "roc_pr":
            roc_pr_plot(by_job, out, docs[best]["kind"])
        else:
            calibration_plot(by_job, out)
    elif figure == "confusion":
        confusion_plot(
            predictions(best), docs[best]["classes"], out, title=f"Confusion matrix (out-of-fold) of {label(best)}"
        )
    elif figure == "km":
        km_plot(predictions(best), out, title=f"Survival by out-of-fold predicted risk of {label(best)}")
    elif figure == "importance":
        importance_plot(
            pd.read_csv(importance_files[best], sep="\t"), out, title=f"Top 20 features of {label(best)} (final model)"
        )
    else:
        raise ValueError(f"unknown figure {figure!r}")
    log.info("%s of %s (best: %s)", figure, out, label(best))


def plot_random_sets(metrics_files, random_files, gate_cfg, out):
    """A task's signatures against their random gene sets, on the gate metric. `metrics_files[i]`
    and `random_files[i]` belong to the same (group, model) job."""
    from metasig.learn.random_sets_file import metric_values, read_random_sets
    from metasig.report.random_sets import random_sets_plot

    metric = gate_cfg["metric"]
    pairs = zip(metrics_files, random_files)
    rows = [(read_metrics(m), metric_values(read_random_sets(r), metric, r)) for m, r in pairs]
    where = " / ".join(str(rows[0][0][k]) for k in ("dataset", "task")) if rows else ""
    random_sets_plot(rows, out, metric, title=f"{where}: {metric} of each gene group against random sets of its size")
    log.info("random sets of %d model(s): %s", len(rows), out)


def plot_mapping(table_in, floor, out):
    from metasig.report.mapping import mapping_plot

    mapping_plot(pd.read_csv(table_in, sep="\t", dtype={"sample": str}), floor, out)
