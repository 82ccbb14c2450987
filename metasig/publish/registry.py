"""The model registry: an append-only folder of the model versions that passed their gate.

Layout (`registry_root`):

    index.json                                   every listed version + a "latest" alias map
    {dataset}/{task}/{group}/{model}/{version}/  the artifact files named in SHA256SUMS,
                                                 SHA256SUMS, metrics.json, model_card.md

The version is the first 12 hex digits of sha256(SHA256SUMS bytes + metrics.json bytes), so the
same results always give the same version and re-publishing is a no-op. A version folder is built
in a temp folder beside its final place and renamed into place only after its checksums verify, so
a crash never leaves a half-copied version. Artifacts whose checksums do not match are refused.

The version folder is itself a loadable artifact folder (SHA256SUMS covers the model files;
metrics.json and model_card.md are extra documentation, their own sha256 is in index.json).

"latest" maps each model name to the version published most recently. A model that is gated in
this run and fails loses its "latest" alias (its old versions stay listed, marked by the index but
not served as latest); models absent from this run's gate rows keep theirs.
"""

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from metasig.errors import InputError
from metasig.io import read_json, sha256_file
from metasig.learn import checksums
from metasig.learn.checksums import SUMS, ChecksumError, read_sums  # noqa: F401 (part of this module's API)
from metasig.learn.layout import ARTIFACT_DIR, METRICS, model_dir
from metasig.learn.metrics_file import read_metrics
from metasig.publish.gate_table import records, truthy
from metasig.publish.registry_index import read_index, write_index

CARD = "model_card.md"
_CARD_FEATURES = 200  # longer lists (e.g. ALL genes) are in features.json


def model_name(dataset, task, group, model):
    return f"{dataset}.{task}.{group}.{model}"


def verify(folder):
    """Check every file named in SHA256SUMS (`metasig.learn.checksums.verify`); return {name: sha256}."""
    return checksums.verify(folder, refusing="register it")


def version_of(artifact_dir, metrics_path):
    """Content version: first 12 hex of sha256 over SHA256SUMS bytes + metrics.json bytes."""
    digest = hashlib.sha256()
    digest.update((Path(artifact_dir) / SUMS).read_bytes())
    digest.update(Path(metrics_path).read_bytes())
    return digest.hexdigest()[:12]


# ---- model card ------------------------------------------------------------------------------


def _f(value, digits=3):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def _grouping(cv):
    """', every fold grouped by `patient` (kfold, 792 groups)' for grouped CV, else ''."""
    if not cv.get("group_by"):
        return ""
    return f", every fold grouped by `{cv['group_by']}` ({cv.get('scheme', 'kfold')}, {cv.get('n_groups', '?')} groups)"


def _metric_table(block):
    lines = ["| metric | estimate | 95% CI |", "|---|---|---|"]
    for metric, entry in (block or {}).items():
        entry = entry or {}
        lines.append(
            f"| {metric} | {_f(entry.get('estimate'))} | [{_f(entry.get('ci_low'))}, {_f(entry.get('ci_high'))}] |"
        )
    return lines


def _predicts(doc, artifact):
    kind = doc.get("kind") or artifact.get("kind") or artifact.get("task_kind")
    classes = [str(c) for c in (doc.get("classes") or artifact.get("classes") or [])]
    if kind == "binary" and len(classes) == 2:
        return (
            f"Binary task `{doc.get('task')}`: the probability that a sample belongs to class "
            f"`{classes[1]}` (versus `{classes[0]}`)."
        )
    if kind == "multiclass":
        return (
            f"Multiclass task `{doc.get('task')}`: one probability per class ({', '.join(f'`{c}`' for c in classes)})."
        )
    if kind == "survival":
        return (
            f"Survival task `{doc.get('task')}`: a relative risk score (higher = earlier event), "
            f"learned from follow-up time and event indicator."
        )
    return f"Task `{doc.get('task')}` ({kind})."


