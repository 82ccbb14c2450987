"""A loaded, servable model: the verified Artifact plus what the protocol needs to describe it.

Loading goes through `metasig.learn.artifacts.load_artifact`, which checks every sha256 in SHA256SUMS
before reading a byte of the model and reads only safe formats (XGBoost JSON, skops with an
allowlist, Cox JSON; never pickle). What the server returns is exactly what the Artifact's own
`predict_proba` / `predict_risk` return: either through them, or through a faster array path that
is switched on per model only after it reproduced them bit for bit at load time.

Memory estimate (the cache's budget unit): the artifact's *uncompressed* bytes (skops files are
zips; their members' sizes are summed) x MEMORY_FACTOR + MEMORY_OVERHEAD. Measured on metasig
artifacts (3-2,000 features, 20-150 trees), the resident-set growth per loaded model was 0.06-0.8x
the uncompressed bytes, so 1.25x + 32 KiB is an upper bound that is cheap to compute before and
independent of other threads (an RSS delta is noisy when loads overlap and the allocator reuses
freed pages).
"""

import logging
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from metasig.learn.artifacts import load_artifact
from metasig.learn.checksums import read_sums
from metasig.learn.xgb import xgb_class_proba, xgb_margin

log = logging.getLogger("metasig.serve")

MEMORY_FACTOR = 1.25
MEMORY_OVERHEAD = 32 * 1024


def estimate_bytes(folder, files):
    total = 0
    for name in files:
        path = Path(folder) / name
        size = path.stat().st_size
        if path.suffix == ".skops":
            try:
                with zipfile.ZipFile(path) as archive:
                    size = max(size, sum(info.file_size for info in archive.infolist()))
            except zipfile.BadZipFile:
                pass
        total += size
    return int(total * MEMORY_FACTOR) + MEMORY_OVERHEAD


def refuse_links(folder):
    """A symbolic link inside a model folder could point anywhere on the machine: refuse it."""
    folder = Path(folder)
    if folder.is_symlink():
        raise RuntimeError(f"model folder {folder.name} is a symbolic link; refused")
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise RuntimeError(
                f"model folder holds a symbolic link, {path.relative_to(folder)}; refused "
                f"(copy the file into the folder instead)"
            )


def size_before_load(entry):
    """The memory estimate from the files SHA256SUMS lists, without loading anything."""
    return estimate_bytes(entry.path, read_sums(entry.path))


