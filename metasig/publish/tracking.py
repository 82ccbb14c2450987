"""MLflow tracking: mirror the registry's versions into an MLflow tracking store + Model Registry.

The metasig registry (registry.py) is the source of truth; MLflow is an optional view of it for teams
that already use MLflow. One run per registered metasig version (params, metrics with CIs, permuted
control, gate reason, the artifact folder as run artifacts) and one MLflow model version under
`metasig.<dataset>.<task>.<group>.<model>`. Idempotent: each MLflow model version carries the tag
`metasig_version`, and a version already present is not logged again.

Works offline with a `sqlite:///...` tracking URI; artifacts then go to `<db folder>/artifacts`
unless `artifact_root` says otherwise. mlflow is imported inside the function (slow import).
"""

import contextlib
import json
import logging
import math
import os
import warnings
from pathlib import Path

from metasig.learn.metrics_file import read_metrics
from metasig.publish.registry import METRICS, verify

VERSION_TAG = "metasig_version"
_MAX_PARAM = 500


def registered_name(entry):
    return f"metasig.{entry['name']}"


def _sqlite_path(uri):
    """The database file of a sqlite:/// URI (relative to cwd with 3 slashes), else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


@contextlib.contextmanager
def _quiet():
    """MLflow logs DB migrations at INFO and emits deprecation warnings; keep the job log readable."""
    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic", "sqlalchemy")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _params(entry, doc):
    params = {
        k: entry.get(k)
        for k in ("dataset", "task", "group", "model", "kind", "model_kind", "n_samples", "n_features", "version")
    }
    params["seed"] = doc.get("seed")
    for key, value in (doc.get("cv") or {}).items():
        params[f"cv.{key}"] = value
    for key, value in (doc.get("best_params") or {}).items():
        params[f"best_params.{key}"] = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
    return {k: str(v)[:_MAX_PARAM] for k, v in params.items() if v is not None}


def _metrics(doc):
    out = {}
    for prefix, block in (("", doc.get("metrics")), ("permuted_", doc.get("permuted"))):
        for metric, entry in (block or {}).items():
            for field, suffix in (("estimate", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high")):
                value = (entry or {}).get(field)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    out[f"{prefix}{metric}{suffix}"] = float(value)
    return out


def _existing_version(client, name, version):
    try:
        found = client.search_model_versions(f"name = '{name}' and tags.{VERSION_TAG} = '{version}'")
    except Exception:  # registered model absent on some backends
        return None
    return found[0] if found else None


def _finished_run(client, experiment_id, entry):
    """A run logged earlier for this exact version (e.g. the registration step crashed after it)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.metasig_name = '{entry['name']}' and tags.{VERSION_TAG} = '{entry['version']}'"
            " and attributes.status = 'FINISHED'"
        ),
        max_results=1,
    )
    return runs[0] if runs else None


def _end_orphans(client, experiment_id, entry):
    """Runs of this exact version left RUNNING by an attempt that was killed midway: mark them FAILED
    so the tracking UI never shows a run that looks alive; the version is then logged afresh."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.metasig_name = '{entry['name']}' and tags.{VERSION_TAG} = '{entry['version']}'"
            " and attributes.status = 'RUNNING'"
        ),
    )
    for run in runs:
        client.set_terminated(run.info.run_id, status="FAILED")
    return len(runs)


def log_to_mlflow(index_entries, registry_root, tracking_uri, experiment="metasig", artifact_root=None):
    """Log each registry entry as an MLflow run + model version; return [(name, mlflow_version)].

    `name` is the MLflow registered-model name (`metasig.<dataset>.<task>.<group>.<model>`).
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline: never phone home
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    registry_root = Path(registry_root)
    db = _sqlite_path(tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        if artifact_root is None:
            artifact_root = db.parent / "artifacts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow.entities import Metric, Param, RunTag  # configures mlflow's loggers on import
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

    with _quiet():
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is not None:
            experiment_id = exp.experiment_id
        else:
            location = Path(artifact_root).resolve().as_uri() if artifact_root is not None else None
            experiment_id = client.create_experiment(experiment, artifact_location=location)

        results = []
        for entry in index_entries:
            name, version = registered_name(entry), entry["version"]
            existing = _existing_version(client, name, version)
            if existing is not None:
                results.append((name, int(existing.version)))
                continue
            folder = registry_root / entry["path"]
            verify(folder)  # never mirror a damaged artifact
            doc = read_metrics(folder / METRICS)
            tags = {"metasig_name": entry["name"], VERSION_TAG: version, "gate": str(entry.get("gate", ""))[:5000]}

            _end_orphans(client, experiment_id, entry)
            run = _finished_run(client, experiment_id, entry)
            if run is None:
                run = client.create_run(experiment_id, run_name=f"{entry['name']}@{version}", tags=tags)
                run_id = run.info.run_id
                try:
                    client.log_batch(
                        run_id,
                        metrics=[Metric(k, v, 0, 0) for k, v in _metrics(doc).items()],
                        params=[Param(k, v) for k, v in _params(entry, doc).items()],
                        tags=[RunTag("mlflow.note.content", f"Gate: {tags['gate']}")],
                    )
                    client.log_artifacts(run_id, str(folder), artifact_path="model")
                except BaseException:  # an error (not a kill -9, which the rerun cleans up) ends it FAILED
                    client.set_terminated(run_id, status="FAILED")
                    raise
                client.set_terminated(run_id)
                run = client.get_run(run_id)
            try:
                client.create_registered_model(
                    name,
                    tags={"metasig_name": entry["name"]},
                    description=f"metasig model {entry['name']} ({entry.get('kind')}, {entry.get('model_kind')})",
                )
            except MlflowException as exc:
                if "RESOURCE_ALREADY_EXISTS" not in str(getattr(exc, "error_code", "")) and "already exists" not in str(
                    exc
                ):
                    raise
            mv = client.create_model_version(
                name,
                source=f"{run.info.artifact_uri}/model",
                run_id=run.info.run_id,
                tags=tags,
                description=tags["gate"],
            )
            results.append((name, int(mv.version)))
    return results