def model_card(doc, artifact, sums, metrics_sha256, gate_row):
    """Markdown card; deterministic (no dates, no absolute paths) so re-publishing changes nothing."""
    name = model_name(doc["dataset"], doc["task"], doc["group"], doc["model"])
    cv = doc.get("cv") or {}
    features = list(doc.get("features") or [])
    reason = gate_row.get("reason", "")
    lines = [
        f"# Model card: {name}",
        "",
        "## What it predicts",
        _predicts(doc, artifact),
        "",
        "## Data",
        f"- dataset: `{doc['dataset']}`, {doc.get('n_samples', '?')} samples",
        f"- gene group: `{doc['group']}`",
        f"- model: `{doc['model']}` ({doc.get('model_kind') or artifact.get('model_kind', '?')}), "
        f"best parameters: `{json.dumps(doc.get('best_params') or {}, sort_keys=True)}`",
        f"- seed: {doc.get('seed', '?')}",
        *([f"- input normalization expected: `{artifact['normalization']}`"] if artifact.get("normalization") else []),
        "",
        f"## Features ({doc.get('n_features', len(features))})",
        "Input columns are matched by name, in this order:",
        "",
        ", ".join(f"`{f}`" for f in features[:_CARD_FEATURES]) or "(not recorded)",
        *(
            [f"... and {len(features) - _CARD_FEATURES} more (full list: features.json)"]
            if len(features) > _CARD_FEATURES
            else []
        ),
        "",
        "## Evaluation",
        (
            f"Nested cross-validation: {cv.get('outer_folds', '?')} outer folds x "
            f"{cv.get('outer_repeats', '?')} repeats, {cv.get('inner_folds', '?')} inner folds for tuning"
            + _grouping(cv)
            + "; "
            f"all preprocessing fitted inside the training folds; 95% CIs from {cv.get('bootstrap', '?')} "
            f"bootstrap resamples of the out-of-fold predictions."
        ),
        "",
        "### Held-out metrics",
        *_metric_table(doc.get("metrics")),
        "",
        (f"### Permuted-label control ({cv.get('permuted_repeats', '?')} repeat(s), same pipeline on shuffled labels)"),
        *_metric_table(doc.get("permuted")),
        "",
        "## Gate decision",
        reason if str(reason).startswith("passed") else f"failed: {reason}",
    ]
    if truthy(gate_row.get("no_signal")):
        lines += [
            "",
            f"**This gene group carries no signal:** the {gate_row.get('metric', 'gate metric')} "
            "confidence interval overlaps the permuted-label control's.",
        ]
    lines += [
        "",
        "## Intended use and limitations",
        "- Research use only; not validated for clinical decisions.",
        f"- Evaluated by cross-validation within `{doc['dataset']}` only; no external cohort. Expect lower "
        "performance on data from other platforms, labs or populations (batch effects).",
        "- Inputs must be on the same scale as the training matrix (the same unit and per-sample "
        "normalization); in-fold preprocessing (filtering, scaling) is part of the artifact.",
        "- Missing features are not imputed silently; supply every listed feature.",
        "",
        "## Checksums (sha256)",
        "```",
        *[f"{digest}  {fname}" for fname, digest in sorted(sums.items())],
        f"{metrics_sha256}  {METRICS}",
        "```",
        "",
    ]
    return "\n".join(lines)


# ---- publishing ------------------------------------------------------------------------------


