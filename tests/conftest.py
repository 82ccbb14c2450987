from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Small search spaces per model kind keep the model tests fast; the default grids are tested apart.
SMALL_GRIDS = {
    "xgboost": {"n_estimators": [20], "max_depth": [2]},
    "elasticnet": {"C": [1.0], "l1_ratio": [0.5]},
    "linear_sweep": {"C": [1.0], "alpha": [1e-3]},
    "random_forest": {"max_features": ["sqrt"], "min_samples_leaf": [1]},
    "svm": {"kernel": ["rbf"], "C": [1.0]},
    "logistic": {"C": [1.0]},
    "coxph": {"penalizer": [0.1], "l1_ratio": [0.0]},
    "xgboost_cox": {"n_estimators": [30], "max_depth": [2]},
}


@pytest.fixture
def shared_data():
    """../shared/data beside the checkout (CI always has it); skipped visibly elsewhere."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (only present beside the project's own checkout)")
    return SHARED_DATA
