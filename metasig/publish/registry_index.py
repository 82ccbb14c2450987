"""index.json, the registry's index: its name, its writer and its reader.

Written by `metasig.publish.registry.publish`, read by the registry itself (to extend it), the
MLflow step and the server (`metasig.serve.repository`). Shape:

    {"schema": SCHEMA, "models": [entry, ...], "latest": {name: version}}

Entries are listed oldest first; each has at least name, version and path (relative to the
registry folder). The file is strict JSON: NaN/inf are written as null.
"""

import json
import math
from pathlib import Path

from metasig import io
from metasig.errors import InputError

INDEX = "index.json"
SCHEMA = 1


def index_path(registry_root) -> Path:
    return Path(registry_root) / INDEX


def _finite(obj):
    """Replace NaN/inf by None so index.json stays strict JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_index(entries, latest, registry_root) -> dict:
    """Write the index (entries in listing order, latest aliases sorted) atomically; return it."""
    index = {"schema": SCHEMA, "models": _finite(list(entries)), "latest": dict(sorted(latest.items()))}
    io.write_json(index, index_path(registry_root))
    return index


def parse_index(raw, path=INDEX) -> dict:
    """The index from the file's bytes or text. InputError (a ValueError) unless it is JSON holding
    an object with a 'models' list and, if present, a "latest" object (missing or null: empty).
    Entries are returned as they are: what a reader needs of them it checks itself."""
    try:
        index = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(path, "(file)", f"registry index is not valid JSON: {exc}") from exc
    if not isinstance(index, dict) or not isinstance(index.get("models"), list):
        raise InputError(path, "models", "registry index must be an object with a 'models' list")
    if index.get("latest") is None:
        index["latest"] = {}
    if not isinstance(index["latest"], dict):
        raise InputError(path, "latest", "registry index's 'latest' must be an object {name: version}")
    return index


def read_index(registry_root, missing_ok=False) -> dict:
    """The index of a registry folder; an empty one if the file is absent and `missing_ok`."""
    path = index_path(registry_root)
    if missing_ok and not path.is_file():
        return {"models": [], "latest": {}}
    return parse_index(path.read_bytes(), path)
