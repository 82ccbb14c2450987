"""random_sets.tsv (`results/models/<dataset>/<task>/<group>/<model>/random_sets.tsv`): the
random-gene-set control of one model. Its writer and its reader.

One row per random set: `set` (1..K), `seed` (the set is
`numpy.random.default_rng(seed).choice(sorted(measured genes), n_genes, replace=False)`), `n_genes`,
`genes_sha1` (fingerprint of the sorted genes), one column per metric (the nested-CV point estimate,
rounded to 6 decimals as in metrics.json, so equal results compare equal; empty when undefined),
then `genes` (comma-separated, sorted).
"""

import pandas as pd

from metasig import io
from metasig.errors import InputError
from metasig.learn.metrics_file import DECIMALS

LEADING = ["set", "seed", "n_genes", "genes_sha1"]


def write_random_sets(rows, path):
    """Write the rows of `metasig.learn.random_sets.run` (dicts) atomically."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        raise ValueError("no random sets to write")
    metrics = [c for c in frame.columns if c not in LEADING and c != "genes"]
    frame[metrics] = frame[metrics].astype(float).round(DECIMALS)
    frame["genes"] = [",".join(sorted(g)) for g in frame["genes"]]
    with io.atomic_path(path) as tmp:
        frame[LEADING + metrics + ["genes"]].to_csv(tmp, sep="\t", index=False)


def read_random_sets(path) -> pd.DataFrame:
    """A random_sets.tsv as a frame (`genes` split back into lists)."""
    try:
        frame = pd.read_csv(
            path, sep="\t", dtype={"genes_sha1": str, "genes": str}, keep_default_na=False, na_values=[""]
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(path, "(file)", f"not a random-sets TSV: {exc}") from exc
    missing = [c for c in [*LEADING, "genes"] if c not in frame.columns]
    if missing:
        expected = f"{', '.join(LEADING)}, metrics, genes"
        raise InputError(path, "columns", f"missing {', '.join(missing)} (expected {expected})")
    frame["genes"] = [str(g).split(",") if isinstance(g, str) and g else [] for g in frame["genes"]]
    return frame


def metric_values(frame, metric, path="random_sets.tsv"):
    """One metric's values over the random sets (NaN where undefined)."""
    if metric not in frame.columns:
        metrics = [c for c in frame.columns if c not in LEADING and c != "genes"]
        raise InputError(path, metric, f"no such metric column (has: {', '.join(metrics)})")
    return pd.to_numeric(frame[metric], errors="coerce").to_numpy(dtype=float)
