"""One resumable transfer of a URL into its part file, and JSON queries, both under the retry loop.

The transfer streams into ``<name>.part``. A retry resumes with ``Range: bytes=<n>-`` (and ``If-Range``
with the ETag or Last-Modified) when the server advertised ``Accept-Ranges: bytes`` or answered 206;
a 200 answer to a Range request (server ignored it, or the file changed) restarts from zero. Once the
body is complete its size (Content-Length / Content-Range) is checked. Bytes are stored exactly as
sent (``Accept-Encoding: identity``, no transparent decoding), so published checksums apply to them.
"""

import re
import sys

from tqdm import tqdm

from metasig.data.cache import Hashes, read_json, resumable, unlink
from metasig.data.retry import NETWORK_ERRORS, Failure, send, with_retries
from metasig.errors import InputError
from metasig.io import write_json

CHUNK = 1 << 16
PROGRESS_MIN_BYTES = 1 << 20  # automatic progress bars only for transfers at least this long


def transfer(sess, url, ent, policy, progress, field):
    """Bring `ent.part` to the complete body of `url`; return its size, hashes and validators."""
    job = _Transfer(sess, url, ent, policy, progress, field)
    try:
        return with_retries(job.attempt, policy, url, field, progress=lambda: job.hashes.size)
    finally:
        if job.bar is not None:
            job.bar.close()


class _Transfer:
    def __init__(self, sess, url, ent, policy, progress, field):
        self.sess, self.url, self.ent, self.policy, self.progress, self.field = sess, url, ent, policy, progress, field
        self.meta = read_json(ent.part_meta)
        self.resumable = resumable(url, ent.part, ent.part_meta)
        self.hashes = Hashes()
        if ent.part.exists() and self.resumable:
            self.hashes.feed_file(ent.part)  # a transfer left by an earlier run: resume it, validated by If-Range
        else:
            unlink(ent.part, ent.part_meta)
            self.meta = {}
        self.total = self.meta.get("total")
        self.validator = self.meta.get("etag") or self.meta.get("last_modified")
        self.bar = None

    def restart(self):
        with open(self.ent.part, "wb"):
            pass
        self.hashes = Hashes()

    def attempt(self):
        """One request: the result when the body is complete, else the Failure to retry."""
        headers = {"Accept-Encoding": "identity"}
        if self.hashes.size and self.resumable:
            headers["Range"] = f"bytes={self.hashes.size}-"
            if self.validator:
                headers["If-Range"] = self.validator
        elif self.hashes.size:
            self.restart()
        resp = send(self.sess, "GET", self.url, self.field, self.policy, headers=headers, stream=True)
        if isinstance(resp, Failure):
            return resp
        with resp:
            return self._answer(resp)

    def _answer(self, resp):
        status = resp.status_code
        failure = Failure.from_status(resp)
        if failure is not None:
            return failure
        if status == 416 and self.hashes.size:
            self.restart()  # our part does not fit the file any more
            return Failure("HTTP 416: the partial download does not fit the remote file")
        if status not in (200, 206):
            raise InputError(self.url, self.field, f"HTTP {status} {resp.reason} (a client error: not retried)")
        start, size = _body_span(resp, status)
        if start is None or start != self.hashes.size:
            self.restart()  # 200 to a Range request, or a range we did not ask for
            self.resumable = False
            if status == 206:  # a range we cannot use: ask again without Range
                return Failure(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
        self.resumable = status == 206 or "bytes" in resp.headers.get("Accept-Ranges", "").lower()
        self.total = size
        etag = resp.headers.get("ETag")
        etag = etag if etag and not etag.startswith("W/") else None
        info = {
            "url": self.url,
            "total": self.total,
            "resumable": self.resumable,
            "etag": etag,
            "last_modified": resp.headers.get("Last-Modified"),
            "content_type": resp.headers.get("Content-Type"),
        }
        self.validator = etag or info["last_modified"]
        if info != self.meta:
            write_json(info, self.ent.part_meta)
            self.meta = info
        self.bar = _progress_bar(self.bar, self.progress, self.total, self.hashes.size, self.ent.target.name)
        failure = self._stream(resp)
        if failure is None and self.total is not None and self.hashes.size != self.total:
            if self.hashes.size > self.total:
                self.restart()
            failure = Failure(f"the body had {self.hashes.size} bytes, Content-Length promised {self.total}")
        if failure is not None:
            return failure
        return {**self.meta, **self.hashes.record()}

    def _stream(self, resp):
        """Append the body to the part file; return a Failure if the network failed, else None."""
        # read1 returns what has arrived (up to CHUNK), so bytes received before a stall are kept
        if hasattr(resp.raw, "read1"):

            def read():
                return resp.raw.read1(CHUNK, decode_content=False)
        else:  # urllib3 < 2.3
            chunks = resp.raw.stream(8192, decode_content=False)

            def read():
                return next(chunks, b"")

        with open(self.ent.part, "ab") as out:
            while True:
                self.policy.check_stop()
                try:
                    chunk = read()
                except NETWORK_ERRORS as exc:
                    return Failure.from_exception(exc, reached=True)
                if not chunk:
                    return None
                out.write(chunk)
                self.hashes.update(chunk)
                self.bar.update(len(chunk))


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


def _progress_bar(bar, progress, total, done, name):
    """Create (or reset, after a restart) the tqdm bar on stderr; it stays as one line when done."""
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
            dynamic_ncols=True,
        )
    elif bar.n != done or bar.total != total:
        bar.reset(total=total)
        bar.update(done)
    return bar


# ---- JSON APIs ----------------------------------------------------------------------------------


def request_json(sess, method, url, policy, field, payload=None):
    """The JSON answer of one query, retried like a download; HTTP 4xx and non-JSON fail at once."""

    def attempt():
        resp = send(sess, method, url, field, policy, json=payload, headers={"Accept": "application/json"})
        if isinstance(resp, Failure):
            return resp
        with resp:
            failure = Failure.from_status(resp)
            if failure is not None:
                return failure
            if resp.status_code >= 400:
                problem = f"{method} failed with HTTP {resp.status_code} {resp.reason} (not retried)"
                raise InputError(url, field, f"{problem}: {_snippet(resp)}")
            try:
                return resp.json()
            except ValueError:
                kind = resp.headers.get("Content-Type", "no content type")
                problem = f"the answer to {method} is not JSON (HTTP {resp.status_code}, {kind})"
                raise InputError(url, field, f"{problem}: {_snippet(resp)}") from None

    return with_retries(attempt, policy, url, field)


def _snippet(resp, limit=300):
    text = " ".join((resp.text or "").split())
    return (text[:limit] + "...") if len(text) > limit else (text or "(empty body)")
