"""Random-gene-set figure: each signature's metric against the same model on random gene sets of
its size (metasig.learn.random_sets), one row per group x model of a task."""

import numpy as np
from matplotlib.lines import Line2D

from metasig.learn.metrics_file import interval
from metasig.learn.random_sets import compare
from metasig.report.style import GREY, NOTE_COLOUR, PALETTE, empty, new_figure, save, short, styled


@styled
def random_sets_plot(rows, path, metric, title=""):
    """`rows`: [(metrics.json dict, random-set values of `metric`)]. Each row shows the random sets
    as grey dots (jittered vertically, seeded) with their median and 95th percentile as ticks, and
    the signature's estimate as a coloured diamond; the p-value is written beside it. Rows are
    sorted by p-value, then by the signature's estimate."""
    title = title or f"{metric}: gene groups against random gene sets of their size"
    if not rows:
        return empty(path, title, "no random gene sets to show")
    table = []
    for doc, values in rows:
        values = np.asarray(values, dtype=float)
        estimate = interval(doc.get("metrics"), metric)["estimate"]
        table.append(
            (str(doc.get("group", "?")), str(doc.get("model", "?")), estimate, values, compare(estimate, values))
        )
    table.sort(key=lambda r: (np.nan_to_num(r[4]["random_p"], nan=2.0), -np.nan_to_num(r[2], nan=-np.inf), r[0], r[1]))
    models = sorted({r[1] for r in table})
    colour = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}

    n = len(table)
    fig = new_figure(9, min(2.2 + 0.55 * n, 40))
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # jitter only; the same figure every run
    ys = np.arange(n)[::-1].astype(float)
    for y, (_, model, estimate, values, stats) in zip(ys, table):
        finite = values[np.isfinite(values)]
        ax.scatter(finite, y + rng.uniform(-0.18, 0.18, len(finite)), s=12, color=GREY, alpha=0.7, zorder=2)
        for value, size in ((stats["random_median"], 14), (stats["random_p95"], 10)):
            if np.isfinite(value):
                ax.plot(value, y, marker="|", markersize=size, color="#333333", markeredgewidth=2, zorder=3)
        if np.isfinite(estimate):
            ax.plot(estimate, y, marker="D", markersize=9, color=colour[model], markeredgecolor="black", zorder=4)
        p = stats["random_p"]
        text = f"p = {p:.2g} (K = {stats['random_sets']})" if np.isfinite(p) else "p not available"
        ax.text(
            1.01,
            y,
            text,
            transform=ax.get_yaxis_transform(),
            va="center",
            fontsize=8.5,
            color="black" if np.isfinite(p) and p <= 0.05 else NOTE_COLOUR,
            clip_on=False,
        )
    ax.set_yticks(ys, [f"{short(g, 28)} · {short(m, 20)}" for g, m, *_ in table])
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(f"{metric} (out-of-fold point estimate, nested CV)")
    ax.grid(axis="x", color="#E5E5E5", linewidth=0.8, zorder=0)
    ax.text(1.01, 1.0, "empirical p-value", transform=ax.transAxes, va="bottom", fontsize=8.5, fontweight="bold")
    handles = [
        Line2D([], [], marker="D", linestyle="", color=colour[m], markeredgecolor="black", label=m) for m in models
    ]
    handles += [
        Line2D([], [], marker="o", linestyle="", color=GREY, label="random gene sets of the same size"),
        Line2D(
            [], [], marker="|", linestyle="", color="#333333", markersize=12, label="their median / 95th percentile"
        ),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), frameon=False)
    fig.suptitle(title)
    return save(fig, path)
