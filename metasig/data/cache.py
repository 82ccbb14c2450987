"""The download cache: one layout for every source (url, Xena, GDC, GEO), keyed by the URL.

    {cache_dir}/urls/<key[:2]>/<key>/<name>        the verified file   (key = sha256 of the URL)
    {cache_dir}/urls/<key[:2]>/<key>/<name>.json   sidecar: url, size, sha256, md5, etag, last_modified
    {cache_dir}/urls/<key[:2]>/<key>/<name>.part   the transfer in progress (never trusted)
    {cache_dir}/urls/<key[:2]>/<key>/<name>.part.json  what is needed to resume it (validator, size)
    {cache_dir}/urls/<key[:2]>/<key>/.lock         one downloader per URL at a time (threads, processes)

A cached file is used without any request only if its sidecar exists, the file's sha256 matches the
sidecar and the file matches the checksum asked for (if any). A file asked for by its sha256 that is
cached under another URL is linked (or copied) into this URL's folder instead of downloaded again.
A file appears under its final name only after it was verified and its sidecar written.
"""

import hashlib
import json
import os
import re
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlparse

from metasig.errors import InputError
from metasig.io import remove_empty_dirs, write_json

try:
    import fcntl
except ImportError:  # not on POSIX: threads are still serialised, processes are not
    fcntl = None

_ALGOS = {"md5": 32, "sha256": 64}


class Entry(NamedTuple):
    """The paths of one URL's cache entry."""

    folder: Path
    target: Path
    sidecar: Path
    part: Path
    part_meta: Path


def file_name(url):
    """A safe local file name from the URL path, keeping its extension for format detection."""
    name = unquote(Path(urlparse(url).path).name)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return name or "download"


def cache_folder(url, cache_dir="cache"):
    """The cache folder of `url` (which may not exist yet)."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()
    return Path(cache_dir) / "urls" / key[:2] / key


def entry(url, cache_dir="cache"):
    folder, name = cache_folder(url, cache_dir), file_name(url)
    return Entry(folder, folder / name, folder / f"{name}.json", folder / f"{name}.part", folder / f"{name}.part.json")


def parse_checksum(checksum, config_file="config", field="checksum"):
    """("md5" | "sha256", lower-case hex) from "md5:<hex>" / "sha256:<hex>"; (None, None) for None."""
    if checksum is None or (isinstance(checksum, str) and not checksum.strip()):
        return None, None
    match = re.fullmatch(r"\s*(md5|sha256)\s*:\s*([0-9a-fA-F]+)\s*", str(checksum), flags=re.IGNORECASE)
    if not match or len(match.group(2)) != _ALGOS[match.group(1).lower()]:
        raise InputError(
            config_file, field, f"expected 'md5:<32 hex digits>' or 'sha256:<64 hex digits>', got {checksum!r}"
        )
    return match.group(1).lower(), match.group(2).lower()


class Hashes:
    """sha256, md5 and size of a byte stream, fed chunk by chunk."""

    def __init__(self):
        self.sha256, self.md5, self.size = hashlib.sha256(), hashlib.md5(), 0

    def update(self, chunk):
        self.sha256.update(chunk)
        self.md5.update(chunk)
        self.size += len(chunk)

    def feed_file(self, path):
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                self.update(block)
        return self

    def record(self):
        return {"size": self.size, "sha256": self.sha256.hexdigest(), "md5": self.md5.hexdigest()}


# ---- reading and writing entries ----------------------------------------------------------------


def cached_ok(url, ent, algo, want):
    """True if `ent` holds a verified copy of `url` that matches the checksum asked for (if any)."""
    if not (ent.target.is_file() and ent.sidecar.is_file()):
        return False
    record = read_json(ent.sidecar)
    if record.get("url") != url or record.get("size") != ent.target.stat().st_size:
        return False
    hashes = Hashes().feed_file(ent.target)
    if hashes.sha256.hexdigest() != record.get("sha256"):
        return False  # changed on disk since it was downloaded
    # and it must be the content asked for (the checksum in the config may have changed)
    return algo is None or getattr(hashes, algo).hexdigest() == want


def record_for(url, ent, info, algo, want):
    """The sidecar of a verified file: where it came from, its hashes and the server's validators."""
    record = {
        "url": url,
        "file": ent.target.name,
        "size": info["size"],
        "sha256": info["sha256"],
        "md5": info["md5"],
        "checksum": f"{algo}:{want}" if algo else None,
        "verified": algo is not None,
    }
    for key in ("etag", "last_modified", "content_type", "copied_from"):
        if info.get(key):
            record[key] = info[key]
    return record


