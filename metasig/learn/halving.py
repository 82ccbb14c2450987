"""Successive halving of boosted candidates across the inner splits.

Candidates that differ only in their number of boosting rounds share one booster
(`metasig.learn.xgb.BoostedGrid`): a booster with the grid's other settings (max_depth, ...).
Every booster is first grown to the grid's smallest n_estimators on every inner split and scored
there; only the better half of them, by that candidate's mean score over the splits, grows on to
the larger n_estimators (successive halving, Jamieson & Talwalkar 2016, with boosting rounds as
the budget, as scikit-learn's HalvingGridSearchCV can take n_estimators). The default xgboost grid
(max_depth 2 and 3, 50 and 150 rounds) grows 50 + 50 + 100 rounds per inner split instead of
150 + 150; the depth that scores worse at 50 rounds is not tried at 150. A grid whose boosters do
not all start at the same smallest n_estimators is scored whole.
"""

import logging
import math

import numpy as np

log = logging.getLogger("metasig.learn.halving")


def first_rung(grid):
    """The candidates (positions in `grid`) to score on every split before choosing: each
    booster's smallest n_estimators, or every candidate when the grid cannot be halved."""
    everyone = list(range(len(grid)))
    if len(grid.groups) < 2:
        return everyone
    smallest = [min(grid.budget(i) for i in group) for group in grid.groups]
    if len(set(smallest)) > 1 or all(grid.budget(i) == smallest[0] for i in everyone):
        return everyone
    return [i for group in grid.groups for i in group if grid.budget(i) == smallest[0]]


def later_rung(grid, mean_scores):
    """The candidates to score next: the not yet scored ones of the better half of the boosters,
    ranked by their first-rung candidates' `mean_scores` (one per grid position, NaN last, ties in
    grid order). Nothing when the first rung held everyone."""
    first = first_rung(grid)
    if len(first) == len(grid):
        return []
    scored = set(first)
    at_first = [next(i for i in group if i in scored) for group in grid.groups]
    means = np.array([mean_scores[i] for i in at_first], dtype=float)
    order = sorted(range(len(means)), key=lambda g: (np.isnan(means[g]), -np.nan_to_num(means[g])))
    kept = sorted(order[: math.ceil(len(order) / 2)])
    log.info(
        "successive halving at %d rounds (mean inner score): grown on %s; stopped %s",
        grid.budget(at_first[0]),
        "; ".join(f"{grid.label(at_first[g])} ({means[g]:.4f})" for g in kept),
        "; ".join(f"{grid.label(at_first[g])} ({means[g]:.4f})" for g in order if g not in kept),
    )
    return [i for g in kept for i in grid.groups[g] if i not in scored]
