"""Downloads that survive: resumable, retried, checksum-verified, cached and atomic.

For public sources (UCSC Xena, GDC, GEO and plain URLs) whose checksum may or may not be published.
`metasig.data.sources.url.fetch` (pooch, sha256 known in advance, content-addressed) stays as it is; this
module is the general downloader, built on requests and tqdm.

Cache layout (keyed by the URL, since the content is not always known in advance)::

    {cache_dir}/urls/<key[:2]>/<key>/<name>        the verified file   (key = sha256 of the URL)
    {cache_dir}/urls/<key[:2]>/<key>/<name>.json   sidecar: url, size, sha256, md5, etag, last_modified
    {cache_dir}/urls/<key[:2]>/<key>/<name>.part   the transfer in progress (never trusted)
    {cache_dir}/urls/<key[:2]>/<key>/<name>.part.json  what is needed to resume it (validator, size)
    {cache_dir}/urls/<key[:2]>/<key>/.lock         one downloader per URL at a time (threads, processes)

A cached file is used without any request only if its sidecar exists, the file's sha256 matches the
sidecar and the file matches the checksum asked for (if any); anything else is downloaded again.

The transfer: stream into ``<name>.part``; a dropped connection, a timeout, HTTP 5xx or 429 is
retried with exponential backoff (``backoff * 2**k`` seconds, or the server's Retry-After, at most
60 s). The retry budget counts failures *without progress*, so a long transfer over a flaky line
that keeps advancing is not abandoned. A retry resumes with ``Range: bytes=<n>-`` (and ``If-Range``
with the ETag or Last-Modified) when the server advertised ``Accept-Ranges: bytes`` or answered 206;
a 200 answer to a Range request (server ignored it, or the file changed) restarts from zero. Other
4xx fail at once. Once the body is complete its size (Content-Length / Content-Range) and checksum
are checked; a checksum mismatch deletes the part file and downloads once more from scratch, then
fails. Only a verified file is renamed to its final name (after its sidecar is written). When a
failure is final, the part file is deleted unless the server supports resuming and the failure was
the network's (then a later call resumes it).

Bytes are stored exactly as sent (``Accept-Encoding: identity``, no transparent decoding), so
published checksums of the files apply to them.
"""

import email.utils
import hashlib
import http.client
import json
import os
import re
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import requests
import urllib3
from tqdm import tqdm

from metasig.data.sources.url import file_name
from metasig.errors import InputError
from metasig.io import remove_empty_dirs, write_json

try:
    import fcntl
except ImportError:  # not on POSIX: threads are still serialised, processes are not
    fcntl = None

CHUNK = 1 << 16
MAX_SLEEP = 60.0  # seconds: cap on any one backoff or Retry-After wait
PROGRESS_MIN_BYTES = 1 << 20  # automatic progress bars only for transfers at least this long
_ALGOS = {"md5": 32, "sha256": 64}

# Errors that say the request did not get through or the body was cut: worth another attempt.
_NETWORK_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)
# requests errors that another attempt cannot fix.
_REQUEST_ERRORS = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.TooManyRedirects,
)


class DownloadCancelled(Exception):
    """A download stopped because another one in the same `fetch_many` failed."""


class DownloadInterrupted(InputError):
    """Retries exhausted on network failures or server errors (5xx, 429): worth trying again later."""


# ---- public API ---------------------------------------------------------------------------------


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
) -> Path:
    """Download `url` into the URL-keyed cache (unless a verified copy is there) and return its path.

    checksum: None, "md5:<hex>" or "sha256:<hex>". Without one, the sha256 (and md5) of what was
    downloaded is recorded in the sidecar, and later calls verify the file against it.
    retries: further attempts after a failure that made no progress; backoff: first wait (seconds).
    timeout: seconds to connect, and seconds without a byte before the connection is given up.
    progress: True/False forces the tqdm bar (on stderr) on/off; None shows it when stderr is a
    terminal and the transfer is long (>= 1 MiB or of unknown size).
    field / config_file / checksum_field: where the URL and checksum came from, for the errors.
    Raises InputError (naming the URL, the field and the problem) on any failure.
    """
    return _fetch(
        url,
        cache_dir,
        checksum,
        retries=retries,
        backoff=backoff,
        timeout=timeout,
        progress=progress,
        session=session,
        field=field,
        config_file=config_file,
        checksum_field=checksum_field,
    )


