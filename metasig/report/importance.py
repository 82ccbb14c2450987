"""Feature importance of the final model(s): top features as horizontal bars."""

import math

import numpy as np
import pandas as pd

from metasig.report.style import PALETTE, empty, new_figure, note, save, short, styled


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
    ax.set_yticks(y, [short(f, 32) for f in table["feature"]])
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


@styled
def importance_plot(importance_df, path, top=20, title=None, xlabel="importance", max_panels=12):
    """Horizontal bars of the `top` most important features of the final model, largest on top.

    `importance_df` is one importance.tsv table, or a dict label -> table for one panel per job
    (at most `max_panels`, in the dict's order)."""
    title = title or f"Top {top} features by importance (final model)"
    if not isinstance(importance_df, dict):
        table, n_nan = _top_importance(importance_df, top)
        if table is None:
            return empty(path, title, n_nan)
        fig = new_figure(8, min(1.6 + 0.3 * len(table), 14))
        _importance_panel(fig.add_subplot(), table, n_nan, xlabel, title, PALETTE[0])
        return save(fig, path)
    jobs = list(importance_df.items())
    if not jobs:
        return empty(path, title, "no feature importance available")
    shown, more = jobs[:max_panels], len(jobs) - max_panels
    ncols = 1 if len(shown) == 1 else 2
    nrows = math.ceil(len(shown) / ncols)
    rows_per_panel = min(top, max((len(t) for _, t in shown if t is not None), default=1))
    fig = new_figure(10 if ncols == 2 else 8, min(nrows * (1.3 + 0.26 * rows_per_panel) + 0.8, 40))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, (ax, (label, frame)) in enumerate(zip(axes, shown)):
        table, n_nan = _top_importance(frame, top)
        if table is None:
            ax.set_axis_off()
            ax.set_title(short(label, 50), fontsize=10)
            note(ax, n_nan, size=9)
        else:
            _importance_panel(ax, table, n_nan, xlabel, short(label, 50), PALETTE[i % len(PALETTE)], rows_per_panel)
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    fig.suptitle(title + (f"\n{more} more model(s) not shown" if more > 0 else ""))
    return save(fig, path)
