"""Kaplan-Meier survival of samples split by their out-of-fold predicted risk."""

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from metasig.report.predictions import real
from metasig.report.style import PALETTE, empty, new_figure, save, styled


def _fmt_p(p):
    if p is None or not np.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


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


@styled
def km_plot(predictions, path, title=None):
    """Kaplan-Meier survival of samples split at the median out-of-fold risk (high vs low), with the
    log-rank p-value and numbers at risk. Real control only."""
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test

    title = title or "Survival by out-of-fold predicted risk"
    df = real(predictions)
    missing = [c for c in ("time", "event", "risk") if c not in df.columns]
    if not len(df) or missing:
        return empty(path, title, "no survival predictions to show" + (f" (missing: {missing})" if missing else ""))
    frame = _oof_risk_per_sample(df)
    n_all = len(frame)
    frame = frame.dropna()
    frame = frame[frame["time"] >= 0]
    notes = [f"{n_all - len(frame)} sample(s) without risk/time left out"] if len(frame) < n_all else []
    if len(frame) == 0:
        return empty(path, title, "no sample has a usable risk score")
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

    fig = new_figure(8, 6.2)
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
    return save(fig, path)
