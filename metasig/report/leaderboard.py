"""Leaderboard figure: a forest plot of every group x model of a task against its gate and
permuted control, with the sample note shared by the report."""

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from metasig.config import LOWER_IS_BETTER
from metasig.learn.metrics_file import interval
from metasig.publish.gate import no_signal as gate_no_signal
from metasig.publish.gate_table import gate_lookup, truthy
from metasig.report.style import GREY, NOTE_COLOUR, PALETTE, empty, new_figure, save, short, styled


def _fmt(x, digits=2):
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _gate_summary(gate_rows_df):
    """(group, model) -> passed, and the gate threshold and bound, from a task's gate table
    (`metasig.publish.gate_table`). Missing table or columns: nothing is marked as passed."""
    passed, threshold, bound = {}, None, None
    if gate_rows_df is None or len(gate_rows_df) == 0:
        return passed, threshold, bound
    if {"group", "model", "passed"} <= set(gate_rows_df.columns):
        rows = gate_lookup(gate_rows_df, keys=("group", "model"))
        passed = {key: truthy(row["passed"]) for key, row in rows.items()}
    if "min" in gate_rows_df.columns:
        values = pd.to_numeric(gate_rows_df["min"], errors="coerce").dropna()
        if len(values):
            threshold = float(values.iloc[0])
    if "bound" in gate_rows_df.columns and gate_rows_df["bound"].notna().any():
        bound = str(gate_rows_df["bound"].dropna().iloc[0])
    return passed, threshold, bound


def sample_note(doc):
    """'\n(n = 40 samples; 4 left out: missing her2 (3), class 'M7' < min_class_size 5 (1))' from a
    metrics.json, so the report shows how many samples each task used and how many it could not
    use, and why."""
    if not doc or doc.get("n_samples") is None:
        return ""
    note = f"n = {doc['n_samples']} samples"
    if doc.get("n_left_out") is not None:
        reasons = ", ".join(f"{k} ({v})" for k, v in (doc.get("left_out") or {}).items())
        note += f"; {doc['n_left_out']} left out" + (f": {reasons}" if reasons else "")
    return f"\n({note})"


@styled
def leaderboard_plot(metrics_docs, gate_rows_df, path, metric, threshold=None, gate=None):
    """Forest plot: one row per group x model with the metric's estimate and 95% CI, the permuted
    control's CI as a grey band beneath it, the gate threshold as a dashed line; models that passed
    the gate are filled, the others hollow. Rows are sorted best first.

    `metrics_docs`: list of metrics.json dicts. `gate_rows_df`: the task's gate table (see
    `_gate_summary`) or None. `threshold`/`gate` (gate settings dict) override the table's threshold.
    """
    docs = list(metrics_docs or [])
    first = docs[0] if docs else {}
    where = " / ".join(str(first[k]) for k in ("dataset", "task") if k in first)
    title = f"{where}: {metric} by gene group and model" if where else f"{metric} by gene group and model"
    title += sample_note(first)
    if not docs:
        return empty(path, title, "no trained models to show")
    passed, table_threshold, bound = _gate_summary(gate_rows_df)
    gate = gate or {}
    if threshold is None:
        threshold = gate.get("min") if gate.get("metric", metric) == metric else None
    if threshold is None:
        threshold = table_threshold
    bound = gate.get("bound", bound)
    lower_better = metric in LOWER_IS_BETTER

    rows = []
    for doc in docs:
        real, perm = interval(doc.get("metrics"), metric), interval(doc.get("permuted"), metric)
        est, lo, hi = real["estimate"], real["ci_low"], real["ci_high"]
        pest, plo, phi = perm["estimate"], perm["ci_low"], perm["ci_high"]
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
                "no_signal": gate_no_signal(doc, metric) is True,
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
    fig = new_figure(9, min(2.4 + 0.42 * n, 40))
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
    labels = [f"{short(r.group, 28)} · {short(r.model, 20)}" for r in table.itertuples()]
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
        no_signal = row.no_signal
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
    return save(fig, path)
