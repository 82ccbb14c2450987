"""The model artifact folder: safe formats only (never pickle), checksummed, byte-reproducible.

    features.json        ordered input feature names
    preprocessing.skops  fitted preprocessing Pipeline (all steps but the estimator), skops
    model.json           XGBoost Booster JSON (xgboost, xgboost_cox)
    baseline_hazard.json xgboost_cox only: Breslow baseline cumulative hazard
    cox.json             coxph: coefficients, centring means, model input order, baseline
    model.skops          any other scikit-learn estimator, skops
    artifact.json        model kind, task kind, classes, file names, package versions
    SHA256SUMS           sha256 of every file above (`sha256sum -c` format)

`load_artifact` checks every checksum before reading anything, then loads skops files with an
explicit allowlist of trusted types (`TRUSTED_TYPES`), never `trusted=True`.
"""

import io
import json
import platform
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio

from metasig.errors import InputError
from metasig.io import atomic_path
from metasig.learn.checksums import SUMS, format_sums, verify
from metasig.learn.cox import CoxPH
from metasig.learn.models import model_feature_names
from metasig.learn.survival import XGBoostCox, survival_from_risk
from metasig.learn.xgb import XGBoostClassifier, xgb_class_proba, xgb_margin

FORMAT_VERSION = 1
ARTIFACT = "artifact.json"
FEATURES = "features.json"
PREPROCESSING = "preprocessing.skops"
KNOWN_FILES = (FEATURES, PREPROCESSING, "model.json", "baseline_hazard.json", "cox.json", "model.skops", ARTIFACT, SUMS)

# Types skops may construct beyond its built-in defaults (skops reports these as "untrusted"):
# our own transformers, the f_classif score function, numpy dtypes and the decision-tree
# structure of random forests. Loading fails on anything else. tests/learn/test_artifacts.py checks
# that every type our pipelines produce is listed here.
TRUSTED_TYPES = [
    "metasig.learn.linear.ElasticNetClassifier",
    "metasig.learn.logistic.SpanLogisticRegression",
    "metasig.learn.preprocess.ChunkedStandardScaler",
    "metasig.learn.preprocess.ColumnSubset",
    "metasig.learn.preprocess.CoxScoreSelector",
    "metasig.learn.preprocess.DESeq2VST",
    "metasig.learn.preprocess.InFoldPCA",
    "metasig.learn.preprocess.MedianImputer",
    "metasig.learn.preprocess.MedianOfRatiosLog2",
    "metasig.learn.preprocess.MinMeanFilter",
    "metasig.learn.preprocess.SelectKBestCapped",
    "metasig.learn.preprocess.TopVarianceFilter",
    "metasig.learn.sgd.SpanSGDClassifier",
    "metasig.learn.svm.SVMClassifier",
    "numpy.dtype",
    "sklearn.feature_selection._univariate_selection.f_classif",
    "sklearn.tree._tree.Tree",
]
_PACKAGES = (
    "metasig",
    "scikit-learn",
    "numpy",
    "xgboost",
    "lifelines",
    "scikit-survival",
    "pydeseq2",
    "skops",
    "skglm",
)


def _versions():
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# ---- byte-reproducible skops ------------------------------------------------------------------


def skops_bytes(obj) -> bytes:
    """skops.io.dumps with the run-dependent parts made canonical, so the same fitted object
    gives the same bytes in any process. skops names array files and object ids after Python
    `id()` (memory addresses) and stamps zip entries with the current time; here ids and file
    names are renumbered in schema order and every entry gets a fixed timestamp. The schema is
    otherwise unchanged, so skops.io.load reads it as usual."""
    raw = zipfile.ZipFile(io.BytesIO(sio.dumps(obj)))
    schema = json.loads(raw.read("schema.json"))
    ids, files = {}, {}

    def walk(node):
        if isinstance(node, dict):
            if "__loader__" in node:
                if "__id__" in node:
                    node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
                if isinstance(node.get("file"), str):
                    old = node["file"]
                    if old not in files:
                        files[old] = f"{len(files)}{Path(old).suffix}"
                    node["file"] = files[old]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        entries = [("schema.json", json.dumps(schema, indent=2).encode())]
        entries += sorted((new, raw.read(old)) for old, new in files.items())
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            out.writestr(info, data)
    return buffer.getvalue()


def load_skops(path):
    """Load a skops file allowing only skops' defaults plus TRUSTED_TYPES."""
    try:
        return sio.load(path, trusted=TRUSTED_TYPES)
    except Exception as exc:
        raise InputError(path, "(file)", f"refusing to load: {exc}") from exc


