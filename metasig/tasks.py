"""Turn a sample sheet and a task's config into the training target, with checks that name the
sample-sheet file and column when the labels cannot support the task."""

import numpy as np
import pandas as pd

from metasig.errors import InputError

_TRUE = {"1", "true", "yes", "dead", "deceased", "event"}
_FALSE = {"0", "false", "no", "alive", "living", "censored"}


def labelled_samples(sheet: pd.DataFrame, task: dict, sheet_file="samples.tsv") -> pd.Index:
    """Samples that carry the task's label (or time and event); the others are left out of it."""
    columns = [task["time"], task["event"]] if task["type"] == "survival" else [task["label"]]
    for col in columns:
        if col not in sheet.columns:
            raise InputError(sheet_file, col, f"column not found in the sample sheet (columns: {list(sheet.columns)})")
    keep = sheet[columns].notna().all(axis=1)
    return pd.Index(sheet.loc[keep, "sample"].astype(str))


def target(sheet: pd.DataFrame, task: dict, sheet_file="samples.tsv", min_per_class=2):
    """Return (samples, y). y: 0/1 ints (binary), class strings (multiclass), or a structured
    array with fields ('event', bool) and ('time', float) (survival)."""
    samples = labelled_samples(sheet, task, sheet_file)
    rows = sheet.set_index(sheet["sample"].astype(str)).loc[samples]
    if task["type"] == "survival":
        return samples, _survival(rows, task, sheet_file)
    labels = rows[task["label"]].astype(str)
    if task["type"] == "binary":
        positive = str(task["positive"])
        if positive not in set(labels):
            raise InputError(sheet_file, task["label"], f"positive class '{positive}' does not occur (values: {sorted(set(labels))})")
        y = (labels == positive).astype(int).to_numpy()
    else:
        y = labels.to_numpy()
    counts = pd.Series(y).value_counts()
    if len(counts) < 2:
        raise InputError(sheet_file, task["label"], f"the label has only one class ({counts.index[0]!r}); a classifier needs two or more")
    if counts.min() < min_per_class:
        raise InputError(sheet_file, task["label"], f"class {counts.idxmin()!r} has {counts.min()} sample(s); cross-validation needs at least {min_per_class}")
    return samples, y


def _survival(rows, task, sheet_file):
    time = pd.to_numeric(rows[task["time"]], errors="coerce")
    if time.isna().any():
        bad = time[time.isna()].index[0]
        raise InputError(sheet_file, task["time"], f"survival time is not a number (sample {bad}: {rows.loc[bad, task['time']]!r})")
    if (time <= 0).any():
        bad = time[time <= 0].index[0]
        raise InputError(sheet_file, task["time"], f"survival time must be > 0 (sample {bad}: {time[bad]})")
    event = rows[task["event"]].map(_as_event)
    if event.isna().any():
        bad = event[event.isna()].index[0]
        raise InputError(sheet_file, task["event"], f"event must be 1/0 or true/false (sample {bad}: {rows.loc[bad, task['event']]!r})")
    if not event.any():
        raise InputError(sheet_file, task["event"], "no sample has an event; survival models need events")
    y = np.empty(len(rows), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event.astype(bool).to_numpy(), time.to_numpy(dtype=float)
    return y


def _as_event(value):
    text = str(value).strip().lower()
    if text in ("1.0",):
        text = "1"
    if text in ("0.0",):
        text = "0"
    return True if text in _TRUE else False if text in _FALSE else None