class ServedModel:
    def __init__(self, entry, artifact, nbytes):
        self.name, self.version, self.entry = entry.name, entry.version, entry
        self.artifact = artifact
        self.features = artifact.features
        self.n_features = len(self.features)
        self.feature_index = {f: i for i, f in enumerate(self.features)}
        self.task_kind = artifact.task_kind
        self.classes = artifact.classes
        self.nbytes = nbytes
        if self.task_kind == "survival":
            self.outputs = [{"name": "risk", "datatype": "FP64", "shape": [-1]}]
        else:
            self.outputs = [
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(self.classes)]},
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
            ]
        self.output_names = [o["name"] for o in self.outputs]

    @classmethod
    def load(cls, entry):
        """Verify every sha256 and load (load_artifact refuses any mismatch before reading), then
        check that the model predicts. Blocking: run it in a worker thread."""
        refuse_links(entry.path)
        artifact = load_artifact(entry.path)
        model = cls(entry, artifact, size_before_load(entry))
        model.check_predicts()
        model.enable_fast_path()
        return model

    def check_predicts(self):
        """Predict two rows of ones (valid for every preprocessing, counts included), so a model
        that loads but cannot predict is refused now rather than answered 500 on each request.
        This is also the warm-up: a fresh booster's or pipeline's first prediction is slow."""
        try:
            out = self.reference_predict(np.ones((2, self.n_features)))
        except Exception as exc:
            raise RuntimeError(f"the model loads but cannot predict: {type(exc).__name__}: {exc}") from exc
        if not all(np.isfinite(v).all() for k, v in out.items() if k != "label"):
            raise RuntimeError("the model loads but predicts NaN or infinity on a row of ones")

    # ---- prediction -------------------------------------------------------------------------

    def predict(self, X):
        """X: float64 array [N, n_features] in `features` order, all finite -> {output: array}."""
        if self._fast is not None:
            return self._outputs(self._fast_predict(X))
        return self.reference_predict(X)

    def reference_predict(self, X):
        """Through the Artifact's own API: the definition of what the server must return."""
        frame = pd.DataFrame(X, columns=self.features, copy=False)
        if self.task_kind == "survival":
            return {"risk": self.artifact.predict_risk(frame).to_numpy(dtype=np.float64)}
        return self._outputs(self.artifact.predict_proba(frame).to_numpy(dtype=np.float64))

    def _outputs(self, values):
        if self.task_kind == "survival":
            return {"risk": values}
        labels = np.asarray(self.classes, dtype=object)[np.argmax(values, axis=1)]
        return {"probabilities": values, "label": labels}

    # The reference path spends ~90% of a one-row prediction in scikit-learn's input validation
    # (feature names through pandas, dtype and finiteness checks) that the protocol layer has
    # already done. For pipelines made only of an imputer and a scaler (the default
    # preprocessing), the same arithmetic is applied to the array directly. It is used only
    # if it reproduces the reference bit for bit on probe rows at load time; otherwise (or for
    # any other step) every request takes the reference path.
    _fast = None

    def _fast_steps(self):
        from sklearn.impute import SimpleImputer
        from sklearn.preprocessing import StandardScaler

        steps = []
        for step in self.artifact.preprocessing:
            if isinstance(step, SimpleImputer):  # MedianImputer too
                stats = np.asarray(step.statistics_, dtype=float)
                missing = step.missing_values
                if (
                    not (isinstance(missing, float) and np.isnan(missing))
                    or not np.isfinite(stats).all()
                    or step.add_indicator
                    or stats.shape[0] != self.n_features
                ):
                    return None
                continue  # inputs are finite: median imputation changes nothing
            if isinstance(step, StandardScaler):  # ChunkedStandardScaler too: the same transform
                if step.n_features_in_ != self.n_features:
                    return None
                mean = step.mean_ if step.with_mean else None
                scale = step.scale_ if step.with_std else None
                steps.append((mean, scale))
                continue
            return None
        return steps

    def _fast_predict(self, X):
        Xt = X.copy()
        for mean, scale in self._fast:  # exactly StandardScaler.transform's in-place arithmetic
            if mean is not None:
                Xt -= mean
            if scale is not None:
                Xt /= scale
        record, est = self.artifact.record, self.artifact.estimator
        kind = record["estimator_type"]
        if kind == "xgboost_classifier":
            proba = xgb_class_proba(est, Xt, len(record["model_classes"]))
        elif kind == "xgboost_cox":
            return xgb_margin(est, Xt)
        elif kind == "cox":
            return (Xt - np.asarray(est["mean"])) @ np.asarray(est["coef"])
        else:
            proba = est.predict_proba(Xt)
        if self.task_kind == "multiclass":
            model_classes = record["model_classes"]
            proba = proba[:, [model_classes.index(c) for c in self.classes]]
        return np.asarray(proba, dtype=np.float64)

    def enable_fast_path(self, probes=16):
        """Switch to the fast path if it gives exactly the reference's answers on probe rows.
        Only pipelines of an imputer and a scaler qualify, so probes are centred on the scaler's
        mean, which then has one value per input."""
        steps = self._fast_steps()
        if steps is None:
            return
        rng = np.random.default_rng(0)
        X = np.vstack(
            [
                np.ones((1, self.n_features)),
                rng.normal(0.0, 1.0, (probes, self.n_features)) * rng.choice([0.1, 1.0, 10.0, 1000.0], (probes, 1)),
            ]
        )
        try:
            means = [mean for mean, _ in steps if mean is not None]
            if means:
                X[1:] += means[0]  # probes around the training data's centre
            reference = self.reference_predict(X)
            self._fast = steps
            fast = self.predict(X)
            same = all(np.array_equal(fast[k], reference[k]) for k in reference)
        except Exception as exc:  # noqa: BLE001 - fall back to the reference path
            log.debug("fast-path check of %s failed: %s", self.name, exc)
            same = False
        if not same:
            self._fast = None
            log.info(
                "%s %s: fast path differs from the artifact's predictions; using the reference path",
                self.name,
                self.version,
            )
        else:
            self.predict(X[:1])  # warm the fast path's one-row case too

    def metadata(self, versions):
        return {
            "name": self.name,
            "versions": versions,
            "platform": f"metasig_{self.artifact.record.get('estimator_type', self.artifact.model_kind)}",
            "inputs": [{"name": f, "datatype": "FP64", "shape": [-1]} for f in self.features],
            "outputs": self.outputs,
            "parameters": {
                "version": self.version,
                "task_kind": self.task_kind,
                "model_kind": self.artifact.model_kind,
                "classes": self.classes,
                "positive": self.artifact.positive,
                "features_input": {
                    "shape": [-1, self.n_features],
                    "note": "or one tensor of any other name, columns in the inputs' order",
                },
            },
        }
