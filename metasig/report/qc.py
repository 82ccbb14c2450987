"""Per-sample quality control of an expression matrix: value distributions and outlier summary."""

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from metasig.report.style import PALETTE, empty, new_figure, save, short, styled


def numeric_frame(matrix):
    """Float copy of a samples x features frame with string sample IDs (non-numbers become NaN)."""
    if matrix is None:
        return pd.DataFrame()
    try:
        data = matrix.astype(float)  # astype copies, so the caller's frame is never modified
    except (TypeError, ValueError):
        data = matrix.apply(pd.to_numeric, errors="coerce").astype(float)
    data.index = data.index.astype(str)
    return data


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


@styled
def qc_plot(matrix, unit, path, max_samples=100, title=None):
    """Per-sample value distributions (boxplots) above a per-sample summary that exposes outliers:
    library size for raw counts, otherwise the correlation with the median sample profile.
    Samples more than 3.5 robust SDs from the rest are highlighted. At most `max_samples` samples
    are shown: the most extreme ones plus a fixed random draw of the others."""
    title = title or "Per-sample quality control"
    data = numeric_frame(matrix)
    if data.shape[0] == 0 or data.shape[1] == 0 or not np.isfinite(data.to_numpy()).any():
        return empty(path, title, "no values to show")
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

    names = [short(s, 20) for s in data.index.astype(str)[picked]]
    boxes = [col[np.isfinite(col)] for col in shown[picked]]
    k = len(picked)
    fig = new_figure(10 if k > 30 else max(6, 0.25 * k + 3), 7)
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
    return save(fig, path)
