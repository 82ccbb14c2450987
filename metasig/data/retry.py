"""When to try a request again, and how long to wait: the one retry loop of the downloader.

A dropped connection, a timeout, HTTP 5xx or 429 is retried with exponential backoff
(``backoff * 2**k`` seconds, or the server's Retry-After, at most 60 s); other 4xx and malformed
requests fail at once. The retry budget counts failures *without progress*, so a long transfer over a
flaky line that keeps advancing is not abandoned. Final failures name the host and say whether it
could not be reached (offline?) or kept failing.
"""

import email.utils
import http.client
import time
from urllib.parse import urlparse

import requests
import urllib3

from metasig.errors import InputError

MAX_SLEEP = 60.0  # seconds: cap on any one backoff or Retry-After wait

# Errors that say the request did not get through or the body was cut: worth another attempt.
NETWORK_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)
# requests errors that another attempt cannot fix.
REQUEST_ERRORS = (
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


class Policy:
    """retries: further attempts after a failure without progress; backoff: first wait (seconds);
    timeout: seconds to connect and seconds without a byte; stop: an Event that cancels the wait."""

    def __init__(self, retries=4, backoff=0.5, timeout=60, stop=None):
        if int(retries) < 0:
            raise ValueError(f"retries must be >= 0, got {retries!r}")
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


class Failure:
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

    @classmethod
    def from_status(cls, resp):
        """A Failure for a retryable answer (429, 5xx), else None."""
        status = resp.status_code
        if status == 429 or 500 <= status <= 599:
            return cls(f"HTTP {status} {resp.reason}", status=status, retry_after=_retry_after(resp))
        return None

    def final_message(self, url, attempts):
        host = urlparse(url).hostname
        tries = f"after {attempts} attempt(s)"
        if not self.reached:
            return f"cannot reach {host} ({self.reason}) {tries} (offline?)"
        if self.status is not None:
            return f"the server keeps failing: {self.reason} {tries}"
        return f"the download keeps failing: {self.reason} {tries} without progress"


def with_retries(attempt, policy, url, field, progress=lambda: 0):
    """Call `attempt()` until it returns something other than a Failure, and return that.

    A Failure is retried after the policy's wait; `progress()` (bytes so far) resets the budget when
    it grows. When the budget is spent, raises DownloadInterrupted naming the URL and the last failure."""
    failures, best = 0, progress()
    while True:
        policy.check_stop()
        outcome = attempt()
        if not isinstance(outcome, Failure):
            return outcome
        if progress() > best:  # progress: the retry budget is per stall, not per file
            best, failures = progress(), 0
        failures += 1
        if failures > policy.retries:
            raise DownloadInterrupted(url, field, outcome.final_message(url, failures))
        policy.sleep(failures, outcome.retry_after)


def send(sess, method, url, field, policy, **kw):
    """One request: the response, or a Failure when the network failed. Requests that cannot be
    sent at all raise InputError."""
    try:
        return sess.request(method, url, timeout=(policy.timeout, policy.timeout), **kw)
    except REQUEST_ERRORS as exc:
        raise InputError(url, field, f"cannot request this URL: {exc}") from exc
    except NETWORK_ERRORS as exc:
        return Failure.from_exception(exc)


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
