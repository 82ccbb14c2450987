"""Forests tuned by their out-of-bag score instead of inner folds.

Each tree of a bootstrap forest leaves about a third of the samples out; a sample's out-of-bag
prediction averages the trees that never saw it, so a forest fitted once on the training part
scores itself (Breiman 2001; R's tuneRF and ranger tune this way). The in-fold preprocessing
(imputer, gene screen, scaler) is fitted once on the whole training part and shared by every
candidate, so a tree's out-of-bag samples took part in the gene screen: their score only chooses
among candidates; the job's metrics come from the outer folds, as for every model.

Successive halving in two rungs: every candidate grows its first SCREEN_TREES trees and is scored
out of bag on them; only the best grows the rest, warm-started, into the very forest a fit from
scratch would give (the same tree seeds in the same order). The default grid fits 4 x 50 + 250
trees per outer fold where a fit of every candidate would grow 1,200, and a 3-fold inner search
12 forests on two thirds of the samples and a 13th on all of them. A sample that every tree drew
has no out-of-bag prediction and is not scored: with class_weight="balanced" scikit-learn (>= 1.9)
draws the bootstrap by the class weights, so a rare class's samples are left out of few trees
(random_forest's default, "balanced_subsample", draws uniformly).

Used when the pipeline ends in a bootstrap forest with oob_score=True (random_forest's default)
and the samples are not grouped: a bootstrap draws samples, not patients, so a patient's other
samples would sit in the trees that score it; with cv.group_by the inner folds tune the forest.
"""

import logging
import math
import numbers
import warnings

import numpy as np
from sklearn.model_selection import ParameterGrid
from sklearn.utils.class_weight import compute_sample_weight

from metasig.learn.search import estimator_of, preprocessing_params, score_output, warn_failed, with_params

log = logging.getLogger("metasig.learn.oob")

# Out-of-bag scores of 50 trees rank the candidates: a sample is out of bag in about 18 of them
# (drawn uniformly). On the seed-shaped benchmark cases the jobs' ROC-AUC was within 0.01 of a
# first rung of 100 trees, and a quarter of the forest job's time was saved on two of the three
# (README, Scale).
SCREEN_TREES = 50
# Where the bootstrap draws a rare class so often that the first rung would leave its samples out
# of fewer than 2 trees on average, the first rung grows more (case a's HER2-positives, 1 in 10,
# with class_weight "balanced": 278 of the 300, little halving). With 100 trees there the choice
# moved its ROC-AUC by -0.017 against the reference (standard error 0.011).
MIN_OUT_OF_BAG = 2


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


def without_out_of_bag_score(pipeline):
    """The pipeline with its forest's out-of-bag score off, for grouped samples: the inner folds
    tune it there, and a bootstrap of samples would score a patient's sample with trees that saw
    the patient's others. Off, every fit skips computing that unused, leaky score."""
    if pipeline[-1].get_params(deep=False).get("oob_score") is not True:
        return pipeline
    return with_params(pipeline, {f"{pipeline.steps[-1][0]}__oob_score": False})


