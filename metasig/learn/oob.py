"""Forests tuned by their out-of-bag score instead of inner folds.

Each tree of a bootstrap forest leaves about a third of the samples out; a sample's out-of-bag
prediction averages the trees that never saw it, so a forest fitted once on the training part
scores itself (Breiman 2001; R's tuneRF and ranger tune this way). Each candidate is fitted once,
on the whole training part, and the best one is the fitted model: 4 forests per outer fold for the
default grid, where a 3-fold inner search fits 12 on two thirds of the samples and refits a 13th.
The in-fold preprocessing (imputer, gene screen, scaler) is fitted on the whole training part, so
a tree's out-of-bag samples took part in the gene screen: their score only chooses among
candidates; the job's metrics come from the outer folds, as for every model.

Used when the pipeline ends in a bootstrap forest with oob_score=True (random_forest's default)
and the samples are not grouped: a bootstrap draws samples, not patients, so a patient's other
samples would sit in the trees that score it; with cv.group_by the inner folds tune the forest.
"""

import numpy as np
from sklearn.model_selection import ParameterGrid

from metasig.learn.search import estimator_of, refit, score_output, warn_failed


def applies(pipeline, param_grid, groups):
    """True when there is a choice to make and every candidate ends in a bootstrap forest asked to
    keep its out-of-bag score."""
    candidates = list(ParameterGrid(param_grid or {}))
    if groups is not None or len(candidates) <= 1:
        return False
    for candidate in candidates:
        estimator, own = estimator_of(pipeline, candidate)
        params = {**estimator.get_params(deep=False), **own}
        if not (params.get("oob_score") is True and params.get("bootstrap") is True):
            return False
    return True


def search(pipeline, param_grid, X, y, task_kind):
    """(the best candidate's pipeline fitted on X, y; its parameters): the first of the best
    out-of-bag scores in grid order, as GridSearchCV breaks ties."""
    best, best_score, best_params = None, -np.inf, None
    candidates = list(ParameterGrid(param_grid))
    for params in candidates:
        try:
            model = refit(pipeline, params, X, y)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            warn_failed(pipeline[-1], params, exc, "on the training part")
            continue
        score = score_output(task_kind, y, y, model[-1].oob_decision_function_)
        if score > best_score:  # NaN (a class without out-of-bag samples) never wins
            best, best_score, best_params = model, score, dict(params)
    if best is None:
        raise ValueError(f"none of the {len(candidates)} candidates could be fitted and scored out of bag")
    return best, best_params
