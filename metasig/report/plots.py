"""Figures for the Snakemake report: each function draws one figure from the workflow's outputs
and writes it to `path` (format from the suffix: .svg, .png or .pdf).

Figures are built with the object-oriented API (`matplotlib.figure.Figure`), never pyplot, so no
display or global figure registry is involved and nothing needs closing. SVG output is
byte-for-byte reproducible (fixed `svg.hashsalt`, no date). Degenerate inputs (one class, NaN
scores, empty tables) draw what they can and say what is missing inside the figure, so a report
never fails because one gene group had nothing to show.
"""

import functools
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from metasig.io import atomic_path
from metasig.publish.gate import CHANCE_LEVEL

# Okabe-Ito: distinguishable with the common colour-vision deficiencies; yellow last (weak on white).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"]
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
GREY = "#9A9A9A"
NOTE_COLOUR = "#B22222"
LOWER_IS_BETTER = {"ibs"}

_RC = {
    "svg.hashsalt": "metasig",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 8.5,
    "figure.titlesize": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.axisbelow": True,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
}
_METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}, "png": {"Software": None}}


def _styled(func):
    """Run a plotting function under the report style without touching global rcParams."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_RC):
            return func(*args, **kwargs)

    return wrapper


def _figure(width, height):
    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path):
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "svg"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, metadata=_METADATA.get(fmt))
    return path


def _note(ax, text, y=0.5, size=10):
    """Say inside the figure what could not be drawn, instead of failing."""
    ax.text(
        0.5,
        y,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=size,
        color=NOTE_COLOUR,
        wrap=True,
        bbox={"boxstyle": "round", "fc": "white", "ec": NOTE_COLOUR, "alpha": 0.9},
    )


def _empty(path, title, text, width=7, height=4):
    fig = _figure(width, height)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    _note(ax, text)
    return _save(fig, path)


def _style_for(i):
    return {"color": PALETTE[i % len(PALETTE)], "linestyle": LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)]}


def _numeric(matrix):
    """Float copy of a samples x features frame with string sample IDs (non-numbers become NaN)."""
    if matrix is None:
        return pd.DataFrame()
    try:
        data = matrix.astype(float)  # astype copies, so the caller's frame is never modified
    except (TypeError, ValueError):
        data = matrix.apply(pd.to_numeric, errors="coerce").astype(float)
    data.index = data.index.astype(str)
    return data


def _real(predictions):
    """Out-of-fold predictions of the real (not label-permuted) control."""
    if predictions is None:
        return pd.DataFrame()
    if "control" in predictions.columns:
        predictions = predictions[predictions["control"].astype(str) == "real"]
    return predictions


def _label_str(values):
    """Class labels as strings; integer-valued floats (read back from TSV) lose their '.0'."""
    s = pd.Series(values)
    if pd.api.types.is_float_dtype(s) and np.all(np.isclose(s.dropna() % 1, 0)):
        s = s.astype("Int64")
    return s.astype(str).to_numpy()


def _proba_classes(df):
    return [c[len("proba_") :] for c in df.columns if c.startswith("proba_")]


def _infer_kind(df):
    if "score" in df.columns:
        return "binary"
    if _proba_classes(df):
        return "multiclass"
    if "risk" in df.columns:
        return "survival"
    return "unknown"


def _fmt(x, digits=2):
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _fmt_p(p):
    if p is None or not np.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def _short(text, n=40):
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def _binary_arrays(df):
    """(y, score, n_dropped) with NaN/inf scores and missing labels removed."""
    missing = pd.Series(np.nan, index=df.index)
    y = pd.to_numeric(df.get("y_true", missing), errors="coerce").to_numpy(dtype=float)
    s = pd.to_numeric(df.get("score", missing), errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(y) & np.isfinite(s)
    return y[ok].astype(int), s[ok], int((~ok).sum())


def _multiclass_arrays(df):
    """(y_true strings, proba matrix, classes, n_dropped) for rows with every probability present."""
    classes = _proba_classes(df)
    proba = df[[f"proba_{c}" for c in classes]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    y = _label_str(df["y_true"]) if "y_true" in df.columns else np.array([], dtype=str)
    ok = np.isfinite(proba).all(axis=1) & (pd.Series(y).replace("nan", np.nan).notna().to_numpy())
    return y[ok], proba[ok], classes, int((~ok).sum())


def _dropped_note(n):
    return f"{n} prediction(s) with missing scores left out" if n else ""


# ---- leaderboard ---------------------------------------------------------------------------


def _truthy(value):
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes", "pass", "passed"}
    try:
        return bool(value) and not (isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):
        return False


def _gate_lookup(gate_rows_df):
    """(group, model) -> passed, and the gate threshold, from a gate table.

    Expected columns: `group`, `model`, `passed` (also accepted: `pass`, `gate_passed`), and
    optionally `min`/`threshold` and `bound`. Missing table or columns: nothing is marked as passed.
    """
    passed, threshold, bound = {}, None, None
    if gate_rows_df is None or len(gate_rows_df) == 0:
        return passed, threshold, bound
    col = next((c for c in ("passed", "pass", "gate_passed") if c in gate_rows_df.columns), None)
    if col and {"group", "model"} <= set(gate_rows_df.columns):
        for _, row in gate_rows_df.iterrows():
            passed[(str(row["group"]), str(row["model"]))] = _truthy(row[col])
    for name in ("min", "threshold", "gate_min"):
        if name in gate_rows_df.columns:
            values = pd.to_numeric(gate_rows_df[name], errors="coerce").dropna()
            if len(values):
                threshold = float(values.iloc[0])
                break
    if "bound" in gate_rows_df.columns and gate_rows_df["bound"].notna().any():
        bound = str(gate_rows_df["bound"].dropna().iloc[0])
    return passed, threshold, bound


def _ci(block, metric):
    entry = (block or {}).get(metric) or {}
    return tuple(
        float(entry.get(k, np.nan)) if entry.get(k) is not None else np.nan for k in ("estimate", "ci_low", "ci_high")
    )


def sample_note(doc):
    """'\n(n = 40 samples; 3 left out: missing her2 3)' from a metrics.json, so the report shows how
    many samples each task used and how many it could not use, and why."""
    if not doc or doc.get("n_samples") is None:
        return ""
    note = f"n = {doc['n_samples']} samples"
    if doc.get("n_left_out") is not None:
        reasons = ", ".join(f"{k} {v}" for k, v in (doc.get("left_out") or {}).items())
        note += f"; {doc['n_left_out']} left out" + (f": {reasons}" if reasons else "")
    return f"\n({note})"


@_styled
def leaderboard_plot(metrics_docs, gate_rows_df, path, metric, threshold=None, gate=None):
    """Forest plot: one row per group x model with the metric's estimate and 95% CI, the permuted
    control's CI as a grey band beneath it, the gate threshold as a dashed line; models that passed
    the gate are filled, the others hollow. Rows are sorted best first.

    `metrics_docs`: list of metrics.json dicts. `gate_rows_df`: the task's gate table (see
    `_gate_lookup`) or None. `threshold`/`gate` (gate settings dict) override the table's threshold.
    """
    docs = list(metrics_docs or [])
    first = docs[0] if docs else {}
    where = " / ".join(str(first[k]) for k in ("dataset", "task") if k in first)
    title = f"{where}: {metric} by gene group and model" if where else f"{metric} by gene group and model"
    title += sample_note(first)
    if not docs:
        return _empty(path, title, "no trained models to show")
    passed, table_threshold, bound = _gate_lookup(gate_rows_df)
    gate = gate or {}
    if threshold is None:
        threshold = gate.get("min") if gate.get("metric", metric) == metric else None
    if threshold is None:
        threshold = table_threshold
    bound = gate.get("bound", bound)
    lower_better = metric in LOWER_IS_BETTER

    rows = []
    for doc in docs:
        est, lo, hi = _ci(doc.get("metrics"), metric)
        pest, plo, phi = _ci(doc.get("permuted"), metric)
        group, model = str(doc.get("group", "?")), str(doc.get("model", "?"))
        rows.append(
            {
                "group": group,
                "model": model,
                "est": est,
                "lo": lo,
                "hi": hi,
                "pest": pest,
                "plo": plo,
                "phi": phi,
                "passed": passed.get((group, model), False),
            }
        )
    table = pd.DataFrame(rows)
    # Best first; models without the metric go last. Ties broken by name for a stable order.
    key = table["est"] if lower_better else -table["est"]
    table = table.assign(_key=key.fillna(np.inf)).sort_values(["_key", "group", "model"], kind="mergesort")
    table = table.reset_index(drop=True)
    models = list(dict.fromkeys(sorted(table["model"])))
    colour = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}

    n = len(table)
    fig = _figure(9, min(2.4 + 0.42 * n, 40))
    ax = fig.add_subplot()
    ys = np.arange(n)[::-1].astype(float)
    for y, row in zip(ys, table.itertuples()):
        if np.isfinite(row.plo) and np.isfinite(row.phi):
            ax.broken_barh(
                [(row.plo, max(row.phi - row.plo, 1e-9))],
                (y - 0.38, 0.22),
                facecolors=GREY,
                alpha=0.45,
                edgecolor="none",
                zorder=1,
            )
        if np.isfinite(row.pest):
            ax.plot(row.pest, y - 0.27, marker="|", color="#555555", markersize=8, zorder=2)
        if np.isfinite(row.lo) and np.isfinite(row.hi):
            ax.hlines(y + 0.08, row.lo, row.hi, color=colour[row.model], linewidth=2, zorder=3)
        if np.isfinite(row.est):
            ax.plot(
                row.est,
                y + 0.08,
                marker="o",
                markersize=8,
                zorder=4,
                color=colour[row.model],
                markerfacecolor=colour[row.model] if row.passed else "white",
                markeredgewidth=1.8,
            )
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2, zorder=0)
    labels = [f"{_short(r.group, 28)} · {_short(r.model, 20)}" for r in table.itertuples()]
    ax.set_yticks(ys, labels)
    ax.set_ylim(-0.8, n - 0.3)
    finite = table[["lo", "hi", "plo", "phi", "est"]].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size:
        lo_x, hi_x = float(finite.min()), float(finite.max())
        if threshold is not None and np.isfinite(threshold):
            lo_x, hi_x = min(lo_x, threshold), max(hi_x, threshold)
        pad = max((hi_x - lo_x) * 0.06, 0.02)
        ax.set_xlim(lo_x - pad, hi_x + pad)
    ax.set_xlabel(
        f"{metric} (out-of-fold, nested CV; point = estimate, line = 95% CI)"
        + (" — lower is better" if lower_better else "")
    )
    ax.grid(axis="x", color="#E5E5E5", linewidth=0.8, zorder=0)
    # Numbers beside each row, and a plain statement when the model does not beat the permuted control.
    for y, row in zip(ys, table.itertuples()):
        text = f"{_fmt(row.est, 3)} [{_fmt(row.lo, 3)}, {_fmt(row.hi, 3)}]"
        chance = CHANCE_LEVEL.get(metric, -np.inf)
        no_signal = (
            np.isfinite(row.lo)
            and np.isfinite(row.phi)
            and ((row.hi >= row.plo) if lower_better else (row.lo <= max(row.phi, chance)))
        )
        if not np.isfinite(row.est):
            text = "metric not available"
        elif no_signal:
            text += "  no signal"
        ax.text(
            1.01,
            y + 0.08,
            text,
            transform=ax.get_yaxis_transform(),
            va="center",
            fontsize=8.5,
            color=NOTE_COLOUR if no_signal or not np.isfinite(row.est) else "black",
            clip_on=False,
        )
    ax.text(1.01, 1.0, "estimate [95% CI]", transform=ax.transAxes, va="bottom", fontsize=8.5, fontweight="bold")
    handles = [Line2D([], [], marker="o", linestyle="-", color=colour[m], label=m) for m in models]
    handles += [
        Line2D([], [], marker="o", linestyle="", color="#333333", label="passed the gate"),
        Line2D([], [], marker="o", linestyle="", color="#333333", markerfacecolor="white", label="did not pass"),
        Patch(facecolor=GREY, alpha=0.45, label="permuted-label control (95% CI)"),
    ]
    if threshold is not None and np.isfinite(threshold):
        handles.append(Line2D([], [], color="black", linestyle="--", label=f"gate threshold ({_fmt(threshold)})"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), frameon=False)
    subtitle = ""
    if threshold is not None and np.isfinite(threshold):
        subtitle = f"gate: {bound or 'estimate'} of {metric} ≥ {_fmt(threshold)}"
        if gate.get("beat_permuted", True):
            subtitle += " and CI above the permuted control"
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""))
    return _save(fig, path)


# ---- ROC / PR ------------------------------------------------------------------------------


def _curve_inputs(df, kind):
    """(y_binary, score, n_dropped, problem) for ROC/PR; multiclass is micro-averaged one-vs-rest."""
    if kind == "binary":
        y, s, dropped = _binary_arrays(df)
    else:
        labels, proba, classes, dropped = _multiclass_arrays(df)
        if not classes:
            return None, None, dropped, "no proba_<class> columns"
        y = (labels[:, None] == np.asarray(classes)[None, :]).astype(int).ravel()
        s = proba.ravel()
    if len(y) == 0:
        return None, None, dropped, "no usable predictions"
    if len(np.unique(y)) < 2:
        return None, None, dropped, "only one class present"
    return y, s, dropped, None


@_styled
def roc_pr_plot(predictions_by_job, path, kind=None, title=None):
    """ROC (left) and precision-recall (right) curves, one per job, from the pooled out-of-fold
    predictions of the real control (all outer repeats). Multiclass: micro-averaged one-vs-rest.
    The legend's AUC and AP are those of the drawn (pooled) curve, labelled so because the reported
    estimates are per-fold means (metrics.bootstrap_ci)."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    jobs = {str(k): _real(v) for k, v in (predictions_by_job or {}).items()}
    first = next((v for v in jobs.values() if len(v)), pd.DataFrame())
    kind = kind or _infer_kind(first)
    title = title or (
        "ROC and precision-recall curves (out-of-fold)"
        + (", micro-average one-vs-rest" if kind == "multiclass" else "")
    )
    if kind not in ("binary", "multiclass"):
        return _empty(path, title, f"ROC/PR curves apply to classification tasks, not '{kind}'")
    if not jobs:
        return _empty(path, title, "no predictions to show")

    n_rows_legend = math.ceil(len(jobs) / 2)
    fig = _figure(10, 4.6 + 0.22 * n_rows_legend)
    ax_roc, ax_pr = fig.subplots(1, 2)
    notes, handles, prevalences = [], [], []
    for i, (label, df) in enumerate(jobs.items()):
        style = _style_for(i)
        y, s, dropped, problem = _curve_inputs(df, kind) if len(df) else (None, None, 0, "no predictions")
        if dropped:
            notes.append(f"{_short(label)}: {_dropped_note(dropped)}")
        if problem:
            notes.append(f"{_short(label)}: {problem}, curve not drawn")
            handles.append(Line2D([], [], label=f"{_short(label)} (not drawn: {problem})", **style))
            continue
        fpr, tpr, _ = roc_curve(y, s)
        precision, recall, _ = precision_recall_curve(y, s)
        roc_auc, ap = auc(fpr, tpr), average_precision_score(y, s)
        prevalences.append(float(np.mean(y)))
        ax_roc.plot(fpr, tpr, linewidth=1.6, **style)
        ax_pr.plot(recall, precision, linewidth=1.6, drawstyle="steps-post", **style)
        handles.append(
            Line2D([], [], linewidth=1.6, label=f"{_short(label)} (pooled AUC {roc_auc:.3f}, AP {ap:.3f})", **style)
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
        _note(ax_roc, "no curve could be drawn")
    fig.legend(handles=handles, loc="outside lower center", ncol=2 if len(handles) > 1 else 1, frameon=False)
    fig.suptitle(title + (("\n" + "; ".join(notes[:3]) + (" …" if len(notes) > 3 else "")) if notes else ""))
    return _save(fig, path)


# ---- confusion matrix ----------------------------------------------------------------------


@_styled
def confusion_plot(predictions, classes, path, title=None):
    """Confusion matrix of the real control's out-of-fold predictions from the first outer repeat
    (each sample counted once): counts and row-normalised (recall per true class).
    Binary: predicted positive when score >= 0.5; multiclass: the class with the highest probability."""
    df = _real(predictions)
    if len(df) and "repeat" in df.columns:
        n_repeats = df["repeat"].nunique()
        df = df[df["repeat"] == sorted(df["repeat"].unique())[0]]
    else:
        n_repeats = 1
    kind = _infer_kind(df) if len(df) else "unknown"
    title = title or "Confusion matrix (out-of-fold)"
    if kind == "binary":
        y, s, dropped = _binary_arrays(df)
        names = [str(c) for c in (classes or ["negative", "positive"])][:2]
        truth, pred = y, (s >= 0.5).astype(int)
        rule = "predicted positive if P ≥ 0.5"
    elif kind == "multiclass":
        labels, proba, proba_classes, dropped = _multiclass_arrays(df)
        names = [str(c) for c in (classes or proba_classes)]
        names += [c for c in proba_classes if c not in names]  # never drop a sample for a short class list
        names += sorted(set(labels) - set(names))
        index = {c: i for i, c in enumerate(names)}
        truth = np.array([index[c] for c in labels], dtype=int)
        pred = (
            np.array([index[proba_classes[j]] for j in proba.argmax(axis=1)], dtype=int)
            if len(proba)
            else np.array([], dtype=int)
        )
        rule = "predicted class = highest probability"
    else:
        return _empty(path, title, "confusion matrices apply to classification predictions")
    k = len(names)
    counts = np.zeros((k, k), dtype=int)
    valid = (truth >= 0) & (truth < k) & (pred >= 0) & (pred < k)
    np.add.at(counts, (truth[valid], pred[valid]), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = counts / counts.sum(axis=1, keepdims=True)

    size = min(max(4.2, 0.5 * k + 2.0), 7)
    fig = _figure(min(2 * size + 0.8, 10.5), min(size, 5.2) + 1.0)
    axes = fig.subplots(1, 2)
    for ax, matrix, label, fmt in (
        (axes[0], counts, "counts", "d"),
        (axes[1], normalised, "fraction of true class", ".2f"),
    ):
        shown = np.nan_to_num(matrix.astype(float), nan=0.0)
        vmax = shown.max() if label == "counts" else 1.0
        image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=max(vmax, 1e-9))
        fontsize = 10 if k <= 5 else 8 if k <= 10 else 6
        for i in range(k):
            for j in range(k):
                value = matrix[i, j]
                text = "–" if isinstance(value, float) and not np.isfinite(value) else format(value, fmt)
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="white" if shown[i, j] > 0.6 * max(vmax, 1e-9) else "black",
                )
        ticks = [_short(n, 18) for n in names]
        ax.set_xticks(range(k), ticks, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
        ax.set_yticks(range(k), ticks)
        ax.set(xlabel="predicted class", ylabel="true class", title=label)
        ax.spines[:].set_visible(False)
        fig.colorbar(image, ax=ax, shrink=0.75)
    notes = [rule, f"{int(valid.sum())} samples" + (f", repeat 1 of {n_repeats}" if n_repeats > 1 else "")]
    if dropped:
        notes.append(_dropped_note(dropped))
    if len(np.unique(truth)) < 2:
        notes.append("only one true class present")
    fig.suptitle(f"{title}\n" + "; ".join(notes))
    return _save(fig, path)


# ---- calibration ---------------------------------------------------------------------------


def _calibration_inputs(df):
    """(predicted probability, observed 0/1, what, n_dropped). Binary: P(positive) vs label;
    multiclass: confidence of the top class vs whether it was right."""
    kind = _infer_kind(df)
    if kind == "binary":
        y, s, dropped = _binary_arrays(df)
        return np.clip(s, 0, 1), y, "positive class", dropped
    if kind == "multiclass":
        labels, proba, classes, dropped = _multiclass_arrays(df)
        if not len(proba):
            return np.array([]), np.array([]), "top class", dropped
        top = np.asarray(classes)[proba.argmax(axis=1)]
        return np.clip(proba.max(axis=1), 0, 1), (top == labels).astype(int), "top class", dropped
    return np.array([]), np.array([]), "", 0


@_styled
def calibration_plot(predictions_by_job, path, n_bins=10, title=None):
    """Reliability diagram (mean predicted probability vs observed frequency in 10 equal-width bins)
    with the distribution of scores underneath; Brier score in the legend. Real control only."""
    jobs = {str(k): _real(v) for k, v in (predictions_by_job or {}).items()}
    title = title or "Calibration: do predicted probabilities match observed frequencies? (out-of-fold)"
    if not jobs:
        return _empty(path, title, "no predictions to show")
    fig = _figure(8, 7.2 + 0.2 * math.ceil(len(jobs) / 2))
    ax, ax_hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    edges = np.linspace(0, 1, n_bins + 1)
    handles, notes, what = [], [], ""
    for i, (label, df) in enumerate(jobs.items()):
        style = _style_for(i)
        p, y, what_i, dropped = _calibration_inputs(df) if len(df) else (np.array([]), np.array([]), "", 0)
        what = what or what_i
        if dropped:
            notes.append(f"{_short(label)}: {_dropped_note(dropped)}")
        if not len(p):
            notes.append(f"{_short(label)}: no usable probabilities")
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
                label=f"{_short(label)} (Brier {brier:.3f}, n={len(p)})",
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
        _note(ax, "no calibration curve could be drawn")
    else:
        fig.legend(handles=handles, loc="outside lower center", ncol=2 if len(handles) > 1 else 1, frameon=False)
    fig.suptitle(title + (("\n" + "; ".join(notes[:3])) if notes else ""))
    return _save(fig, path)


# ---- Kaplan-Meier --------------------------------------------------------------------------


def _oof_risk_per_sample(df):
    """One out-of-fold risk per sample. Fold models put risks on different scales, so risks are
    ranked within each (repeat, fold) first and the ranks averaged over repeats."""
    risk = pd.to_numeric(df["risk"], errors="coerce")
    keys = [c for c in ("repeat", "fold") if c in df.columns]
    rank = risk.groupby([df[c] for c in keys]).rank(pct=True) if keys else risk.rank(pct=True)
    frame = pd.DataFrame(
        {
            "rank": rank,
            "time": pd.to_numeric(df["time"], errors="coerce"),
            "event": pd.to_numeric(df["event"], errors="coerce"),
        }
    )
    if "sample" in df.columns:
        frame["sample"] = df["sample"].astype(str).to_numpy()
        frame = frame.groupby("sample", sort=True).agg(
            rank=("rank", "mean"), time=("time", "first"), event=("event", "first")
        )
    return frame


@_styled
def km_plot(predictions, path, title=None):
    """Kaplan-Meier survival of samples split at the median out-of-fold risk (high vs low), with the
    log-rank p-value and numbers at risk. Real control only."""
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test

    title = title or "Survival by out-of-fold predicted risk"
    df = _real(predictions)
    missing = [c for c in ("time", "event", "risk") if c not in df.columns]
    if not len(df) or missing:
        return _empty(path, title, "no survival predictions to show" + (f" (missing: {missing})" if missing else ""))
    frame = _oof_risk_per_sample(df)
    n_all = len(frame)
    frame = frame.dropna()
    frame = frame[frame["time"] >= 0]
    notes = [f"{n_all - len(frame)} sample(s) without risk/time left out"] if len(frame) < n_all else []
    if len(frame) == 0:
        return _empty(path, title, "no sample has a usable risk score")
    median = frame["rank"].median()
    high = frame["rank"] > median
    groups = [("low risk (≤ median)", ~high, PALETTE[0]), ("high risk (> median)", high, PALETTE[5])]
    if high.all() or (~high).all():
        groups = [("all samples", pd.Series(True, index=frame.index), PALETTE[0])]
        notes.append("risk scores do not separate the samples (all tied)")
        p_text = "log-rank p = n/a"
    else:
        test = logrank_test(
            frame.loc[high, "time"], frame.loc[~high, "time"], frame.loc[high, "event"], frame.loc[~high, "event"]
        )
        p_text = f"log-rank p = {_fmt_p(float(test.p_value))}"

    fig = _figure(8, 6.2)
    ax, ax_table = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    tmax = float(frame["time"].max()) or 1.0
    ticks = [t for t in MaxNLocator(6).tick_values(0, tmax) if 0 <= t <= tmax]
    for row, (label, mask, colour) in enumerate(groups):
        sub = frame[mask]
        kmf = KaplanMeierFitter().fit(sub["time"], sub["event"].astype(bool), label=label)
        sf = kmf.survival_function_.iloc[:, 0]
        ci = kmf.confidence_interval_
        ax.step(
            sf.index,
            sf.to_numpy(),
            where="post",
            color=colour,
            linewidth=1.8,
            label=f"{label}: n={len(sub)}, events={int(sub['event'].sum())}",
        )
        ax.fill_between(ci.index, ci.iloc[:, 0], ci.iloc[:, 1], step="post", color=colour, alpha=0.15, linewidth=0)
        censored = sub[sub["event"] == 0]["time"].to_numpy()
        if len(censored):
            ax.plot(censored, kmf.survival_function_at_times(censored).to_numpy(), "|", color=colour, markersize=7)
        times = sub["time"].to_numpy()
        for t in ticks:
            ax_table.text(t, row, str(int((times >= t).sum())), ha="center", va="center", fontsize=9, color=colour)
    ax.set(
        ylim=(-0.02, 1.02),
        ylabel="survival probability",
        title=f"{title}\n{p_text}" + (("; " + "; ".join(notes)) if notes else ""),
    )
    ax.grid(color="#EEEEEE", linewidth=0.8)
    ax.legend(loc="upper right", frameon=True, framealpha=0.9, title="shaded: 95% CI; |: censored", title_fontsize=8)
    ax_table.set_xlim(-0.03 * tmax, tmax * 1.03)
    ax_table.set_xticks(ticks)
    ax_table.set_ylim(len(groups) - 0.5, -0.5)
    ax_table.set_yticks(range(len(groups)), [g[0].split(" (")[0] for g in groups])
    ax_table.set_xlabel("time")
    ax_table.set_title("number at risk", fontsize=9, loc="left")
    ax_table.tick_params(axis="y", length=0)
    for side in ("left", "top", "right"):
        ax_table.spines[side].set_visible(False)
    return _save(fig, path)


# ---- importance ----------------------------------------------------------------------------


def _top_importance(importance_df, top):
    """(top rows sorted by |importance|, number of NaN importances) or (None, reason)."""
    if importance_df is None or not len(importance_df) or not {"feature", "importance"} <= set(importance_df.columns):
        return None, "no feature importance available"
    table = importance_df.assign(importance=pd.to_numeric(importance_df["importance"], errors="coerce"))
    n_nan = int(table["importance"].isna().sum())
    table = table.dropna(subset=["importance"])
    table = (
        table.assign(_abs=table["importance"].abs())
        .sort_values(["_abs", "feature"], ascending=[False, True], kind="mergesort")
        .head(top)
    )
    if not len(table):
        return None, "every importance value is missing"
    return table, n_nan


def _importance_panel(ax, table, n_nan, xlabel, title, colour, rows=None):
    n = len(table)
    rows = max(rows or n, n)  # panels of one figure share a bar height; short lists sit at the top
    y = np.arange(n)[::-1]
    ax.barh(y, table["importance"].to_numpy(), color=colour, height=0.7)
    ax.set_yticks(y, [_short(f, 32) for f in table["feature"]])
    ax.set_ylim(n - rows - 0.6, n - 0.4)
    ax.set_xlabel(xlabel)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.grid(axis="x", color="#EEEEEE", linewidth=0.8)
    notes = []
    if (table["importance"] == 0).all():
        notes.append("all importances are zero")
    if n_nan:
        notes.append(f"{n_nan} feature(s) without a value left out")
    ax.set_title(title + ("\n" + "; ".join(notes) if notes else ""), fontsize=10)


@_styled
def importance_plot(importance_df, path, top=20, title=None, xlabel="importance", max_panels=12):
    """Horizontal bars of the `top` most important features of the final model, largest on top.

    `importance_df` is one importance.tsv table, or a dict label -> table for one panel per job
    (at most `max_panels`, in the dict's order)."""
    title = title or f"Top {top} features by importance (final model)"
    if not isinstance(importance_df, dict):
        table, n_nan = _top_importance(importance_df, top)
        if table is None:
            return _empty(path, title, n_nan)
        fig = _figure(8, min(1.6 + 0.3 * len(table), 14))
        _importance_panel(fig.add_subplot(), table, n_nan, xlabel, title, PALETTE[0])
        return _save(fig, path)
    jobs = list(importance_df.items())
    if not jobs:
        return _empty(path, title, "no feature importance available")
    shown, more = jobs[:max_panels], len(jobs) - max_panels
    ncols = 1 if len(shown) == 1 else 2
    nrows = math.ceil(len(shown) / ncols)
    rows_per_panel = min(top, max((len(t) for _, t in shown if t is not None), default=1))
    fig = _figure(10 if ncols == 2 else 8, min(nrows * (1.3 + 0.26 * rows_per_panel) + 0.8, 40))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, (ax, (label, frame)) in enumerate(zip(axes, shown)):
        table, n_nan = _top_importance(frame, top)
        if table is None:
            ax.set_axis_off()
            ax.set_title(_short(label, 50), fontsize=10)
            _note(ax, n_nan, size=9)
        else:
            _importance_panel(ax, table, n_nan, xlabel, _short(label, 50), PALETTE[i % len(PALETTE)], rows_per_panel)
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    fig.suptitle(title + (f"\n{more} more model(s) not shown" if more > 0 else ""))
    return _save(fig, path)


# ---- PCA -----------------------------------------------------------------------------------


def _aligned(matrix, sheet, column):
    """Labels for the matrix rows (NaN where the sheet has none)."""
    if sheet is None or column is None or column not in sheet.columns:
        return None
    ids = sheet["sample"].astype(str) if "sample" in sheet.columns else sheet.index.astype(str)
    return pd.Series(sheet[column].to_numpy(), index=ids).groupby(level=0).first().reindex(matrix.index.astype(str))


@_styled
def pca_plot(matrix, sheet, label_column, path, top_variable=2000, title=None):
    """Samples on the first two principal components of the standardised matrix (the
    `top_variable` most variable features), coloured by `label_column` of the sample sheet.
    Descriptive QC only: computed on all samples, never used for modelling."""
    from sklearn.decomposition import PCA

    title = title or "PCA of samples (quality control)"
    data = _numeric(matrix)
    variance = data.var(axis=0)
    varying = variance[variance > 0]
    if data.shape[0] < 3 or len(varying) < 2:
        return _empty(
            path, title, f"too little data for PCA ({data.shape[0]} samples × {len(varying)} varying features)"
        )
    # Like DESeq2's plotPCA: the most variable features carry the structure; the rest add noise and time.
    keep = varying.sort_values(ascending=False, kind="mergesort").index[:top_variable]
    if len(varying) > top_variable:
        note = f"{top_variable} most variable of {len(varying)} features, standardised"
    else:
        note = f"{len(varying)} features, standardised"
    data = data[keep]
    data = data.fillna(data.mean())
    values = data.to_numpy()
    std = values.std(axis=0)
    values = (values - values.mean(axis=0)) / np.where(std > 0, std, 1.0)
    pca = PCA(n_components=2, random_state=0)  # "auto" solver; seeded in case it picks randomized
    coords = pca.fit_transform(values)
    ratio = pca.explained_variance_ratio_

    labels = _aligned(data, sheet, label_column)
    fig = _figure(8.5, 6.2)
    ax = fig.add_subplot()
    numeric = labels is not None and pd.api.types.is_numeric_dtype(labels) and labels.nunique() > 10
    if labels is None:
        ax.scatter(coords[:, 0], coords[:, 1], s=22, color=PALETTE[0], alpha=0.8, edgecolor="white", linewidth=0.4)
        if label_column:
            note += f"; column '{label_column}' not in the sample sheet"
    elif numeric:
        ok = labels.notna().to_numpy()
        ax.scatter(coords[~ok, 0], coords[~ok, 1], s=18, color=GREY, alpha=0.6, label="missing")
        points = ax.scatter(
            coords[ok, 0],
            coords[ok, 1],
            c=labels[ok].to_numpy(dtype=float),
            cmap="viridis",
            s=22,
            alpha=0.85,
            edgecolor="white",
            linewidth=0.4,
        )
        fig.colorbar(points, ax=ax, label=label_column)
    else:
        text = pd.Series(_label_str(labels), index=labels.index).where(labels.notna().to_numpy(), "missing")
        levels = sorted(set(text) - {"missing"})
        style = {level: i for i, level in enumerate(levels)}  # colour fixed by name, not by size
        # Largest groups first so that small ones are drawn on top and stay visible.
        order = sorted(levels, key=lambda level: (-int((text == level).sum()), level))
        order = (["missing"] if (text == "missing").any() else []) + order
        for level in order:
            i = style.get(level, 0)
            mask = (text == level).to_numpy()
            colour = GREY if level == "missing" else PALETTE[i % len(PALETTE)]
            ax.scatter(
                coords[mask, 0],
                coords[mask, 1],
                s=24,
                color=colour,
                marker=MARKERS[i % len(MARKERS)],
                alpha=0.8,
                edgecolor="white",
                linewidth=0.4,
                label=f"{_short(level, 25)} (n={int(mask.sum())})",
            )
        fig.legend(title=label_column, loc="outside right upper", frameon=False, fontsize=8 if len(order) > 8 else 8.5)
    ax.set(xlabel=f"PC1 ({ratio[0]:.1%} of variance)", ylabel=f"PC2 ({ratio[1]:.1%} of variance)")
    ax.grid(color="#EEEEEE", linewidth=0.8)
    ax.set_title(f"{title}\n{data.shape[0]} samples; {note}")
    return _save(fig, path)


# ---- per-sample QC -------------------------------------------------------------------------


def _robust_z(values):
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).any():
        return np.zeros_like(values)
    med = np.nanmedian(values)
    mad = 1.4826 * np.nanmedian(np.abs(values - med))
    if not np.isfinite(mad) or mad == 0:
        return np.zeros_like(values)
    return (values - med) / mad


