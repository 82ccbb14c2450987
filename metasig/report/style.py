"""The look of every report figure and how it is written to disk.

Figures are built with the object-oriented API (`matplotlib.figure.Figure`), never pyplot, so no
display or global figure registry is involved and nothing needs closing. SVG output is
byte-for-byte reproducible (fixed `svg.hashsalt`, no date). Degenerate inputs (one class, NaN
scores, empty tables) draw what they can and say what is missing inside the figure (`note`,
`empty`), so a report never fails because one gene group had nothing to show.
"""

import functools
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from metasig.io import atomic_path

# Okabe-Ito: distinguishable with the common colour-vision deficiencies; yellow last (weak on white).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"]
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
GREY = "#9A9A9A"
NOTE_COLOUR = "#B22222"

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


def styled(func):
    """Run a plotting function under the report style without touching global rcParams."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_RC):
            return func(*args, **kwargs)

    return wrapper


def new_figure(width, height):
    return Figure(figsize=(width, height), layout="constrained")


def save(fig, path):
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "svg"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, metadata=_METADATA.get(fmt))
    return path


def note(ax, text, y=0.5, size=10):
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


def empty(path, title, text, width=7, height=4):
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    note(ax, text)
    return save(fig, path)


def short(text, n=40):
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"
