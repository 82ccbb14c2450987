"""Mapping QC of the reads stage: per-sample mapping rate against its floor, and read counts."""

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from metasig.report.style import NOTE_COLOUR, PALETTE, save


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
    return save(fig, path)
