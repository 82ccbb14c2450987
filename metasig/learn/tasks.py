"""Turn a sample sheet and a task's config into the training target, with checks that name the
sample-sheet file and column when the labels cannot support the task.

Only an empty cell is a missing label: text such as 'NA', 'None', 'null' or 'nan' is a value (a
class called 'NA' is possible), unless the task lists it under `missing`. Samples left out of a
task are reported by `left_out`, never dropped without a count."""

import numpy as np
import pandas as pd

from metasig.data.sources.labels import cell_text
from metasig.errors import InputError

_TRUE = {"1", "true", "yes", "dead", "deceased", "event"}
_FALSE = {"0", "false", "no", "alive", "living", "censored"}
_NA_LIKE = {"na", "n/a", "nan", "none", "null", "#n/a", "<na>", "-"}


def _columns(task):
    return [task["time"], task["event"]] if task["type"] == "survival" else [task["label"]]


def _cells(sheet, column, task):
    """The column as text (1.0 -> '1', as written otherwise); None where the task calls it missing."""
    missing = {cell_text(v) for v in task.get("missing") or []}
    values = sheet[column].map(cell_text)
    return values.where(~values.isin(missing - {None}), None)


def class_names(sheet: pd.DataFrame, task: dict):
    """Binary tasks: [negative, positive] label names as written in the sample sheet; else None."""
    if task["type"] != "binary":
        return None
    positive = cell_text(task["positive"])
    others = sorted(set(_cells(sheet, task["label"], task).dropna()) - {positive})
    return [others[0] if len(others) == 1 else f"not {positive}", positive]


def left_out(sheet: pd.DataFrame, task: dict, sheet_file="samples.tsv") -> dict:
    """{reason: [sample IDs]} of the samples a task cannot use (missing label, time or event)."""
    out = {}
    for col in _columns(task):
        if col not in sheet.columns:
            raise InputError(sheet_file, col, f"column not found in the sample sheet (columns: {list(sheet.columns)})")
    taken = pd.Series(False, index=sheet.index)
    for col in _columns(task):
        empty = _cells(sheet, col, task).isna() & ~taken
        if empty.any():
            out[f"missing {col}"] = list(sheet.loc[empty, "sample"].astype(str))
        taken |= empty
    return out


def labelled_samples(sheet: pd.DataFrame, task: dict, sheet_file="samples.tsv") -> pd.Index:
    """Samples that carry the task's label (or time and event); the others are left out of it."""
    dropped = {s for names in left_out(sheet, task, sheet_file).values() for s in names}
    ids = sheet["sample"].astype(str)
    return pd.Index(ids[~ids.isin(dropped)])


def group_values(sheet: pd.DataFrame, samples, column, sheet_file="samples.tsv", where="cv.group_by") -> np.ndarray:
    """The `column` value (as text) of each of `samples`, the groups grouped CV keeps together.
    A missing column or an empty cell is an InputError: a sample without a group cannot be kept
    with its own kind, and making it a group of its own would hide a broken join (e.g. normals
    without a patient ID) that lets one patient's samples leak across folds."""
    if column not in sheet.columns:
        raise InputError(
            sheet_file, column, f"{where}: column not found in the sample sheet (columns: {list(sheet.columns)})"
        )
    values = sheet.set_index(sheet["sample"].astype(str))[column].map(cell_text).reindex(pd.Index(samples).astype(str))
    empty = values.isna()
    if empty.any():
        few = ", ".join(values.index[empty][:5])
        raise InputError(
            sheet_file,
            column,
            f"{where}: {int(empty.sum())} sample(s) have no group value (e.g. {few}); fill the column "
            "(a sample that is its own group can get its sample ID) or leave the samples out of the task",
        )
    return values.to_numpy(dtype=str)


def left_out_text(left: dict, n=10) -> str:
    """'3 sample(s) left out: missing label (2: s4, s9), ...' for the job log."""
    if not left:
        return "no sample left out"
    parts = [
        f"{reason} ({len(ids)}: {', '.join(ids[:n])}{', ...' if len(ids) > n else ''})" for reason, ids in left.items()
    ]
    return f"{sum(len(v) for v in left.values())} sample(s) left out: " + "; ".join(parts)


def target(sheet: pd.DataFrame, task: dict, sheet_file="samples.tsv", min_per_class=2):
    """Return (samples, y). y: 0/1 ints (binary), class strings (multiclass), or a structured
    array with fields ('event', bool) and ('time', float) (survival)."""
    samples = labelled_samples(sheet, task, sheet_file)
    rows = sheet.set_index(sheet["sample"].astype(str)).loc[samples]
    if task["type"] == "survival":
        return samples, _survival(rows, task, sheet_file)
    # a blank makes pandas read a 0/1 column as floats: compare as written ('1', not '1.0')
    labels = _cells(rows, task["label"], task)
    if task["type"] == "binary":
        raw = task["positive"]
        positive = cell_text(raw)
        if positive not in set(labels):
            hint = ""
            if isinstance(raw, bool):
                hint = (
                    f"; YAML reads unquoted yes/no/true/false/on/off as a boolean ({raw}): "
                    'quote the value, e.g. positive: "yes"'
                )
            raise InputError(
                sheet_file,
                task["label"],
                f"positive class '{positive}' does not occur "
                f"(values: {', '.join(repr(v) for v in sorted(set(labels)))}){hint}",
            )
        y = (labels == positive).astype(int).to_numpy()
        others = sorted(set(labels) - {positive})
        names = pd.Series(np.where(y == 1, positive, others[0] if len(others) == 1 else f"not {positive}"))
    else:
        y = labels.to_numpy(dtype=object)
        names = pd.Series(y)
    # counts by the class label as written, not its 0/1 code
    counts = names.value_counts()
    if len(counts) < 2:
        raise InputError(
            sheet_file,
            task["label"],
            f"the label has only one class ('{counts.index[0]}'); a classifier needs two or more",
        )
    if counts.min() < min_per_class:
        raise InputError(
            sheet_file,
            task["label"],
            f"class '{counts.idxmin()}' has {int(counts.min())} sample(s); "
            f"cross-validation needs at least {min_per_class}",
        )
    return samples, y


def _survival(rows, task, sheet_file):
    written = _cells(rows, task["time"], task)
    time = pd.to_numeric(written, errors="coerce")
    if time.isna().any():
        bad = time[time.isna()].index[0]
        hint = ""
        if str(written[bad]).strip().lower() in _NA_LIKE:
            hint = (
                f"; only empty cells count as missing: leave the cell empty or list '{written[bad]}' "
                "under the task's `missing`"
            )
        raise InputError(
            sheet_file, task["time"], f"survival time is not a number (sample {bad}: '{written[bad]}'){hint}"
        )
    if (time <= 0).any():
        bad = time[time <= 0].index[0]
        raise InputError(sheet_file, task["time"], f"survival time must be > 0 (sample {bad}: {written[bad]})")
    event = rows[task["event"]].map(_as_event)
    if event.isna().any():
        bad = event[event.isna()].index[0]
        raise InputError(
            sheet_file,
            task["event"],
            f"event must be 1/0 or true/false (sample {bad}: '{cell_text(rows.loc[bad, task['event']])}')",
        )
    if not event.any():
        raise InputError(sheet_file, task["event"], "no sample has an event; survival models need events")
    y = np.empty(len(rows), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event.astype(bool).to_numpy(), time.to_numpy(dtype=float)
    return y


def _as_event(value):
    text = cell_text(value)
    text = "" if text is None else text.lower()
    return True if text in _TRUE else False if text in _FALSE else None
