"""Cross-validation splits and label permutations, by sample or by group.

Without `cv.group_by` the splits are the sample-level ones metasig always used: outer
RepeatedStratifiedKFold, inner shuffled StratifiedKFold, a free permutation of the labels.

With `cv.group_by` (a sample-sheet column: patient, aliquot, batch) every group's samples fall on
one side of every split, outer and inner, so the model is never scored on a patient (or batch) it
was trained on. Folds stay stratified where the groups allow it (StratifiedGroupKFold on the class,
or for survival on the event indicator), shuffled and seeded; each outer repeat has its own seed.
`cv.scheme: leave_one_group_out` makes every group an outer test fold once (deterministic: one
repeat); its inner folds are grouped k-fold.

The permuted-label control: when the label is constant within every group (a patient's subtype
or survival), whole groups swap labels (each group takes another group's label, or survival
(time, event)), so a group keeps one label as a real one does. When it varies within groups
(tumour and normal of one patient; classes within a batch), the samples' labels are permuted
freely: a shuffle within groups alone would keep each group's class mix, and with it any
group-level feature that tracks that mix (a batch effect), so the control would not be at chance.
Its folds are grouped like the real ones either way.
"""

import numpy as np
from sklearn.model_selection import (
    LeaveOneGroupOut,
    RepeatedStratifiedKFold,
    StratifiedGroupKFold,
    StratifiedKFold,
)

KFOLD, LOGO = "kfold", "leave_one_group_out"


def strata(y, task_kind):
    """Labels to stratify folds on: the class, or for survival the event indicator."""
    y = np.asarray(y)
    if task_kind == "survival":
        event_field = y.dtype.names[0]
        return np.asarray(y[event_field], dtype=bool).astype(int)
    return y


def scheme(cv) -> str:
    return (cv or {}).get("scheme") or KFOLD


def outer_splits(y, task_kind, cv, seed, groups=None):
    """[(repeat, fold, train positions, test positions)] of the outer CV."""
    n_folds, n_repeats = int(cv["outer_folds"]), int(cv["outer_repeats"])
    labels, X = strata(y, task_kind), np.zeros((len(y), 1))
    if groups is None:
        if scheme(cv) == LOGO:
            raise ValueError("cv.scheme leave_one_group_out needs cv.group_by")
        outer = RepeatedStratifiedKFold(n_splits=n_folds, n_repeats=n_repeats, random_state=seed)
        return [(*divmod(i, n_folds), tr, te) for i, (tr, te) in enumerate(outer.split(X, labels))]
    groups = np.asarray(groups)
    if scheme(cv) == LOGO:
        return [(0, fold, tr, te) for fold, (tr, te) in enumerate(LeaveOneGroupOut().split(X, labels, groups))]
    out = []
    for repeat, repeat_seed in enumerate(repeat_seeds(seed, n_repeats)):
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=repeat_seed)
        out += [(repeat, fold, tr, te) for fold, (tr, te) in enumerate(splitter.split(X, labels, groups))]
    return out


def inner_splits(y, task_kind, cv, seed, groups=None):
    """[(train, valid positions)] of the inner (tuning) CV on one outer training part."""
    labels, X = strata(y, task_kind), np.zeros((len(y), 1))
    n_folds = int(cv["inner_folds"])
    if groups is None:
        return list(StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(X, labels))
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(X, labels, np.asarray(groups)))


def repeat_seeds(seed, n_repeats):
    """One seed per outer repeat, drawn from `seed`."""
    return [int(s) for s in np.random.RandomState(seed).randint(np.iinfo(np.int32).max, size=n_repeats)]


def effective(cv, groups=None) -> dict:
    """The outer fold and repeat counts actually run: leave-one-group-out has one fold per group
    and one repeat (it has no randomness to repeat)."""
    if groups is not None and scheme(cv) == LOGO:
        return {**cv, "outer_folds": len(np.unique(np.asarray(groups))), "outer_repeats": 1}
    return cv


def permute(y, seed, groups=None):
    """Labels shuffled with default_rng(seed); with groups constant in their label, whole groups'
    labels (see the module doc)."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    if groups is None:
        return y[rng.permutation(len(y))]
    codes, first = _codes(groups)
    if constant_within(y, codes):
        source = rng.permutation(len(first))  # group g takes the label of group source[g]
        return y[first[source][codes]]
    return y[rng.permutation(len(y))]


def constant_within(y, codes) -> bool:
    """True if every group has one label value (for survival, one (time, event) pair)."""
    y = np.asarray(y)
    _, labels = np.unique(y, return_inverse=True)
    seen = {}
    for g, v in zip(codes.tolist(), labels.ravel().tolist()):
        if seen.setdefault(g, v) != v:
            return False
    return True


def _codes(groups):
    """(group code per sample, position of each group's first sample), codes in order of first
    appearance."""
    _, first, codes = np.unique(np.asarray(groups).astype(str), return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[codes.ravel()], first[order]