def _pick_samples(scores, n_max, seed=0):
    """Indices of at most n_max samples: the most extreme by each score, then a fixed random draw."""
    n = len(scores[0])
    if n <= n_max:
        return np.arange(n)
    chosen = []
    per_score = max(1, n_max // (5 * len(scores)))
    for z in scores:
        order = np.argsort(-np.nan_to_num(np.abs(z), nan=0.0), kind="mergesort")
        chosen.extend(int(i) for i in order[:per_score])
    chosen = list(dict.fromkeys(chosen))
    rest = np.setdiff1d(np.arange(n), chosen)
    rng = np.random.default_rng(seed)
    chosen += [int(i) for i in rng.choice(rest, size=n_max - len(chosen), replace=False)]
    return np.sort(np.asarray(chosen))


@_styled
def qc_plot(matrix, unit, path, max_samples=100, title=None):
    """Per-sample value distributions (boxplots) above a per-sample summary that exposes outliers:
    library size for raw counts, otherwise the correlation with the median sample profile.
    Samples more than 3.5 robust SDs from the rest are highlighted. At most `max_samples` samples
    are shown: the most extreme ones plus a fixed random draw of the others."""
    title = title or "Per-sample quality control"
    data = _numeric(matrix)
    if data.shape[0] == 0 or data.shape[1] == 0 or not np.isfinite(data.to_numpy()).any():
        return _empty(path, title, "no values to show")
    values = data.to_numpy()
    finite = values[np.isfinite(values)]
    # Raw counts only if they look like counts: the normalised file may already be on a log scale.
    raw_counts = unit == "counts" and finite.min() >= 0 and np.allclose(finite, np.round(finite))
    if raw_counts or (unit in ("tpm", "fpkm") and finite.min() >= 0):
        shown = np.log2(values + 1)
        ylabel = f"log2({unit} + 1)"
    else:
        shown = values
        ylabel = {"log2": "log2 expression", "microarray": "intensity", "features": "feature value"}.get(
            unit, f"value ({unit})"
        )
    if raw_counts:
        summary = np.nansum(values, axis=1) / 1e6
        summary_label, low_only = "library size (million counts)", False
    else:
        filled = np.where(np.isfinite(shown), shown, np.nanmedian(shown, axis=0, keepdims=True))
        filled = np.nan_to_num(filled, nan=0.0)
        reference = np.median(filled, axis=0)
        centred = filled - filled.mean(axis=1, keepdims=True)
        ref_c = reference - reference.mean()
        denom = np.linalg.norm(centred, axis=1) * np.linalg.norm(ref_c)
        with np.errstate(invalid="ignore", divide="ignore"):
            summary = np.where(denom > 0, centred @ ref_c / denom, np.nan)
        summary_label, low_only = "correlation with the median sample", True
    medians = np.nanmedian(np.where(np.isfinite(shown), shown, np.nan), axis=1) if shown.size else np.array([])
    z_summary, z_median = _robust_z(summary), _robust_z(medians)
    flagged = (np.abs(z_median) > 3.5) | ((z_summary < -3.5) if low_only else (np.abs(z_summary) > 3.5))
    picked = _pick_samples([z_summary, z_median], max_samples)

    names = [_short(s, 20) for s in data.index.astype(str)[picked]]
    boxes = [col[np.isfinite(col)] for col in shown[picked]]
    k = len(picked)
    fig = _figure(10 if k > 30 else max(6, 0.25 * k + 3), 7)
    ax, ax_sum = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    colours = [PALETTE[5] if flagged[i] else PALETTE[0] for i in picked]
    positions = np.arange(k)
    nonempty = [i for i, b in enumerate(boxes) if len(b)]
    if nonempty:
        parts = ax.boxplot(
            [boxes[i] for i in nonempty],
            positions=positions[nonempty],
            widths=0.6,
            showfliers=False,
            patch_artist=True,
            medianprops={"color": "black", "linewidth": 1},
        )
        for patch, i in zip(parts["boxes"], nonempty):
            patch.set_facecolor(colours[i])
            patch.set_alpha(0.75)
            patch.set_linewidth(0.6)
    if shown is values and finite.min() > 0 and finite.max() / finite.min() > 1e3:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", color="#EEEEEE", linewidth=0.8)
    ax_sum.bar(positions, summary[picked], color=colours, width=0.7)
    ax_sum.set_ylabel(summary_label if len(summary_label) < 25 else summary_label.replace(" with ", "\nwith "))
    if low_only and np.isfinite(summary[picked]).any():
        low = np.nanmin(summary[picked])
        ax_sum.set_ylim(max(-1.0, low - 0.05 * (1 - low) - 0.01), 1.0)
    fontsize = 8 if k <= 40 else 6 if k <= 70 else 5
    ax_sum.set_xticks(positions, names, rotation=90, fontsize=fontsize)
    ax_sum.set_xlim(-0.7, k - 0.3)
    ax_sum.set_xlabel("sample")
    shown_text = (
        f"{k} samples"
        if k == data.shape[0]
        else f"showing {k} of {data.shape[0]} samples (the most extreme plus a fixed random draw)"
    )
    flag_text = (
        f"{int(flagged.sum())} possible outlier sample(s) highlighted" if flagged.any() else "no outlier sample flagged"
    )
    fig.suptitle(f"{title}\n{shown_text}; {flag_text}")
    handles = [
        Patch(color=PALETTE[0], alpha=0.75, label="sample"),
        Patch(color=PALETTE[5], alpha=0.75, label="possible outlier (> 3.5 robust SD)"),
    ]
    ax.legend(handles=handles, loc="upper right", frameon=True, framealpha=0.85)
    return _save(fig, path)


def mapping_plot(table: pd.DataFrame, floor: float, path):
    """Per-sample mapping rate (with the configured floor) and read counts: reads in, after fastp,
    and the library size the quantifier assigned. Flagged samples in red."""
    table = table.sort_values("sample", kind="stable").reset_index(drop=True)
    fig = Figure(figsize=(max(6.0, 0.32 * len(table) + 2.5), 6.4), layout="constrained")
    ax_rate, ax_reads = fig.subplots(2, 1, sharex=True)
    x = np.arange(len(table))
    flagged = table.get("flagged", pd.Series(False, index=table.index)).astype(bool).to_numpy()
    colours = np.where(flagged, NOTE_COLOUR, PALETTE[0])
    ax_rate.bar(x, table["mapping_rate"].astype(float), color=colours, zorder=2)
    ax_rate.axhline(floor, color="#555555", linestyle="--", linewidth=1, label=f"floor {floor:.2f}")
    ax_rate.set_ylim(0, 1)
    ax_rate.set_ylabel("mapping rate")
    ax_rate.legend(loc="lower right", frameon=False)
    ax_rate.set_title(f"Mapping QC: {int(flagged.sum())} of {len(table)} sample(s) under the floor (red)")
    width = 0.27
    unit = str(table["read_unit"].iloc[0]) if "read_unit" in table and len(table) else "reads"
    for i, (column, label) in enumerate(
        (("reads_in", f"{unit} in"), ("reads_after_fastp", "after fastp"), ("library_size", "library size (assigned)"))
    ):
        if column in table and table[column].notna().any():
            ax_reads.bar(
                x + (i - 1) * width,
                table[column].astype(float),
                width,
                label=label,
                color=PALETTE[i % len(PALETTE)],
                zorder=2,
            )
    ax_reads.set_ylabel(unit)
    ax_reads.legend(frameon=False, fontsize=8)
    ax_reads.set_xticks(x, table["sample"], rotation=90, fontsize=7)
    for ax in (ax_rate, ax_reads):
        ax.grid(axis="y", color="#E5E5E5", zorder=0)
    return _save(fig, path)
