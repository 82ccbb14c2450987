"""Datasets that ship inside installed packages, so the embedded default config runs offline.

- ``wdbc``: UCI breast-cancer nuclear features (scikit-learn), binary label ``diagnosis``.
- ``gse7390``: breast-cancer microarray subset (scikit-survival): 76 Affymetrix probe sets plus
  clinical covariates and distant-metastasis ``time`` (days) / ``event`` (0/1).
"""

import re

import numpy as np
import pandas as pd

from metasig.errors import InputError

# unit and namespace used when the config does not say (it normally does: the schema requires them)
DEFAULTS = {
    "wdbc": {"unit": "features", "namespace": "feature"},
    "gse7390": {"unit": "microarray", "namespace": "probe"},
}
_GRADE = {"well differentiated": 1.0, "intermediate": 2.0, "poorly differentiated": 3.0}
_ER = {"positive": 1.0, "negative": 0.0}


def names():
    return sorted(DEFAULTS)


def load(name, config_file="config", field="name"):
    """Return (matrix, sheet, meta) of a built-in dataset."""
    loaders = {"wdbc": _wdbc, "gse7390": _gse7390}
    if name not in loaders:
        raise InputError(config_file, field, f"unknown built-in dataset '{name}' (available: {names()})")
    return loaders[name]()


def snake_case(text):
    """'mean concave points' -> 'mean_concave_points'."""
    return re.sub(r"[^0-9a-z]+", "_", str(text).lower()).strip("_")


def _ids(prefix, n, width):
    return pd.Index([f"{prefix}_{i:0{width}d}" for i in range(1, n + 1)], name="sample")


def _wdbc():
    import sklearn
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    samples = _ids("wdbc", len(data.target), 4)
    matrix = pd.DataFrame(
        np.asarray(data.data, dtype="float64"), index=samples, columns=[snake_case(f) for f in data.feature_names]
    )
    # sklearn codes malignant as 0 and benign as 1; the names come from target_names, not the codes
    diagnosis = np.asarray(data.target_names)[data.target]
    sheet = pd.DataFrame({"sample": samples.to_numpy(), "diagnosis": diagnosis})
    meta = {
        "source": "builtin",
        "name": "wdbc",
        "package": "scikit-learn",
        "version": sklearn.__version__,
        **DEFAULTS["wdbc"],
    }
    return matrix, sheet, meta


def _is_probe(column):
    return bool(re.match(r"^X?\d+.*_at$", column)) or column.startswith("AFFX")


def _probe_id(column):
    # R's make.names() prefixed an "X" to IDs that start with a digit; the real ID has none.
    return column[1:] if re.match(r"^X\d", column) else column


def _gse7390():
    import sksurv
    from sksurv.datasets import load_breast_cancer

    X, y = load_breast_cancer()
    samples = _ids("gse7390", len(X), 3)
    probes = [c for c in X.columns if _is_probe(c)]
    matrix = X[probes].astype("float64")
    matrix.columns = [_probe_id(c) for c in probes]
    matrix.index = samples
    sheet = pd.DataFrame(
        {
            "sample": samples.to_numpy(),
            "time": np.asarray(y["t.tdm"], dtype="float64"),
            "event": np.asarray(y["e.tdm"], dtype=bool).astype(int),
        }
    )
    for col in [c for c in X.columns if c not in probes]:
        sheet[col] = _numeric_clinical(col, X[col]).to_numpy()
    meta = {
        "source": "builtin",
        "name": "gse7390",
        "package": "scikit-survival",
        "version": sksurv.__version__,
        **DEFAULTS["gse7390"],
    }
    return matrix, sheet, meta


def _numeric_clinical(name, values):
    """Encode a clinical column as numbers; unknown levels become NaN rather than a fake level."""
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float64")
    text = values.astype("string").str.strip().str.lower()
    if name == "grade":
        return text.map(_GRADE).astype("float64")
    if name == "er":
        return text.map(_ER).astype("float64")
    # anything else: category codes in the categorical's order (NaN stays NaN)
    codes = pd.Categorical(values).codes.astype("float64")
    codes[codes < 0] = np.nan
    return pd.Series(codes, index=values.index)
