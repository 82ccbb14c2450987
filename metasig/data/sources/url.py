"""Checksummed downloads into a content-addressed cache, done by pooch.

Layout: ``{cache_dir}/sha256/<first 2 hex>/<sha256>/<file name from the URL>``. The directory is
named by the content, so any URL serving the same bytes reuses the file and a second run downloads
nothing. pooch streams into a temporary file beside the target and moves it into place only after
the sha256 matches, so a failed or corrupt download never leaves a file in the cache.
"""

import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pooch

from metasig.errors import InputError
from metasig.io import remove_empty_dirs, sha256_file

RETRIES = 3  # extra attempts after the first (connection errors, HTTP errors, checksum mismatch)
TIMEOUT = 60  # seconds without data before a connection attempt is abandoned


def file_name(url):
    """A safe local file name from the URL path, keeping its extension for format detection."""
    name = unquote(Path(urlparse(url).path).name)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return name or "download"


def cache_dir_for(sha256, cache_dir="cache"):
    sha = sha256.lower()
    return Path(cache_dir) / "sha256" / sha[:2] / sha


def cached(sha256, cache_dir="cache"):
    """Path of a verified cached copy of this content, or None."""
    folder = cache_dir_for(sha256, cache_dir)
    if not folder.is_dir():
        return None
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        # verify: a file damaged after download (or a stray temp file) must not be trusted
        if sha256_file(path) == sha256.lower():
            return path
    return None


def fetch(
    url,
    sha256,
    cache_dir="cache",
    config_file="config",
    field="url",
    sha_field="sha256",
    retries=RETRIES,
    progressbar=None,
    timeout=TIMEOUT,
):
    """Download `url` (unless cached) and return the local path of the verified file."""
    sha = str(sha256).lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise InputError(config_file, sha_field, f"not a sha256 hex digest: {sha256!r}")
    hit = cached(sha, cache_dir)
    if hit is not None:
        return hit
    folder = cache_dir_for(sha, cache_dir)
    name = file_name(url)
    if progressbar is None:
        progressbar = sys.stderr.isatty()
    store = pooch.create(
        path=folder, base_url="", registry={name: f"sha256:{sha}"}, urls={name: url}, retry_if_failed=retries
    )
    downloader = pooch.HTTPDownloader(progressbar=progressbar, timeout=timeout)
    try:
        return Path(store.fetch(name, downloader=downloader))
    except Exception as exc:
        remove_empty_dirs(folder, Path(cache_dir))
        raise _explain(exc, url, sha, retries, config_file, field, sha_field) from exc


def _explain(exc, url, sha, retries, config_file, field, sha_field):
    import requests

    attempts = f"after {retries + 1} attempt(s)"
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        return InputError(
            config_file, field, f"download of {url} failed {attempts}: HTTP {status} {exc.response.reason}"
        )
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return InputError(config_file, field, f"cannot reach the host of {url} {attempts}: {type(exc).__name__}")
    if isinstance(exc, requests.exceptions.RequestException):
        return InputError(config_file, field, f"download of {url} failed {attempts}: {exc}")
    if isinstance(exc, ValueError) and "hash" in str(exc).lower():
        got = re.search(r"but got ([0-9a-fA-F]{64})", str(exc))
        got = got.group(1) if got else "something else"
        return InputError(
            config_file,
            sha_field,
            f"checksum mismatch for {url}: expected sha256 {sha}, the "
            f"download has {got} ({attempts}); the remote file changed or the checksum is wrong. "
            "Nothing was cached.",
        )
    return InputError(config_file, field, f"download of {url} failed: {type(exc).__name__}: {exc}")
