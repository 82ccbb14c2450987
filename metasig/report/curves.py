"""Curves of classification predictions: ROC and precision-recall, and calibration (reliability)."""

import math

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from metasig.report.predictions import binary_arrays, dropped_note, infer_kind, multiclass_arrays, real
from metasig.report.style import GREY, LINESTYLES, MARKERS, PALETTE, empty, new_figure, note, save, short, styled


def _style_for(i):
    return {"color": PALETTE[i % len(PALETTE)], "linestyle": LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)]}


def _curve_inputs(df, kind):
    """(y_binary, score, n_dropped, problem) for ROC/PR; multiclass is micro-averaged one-vs-rest."""
    if kind == "binary":
        y, s, dropped = binary_arrays(df)
    else:
        labels, proba, classes, dropped = multiclass_arrays(df)
        if not classes:
            return None, None, dropped, "no proba_<class> columns"
        y = (labels[:, None] == np.asarray(classes)[None, :]).astype(int).ravel()
        s = proba.ravel()
    if len(y) == 0:
        return None, None, dropped, "no usable predictions"
    if len(np.unique(y)) < 2:
        return None, None, dropped, "only one class present"
    return y, s, dropped, None


@styled
def roc_pr_plot(predictions_by_job, path, kind=None, title=None):
    """ROC (left) and precision-recall (right) curves, one per job, from the pooled out-of-fold
    predictions of the real control (all outer repeats). Multiclass: micro-averaged one-vs-rest.
    The legend's AUC and AP are those of the drawn (pooled) curve, labelled so because the reported
    estimates are per-fold means (metrics.bootstrap_ci)."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    jobs = {str(k): real(v) for k, v in (predictions_by_job or {}).items()}
    first = next((v for v in jobs.values() if len(v)), pd.DataFrame())
    kind = kind or infer_kind(first)
    title = title or (
        "ROC and precision-recall curves (out-of-fold)"
        + (", micro-average one-vs-rest" if kind == "multiclass" else "")
    )
    if kind not in ("binary", "multiclass"):
        return empty(path, title, f"ROC/PR curves apply to classification tasks, not '{kind}'")
    if not jobs:
        return empty(path, title, "no predictions to show")

    n_rows_legend = math.ceil(len(jobs) / 2)
    fig = new_figure(10, 4.6 + 0.22 * n_rows_legend)
    ax_roc, ax_pr = fig.subplots(1, 2)
    notes, handles, prevalences = [], [], []
    for i, (label, df) in enumerate(jobs.items()):
        style = _style_for(i)
        y, s, dropped, problem = _curve_inputs(df, kind) if len(df) else (None, None, 0, "no predictions")
        if dropped:
            notes.append(f"{short(label)}: {dropped_note(dropped)}")
        if problem:
            notes.append(f"{short(label)}: {problem}, curve not drawn")
            handles.append(Line2D([], [], label=f"{short(label)} (not drawn: {problem})", **style))
            continue
        fpr, tpr, _ = roc_curve(y, s)
        precision, recall, _ = precision_recall_curve(y, s)
        roc_auc, ap = auc(fpr, tpr), average_precision_score(y, s)
        prevalences.append(float(np.mean(y)))
        ax_roc.plot(fpr, tpr, linewidth=1.6, **style)
        ax_pr.plot(recall, precision, linewidth=1.6, drawstyle="steps-post", **style)
        handles.append(
            Line2D([], [], linewidth=1.6, label=f"{short(label)} (pooled AUC {roc_auc:.3f}, AP {ap:.3f})", **style)
        )
    ax_roc.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1)
    ax_roc.set(
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        xlabel="false positive rate (1 − specificity)",
        ylabel="true positive rate (sensitivity)",
        title="ROC",
    )
    if prevalences:
        # The PR curve of a random classifier is flat at the positive prevalence.
        prevalence = float(np.median(prevalences))
        ax_pr.axhline(prevalence, color=GREY, linestyle="--", linewidth=1)
        ax_pr.text(
            0.02,
            prevalence - 0.01,
            f"chance (prevalence {prevalence:.2f})",
            ha="left",
            va="top",
            fontsize=8,
            color="#555555",
            transform=ax_pr.get_yaxis_transform(),
        )
    ax_pr.set(
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        xlabel="recall (sensitivity)",
        ylabel="precision (positive predictive value)",
        title="Precision-recall",
    )
    for ax in (ax_roc, ax_pr):
        ax.set_aspect("equal")
        ax.grid(color="#EEEEEE", linewidth=0.8)
    ax_roc.text(
        0.98, 0.02, "dashed: chance", transform=ax_roc.transAxes, ha="right", va="bottom", fontsize=8, color="#555555"
    )
    if not prevalences:
        note(ax_roc, "no curve could be drawn")
    fig.legend(handles=handles, loc="outside lower center", ncol=2 if len(handles) > 1 else 1, frameon=False)
    fig.suptitle(title + (("\n" + "; ".join(notes[:3]) + (" …" if len(notes) > 3 else "")) if notes else ""))
    return save(fig, path)


def _calibration_inputs(df):
    """(predicted probability, observed 0/1, what, n_dropped). Binary: P(positive) vs label;
    multiclass: confidence of the top class vs whether it was right."""
    kind = infer_kind(df)
    if kind == "binary":
        y, s, dropped = binary_arrays(df)
        return np.clip(s, 0, 1), y, "positive class", dropped
    if kind == "multiclass":
        labels, proba, classes, dropped = multiclass_arrays(df)
        if not len(proba):
            return np.array([]), np.array([]), "top class", dropped
        top = np.asarray(classes)[proba.argmax(axis=1)]
        return np.clip(proba.max(axis=1), 0, 1), (top == labels).astype(int), "top class", dropped
    return np.array([]), np.array([]), "", 0


@styled
def calibration_plot(predictions_by_job, path, n_bins=10, title=None):
    """Reliability diagram (mean predicted probability vs observed frequency in 10 equal-width bins)
    with the distribution of scores underneath; Brier score in the legend. Real control only."""
    jobs = {str(k): real(v) for k, v in (predictions_by_job or {}).items()}
    title = title or "Calibration: do predicted probabilities match observed frequencies? (out-of-fold)"
    if not jobs:
        return empty(path, title, "no predictions to show")
    fig = new_figure(8, 7.2 + 0.2 * math.ceil(len(jobs) / 2))
    ax, ax_hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    edges = np.linspace(0, 1, n_bins + 1)
    handles, notes, what = [], [], ""
    for i, (label, df) in enumerate(jobs.items()):
        style = _style_for(i)
        p, y, what_i, dropped = _calibration_inputs(df) if len(df) else (np.array([]), np.array([]), "", 0)
        what = what or what_i
        if dropped:
            notes.append(f"{short(label)}: {dropped_note(dropped)}")
        if not len(p):
            notes.append(f"{short(label)}: no usable probabilities")
            continue
        bins = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
        counts = np.bincount(bins, minlength=n_bins)
        used = counts > 0
        mean_p = np.bincount(bins, weights=p, minlength=n_bins)[used] / counts[used]
        frac = np.bincount(bins, weights=y, minlength=n_bins)[used] / counts[used]
        brier = float(np.mean((p - y) ** 2))
        ax.plot(mean_p, frac, marker=MARKERS[i % len(MARKERS)], markersize=5, linewidth=1.5, **style)
        ax_hist.hist(p, bins=edges, histtype="step", linewidth=1.5, color=style["color"], linestyle=style["linestyle"])
        handles.append(
            Line2D(
                [],
                [],
                marker=MARKERS[i % len(MARKERS)],
                markersize=5,
                linewidth=1.5,
                label=f"{short(label)} (Brier {brier:.3f}, n={len(p)})",
                **style,
            )
        )
    ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1)
    ax.text(0.02, 0.97, "dashed: perfectly calibrated", transform=ax.transAxes, va="top", fontsize=8, color="#555555")
    ax.set(
        xlim=(0, 1),
        ylim=(-0.02, 1.02),
        ylabel="observed fraction" + (" correct" if what == "top class" else " positive"),
        title="reliability diagram",
    )
    ax.grid(color="#EEEEEE", linewidth=0.8)
    ax_hist.set(xlabel=f"predicted probability ({what or 'positive class'})", ylabel="predictions")
    ax_hist.yaxis.set_major_locator(MaxNLocator(4, integer=True))
    if not handles:
        note(ax, "no calibration curve could be drawn")
    else:
        fig.legend(handles=handles, loc="outside lower center", ncol=2 if len(handles) > 1 else 1, frameon=False)
    fig.suptitle(title + (("\n" + "; ".join(notes[:3])) if notes else ""))
    return save(fig, path)
