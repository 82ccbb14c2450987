"""Input checks that run right after loading, before any training: every failure is an InputError
naming the file and the field (column, sample or config key) and showing a few offending values."""

import logging

import numpy as np
import pandas as pd

from metasig.data.sources.labels import participant
from metasig.errors import InputError, few
from metasig.learn import tasks

log = logging.getLogger("metasig.data.checks")


def check_unique(ids, file, field, what):
    """Raise if `ids` repeats a value."""
    ids = pd.Index([str(i) for i in ids])
    if ids.has_duplicates:
        dups = ids[ids.duplicated()].unique()
        raise InputError(file, field, f"duplicate {what} IDs: {few(dups)} ({len(dups)} duplicated in all)")


def check_same_samples(matrix_ids, sheet_ids, matrix_file, sheet_file):
    """The matrix and the sample sheet must list the same samples: a sample missing on either side
    usually means mismatched files or ID formats, and silently dropping it would hide that."""
    matrix_ids = [str(s) for s in matrix_ids]
    sheet_ids = [str(s) for s in sheet_ids]
    in_sheet, in_matrix = set(sheet_ids), set(matrix_ids)
    not_in_sheet = [s for s in matrix_ids if s not in in_sheet]
    not_in_matrix = [s for s in sheet_ids if s not in in_matrix]
    if not_in_sheet or not_in_matrix:
        parts = []
        if not_in_sheet:
            parts.append(
                f"{len(not_in_sheet)} matrix sample(s) missing from the sample sheet (e.g. {few(not_in_sheet)})"
            )
        if not_in_matrix:
            parts.append(
                f"{len(not_in_matrix)} sample-sheet sample(s) not in the matrix {matrix_file} "
                f"(e.g. {few(not_in_matrix)})"
            )
        raise InputError(sheet_file, "sample", "; ".join(parts))


def check_matrix(matrix, unit, matrix_file):
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise InputError(
            matrix_file, "(matrix)", f"the matrix is empty ({matrix.shape[0]} samples x {matrix.shape[1]} genes)"
        )
    check_unique(matrix.index, matrix_file, "sample", "sample")
    check_unique(matrix.columns, matrix_file, "genes", "gene")
    non_numeric = [c for c, t in matrix.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
    if non_numeric:
        raise InputError(
            matrix_file, non_numeric[0], f"matrix column is not numeric (dtype {matrix[non_numeric[0]].dtype})"
        )
    values = matrix.to_numpy(dtype="float64")
    bad = ~np.isfinite(values)
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        i = int(np.flatnonzero(bad[:, j])[0])
        kind = "missing (NaN)" if np.isnan(values[i, j]) else "infinite"
        raise InputError(
            matrix_file,
            matrix.columns[j],
            f"{kind} value for sample {matrix.index[i]} ({int(bad.sum())} non-finite value(s) in "
            f"{int(bad.any(axis=0).sum())} gene(s)); impute or drop them before metasig",
        )
    if unit == "counts" and (values < 0).any():
        j = int(np.flatnonzero((values < 0).any(axis=0))[0])
        i = int(np.flatnonzero(values[:, j] < 0)[0])
        raise InputError(
            matrix_file,
            matrix.columns[j],
            f"negative count {values[i, j]} for sample {matrix.index[i]}; unit 'counts' needs raw counts "
            "(set unit to log2 if the values are already transformed)",
        )


def check_covariates(sheet, covariates, matrix_columns, tasks_cfg, sheet_file):
    label_columns = {}
    for tname, task in (tasks_cfg or {}).items():
        for key in ("label", "time", "event"):
            if key in task:
                label_columns.setdefault(task[key], tname)
    genes = set(map(str, matrix_columns))
    for cov in covariates or []:
        if cov not in sheet.columns:
            raise InputError(
                sheet_file, cov, f"covariate column not found in the sample sheet (columns: {few(sheet.columns, 10)})"
            )
        if cov in label_columns:
            raise InputError(
                sheet_file,
                cov,
                f"covariate is the target of task '{label_columns[cov]}'; as a feature it would leak the answer",
            )
        if cov in genes:
            raise InputError(sheet_file, cov, "covariate has the same name as a gene in the matrix")
        col = sheet[cov]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            continue
        converted = pd.to_numeric(col, errors="coerce")
        bad = converted.isna() & col.notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                sheet_file,
                cov,
                f"covariate is not numeric (sample {sheet['sample'].iloc[i]}: {col.iloc[i]!r}); "
                "encode it as numbers in the sample sheet",
            )