def _write_text_if_changed(path, text):
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        Path(tmp).write_text(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _copy_version(src_artifact, metrics_path, sums, dest, card_text):
    """Copy into a temp dir beside `dest`, verify, then rename into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        for name in sums:  # only checksummed files travel; anything unlisted stays behind
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src_artifact / name, target)
        shutil.copyfile(src_artifact / SUMS, tmp / SUMS)
        shutil.copyfile(metrics_path, tmp / METRICS)
        (tmp / CARD).write_text(card_text)
        verify(tmp)  # catches a change between the first check and the copy
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _check_existing(dest, metrics_path):
    try:
        verify(dest)
    except ChecksumError as exc:
        raise ChecksumError(
            exc.file, exc.field, f"{exc.problem} (registered version folder {dest} is damaged; remove it to re-publish)"
        ) from exc
    if (dest / METRICS).read_bytes() != Path(metrics_path).read_bytes():
        raise ChecksumError(
            dest / METRICS,
            METRICS,
            "differs from the trained model's metrics.json "
            "although the version hash matches; remove the version folder to re-publish",
        )


def publish(gate_rows, models_root, registry_root) -> dict:
    """Copy every passing model's artifact into the registry and rewrite index.json atomically.

    gate_rows: DataFrame or records from `metasig.publish.gate.gate_task` (or its TSV read back); needs
    dataset, task, group, model, passed, reason. Models are read from
    `models_root/{dataset}/{task}/{group}/{model}/` (metrics.json + model/). Returns the index.
    """
    models_root, registry_root = Path(models_root), Path(registry_root)
    registry_root.mkdir(parents=True, exist_ok=True)
    index = read_index(registry_root, missing_ok=True)

    # Previous entries survive only if their folder still exists (stale entries are dropped).
    entries = [
        e for e in index["models"] if isinstance(e, dict) and e.get("path") and (registry_root / e["path"]).is_dir()
    ]
    latest = dict(index["latest"])

    for row in records(gate_rows):
        ident = [str(row[k]) for k in ("dataset", "task", "group", "model")]
        name = model_name(*ident)
        if not truthy(row.get("passed")):
            latest.pop(name, None)  # gated now and failed: do not serve an older version as latest
            continue
        src = model_dir(models_root, *ident)
        artifact_dir, metrics_path = src / ARTIFACT_DIR, src / METRICS
        for needed in (metrics_path, artifact_dir / SUMS):
            if not needed.is_file():
                raise InputError(needed, needed.name, f"model {name} passed the gate but this file is missing")
        sums = verify(artifact_dir)
        doc = read_metrics(metrics_path)
        if [str(doc.get(k)) for k in ("dataset", "task", "group", "model")] != ident:
            raise InputError(
                metrics_path, "dataset/task/group/model", f"identifies a different model than its folder ({name})"
            )
        artifact_json = artifact_dir / "artifact.json"
        artifact = read_json(artifact_json) if "artifact.json" in sums else {}
        version = version_of(artifact_dir, metrics_path)
        rel = PurePosixPath(*ident, version)
        dest = registry_root.joinpath(*ident, version)
        metrics_sha = sha256_file(metrics_path)
        card = model_card(doc, artifact, sums, metrics_sha, row)
        if dest.is_dir():
            _check_existing(dest, metrics_path)
            _write_text_if_changed(dest / CARD, card)  # gate wording may change; the card follows
        else:
            _copy_version(artifact_dir, metrics_path, sums, dest, card)

        entry = {
            "name": name,
            "dataset": ident[0],
            "task": ident[1],
            "group": ident[2],
            "model": ident[3],
            "version": version,
            "path": str(rel),
            "kind": doc.get("kind"),
            "model_kind": doc.get("model_kind") or artifact.get("model_kind"),
            "n_samples": doc.get("n_samples"),
            "n_features": doc.get("n_features"),
            "metrics": doc.get("metrics") or {},
            "permuted": doc.get("permuted") or {},
            "gate": str(row.get("reason", "")),
            "metrics_sha256": metrics_sha,
        }
        entries = [e for e in entries if not (e.get("name") == name and e.get("version") == version)]
        entries.append(entry)  # re-published versions move to the end: listing order = recency
        latest[name] = version

    # An alias whose version vanished falls back to that name's most recent remaining version.
    listed = {}
    for e in entries:
        listed.setdefault(e["name"], []).append(e["version"])
    latest = {n: (v if v in listed.get(n, []) else listed[n][-1]) for n, v in latest.items() if n in listed}
    return write_index(entries, latest, registry_root)