def fetch_many(items, cache_dir="cache", max_workers=4, **kw) -> list[Path]:
    """Download (url, checksum-or-None) items with at most `max_workers` transfers at once.

    Returns the paths in input order. The first failure cancels the downloads not yet started, stops
    the running ones at their next chunk, and is re-raised. `kw` goes to `fetch_url` (a `session`,
    if given, is shared by the worker threads; by default each download has its own).
    """
    pairs = []
    for item in items:
        if isinstance(item, (str, bytes)):
            pairs.append((item, None))
        else:
            url, checksum = item
            pairs.append((url, checksum))
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
            return _fetch(url, cache_dir, checksum, stop=stop, **kw)
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


def get_json(url, params=None, *, retries=4, backoff=0.5, timeout=60, session=None, field="url") -> dict:
    """GET a JSON document (e.g. one page of a GDC query) with the download retry policy."""
    return _request_json(
        "GET", url, params=params, retries=retries, backoff=backoff, timeout=timeout, session=session, field=field
    )


def post_json(url, payload, *, retries=4, backoff=0.5, timeout=60, session=None, field="url") -> dict:
    """POST `payload` as JSON and return the JSON answer, with the download retry policy.

    Meant for query endpoints (GDC /files, /cases ...), which are safe to send again."""
    return _request_json(
        "POST", url, payload=payload, retries=retries, backoff=backoff, timeout=timeout, session=session, field=field
    )


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


