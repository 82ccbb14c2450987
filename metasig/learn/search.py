"""The inner-fold hyperparameter search: GridSearchCV's choice, at a fraction of its cost.

GridSearchCV refits the whole pipeline for every candidate on every inner split. Here the
preprocessing (normalization, filters, scaling) is fitted once per inner split and preprocessing
setting, and the estimator is asked for the validation outputs of all its candidates at once
when it can (`grid_predictions`: a warm-started regularization path, one quantile-binned matrix
shared by the grid, boosting rounds scored by prefix). Boosted grids (`grid_session`) are also
halved over their boosting rounds across the splits (`metasig.learn.halving`): a candidate of a
booster that lost at the first rung is not scored, and so not chosen. Everything else follows
GridSearchCV: the same splits, the same scores (ROC-AUC, one-vs-rest macro ROC-AUC, Harrell's C),
their mean over the splits, the first best candidate in grid order, a refit of the whole pipeline
on the whole training part. A candidate whose fit fails scores NaN and loses, unless all fail.
"""

import logging
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import ParameterGrid
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from metasig.learn import halving
from metasig.learn.survival import harrell_c

log = logging.getLogger("metasig.learn.search")

MODEL = "model"  # name of the pipeline's final step (metasig.learn.models.build)


def search(pipeline, param_grid, X, y, task_kind, splits, rows=None):
    """Best candidate of `param_grid` (GridSearchCV's format: "model__" keys, "model" may swap
    the estimator) by the mean validation score over `splits` [(train, valid) positions].
    Returns (pipeline refitted on all of X, or its rows `rows`, with y; its parameters).
    rows: the positions of X's rows that are the training data (y and the splits are theirs):
    the inner splits are then copied from X directly and the training rows only for the refit,
    after them, so a fold's copy and its inner split's are never held at once (at 20,000 genes,
    160 MB less per worker)."""
    candidates = list(ParameterGrid(param_grid))
    scores = np.full((len(candidates), len(splits)), np.nan)
    at = (lambda positions: positions) if rows is None else (lambda positions: rows[positions])
    held = {}  # boosted grids, halved once every split has scored their first rung
    for s, (train, valid) in enumerate(splits):
        for p, (pre_params, members) in enumerate(_by_preprocessing(candidates)):
            pre = _preprocessing(pipeline, pre_params)
            X_train = _rows(X, at(train))
            X_train = pre.fit_transform(X_train, y[train]) if pre is not None else X_train
            X_valid = pre.transform(_rows(X, at(valid))) if pre is not None else _rows(X, at(valid))
            estimators = _by_estimator(pipeline, candidates, members)
            for k, (estimator, group) in enumerate(estimators):
                own = [params for _, params in group]
                if hasattr(estimator, "grid_session"):
                    try:
                        grid = estimator.grid_session(X_train, y[train], X_valid, own)
                    except (ValueError, ArithmeticError) as exc:
                        warn_failed(estimator, "all candidates", exc)
                        continue
                    held.setdefault((p, k), (estimator, group, []))[2].append((s, grid))
                    _score(scores, s, estimator, group, grid, halving.first_rung(grid), task_kind, y, splits[s])
                    continue
                if k == len(estimators) - 1 and "copy_X" in estimator.get_params(deep=False):
                    estimator = clone(estimator).set_params(copy_X=False)  # X_train's last use: its own copy
                outputs = _outputs(estimator, X_train, y[train], X_valid, own)
                for (i, _), output in zip(group, outputs):
                    scores[i, s] = score_output(task_kind, y[train], y[valid], output)
            del X_train, X_valid  # before the next split's copies: at 20,000 genes 160 MB per worker
    for estimator, group, grids in held.values():
        later = halving.later_rung(grids[0][1], scores[[i for i, _ in group]].mean(axis=1))
        for s, grid in grids:
            _score(scores, s, estimator, group, grid, later, task_kind, y, splits[s])
    means = scores.mean(axis=1)
    if np.isnan(means).all():
        raise ValueError(f"every one of the {len(candidates)} candidates failed on the inner folds")
    best = int(np.nanargmax(means))  # first of equals, as GridSearchCV's rank_test_score
    params = dict(candidates[best])
    if rows is not None:
        return refit(pipeline, params, _rows(X, rows), y, overwrite_X=True), params  # a copy of its own
    return refit(pipeline, params, X, y), params


