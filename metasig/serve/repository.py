"""The registry as the server sees it: index.json, re-read when it changes, and name resolution.

Only (name, version) pairs listed in index.json are ever turned into paths, and each listed path
must stay inside the registry after resolving symlinks; a request's name is a dictionary key,
never part of a path. `refresh()` costs one stat() per call: the index is re-parsed only when its
(inode, size, mtime) changes, and a half-written or invalid index keeps the last good one and is
warned about once (until it changes again).
"""

import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from metasig.publish.registry_index import index_path, parse_index

log = logging.getLogger("metasig.serve")

LATEST = "latest"
# Names as metasig writes them: {dataset}.{task}.{group}.{model}, each part [A-Za-z0-9_-]+ (the
# config schema's name pattern). Anything else is refused before lookup, so odd bytes never reach
# logs or metrics labels.
_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){0,7}$")
_VERSION = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class NotFound(LookupError):
    """Unknown model or version (HTTP 404)."""


class BadName(ValueError):
    """A name or version that cannot be a registry entry (HTTP 400)."""


@dataclass(frozen=True)
class Entry:
    name: str
    version: str
    path: Path  # absolute, inside the registry
    record: dict  # the index.json entry (kind, model_kind, metrics, ...)

    @property
    def key(self):
        return (self.name, self.version)


def valid_name(name):
    return isinstance(name, str) and len(name) <= 255 and bool(_NAME.fullmatch(name))


def _safe_relative(path_text):
    if not isinstance(path_text, str) or not path_text or "\\" in path_text or "\x00" in path_text:
        return None
    rel = PurePosixPath(path_text)
    if rel.is_absolute() or any(part in ("", ".", "..") for part in rel.parts):
        return None
    return rel


class Repository:
    def __init__(self, root):
        self.root = Path(root).resolve()
        self.index_path = index_path(self.root)
        self._lock = threading.Lock()
        self._stamp = None
        self._bad_stamp = None  # stamp of an index found unusable: not re-read until it changes
        self._raw = None
        self._inputs = {}  # (name, version) -> number of input features (features.json)
        self.entries = {}  # name -> {version: Entry}, versions in index order (oldest first)
        self.latest = {}  # name -> version
        self.loaded_once = False
        self.reloads = 0
        self.refresh()

    def refresh(self):
        """Re-read index.json if it changed since the last call; return True if it was re-read."""
        try:
            st = os.stat(self.index_path)
        except OSError as exc:
            if self._stamp is not None:
                log.warning("registry index %s unreadable (%s); keeping the last good index", self.index_path, exc)
                self._stamp = None
            return False
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp in (self._stamp, self._bad_stamp):
            return False
        with self._lock:
            if stamp in (self._stamp, self._bad_stamp):
                return False
            try:
                raw = self.index_path.read_bytes()
                if raw == self._raw:  # touched but unchanged: nothing to do
                    self._stamp = stamp
                    return False
                entries, latest = self._parse(parse_index(raw, self.index_path))
            except (OSError, ValueError) as exc:
                # A writer still finishing changes the stamp again when done: it is re-read then.
                log.warning("registry index %s not usable (%s); keeping the last good index", self.index_path, exc)
                self._bad_stamp = stamp
                return False
            self.entries, self.latest, self._raw, self._stamp = entries, latest, raw, stamp
            self.loaded_once = True
            self.reloads += 1
            log.info(
                "registry index loaded: %d model(s), %d version(s)", len(entries), sum(len(v) for v in entries.values())
            )
            return True

    def _parse(self, index):
        entries = {}
        for item in index["models"]:
            if not isinstance(item, dict):
                continue
            name, version, rel = item.get("name"), item.get("version"), _safe_relative(item.get("path"))
            if (
                not valid_name(name)
                or not isinstance(version, str)
                or not _VERSION.fullmatch(version)
                or version == LATEST
                or rel is None
            ):
                log.warning("registry index: skipping malformed entry %.200r", item)
                continue
            path = (self.root / rel).resolve()
            if not path.is_relative_to(self.root):
                log.warning("registry index: entry %s %s points outside the registry; skipped", name, version)
                continue
            entries.setdefault(name, {})[version] = Entry(name, version, path, item)
        latest = {
            n: v
            for n, v in index["latest"].items()
            if isinstance(n, str) and isinstance(v, str) and v in entries.get(n, {})
        }
        return entries, latest

    def resolve(self, name, version=None) -> Entry:
        """The entry for name + version; version None or "latest" means the latest alias."""
        if not valid_name(name):
            raise BadName(
                f"invalid model name {name[:100]!r}: expected dataset.task.group.model (letters, digits, '_', '.', '-')"
                if isinstance(name, str)
                else "invalid model name"
            )
        versions = self.entries.get(name)
        if not versions:
            raise NotFound(f"unknown model {name!r}; GET /v2/models lists the registered models")
        if version in (None, "", LATEST):
            if name not in self.latest:
                raise NotFound(
                    f"model {name!r} has no latest version (it failed its most recent gate); "
                    f"ask for a version explicitly: {list(versions)}"
                )
            version = self.latest[name]
        elif not _VERSION.fullmatch(version):
            raise BadName(f"invalid version {version[:100]!r}")
        if version not in versions:
            raise NotFound(f"model {name!r} has no version {version!r}; registered versions: {list(versions)}")
        return versions[version]

    def versions(self, name):
        return list(self.entries.get(name, {}))

    def listing(self):
        """What GET /v2/models returns: every name with its versions and latest alias."""
        out = []
        for name, versions in sorted(self.entries.items()):
            last = next(reversed(versions.values())).record
            out.append(
                {
                    "name": name,
                    "versions": list(versions),
                    "latest": self.latest.get(name),
                    "kind": last.get("kind"),
                    "model_kind": last.get("model_kind"),
                    "n_features": self.n_inputs(next(reversed(versions.values()))),
                    "n_features_used": last.get("n_features"),
                }
            )
        return out

    def n_inputs(self, entry):
        """How many inputs the artifact takes (its features.json), which is more than the index's
        n_features (the features the estimator uses) when a gene group is picked after an in-fold
        normalization. Read once per version; None if unreadable (the load will say why)."""
        if entry.key not in self._inputs:
            try:
                features = json.loads((entry.path / "features.json").read_text())
                self._inputs[entry.key] = len(features) if isinstance(features, list) else None
            except (OSError, ValueError):
                return None
        return self._inputs[entry.key]

    def keys(self):
        return {(n, v) for n, versions in self.entries.items() for v in versions}
