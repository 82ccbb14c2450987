"""Stateless, per-sample normalization of an expression matrix (samples x genes).

Only transforms that look at one sample at a time belong here: they cannot leak information
between training and test samples, so the workflow may apply them once, before any split.
DESeq2's VST estimates size factors and a dispersion trend across samples, so `vst` passes the
counts through unchanged here and is fitted inside the training folds
(`metasig.learn.preprocess.DESeq2VST`).
"""

import numpy as np
import pandas as pd

from metasig.errors import InputError

METHODS = ("none", "log2p1", "log2cpm", "vst", "deseq2")
# Passed through here and fitted inside the training folds instead (metasig.learn.preprocess).
IN_FOLD = ("vst", "deseq2")
# log2 CPM as in limma-voom: log2((x + 0.5) / (library size + 1) * 1e6). The prior count is added
# per sample (not scaled by the mean library size as edgeR does), so each sample's result
# depends on that sample alone.
DEFAULT_PRIOR_COUNT = 0.5


def normalize(
    matrix: pd.DataFrame, method: str, prior_count: float = DEFAULT_PRIOR_COUNT, source="expression matrix"
) -> pd.DataFrame:
    """Return a normalized copy of `matrix` (samples x genes).

    none: unchanged; log2p1: log2(x + 1) (TPM/FPKM); log2cpm: log2 counts per million with a
    prior count (counts); vst: counts unchanged (VST is fitted in-fold). `source` names the
    input in error messages.
    """
    if method not in METHODS:
        raise ValueError(f"unknown normalization {method!r}; expected one of {METHODS}")
    out = matrix.astype("float64", copy=True)
    if method == "none":
        return out
    _check_non_negative(out, method, source)
    if method in ("vst", "deseq2"):
        return out
    if method == "log2p1":
        return np.log2(out + 1.0)
    library = out.sum(axis=1, skipna=True)
    if (library <= 0).any():
        bad = library.index[library <= 0][0]
        raise InputError(source, bad, "sample has no counts (library size 0); log2cpm cannot scale it")
    return np.log2((out + prior_count).div(library + 2 * prior_count, axis=0) * 1e6)


def _check_non_negative(frame: pd.DataFrame, method: str, source):
    """Log transforms and VST need raw, non-negative abundances; name the first bad cell."""
    values = frame.to_numpy()
    bad = values < 0  # NaN compares False: missing values pass through unchanged
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise InputError(
            source,
            frame.columns[col],
            f"negative value {values[row, col]:g} in sample {frame.index[row]!r}; normalization "
            f"'{method}' needs non-negative raw values (counts, TPM or FPKM). If the data are "
            "already on a log scale, set the dataset's normalization to 'none'",
        )