def refit(pipeline, params, X, y, overwrite_X=False):
    """with_params(pipeline, params) fitted on X, y. overwrite_X: X is a copy the caller discards
    (an outer fold's rows), so the scaler may scale it in place, one copy of the fold fewer (160 MB
    per worker at 20,000 genes); it copies again for every later transform. A final estimator
    with `copy_X` (CoxPH) may overwrite what it is given when no one keeps it: the scaler's output
    (a copy, or the discarded rows scaled in place), one more copy fewer. Both settings are put
    back after the fit."""
    model = with_params(pipeline, params)
    if not isinstance(model, Pipeline):
        return model.fit(X, y)
    scaler = model.named_steps.get("scale")
    scaled = isinstance(scaler, StandardScaler)
    estimator = model[-1]
    owned = (scaled or overwrite_X) and "copy_X" in estimator.get_params(deep=False)
    settings = [(scaler, "copy", False)] if scaled and overwrite_X else []
    settings += [(estimator, "copy_X", False)] if owned else []
    before = [(step, name, step.get_params(deep=False)[name]) for step, name, _ in settings]
    for step, name, value in settings:
        step.set_params(**{name: value})
    model.fit(X, y)
    for step, name, value in before:
        step.set_params(**{name: value})
    return model


def with_params(pipeline, params):
    """An unfitted copy of `pipeline` with a candidate's parameters, estimators among them copied
    too (as GridSearchCV does): a grid's estimator objects are shared by every fold, and outer
    folds fitted in threads would otherwise fit one object at once."""
    return clone(pipeline).set_params(**clone(params, safe=False))


def _by_preprocessing(candidates):
    """[(preprocessing parameters, [candidate positions])], in grid order."""
    groups = {}
    for i, candidate in enumerate(candidates):
        params = preprocessing_params(candidate)
        groups.setdefault(repr(sorted(params.items())), (params, []))[1].append(i)
    return list(groups.values())


def preprocessing_params(candidate):
    """A candidate's parameters for the steps before the estimator."""
    return {k: v for k, v in candidate.items() if k != MODEL and not k.startswith(MODEL + "__")}


def _by_estimator(pipeline, candidates, members):
    """[(estimator, [(position, its own parameters)])]: candidates grouped by the final estimator
    they use (linear_sweep swaps it through the "model" key), in grid order."""
    groups = {}
    for i in members:
        estimator, own = estimator_of(pipeline, candidates[i])
        groups.setdefault(id(estimator), (estimator, []))[1].append((i, own))
    return list(groups.values())


def estimator_of(pipeline, candidate):
    """(the final estimator a candidate uses, the candidate's own parameters for it, unprefixed)."""
    own = {k[len(MODEL) + 2 :]: v for k, v in candidate.items() if k.startswith(MODEL + "__")}
    return candidate.get(MODEL, pipeline[-1]), own


def _preprocessing(pipeline, params):
    """A fresh copy of every step but the estimator, with the candidate's settings, or None. Its
    scaler scales in place: `search` hands it row copies of its own (`_rows`), and at 20,000 genes
    a scaled copy of an inner split is 100 MB more per fold."""
    if len(pipeline) == 1:
        return None
    pre = with_params(pipeline[:-1], params)
    scaler = pre.named_steps.get("scale")
    if isinstance(scaler, StandardScaler):
        scaler.set_params(copy=False)
    return pre


def _rows(X, positions):
    return X.iloc[positions] if hasattr(X, "iloc") else X[positions]


def _outputs(estimator, X_train, y_train, X_valid, candidates):
    """Validation outputs of each candidate: probabilities (classifiers) or risks (survival);
    None where the fit failed."""
    if hasattr(estimator, "grid_predictions"):
        try:
            return estimator.grid_predictions(X_train, y_train, X_valid, candidates)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            warn_failed(estimator, "all candidates", exc)
            return [None] * len(candidates)
    outputs = []
    for params in candidates:
        try:
            model = clone(estimator).set_params(**params).fit(X_train, y_train)
            outputs.append(model.predict_proba(X_valid) if hasattr(model, "predict_proba") else model.predict(X_valid))
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            warn_failed(estimator, params, exc)
            outputs.append(None)
    return outputs


def _score(scores, s, estimator, group, grid, positions, task_kind, y, split):
    """Score the candidates at `positions` of a grid session on split s; NaN where a fit fails."""
    train, valid = split
    for j in positions:
        try:
            output = grid.output(j)
        except (ValueError, ArithmeticError) as exc:
            warn_failed(estimator, group[j][1], exc)
            output = None
        scores[group[j][0], s] = score_output(task_kind, y[train], y[valid], output)


def warn_failed(estimator, params, exc, where="on an inner fold"):
    message = f"{type(estimator).__name__} {params}: fit failed {where} ({exc}); it scores NaN"
    log.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def score_output(task_kind, y_train, y_valid, output):
    """The score GridSearchCV would give: ROC-AUC of P(positive), one-vs-rest macro ROC-AUC over
    the training classes, or Harrell's C of the risk. NaN where it is undefined."""
    if output is None:
        return np.nan
    if task_kind == "survival":
        return harrell_c(y_valid, output)
    classes = np.unique(y_train)
    if not np.array_equal(np.unique(y_valid), classes):
        return np.nan  # a class missing on one side: the score is undefined, as in GridSearchCV
    output = np.asarray(output, dtype=float)
    if task_kind == "binary":
        return float(roc_auc_score(y_valid, output[:, 1]))
    return float(roc_auc_score(y_valid, output, multi_class="ovr", labels=classes))
