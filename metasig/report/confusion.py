"""Confusion matrix of a classification model's out-of-fold predictions."""

import numpy as np

from metasig.report.predictions import binary_arrays, dropped_note, infer_kind, multiclass_arrays, real
from metasig.report.style import empty, new_figure, save, short, styled


@styled
def confusion_plot(predictions, classes, path, title=None):
    """Confusion matrix of the real control's out-of-fold predictions from the first outer repeat
    (each sample counted once): counts and row-normalised (recall per true class).
    Binary: predicted positive when score >= 0.5; multiclass: the class with the highest probability."""
    df = real(predictions)
    if len(df) and "repeat" in df.columns:
        n_repeats = df["repeat"].nunique()
        df = df[df["repeat"] == sorted(df["repeat"].unique())[0]]
    else:
        n_repeats = 1
    kind = infer_kind(df) if len(df) else "unknown"
    title = title or "Confusion matrix (out-of-fold)"
    if kind == "binary":
        y, s, dropped = binary_arrays(df)
        names = [str(c) for c in (classes or ["negative", "positive"])][:2]
        truth, pred = y, (s >= 0.5).astype(int)
        rule = "predicted positive if P ≥ 0.5"
    elif kind == "multiclass":
        labels, proba, proba_classes, dropped = multiclass_arrays(df)
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
        return empty(path, title, "confusion matrices apply to classification predictions")
    k = len(names)
    counts = np.zeros((k, k), dtype=int)
    valid = (truth >= 0) & (truth < k) & (pred >= 0) & (pred < k)
    np.add.at(counts, (truth[valid], pred[valid]), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = counts / counts.sum(axis=1, keepdims=True)

    size = min(max(4.2, 0.5 * k + 2.0), 7)
    fig = new_figure(min(2 * size + 0.8, 10.5), min(size, 5.2) + 1.0)
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
        ticks = [short(n, 18) for n in names]
        ax.set_xticks(range(k), ticks, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
        ax.set_yticks(range(k), ticks)
        ax.set(xlabel="predicted class", ylabel="true class", title=label)
        ax.spines[:].set_visible(False)
        fig.colorbar(image, ax=ax, shrink=0.75)
    notes = [rule, f"{int(valid.sum())} samples" + (f", repeat 1 of {n_repeats}" if n_repeats > 1 else "")]
    if dropped:
        notes.append(dropped_note(dropped))
    if len(np.unique(truth)) < 2:
        notes.append("only one true class present")
    fig.suptitle(f"{title}\n" + "; ".join(notes))
    return save(fig, path)