def cache_folder(url, cache_dir="cache"):
    """The cache folder of `url` (which may not exist yet)."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()
    return Path(cache_dir) / "urls" / key[:2] / key


# ---- one download -------------------------------------------------------------------------------


def _fetch(
    url,
    cache_dir,
    checksum,
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
):
    url = str(url)
    algo, want = parse_checksum(checksum, config_file, checksum_field)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        hint = " (GEO files are also served over https://ftp.ncbi.nlm.nih.gov/...)" if parsed.scheme == "ftp" else ""
        raise InputError(config_file, field, f"{url!r} is not an http(s) URL{hint}")
    if int(retries) < 0:
        raise ValueError(f"retries must be >= 0, got {retries!r}")

    folder = cache_folder(url, cache_dir)
    name = file_name(url)
    target, sidecar = folder / name, folder / f"{name}.json"
    part, part_meta = folder / f"{name}.part", folder / f"{name}.part.json"
    policy = _Policy(retries, backoff, timeout, stop)

    with _url_lock(folder):
        if _cached_ok(url, target, sidecar, algo, want):
            return target
        _unlink(sidecar, target)  # missing, damaged or not the content asked for: never trusted again
        sess = session if session is not None else requests.Session()
        keep_part = False
        try:
            for attempt in ("first", "fresh"):
                info = _transfer(sess, url, part, part_meta, policy, progress, name, field)
                got = info[algo] if algo else None
                if algo is None or got == want:
                    break
                _unlink(part, part_meta)
                if attempt == "fresh":
                    raise InputError(
                        url,
                        checksum_field,
                        f"checksum mismatch: expected {algo} {want}, the download has {algo} {got} "
                        f"(the file was downloaded twice from scratch, {info['size']} bytes); the "
                        "remote file changed or the checksum is wrong. Nothing was cached.",
                    )
            record = {
                "url": url,
                "file": name,
                "size": info["size"],
                "sha256": info["sha256"],
                "md5": info["md5"],
                "checksum": f"{algo}:{want}" if algo else None,
                "verified": algo is not None,
            }
            for key in ("etag", "last_modified", "content_type"):
                if info.get(key):
                    record[key] = info[key]
            write_json(record, sidecar)  # the sidecar first: a file under its final name always has one
            os.replace(part, target)
            _unlink(part_meta)
            return target
        except (DownloadInterrupted, DownloadCancelled, KeyboardInterrupt):
            keep_part = _resumable(url, part, part_meta)
            raise
        finally:
            if session is None:
                sess.close()
            if not target.exists():
                if not keep_part:
                    _unlink(part, part_meta)
                _unlink(sidecar)
                _remove_if_empty(folder, Path(cache_dir))


def _transfer(sess, url, part, part_meta, policy, progress, name, field):
    """Bring `part` to the complete body of `url`; return its size, hashes and validators."""
    meta = _read_json(part_meta)
    resumable = _resumable(url, part, part_meta)
    hashes = _Hashes()
    if part.exists() and resumable:
        hashes.feed_file(part)  # a transfer left by an earlier run: resume it, validated by If-Range
    else:
        _unlink(part, part_meta)
        meta = {}
    total = meta.get("total")
    validator = meta.get("etag") or meta.get("last_modified")
    failures, best, bar = 0, hashes.size, None
    try:
        while True:
            policy.check_stop()
            headers = {"Accept-Encoding": "identity"}
            if hashes.size and resumable:
                headers["Range"] = f"bytes={hashes.size}-"
                if validator:
                    headers["If-Range"] = validator
            elif hashes.size:
                hashes = _restart(part)
            failure = None
            try:
                resp = sess.get(url, headers=headers, stream=True, timeout=(policy.timeout, policy.timeout))
            except _REQUEST_ERRORS as exc:
                raise InputError(url, field, f"cannot request this URL: {exc}") from exc
            except _NETWORK_ERRORS as exc:
                failure = _Failure.from_exception(exc)
            else:
                with resp:
                    status = resp.status_code
                    if _retryable_status(status):
                        failure = _Failure(
                            f"HTTP {status} {resp.reason}", status=status, retry_after=_retry_after(resp)
                        )
                    elif status == 416 and hashes.size:
                        hashes = _restart(part)  # our part does not fit the file any more
                        failure = _Failure("HTTP 416: the partial download does not fit the remote file")
                    elif status not in (200, 206):
                        raise InputError(url, field, f"HTTP {status} {resp.reason} (a client error: not retried)")
                    else:
                        start, size = _body_span(resp, status)
                        if start is None or start != hashes.size:
                            hashes = _restart(part)  # 200 to a Range request, or a range we did not ask for
                            resumable = False
                            if status == 206:  # a range we cannot use: ask again without Range
                                failure = _Failure(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
                        if failure is None:
                            resumable = status == 206 or "bytes" in resp.headers.get("Accept-Ranges", "").lower()
                            total = size
                            etag = resp.headers.get("ETag")
                            etag = etag if etag and not etag.startswith("W/") else None
                            info = {
                                "url": url,
                                "total": total,
                                "resumable": resumable,
                                "etag": etag,
                                "last_modified": resp.headers.get("Last-Modified"),
                                "content_type": resp.headers.get("Content-Type"),
                            }
                            validator = etag or info["last_modified"]
                            if info != meta:
                                write_json(info, part_meta)
                                meta = info
                            bar = _progress_bar(bar, progress, total, hashes.size, name)
                            failure = _stream(resp, part, hashes, bar, policy)
                            if failure is None and total is not None and hashes.size != total:
                                if hashes.size > total:
                                    hashes = _restart(part)
                                failure = _Failure(
                                    f"the body had {hashes.size} bytes, Content-Length promised {total}", reached=True
                                )
                            if failure is None:
                                return {
                                    **meta,
                                    "size": hashes.size,
                                    "sha256": hashes.sha256.hexdigest(),
                                    "md5": hashes.md5.hexdigest(),
                                }
            if hashes.size > best:  # progress: the retry budget is per stall, not per file
                best, failures = hashes.size, 0
            failures += 1
            if failures > policy.retries:
                raise DownloadInterrupted(url, field, failure.final_message(url, failures))
            policy.sleep(failures, failure.retry_after)
    finally:
        if bar is not None:
            bar.close()


def _stream(resp, part, hashes, bar, policy):
    """Append the body to `part`; return a _Failure if the network failed, else None."""
    # read1 returns what has arrived (up to CHUNK), so bytes received before a stall are kept
    if hasattr(resp.raw, "read1"):

        def read():
            return resp.raw.read1(CHUNK, decode_content=False)
    else:  # urllib3 < 2.3
        chunks = resp.raw.stream(8192, decode_content=False)

        def read():
            return next(chunks, b"")

    with open(part, "ab") as out:
        while True:
            policy.check_stop()
            try:
                chunk = read()
            except _NETWORK_ERRORS as exc:
                return _Failure.from_exception(exc, reached=True)
            if not chunk:
                return None
            out.write(chunk)
            hashes.update(chunk)
            bar.update(len(chunk))


def _body_span(resp, status):
    """(first byte offset, total size or None) of a 200/206 answer; (None, None) if unusable."""
    if status == 200:
        length = resp.headers.get("Content-Length")
        return 0, int(length) if length and length.isdigit() else None
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", resp.headers.get("Content-Range", ""))
    if not match:
        return None, None
    first, _, total = match.groups()
    return int(first), (int(total) if total != "*" else None)


def _restart(part):
    with open(part, "wb"):
        pass
    return _Hashes()


class _Hashes:
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


# ---- retry policy -------------------------------------------------------------------------------


class _Policy:
    def __init__(self, retries, backoff, timeout, stop=None):
        self.retries, self.backoff, self.timeout, self.stop = int(retries), float(backoff), float(timeout), stop

    def sleep(self, failures, retry_after=None):
        delay = min(MAX_SLEEP, max(self.backoff * 2 ** (failures - 1), retry_after or 0.0))
        if self.stop is not None:
            if self.stop.wait(delay):
                raise DownloadCancelled("another download failed")
        else:
            time.sleep(delay)

    def check_stop(self):
        if self.stop is not None and self.stop.is_set():
            raise DownloadCancelled("another download failed")


class _Failure:
    """One failed attempt: why, whether the server was reached, and the HTTP status if any."""

    def __init__(self, reason, reached=True, status=None, retry_after=None):
        self.reason, self.reached, self.status, self.retry_after = reason, reached, status, retry_after

    @classmethod
    def from_exception(cls, exc, reached=None):
        unreachable = _unreachable_reason(exc)
        if reached is None:
            reached = unreachable is None
        if not reached and unreachable:
            return cls(unreachable, reached=False)
        if isinstance(exc, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)) or _chain_has(
            exc, (urllib3.exceptions.ReadTimeoutError, TimeoutError)
        ):
            return cls("no data within the timeout", reached=True)
        return cls(f"connection broken ({type(exc).__name__})", reached=True)

    def final_message(self, url, attempts):
        host = urlparse(url).hostname
        tries = f"after {attempts} attempt(s)"
        if not self.reached:
            return f"cannot reach {host} ({self.reason}) {tries} (offline?)"
        if self.status is not None:
            return f"the server keeps failing: {self.reason} {tries}"
        return f"the download keeps failing: {self.reason} {tries} without progress"


def _chain(exc):
    """The exception, its causes and contexts, and exceptions wrapped in their args or .reason."""
    seen, todo = [], [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])
    return seen


def _chain_has(exc, types):
    return any(isinstance(item, types) for item in _chain(exc))


def _unreachable_reason(exc):
    """Why the host could not be reached (DNS, refused, connect timeout), or None if it was."""
    chain = _chain(exc)
    if any(isinstance(e, urllib3.exceptions.NameResolutionError) for e in chain) or any(
        "Name or service not known" in str(e) or "getaddrinfo" in str(e) for e in chain
    ):
        return "DNS lookup failed"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or any(
        isinstance(e, urllib3.exceptions.NewConnectionError) and "refused" in str(e).lower() for e in chain
    ):
        return "connection refused"
    if isinstance(exc, requests.exceptions.ConnectTimeout) or any(
        isinstance(e, urllib3.exceptions.ConnectTimeoutError) for e in chain
    ):
        return "connection timed out"
    if any(
        isinstance(e, (urllib3.exceptions.NewConnectionError, OSError)) and "unreachable" in str(e).lower()
        for e in chain
    ):
        return "network unreachable"
    return None


def _retryable_status(status):
    return status == 429 or 500 <= status <= 599


def _retry_after(resp):
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# ---- JSON APIs ----------------------------------------------------------------------------------


def _request_json(
    method, url, *, payload=None, params=None, retries=4, backoff=0.5, timeout=60, session=None, field="url"
):
    policy = _Policy(retries, backoff, timeout)
    sess = session if session is not None else requests.Session()
    failures = 0
    try:
        while True:
            try:
                resp = sess.request(
                    method,
                    url,
                    json=payload,
                    params=params,
                    timeout=(policy.timeout, policy.timeout),
                    headers={"Accept": "application/json"},
                )
            except _REQUEST_ERRORS as exc:
                raise InputError(url, field, f"cannot request this URL: {exc}") from exc
            except _NETWORK_ERRORS as exc:
                failure = _Failure.from_exception(exc)
            else:
                with resp:
                    if _retryable_status(resp.status_code):
                        failure = _Failure(
                            f"HTTP {resp.status_code} {resp.reason}",
                            status=resp.status_code,
                            retry_after=_retry_after(resp),
                        )
                    elif resp.status_code >= 400:
                        raise InputError(
                            url,
                            field,
                            f"{method} failed with HTTP {resp.status_code} {resp.reason} "
                            f"(not retried): {_snippet(resp)}",
                        )
                    else:
                        try:
                            return resp.json()
                        except ValueError:
                            kind = resp.headers.get("Content-Type", "no content type")
                            problem = f"the answer to {method} is not JSON (HTTP {resp.status_code}, {kind})"
                            raise InputError(url, field, f"{problem}: {_snippet(resp)}") from None
            failures += 1
            if failures > policy.retries:
                raise DownloadInterrupted(url, field, failure.final_message(url, failures))
            policy.sleep(failures, failure.retry_after)
    finally:
        if session is None:
            sess.close()


def _snippet(resp, limit=300):
    text = " ".join((resp.text or "").split())
    return (text[:limit] + "...") if len(text) > limit else (text or "(empty body)")


# ---- cache, locking, cleanup --------------------------------------------------------------------


def _cached_ok(url, target, sidecar, algo, want):
    if not (target.is_file() and sidecar.is_file()):
        return False
    record = _read_json(sidecar)
    if record.get("url") != url or record.get("size") != target.stat().st_size:
        return False
    hashes = _Hashes().feed_file(target)
    if hashes.sha256.hexdigest() != record.get("sha256"):
        return False  # changed on disk since it was downloaded
    # and it must be the content asked for (the checksum in the config may have changed)
    return algo is None or getattr(hashes, algo).hexdigest() == want


def _resumable(url, part, part_meta):
    meta = _read_json(part_meta)
    return bool(
        part.exists()
        and part.stat().st_size > 0
        and meta.get("url") == url
        and meta.get("resumable")
        and (meta.get("etag") or meta.get("last_modified"))
    )


def _read_json(path):
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _unlink(*paths):
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _remove_if_empty(folder, root):
    """Remove the URL's folder (and its empty parents below `root`) when only the lock file is left."""
    try:
        if {p.name for p in folder.iterdir()} - {".lock"}:
            return
    except FileNotFoundError:
        return
    _unlink(folder / ".lock")  # still locked by us: a waiter re-checks the lock file's identity
    remove_empty_dirs(folder, root)


_THREAD_LOCKS = {}
_THREAD_LOCKS_GUARD = threading.Lock()


@contextmanager
def _url_lock(folder):
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


def _progress_bar(bar, progress, total, done, name):
    """Create (or reset, after a restart) the tqdm bar on stderr."""
    if bar is None:
        show = (
            progress
            if progress is not None
            else (sys.stderr.isatty() and (total is None or total >= PROGRESS_MIN_BYTES))
        )
        bar = tqdm(
            total=total,
            initial=done,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=name,
            file=sys.stderr,
            disable=not show,
            leave=False,
            dynamic_ncols=True,
        )
    elif bar.n != done or bar.total != total:
        bar.reset(total=total)
        bar.update(done)
    return bar
