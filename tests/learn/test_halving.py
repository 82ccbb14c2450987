"""Successive halving of boosted candidates: which candidates each rung scores, and that the
inner search grows only the better boosters past the first rung."""

import logging
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedKFold

from metasig.learn import halving
from metasig.learn import xgb as xgb_module
from metasig.learn.models import build
from metasig.learn.search import search


class Grid:
    """A stand-in for BoostedGrid: candidates' budgets and the groups sharing a booster."""

    def __init__(self, groups, budgets):
        self.groups, self._budgets = groups, budgets

    def __len__(self):
        return len(self._budgets)

    def budget(self, i):
        return self._budgets[i]

    def label(self, i):
        return f"booster of {i}"


def test_the_first_rung_is_every_boosters_smallest_budget():
    grid = Grid([[0, 1], [2, 3]], [50, 150, 50, 150])
    assert halving.first_rung(grid) == [0, 2]


@pytest.mark.parametrize(
    "groups,budgets",
    [
        ([[0, 1]], [50, 150]),  # one booster: nothing to choose between
        ([[0], [1]], [50, 50]),  # nothing beyond the first rung
        ([[0, 1], [2, 3]], [50, 150, 100, 150]),  # boosters starting at other budgets
    ],
)
def test_grids_that_cannot_be_halved_are_scored_whole(groups, budgets):
    grid = Grid(groups, budgets)
    first = halving.first_rung(grid)
    assert first == list(range(len(budgets)))
    assert halving.later_rung(grid, np.zeros(len(budgets))) == []


def test_the_better_half_of_the_boosters_grows_on():
    grid = Grid([[0, 1], [2, 3], [4, 5]], [50, 150] * 3)
    means = np.array([0.6, np.nan, 0.8, np.nan, 0.7, np.nan])
    assert halving.later_rung(grid, means) == [3, 5]  # 2 of 3, in grid order
    means = np.array([0.7, np.nan, np.nan, np.nan, 0.7, np.nan])  # a tie: the first; NaN last
    assert halving.later_rung(Grid([[0, 1], [2, 3], [4, 5]], [50, 150] * 3), means) == [1, 5]
    two = Grid([[0, 1], [2, 3]], [50, 150, 50, 150])
    assert halving.later_rung(two, np.array([0.6, np.nan, 0.6, np.nan])) == [1]


def test_the_search_grows_only_the_better_depth_past_the_first_rung(monkeypatch, caplog):
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(150, 10)), columns=[f"g{i}" for i in range(10)])
    y = (X["g0"] + rng.normal(size=150) > 0).astype(int).to_numpy()
    folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    grid = {"max_depth": [1, 3], "n_estimators": [5, 20]}
    pipeline, grid = build({"kind": "xgboost", "search": grid}, "binary", {}, "none", 0)
    grown = []  # (max_depth, rounds added) per call
    real_grow = xgb_module.grow_booster

    def grow(booster, dtrain, params):
        grown.append((params["max_depth"], params["n_estimators"] - booster.num_boosted_rounds()))
        return real_grow(booster, dtrain, params)

    monkeypatch.setattr(xgb_module, "grow_booster", grow)
    caplog.set_level(logging.INFO, logger="metasig.learn.halving")
    search(pipeline, grid, X, y, "binary", folds)
    inner = grown[:-1]  # the last one is the refit
    assert inner[:6] == [(1, 5), (3, 5)] * 3  # every split: both depths to 5 rounds
    assert len(inner) == 9 and len(set(inner[6:])) == 1 and inner[6][1] == 15  # one depth on to 20
    assert sum(rounds for _, rounds in inner) == 3 * (5 + 5 + 15)  # the whole grid: 3 * (20 + 20)
    kept, stopped = inner[6][0], 4 - inner[6][0]
    assert re.search(
        rf"at 5 rounds .*: grown on max_depth {kept} \(0\.\d{{4}}\); stopped max_depth {stopped} ", caplog.text
    )
