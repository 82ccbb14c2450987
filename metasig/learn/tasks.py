"""Turn a sample sheet and a task's config into the training target, with checks that name the
sample-sheet file and column when the labels cannot support the task.

Only an empty cell is a missing label: text such as 'NA', 'None', 'null' or 'nan' is a value (a
class called 'NA' is possible), unless the task lists it under `missing`. A multiclass task leaves
out the classes smaller than its `min_class_size` (see `min_class_size`); a binary task cannot, so
there a class that small is an error. Samples left out of a task are reported by `left_out`, never
dropped without a count.

`folds` ({"outer_folds", "inner_folds"}, e.g. the task's cv settings) sets the default
min_class_size; without them it is 2."""

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


def min_class_size(task: dict, folds=None) -> int:
    """The smallest class a classification task keeps: its `min_class_size`, else the smallest
    class the folds can split (one sample in every outer test fold, and inner_folds left in every
    outer training part: see metasig.data.checks.check_folds), else 2."""
    if task.get("min_class_size") is not None:
        return int(task["min_class_size"])
    if not folds:
        return 2
    k, m = int(folds["outer_folds"]), int(folds["inner_folds"])
    n = max(2, k)
    while n - -(-n // k) < m:  # an outer training part holds as few as n - ceil(n / k)
        n += 1
    return n


def small_classes(sheet: pd.DataFrame, task: dict, folds=None, labelled=None) -> dict:
    """{class: [sample IDs]} of a multiclass task's classes smaller than its min_class_size, among
    the samples with a label (`labelled`: a boolean mask of them, if already known)."""
    if task["type"] != "multiclass":
        return {}
    size = min_class_size(task, folds)
    labels = _cells(sheet, task["label"], task)
    labels = labels[labels.notna() if labelled is None else labelled]
    counts = labels.value_counts()
    small = sorted(str(c) for c, n in counts.items() if n < size)
    ids = sheet["sample"].astype(str)
    return {c: list(ids[labels.index[labels == c]]) for c in small}


def small_reason(cls, task, folds=None) -> str:
    """The left-out reason of a small class, as metrics.json and the report show it."""
    return f"class '{cls}' < min_class_size {min_class_size(task, folds)}"


def left_out(sheet: pd.DataFrame, task: dict, sheet_file="samples.tsv", folds=None) -> dict:
    """{reason: [sample IDs]} of the samples a task cannot use (missing label, time or event; a
    multiclass class smaller than min_class_size)."""
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
    for cls, ids in small_classes(sheet, task, folds, ~taken).items():
        out[small_reason(cls, task, folds)] = ids
    return out


def labelled_samples(sheet: pd.DataFrame, task: dict, sheet_file="samples.tsv", folds=None) -> pd.Index:
    """Samples the task uses: with its label (or time and event), in a class it keeps."""
    dropped = {s for names in left_out(sheet, task, sheet_file, folds).values() for s in names}
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


def target(sheet: pd.DataFrame, task: dict, sheet_file="samples.tsv", min_per_class=2, folds=None):
    """Return (samples, y). y: 0/1 ints (binary), class strings (multiclass), or a structured
    array with fields ('event', bool) and ('time', float) (survival)."""
    samples = labelled_samples(sheet, task, sheet_file, folds)
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
    small = small_classes(sheet, task, folds)
    if small and len(counts) < 2:
        kept = f"only class '{counts.index[0]}' is" if len(counts) else "no class is"
        raise InputError(
            sheet_file,
            task["label"],
            f"{kept} left after leaving out the classes smaller than min_class_size "
            f"{min_class_size(task, folds)} ({', '.join(f'{c!r} ({len(v)})' for c, v in small.items())}); "
            "a classifier needs two or more: lower the task's min_class_size or add samples",
        )
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
    if task["type"] == "binary" and task.get("min_class_size") is not None and counts.min() < task["min_class_size"]:
        raise InputError(
            sheet_file,
            task["label"],
            f"class '{counts.idxmin()}' has {int(counts.min())} sample(s), fewer than the task's min_class_size "
            f"{task['min_class_size']}; a binary task cannot leave out one of its two classes (nothing would be "
            "left to learn): add samples or lower min_class_size",
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
