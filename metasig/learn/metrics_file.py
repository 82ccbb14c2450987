"""metrics.json: its writer, its reader and the one accessor of a metric's interval.

A metrics.json (written by `metasig.learn.job.write_outputs`) holds, besides the model's identity,
a "metrics" block (held-out, real labels) and a "permuted" block (permuted-label control), each
{metric: {"estimate", "ci_low", "ci_high"[, "pooled"]}}. The file is deterministic: floats rounded
to DECIMALS digits, NaN/inf written as null.
"""

import math

import numpy as np

from metasig import io

DECIMALS = 6
FIELDS = ("estimate", "ci_low", "ci_high", "pooled")


def clean_json(value):
    """JSON-safe, deterministic copy: floats rounded, NaN/inf -> None, numpy -> Python, tuples ->
    lists, anything else unknown -> its repr."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return [clean_json(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return round(value, DECIMALS) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return repr(value)


def write_metrics(doc: dict, path):
    """Write a metrics document (cleaned by `clean_json`) atomically."""
    io.write_json(clean_json(doc), path)


def read_metrics(path) -> dict:
    return io.read_json(path)


def _num(value):
    """A float, or NaN for missing / non-numeric values."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def interval(block, metric) -> dict:
    """{"estimate", "ci_low", "ci_high", "pooled"} of `metric` in a "metrics" or "permuted" block,
    as floats; NaN where the block, the metric or the field is missing or not a number."""
    entry = (block or {}).get(metric) or {}
    return {k: _num(entry.get(k)) for k in FIELDS}