def search(pipeline, param_grid, X, y, task_kind):
    """(the best candidate's pipeline fitted on X, y; its parameters): the first of the best
    out-of-bag scores of the candidates' first SCREEN_TREES trees, in grid order, as GridSearchCV
    breaks ties."""
    best, best_score, best_params = None, -np.inf, None
    candidates = list(ParameterGrid(param_grid))
    rung = _first_rung([with_params(pipeline, params)[-1] for params in candidates], y)
    fitted_preprocessing, missing = {}, []  # classes without an out-of-bag sample
    for params in candidates:
        model = with_params(pipeline, params)
        try:
            setting = repr(sorted(preprocessing_params(params).items()))
            if setting not in fitted_preprocessing:  # once per setting: once for a forest's own grid
                fitted_preprocessing[setting] = _fit_preprocessing(model, X, y)
            steps, X_model = fitted_preprocessing[setting]
            forest = model[-1]
            size = forest.n_estimators
            _fit(forest.set_params(n_estimators=min(size, rung)), X_model, y)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            warn_failed(pipeline[-1], params, exc, "on the training part")
            continue
        # Samples that every tree drew have no out-of-bag prediction (a row of zeros), and are not
        # scored; the candidates share their trees' seeds, so they are the same for every candidate.
        output = forest.oob_decision_function_
        left_out = output.sum(axis=1) > 0
        missing = sorted(set(np.unique(y)) - set(np.unique(y[left_out])), key=str)
        score = score_output(task_kind, y, y[left_out], output[left_out])
        if score > best_score:  # NaN (a class without out-of-bag samples) never wins
            best, best_score, best_params = (steps, forest, size, X_model, left_out), score, dict(params)
    if best is None:
        hint = (
            f": no tree left out a sample of class {', '.join(map(str, missing))} (a class-balanced bootstrap "
            "draws a rare class's samples into almost every tree); set the model's params: {oob_score: false} "
            "to tune it on inner folds"
            if missing
            else ""
        )
        raise ValueError(f"none of the {len(candidates)} candidates could be fitted and scored out of bag{hint}")
    steps, forest, size, X_model, left_out = best
    if not left_out.all():
        log.info(
            "out-of-bag choice among %d forests of %d trees: %d of %d training samples (%s) were drawn by "
            "every tree and are not scored",
            len(candidates),
            rung,
            (~left_out).sum(),
            len(y),
            _count_by_class(y[~left_out]),
        )
    model = with_params(pipeline, best_params)
    model.steps = [*steps, (model.steps[-1][0], _grown(forest, size, X_model, y))]
    return model, best_params


def _count_by_class(labels):
    values, counts = np.unique(labels, return_counts=True)
    return ", ".join(f"{count} of class {value}" for value, count in zip(values, counts))


def _first_rung(forests, y):
    """Trees every candidate grows before the choice: SCREEN_TREES, or enough for each sample of
    the class the bootstrap draws most to be left out of MIN_OUT_OF_BAG of them on average; all
    of them (no halving) when that is the whole forest or the grid varies the forest's size."""
    sizes = {forest.n_estimators for forest in forests}
    if len(sizes) > 1:
        return max(sizes)
    needed = max(_trees_for_out_of_bag(forest, y) for forest in forests)
    return min(sizes.pop(), max(SCREEN_TREES, needed))


def _trees_for_out_of_bag(forest, y):
    """Trees in which the sample drawn most often is expected to be out of bag MIN_OUT_OF_BAG times:
    each tree draws n (or max_samples) of the n samples with probabilities proportional to their
    class weights (scikit-learn >= 1.9; "balanced_subsample" draws uniformly)."""
    class_weight = None if forest.class_weight == "balanced_subsample" else forest.class_weight
    weight = compute_sample_weight(class_weight, y)
    n, share = len(y), forest.max_samples
    draws = n if share is None else share if isinstance(share, numbers.Integral) else max(round(n * share), 1)
    left_out = (1 - weight.max() / weight.sum()) ** draws
    return math.ceil(MIN_OUT_OF_BAG / left_out) if left_out > 0 else math.inf


def _fit_preprocessing(model, X, y):
    """(the steps before the estimator fitted, X transformed by them), as Pipeline.fit makes them."""
    steps = model.steps[:-1]
    for _, step in steps:
        X = step.fit_transform(X, y)
    return steps, X


def _grown(forest, size, X, y):
    """`forest` grown to `size` trees by a warm start: the trees it has are kept, the new ones get
    the seeds a fit from scratch would give them, and the out-of-bag score covers all of them."""
    if forest.n_estimators >= size:
        return forest
    warm = forest.warm_start
    _fit(forest.set_params(n_estimators=size, warm_start=True), X, y)
    return forest.set_params(warm_start=warm)


def _fit(forest, X, y):
    """forest.fit without two warnings that do not apply: samples without an out-of-bag prediction
    (not scored, above), and "balanced" class weights with a warm start (a warning for other data
    than the first fit's; here it is the same)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Some inputs do not have OOB scores", category=UserWarning)
        warnings.filterwarnings("ignore", message="class_weight presets", category=UserWarning)
        return forest.fit(X, y)