def _class_counts(sheet, task, sheet_file, folds=None):
    """Samples per stratum the folds are split on: each class as written (a multiclass task's
    classes below min_class_size left out), or for survival the events (censored samples may be
    missing from a fold; events may not, or its C-index is undefined)."""
    samples, y = tasks.target(sheet, task, sheet_file, folds=folds)
    if task["type"] == "survival":
        return {"events (event = 1)": int(np.asarray(y["event"], dtype=bool).sum())}
    if task["type"] == "binary":  # classes as written in the sheet, as tasks.target names them
        negative, positive = tasks.class_names(sheet, task)
        return {positive: int((y == 1).sum()), negative: int((y == 0).sum())}
    return {str(k): int(v) for k, v in pd.Series(y).value_counts().items()}


def check_folds(sheet, task, folds, sheet_file, where):
    """Stratified outer folds need every class in every test part, and the inner folds run on an
    outer training part, which holds as few as n - ceil(n / k) samples of a class of n.
    folds: {"outer_folds": k, "inner_folds": m[, "group_by", "scheme"]}; where: the task's config
    path. With group_by the same holds for groups (check_groups); without it, TCGA barcodes that
    share a participant are warned about (warn_shared_participants)."""
    if folds.get("group_by"):
        return check_groups(sheet, task, folds, sheet_file, where)
    warn_shared_participants(sheet, task, sheet_file, where, folds)
    k, m = int(folds["outer_folds"]), int(folds["inner_folds"])
    column = task["event"] if task["type"] == "survival" else task["label"]
    # a multiclass task could leave the class out instead (its min_class_size was set below the folds')
    drop = f", or raise {where}.min_class_size above {{n}} to leave it out" if task["type"] == "multiclass" else ""
    for name, n in _class_counts(sheet, task, sheet_file, folds).items():
        if n < k:
            raise InputError(
                sheet_file,
                column,
                f"class '{name}' has {n} sample(s), fewer than outer_folds = {k} of task "
                f"{where}: some outer test folds would have none of it; set cv.outer_folds to at most "
                f"{n} (for all tasks, or in {where}.cv) or add samples{drop.format(n=n)}",
            )
        smallest = n - -(-n // k)
        if smallest < m:
            fix = (
                f"set cv.inner_folds to at most {smallest} or lower outer_folds"
                if smallest >= 2
                else "lower outer_folds or add samples"
            )
            raise InputError(
                sheet_file,
                column,
                f"class '{name}' has {n} sample(s), so an outer training part ({k - 1} of "
                f"{k} folds) holds as few as {smallest}, fewer than inner_folds = {m} of task {where}; "
                f"{fix}{drop.format(n=n)}",
            )


def _groups_per_stratum(sheet, task, column, sheet_file, where, folds=None):
    """(groups of the task's samples, {class or 'events (event = 1)': number of groups holding it})."""
    samples, y = tasks.target(sheet, task, sheet_file, folds=folds)
    groups = tasks.group_values(sheet, samples, column, sheet_file, f"{where}.cv.group_by")
    if task["type"] == "survival":
        return groups, {"events (event = 1)": len(set(groups[np.asarray(y["event"], dtype=bool)]))}
    names = np.asarray(y).astype(str)
    if task["type"] == "binary":
        negative, positive = tasks.class_names(sheet, task)
        names = np.where(np.asarray(y) == 1, positive, negative)
    return groups, {str(c): len(set(groups[names == c])) for c in sorted(set(names))}


def check_groups(sheet, task, folds, sheet_file, where):
    """Grouped folds (cv.group_by) split groups, not samples: there must be enough groups for the
    folds, and every class (survival: events) in enough groups that each outer test part has it
    (kfold) or that leaving one group out still leaves it to train and tune on
    (leave_one_group_out). Every sample needs a group value."""
    column, scheme = folds["group_by"], folds.get("scheme") or "kfold"
    k, m = int(folds["outer_folds"]), int(folds["inner_folds"])
    groups, per_class = _groups_per_stratum(sheet, task, column, sheet_file, where, folds)
    n_groups = len(set(groups))
    logo = scheme == "leave_one_group_out"
    need = m + 1 if logo else max(k, m)
    if n_groups < need:
        fix = f"inner_folds at most {n_groups - 1}" if logo else "lower cv.outer_folds / cv.inner_folds"
        raise InputError(
            sheet_file,
            column,
            f"{where}.cv.group_by: {n_groups} group(s) in column '{column}', too few for {scheme} with "
            f"outer_folds = {k}, inner_folds = {m} (needs at least {need}); set {fix}, or group by another column",
        )
    for name, n in per_class.items():
        if logo:
            # left out, a class's only group would leave the training part without it
            smallest, what = n - 1, "leaving one group out leaves"
        else:
            if n < k:
                raise InputError(
                    sheet_file,
                    column,
                    f"{where}.cv.group_by: class '{name}' occurs in {n} group(s) of '{column}', fewer than "
                    f"outer_folds = {k}: some outer test folds would have none of it; lower cv.outer_folds",
                )
            smallest, what = n - -(-n // k), f"an outer training part ({k - 1} of {k} folds) holds"
        if smallest < max(m, 1):
            raise InputError(
                sheet_file,
                column,
                f"{where}.cv.group_by: class '{name}' occurs in {n} group(s) of '{column}', so {what} as few "
                f"as {smallest} of them, fewer than inner_folds = {m}; lower cv.inner_folds or add groups",
            )


def warn_shared_participants(sheet, task, sheet_file, where, folds=None):
    """Warn (once per task, where inputs are checked) when the task's samples are TCGA barcodes and
    some participants have several samples (tumour + normal, repeat aliquots): sample-level folds
    then put one patient on both sides of a split. Returns the number of such participants."""
    samples = tasks.labelled_samples(sheet, task, sheet_file, folds)
    patients = pd.Series([participant(s) for s in samples], index=samples, dtype=object).dropna()
    counts = patients.value_counts()
    shared = counts[counts > 1]
    if shared.empty:
        return 0
    example = shared.index[0]
    log.warning(
        "%s: %d TCGA participant(s) have several samples (%d samples in all; e.g. %s: %s), and cv.group_by "
        "is unset: sample-level folds put one patient's samples on both sides of a split, which inflates "
        "the scores. Set cv.group_by (in %s.cv or the top-level cv) to a column holding the participant: "
        "'patient' in Xena sources, 'case' in GDC sources, or in a table sample sheet a column holding "
        "the first 12 characters of the barcode",
        where,
        len(shared),
        int(shared.sum()),
        example,
        ", ".join(patients.index[patients == example][:3]),
        where,
    )
    return len(shared)


def check_dataset(matrix, sheet, dataset_cfg, matrix_file, sheet_file, min_per_class=2, folds=None, where="dataset"):
    """All checks for one loaded dataset; returns None or raises InputError.
    folds: {task: {"outer_folds", "inner_folds"}} to check the classes against (None: skip)."""
    check_matrix(matrix, dataset_cfg.get("unit"), matrix_file)
    if "sample" not in sheet.columns:
        raise InputError(
            sheet_file, "sample", f"the sample sheet needs a 'sample' column (columns: {few(sheet.columns, 10)})"
        )
    if sheet["sample"].isna().any():
        raise InputError(sheet_file, "sample", "a sample ID is empty")
    check_unique(sheet["sample"], sheet_file, "sample", "sample")
    check_same_samples(matrix.index, sheet["sample"], matrix_file, sheet_file)
    check_covariates(sheet, dataset_cfg.get("covariates"), matrix.columns, dataset_cfg.get("tasks"), sheet_file)
    for tname, task in (dataset_cfg.get("tasks") or {}).items():
        task_folds = (folds or {}).get(tname)
        tasks.target(sheet, task, sheet_file, min_per_class=min_per_class, folds=task_folds)
        for cls, ids in tasks.small_classes(sheet, task, task_folds).items():
            log.info(
                "task %s: class '%s' left out (%d sample(s): %s): fewer than min_class_size %d%s",
                tname,
                cls,
                len(ids),
                few(ids),
                tasks.min_class_size(task, task_folds),
                "" if task.get("min_class_size") is not None else " (the smallest class its folds can split)",
            )
        if task_folds:
            check_folds(sheet, task, task_folds, sheet_file, f"{where}.tasks.{tname}")
