"""PCA of samples (descriptive quality control, never used for modelling)."""

import numpy as np
import pandas as pd

from metasig.report.predictions import label_str
from metasig.report.qc import numeric_frame
from metasig.report.style import GREY, MARKERS, PALETTE, empty, new_figure, save, short, styled


def _aligned(matrix, sheet, column):
    """Labels for the matrix rows (NaN where the sheet has none)."""
    if sheet is None or column is None or column not in sheet.columns:
        return None
    ids = sheet["sample"].astype(str) if "sample" in sheet.columns else sheet.index.astype(str)
    return pd.Series(sheet[column].to_numpy(), index=ids).groupby(level=0).first().reindex(matrix.index.astype(str))


@styled
def pca_plot(matrix, sheet, label_column, path, top_variable=2000, title=None):
    """Samples on the first two principal components of the standardised matrix (the
    `top_variable` most variable features), coloured by `label_column` of the sample sheet.
    Descriptive QC only: computed on all samples, never used for modelling."""
    from sklearn.decomposition import PCA

    title = title or "PCA of samples (quality control)"
    data = numeric_frame(matrix)
    variance = data.var(axis=0)
    varying = variance[variance > 0]
    if data.shape[0] < 3 or len(varying) < 2:
        return empty(
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
    fig = new_figure(8.5, 6.2)
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
        text = pd.Series(label_str(labels), index=labels.index).where(labels.notna().to_numpy(), "missing")
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
                label=f"{short(level, 25)} (n={int(mask.sum())})",
            )
        fig.legend(title=label_column, loc="outside right upper", frameon=False, fontsize=8 if len(order) > 8 else 8.5)
    ax.set(xlabel=f"PC1 ({ratio[0]:.1%} of variance)", ylabel=f"PC2 ({ratio[1]:.1%} of variance)")
    ax.grid(color="#EEEEEE", linewidth=0.8)
    ax.set_title(f"{title}\n{data.shape[0]} samples; {note}")
    return save(fig, path)