def commit(ent, record):
    """Move the verified part file to its final name; the sidecar first, so a file under its final
    name always has one."""
    write_json(record, ent.sidecar)
    os.replace(ent.part, ent.target)
    unlink(ent.part_meta)


def reuse(url, ent, cache_dir, sha256):
    """Link (or copy) into `ent.part` a verified file of this sha256 cached under another URL.

    Returns the information for its sidecar, or None when no such file is cached."""
    for sidecar in sorted(Path(cache_dir, "urls").glob("??/*/*.json")):
        if sidecar.name.endswith(".part.json") or sidecar.parent == ent.folder:
            continue
        record = read_json(sidecar)
        source = sidecar.with_name(sidecar.name[: -len(".json")])
        if record.get("sha256") != sha256 or not source.is_file():
            continue
        unlink(ent.part, ent.part_meta)
        try:
            os.link(source, ent.part)  # the inode is then ours: verify what was linked, not the path
        except OSError:
            try:
                shutil.copyfile(source, ent.part)
            except OSError:
                continue
        hashes = Hashes().feed_file(ent.part)
        if hashes.sha256.hexdigest() == sha256:
            return {**hashes.record(), "copied_from": record.get("url")}
        unlink(ent.part)
    return None


def resumable(url, part, part_meta):
    """True if `part` is a transfer of `url` that the server said it can resume, with a validator."""
    meta = read_json(part_meta)
    return bool(
        part.exists()
        and part.stat().st_size > 0
        and meta.get("url") == url
        and meta.get("resumable")
        and (meta.get("etag") or meta.get("last_modified"))
    )


def read_json(path):
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def unlink(*paths):
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def remove_if_empty(folder, root):
    """Remove the URL's folder (and its empty parents below `root`) when only the lock file is left."""
    try:
        if {p.name for p in folder.iterdir()} - {".lock"}:
            return
    except FileNotFoundError:
        return
    unlink(folder / ".lock")  # still locked by us: a waiter re-checks the lock file's identity
    remove_empty_dirs(folder, root)


# ---- one downloader per URL ---------------------------------------------------------------------

_THREAD_LOCKS = {}
_THREAD_LOCKS_GUARD = threading.Lock()


@contextmanager
def url_lock(folder):
    """Exclusive use of a URL's cache folder: a thread lock, and flock on `.lock` between processes.

    The lock file may be deleted by the holder (when cleaning up after a failure), so after taking
    the lock we check that the path still names the file we locked, and otherwise start again."""
    key = str(Path(folder).resolve())
    with _THREAD_LOCKS_GUARD:
        lock = _THREAD_LOCKS.setdefault(key, threading.Lock())
    with lock:
        if fcntl is None:
            folder.mkdir(parents=True, exist_ok=True)
            yield
            return
        lock_path = folder / ".lock"
        while True:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            except FileNotFoundError:  # a parent was removed under us: try again
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                mine = os.fstat(fd)
                try:
                    now = os.stat(lock_path)
                except FileNotFoundError:
                    now = None
            except BaseException:
                os.close(fd)
                raise
            if now is not None and (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev):
                break
            os.close(fd)
        try:
            yield
        finally:
            os.close(fd)
