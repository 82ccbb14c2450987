"""Downloads that survive: resumable, retried, checksum-verified, cached and atomic.

The one downloader of every source (``url``, UCSC Xena, GDC, GEO), built on requests and tqdm, with
one cache layout (`metasig.data.cache`), one retry loop (`metasig.data.retry`) and one resumable
transfer (`metasig.data.transfer`):

- `fetch_url`: one URL into the cache (or straight from it) with an optional md5/sha256 checksum;
- `fetch_many`: several at once, with bounded concurrency and the first failure cancelling the rest;
- `post_json`: a JSON query (GDC /files, /cases ...) with the same retry policy.

A checksum mismatch deletes the part file and downloads once more from scratch, then fails. Only a
verified file is renamed to its final name (after its sidecar is written). When a failure is final,
the part file is deleted unless the server supports resuming and the failure was the network's (then
a later call resumes it).
"""

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import requests

from metasig.data import cache
from metasig.data.cache import cache_folder, parse_checksum  # noqa: F401  (part of the public API)
from metasig.data.retry import DownloadCancelled, DownloadInterrupted, Policy
from metasig.data.transfer import request_json, transfer
from metasig.errors import InputError

__all__ = [
    "DownloadCancelled",
    "DownloadInterrupted",
    "cache_folder",
    "fetch_many",
    "fetch_url",
    "parse_checksum",
    "post_json",
]


def fetch_url(
    url,
    cache_dir="cache",
    checksum=None,
    *,
    retries=4,
    backoff=0.5,
    timeout=60,
    progress=None,
    session=None,
    field="url",
    config_file="config",
    checksum_field="checksum",
    stop=None,
) -> Path:
    """Download `url` into the URL-keyed cache (unless a verified copy is there) and return its path.

    checksum: None, "md5:<hex>" or "sha256:<hex>". Without one, the sha256 (and md5) of what was
    downloaded is recorded in the sidecar, and later calls verify the file against it.
    retries: further attempts after a failure that made no progress; backoff: first wait (seconds).
    timeout: seconds to connect, and seconds without a byte before the connection is given up.
    progress: True/False forces the tqdm bar (on stderr) on/off; None shows it when stderr is a
    terminal and the transfer is long (>= 1 MiB or of unknown size).
    field / config_file / checksum_field: where the URL and checksum came from, for the errors.
    stop: a threading.Event that `fetch_many` sets to cancel the transfer (internal).
    Raises InputError (naming the URL, the field and the problem) on any failure.
    """
    url = str(url)
    algo, want = parse_checksum(checksum, config_file, checksum_field)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        hint = " (GEO files are also served over https://ftp.ncbi.nlm.nih.gov/...)" if parsed.scheme == "ftp" else ""
        raise InputError(config_file, field, f"{url!r} is not an http(s) URL{hint}")
    policy = Policy(retries, backoff, timeout, stop)
    ent = cache.entry(url, cache_dir)

    with cache.url_lock(ent.folder):
        if cache.cached_ok(url, ent, algo, want):
            return ent.target
        cache.unlink(ent.sidecar, ent.target)  # missing, damaged or not the content asked for: never trusted again
        keep_part = False
        try:
            info = cache.reuse(url, ent, cache_dir, want) if algo == "sha256" else None
            if info is None:
                with _session(session) as sess:
                    info = _download(sess, url, ent, policy, progress, field, algo, want, checksum_field)
            cache.commit(ent, cache.record_for(url, ent, info, algo, want))
            return ent.target
        except (DownloadInterrupted, DownloadCancelled, KeyboardInterrupt):
            keep_part = cache.resumable(url, ent.part, ent.part_meta)
            raise
        finally:
            if not ent.target.exists():
                if not keep_part:
                    cache.unlink(ent.part, ent.part_meta)
                cache.unlink(ent.sidecar)
                cache.remove_if_empty(ent.folder, Path(cache_dir))


def fetch_many(items, cache_dir="cache", max_workers=4, **kw) -> list[Path]:
    """Download (url, checksum-or-None) items with at most `max_workers` transfers at once.

    Returns the paths in input order. The first failure cancels the downloads not yet started, stops
    the running ones at their next chunk, and is re-raised. `kw` goes to `fetch_url` (a `session`,
    if given, is shared by the worker threads; by default each download has its own).
    """
    pairs = [(item, None) if isinstance(item, (str, bytes)) else tuple(item) for item in items]
    if int(max_workers) < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers!r}")
    if not pairs:
        return []
    stop = threading.Event()
    first_failure = []  # the failure that stopped the batch (later ones are mostly cancellations)
    guard = threading.Lock()

    def run(url, checksum):
        if stop.is_set():  # checked here too: a worker picks its next item before we can cancel it
            raise DownloadCancelled("another download failed")
        try:
            return fetch_url(url, cache_dir, checksum, stop=stop, **kw)
        except BaseException as exc:
            with guard:
                if not stop.is_set():
                    first_failure.append(exc)
                    stop.set()
            raise

    pool = ThreadPoolExecutor(max_workers=min(int(max_workers), len(pairs)), thread_name_prefix="metasig-download")
    futures = [pool.submit(run, url, checksum) for url, checksum in pairs]
    try:
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f in done and f.exception() is not None]
        if failed:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise (first_failure or [failed[0].exception()])[0]
        return [f.result() for f in futures]
    finally:
        stop.set()  # no-op after success; on KeyboardInterrupt it stops the running downloads
        pool.shutdown(wait=True, cancel_futures=True)


def post_json(url, payload, *, retries=4, backoff=0.5, timeout=60, session=None, field="url") -> dict:
    """POST `payload` as JSON and return the JSON answer, with the download retry policy.

    Meant for query endpoints (GDC /files, /cases ...), which are safe to send again."""
    with _session(session) as sess:
        return request_json(sess, "POST", url, Policy(retries, backoff, timeout), field, payload=payload)


@contextmanager
def _session(session):
    """The caller's session, or a new one closed afterwards."""
    if session is not None:
        yield session
        return
    with requests.Session() as sess:
        yield sess


def _download(sess, url, ent, policy, progress, field, algo, want, checksum_field):
    """Transfer `url` into the part file and check it; once more from scratch on a checksum mismatch."""
    for attempt in ("first", "fresh"):
        info = transfer(sess, url, ent, policy, progress, field)
        got = info[algo] if algo else None
        if algo is None or got == want:
            return info
        cache.unlink(ent.part, ent.part_meta)
        if attempt == "fresh":
            raise InputError(
                url,
                checksum_field,
                f"checksum mismatch: expected {algo} {want}, the download has {algo} {got} "
                f"(the file was downloaded twice from scratch, {info['size']} bytes); the "
                "remote file changed or the checksum is wrong. Nothing was cached.",
            )
