"""The gate TSV: its columns, its writer and reader, the one parser of its boolean columns and the
one lookup of its rows by model.

`metasig.publish.gate.gate_task` builds the rows; this module is the only code that writes them to
or reads them from disk, or reads their `passed` / `no_signal` flags.
"""

import math

import pandas as pd

from metasig import io

GATE_COLUMNS = [
    "dataset",
    "task",
    "group",
    "model",
    "kind",
    "metric",
    "bound",
    "min",
    "beat_permuted",
    "value",
    "ci_low",
    "ci_high",
    "permuted_ci_low",
    "permuted_ci_high",
    "beat_random",
    "random_p_max",
    "random_sets",
    "random_median",
    "random_p95",
    "random_p",
    "passed",
    "no_signal",
    "reason",
]
ID_COLUMNS = ["dataset", "task", "group", "model"]
# the random-gene-set control of the gate metric (metasig.learn.random_sets.compare); K = 0 without one
RANDOM_COLUMNS = ["random_sets", "random_median", "random_p95", "random_p"]


def write_gates(rows: pd.DataFrame, path):
    """Write a gate table (from `gate_task`) as TSV, atomically."""
    with io.atomic_path(path) as tmp:
        rows.to_csv(tmp, sep="\t", index=False)


def read_gate(path) -> pd.DataFrame:
    """One gate TSV as written by `write_gates`."""
    return pd.read_csv(path, sep="\t")


def read_gates(paths) -> pd.DataFrame:
    """Several gate TSVs (one per task), concatenated."""
    return pd.concat([read_gate(p) for p in paths], ignore_index=True)


def flag(value):
    """A gate boolean (`passed`, `no_signal`) as True, False or <NA> (missing: None, NaN, <NA>).

    Accepts what the gate table holds in memory (bool) and read back from TSV ("True"/"False",
    also "1"/"yes")."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return pd.NA
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def truthy(value) -> bool:
    """`flag`, with a missing value counting as False."""
    return flag(value) is True


def records(gate_rows):
    """The rows of a gate table (DataFrame or records) as a list of dicts; None gives []."""
    if gate_rows is None:
        return []
    return gate_rows.to_dict("records") if hasattr(gate_rows, "to_dict") else list(gate_rows)


def gate_lookup(gate_rows, keys=ID_COLUMNS) -> dict:
    """{tuple of str(row[k]) for k in keys: row} over a gate table (DataFrame, records or None)."""
    return {tuple(str(r[k]) for k in keys): r for r in records(gate_rows)}