# ---- save -------------------------------------------------------------------------------------


def _write_bytes(path, data: bytes):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _write_json(path, obj):
    _write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _booster_json(booster) -> bytes:
    raw = booster.save_raw(raw_format="json")
    return bytes(raw)


def save_artifact(fitted_pipeline, outdir, features, task_kind, model_kind, classes=None, positive=None):
    """Write the artifact folder for a fitted Pipeline (last step = estimator); return the paths
    written, SHA256SUMS last. `classes`: classification labels as strings (binary: [negative,
    positive], in the order of the estimator's classes_); default: the estimator's classes_."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for name in KNOWN_FILES:  # a previous artifact of another kind must not linger
        if (outdir / name).exists():
            (outdir / name).unlink()
    features = [str(f) for f in features]
    pre, est = fitted_pipeline[:-1], fitted_pipeline[-1]
    fitted_names = getattr(pre, "feature_names_in_", None) if len(pre) else None
    if fitted_names is not None and list(map(str, fitted_names)) != features:
        raise ValueError("features differ from the columns the pipeline was fitted on")
    try:
        model_inputs = [str(n) for n in model_feature_names(fitted_pipeline, features)]
    except (AttributeError, ValueError):  # a step without get_feature_names_out
        model_inputs = None
    record = {
        "format": FORMAT_VERSION,
        "model_kind": model_kind,
        "task_kind": task_kind,
        "positive": None if positive is None else str(positive),
        "features_file": FEATURES,
        "preprocessing_file": PREPROCESSING,
        "n_features": len(features),
        "model_inputs": model_inputs,
        "created_with": _versions(),
    }
    if task_kind != "survival":
        model_classes = [str(c) for c in est.classes_]
        classes = model_classes if classes is None else [str(c) for c in classes]
        if len(classes) != len(model_classes) or (
            task_kind == "multiclass" and sorted(classes) != sorted(model_classes)
        ):
            raise ValueError(f"classes {classes} do not match the estimator's classes {model_classes}")
        record.update(classes=classes, model_classes=model_classes)
    else:
        record.update(classes=None, model_classes=None)

    files = {FEATURES: None, PREPROCESSING: skops_bytes(pre)}
    if isinstance(est, XGBoostClassifier):
        record.update(estimator_type="xgboost_classifier", estimator_file="model.json")
        files["model.json"] = _booster_json(est.booster_)
    elif isinstance(est, XGBoostCox):
        record.update(estimator_type="xgboost_cox", estimator_file="model.json", baseline_file="baseline_hazard.json")
        files["model.json"] = _booster_json(est.booster_)
        files["baseline_hazard.json"] = {"time": est.baseline_times_, "cumulative_hazard": est.baseline_cumhaz_}
    elif isinstance(est, CoxPH):
        record.update(estimator_type="cox", estimator_file="cox.json")
        files["cox.json"] = {
            "features": model_inputs,
            "coef": est.coef_,
            "mean": est.mean_,
            "risk": "(x - mean) . coef; S(t|x) = exp(-H0(t) * exp(risk))",
            "baseline": {"time": est.baseline_times_, "cumulative_hazard": est.baseline_cumhaz_},
        }
    else:
        record.update(estimator_type="sklearn", estimator_file="model.skops")
        files["model.skops"] = skops_bytes(est)
    files[FEATURES] = features
    files[ARTIFACT] = record

    written = []
    for name, content in files.items():
        path = outdir / name
        if isinstance(content, bytes):
            _write_bytes(path, content)
        else:
            _write_json(path, content)
        written.append(path)
    _write_bytes(outdir / SUMS, format_sums(written))
    written.append(outdir / SUMS)
    return written


# ---- load -------------------------------------------------------------------------------------


def verify_checksums(directory) -> dict:
    """Check every file listed in SHA256SUMS (`metasig.learn.checksums.verify`); return {name: sha256}."""
    return verify(directory, refusing="load it")


class Artifact:
    """A loaded model: `.features`, `.classes`, `.task_kind`, `.model_kind`, and
    `.predict_proba(X_df)` (classification) or `.predict_risk(X_df)` / `.predict_survival(X_df,
    times)` (survival). Input columns are picked by name, never by position."""

    def __init__(self, directory, record, features, preprocessing, estimator, extra=None):
        self.directory = Path(directory)
        self.record = record
        self.features = list(features)
        self.preprocessing = preprocessing
        self.estimator = estimator
        self.extra = extra or {}
        self.task_kind = record["task_kind"]
        self.model_kind = record["model_kind"]
        self.classes = record.get("classes")
        self.positive = record.get("positive")

    def _inputs(self, X_df):
        if not isinstance(X_df, pd.DataFrame):
            raise TypeError("pass a pandas DataFrame with one column per feature (columns are matched by name)")
        missing = [f for f in self.features if f not in X_df.columns]
        if missing:
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise InputError("input", missing[0], f"required feature(s) missing: {missing[:5]}{more}")
        X = X_df[self.features]
        if getattr(self.preprocessing, "feature_names_in_", None) is None:
            X = X.to_numpy(dtype=float)
        return self.preprocessing.transform(X) if len(self.preprocessing) else np.asarray(X, dtype=float)

    def predict_proba(self, X_df) -> pd.DataFrame:
        """Class probabilities, one column per class in `classes` order, index of X_df."""
        if self.task_kind == "survival":
            raise TypeError("a survival model has no class probabilities; use predict_risk")
        Xt = self._inputs(X_df)
        model_classes = self.record["model_classes"]
        if self.record["estimator_type"] == "xgboost_classifier":
            proba = xgb_class_proba(self.estimator, Xt, len(model_classes))
        else:
            proba = self.estimator.predict_proba(Xt)
        if self.task_kind == "multiclass":
            proba = proba[:, [model_classes.index(c) for c in self.classes]]
        return pd.DataFrame(proba, index=X_df.index, columns=self.classes)

    def predict_risk(self, X_df) -> pd.Series:
        """Risk score (log relative hazard; higher = worse), index of X_df."""
        if self.task_kind != "survival":
            raise TypeError("predict_risk is for survival models; use predict_proba")
        Xt = self._inputs(X_df)
        if self.record["estimator_type"] == "xgboost_cox":
            risk = xgb_margin(self.estimator, Xt)
        else:
            cox = self.estimator
            risk = (np.asarray(Xt, dtype=float) - np.asarray(cox["mean"])) @ np.asarray(cox["coef"])
        return pd.Series(risk, index=X_df.index, name="risk")

    def predict_survival(self, X_df, times) -> pd.DataFrame:
        """S(t | x) for each sample (rows) and each time in `times` (columns)."""
        risk = self.predict_risk(X_df).to_numpy()
        base = self.extra["baseline"]
        surv = survival_from_risk(risk, base["time"], base["cumulative_hazard"], times)
        return pd.DataFrame(surv, index=X_df.index, columns=list(np.atleast_1d(times)))


def load_artifact(directory) -> Artifact:
    """Verify SHA256SUMS, then load the folder with safe readers only."""
    import xgboost as xgb

    directory = Path(directory)
    listed = verify_checksums(directory)
    record = json.loads((directory / ARTIFACT).read_text()) if ARTIFACT in listed else None
    if record is None:
        raise InputError(directory / SUMS, ARTIFACT, "artifact.json is not covered by SHA256SUMS")
    if record.get("format") != FORMAT_VERSION:
        raise InputError(
            directory / ARTIFACT,
            "format",
            f"unsupported artifact format {record.get('format')!r} (expected {FORMAT_VERSION})",
        )
    needed = [record["features_file"], record["preprocessing_file"], record["estimator_file"]]
    needed += [record["baseline_file"]] if "baseline_file" in record else []
    for name in needed:
        if name not in listed:
            raise InputError(directory / SUMS, name, "file used by the artifact is not covered by SHA256SUMS")
    features = json.loads((directory / record["features_file"]).read_text())
    preprocessing = load_skops(directory / record["preprocessing_file"])
    kind, path, extra = record["estimator_type"], directory / record["estimator_file"], {}
    if kind in ("xgboost_classifier", "xgboost_cox"):
        estimator = xgb.Booster()
        estimator.load_model(bytearray(path.read_bytes()))
        estimator.set_param({"nthread": 1})
        if kind == "xgboost_cox":
            extra["baseline"] = json.loads((directory / record["baseline_file"]).read_text())
    elif kind == "cox":
        estimator = json.loads(path.read_text())
        extra["baseline"] = estimator["baseline"]
    elif kind == "sklearn":
        estimator = load_skops(path)
    else:
        raise InputError(directory / ARTIFACT, "estimator_type", f"unknown estimator type {kind!r}")
    return Artifact(directory, record, features, preprocessing, estimator, extra)
