"""The loopback HTTP server with injectable faults, for every download test.

    with serve_bytes({"/a.bin": data}) as base:           # base == "http://127.0.0.1:<port>"
        base.add("/b.bin", other, drop_after=1000)        # first request: 1,000 bytes, then hang up
        requests.get(base + "/a.bin")
        assert base.log[-1] == Entry("GET", "/a.bin", None, 200)

    with serve_directory(tmp_path, fail_first=1) as base:  # base == "http://127.0.0.1:<port>/"
        requests.get(base + "file.csv")                     # the files under tmp_path, read per request
        assert [r.status for r in base.requests] == [500]

`base` is a str (the URL; it ends with a slash only for `serve_directory`) that also carries the fault controls:

- ``add(path, data, *, fail_first=0, fail_status=500, drop_after=None, stall_after=None, stall=1.0,
  times=1, slow=0.0, status=None, ignore_range=False, accept_ranges=True, chunk=4096)`` registers
  bytes under `path` with its faults:
    * fail_first=N: the first N GETs (or POSTs) get `fail_status` (500 unless told, e.g. 429);
    * drop_after=B: on the first `times` body responses, send the headers with the full
      Content-Length, write B bytes of the body, then close the socket;
    * stall_after=B: on the first `times` body responses, write B bytes then go silent for `stall`
      seconds (a read timeout on the client);
    * slow=S: sleep S seconds before each `chunk`-sized piece of the body;
    * status=404 (or any code): always answer with that status (the registered bytes are the body);
    * ignore_range=True: still advertise ``Accept-Ranges: bytes`` but answer every Range request with
      200 and the whole body (servers that lie about range support exist);
    * accept_ranges=False: do not advertise ``Accept-Ranges``.
- Faults for every request (checked before the per-path ones): ``serve_bytes(fail_first=N,
  fail_status=500, hook=None)`` (also ``serve_directory``): the first N requests get `fail_status`;
  ``hook(method, path)`` may return a status to inject (or None); ``fail_next(n, status=500)``
  changes the count mid-test.
- Paths not registered with ``add`` are looked up under the served directory (if any).
- POST is answered like GET; ``posted`` lists (path, request body) of every POST.
- ``log`` (also ``requests``): the list of Entry(method, path, range, status), one per request, in
  arrival order (path with its query string); ``count(path=None, method="GET")``.
- ``max_in_flight`` / ``in_flight``: requests being answered at once (a request stops counting just
  before the last byte of its response is written, so a client that starts its next request after
  reading a response can never be counted twice).

Range requests (single ranges ``bytes=a-b``, ``bytes=a-``, ``bytes=-n``) are answered with 206 and a
Content-Range header; unsatisfiable ones with 416. Every response carries an ETag and a
Last-Modified header. On exit the server stops accepting, wakes sleeping handlers, closes open
connections and joins its threads.
"""

import hashlib
import re
import socket
import threading
from collections import namedtuple
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

Entry = namedtuple("Entry", "method path range status")

LAST_MODIFIED = "Mon, 02 Jun 2025 10:00:00 GMT"


class _Resource:
    def __init__(
        self,
        data,
        fail_first=0,
        fail_status=500,
        drop_after=None,
        stall_after=None,
        stall=1.0,
        times=1,
        slow=0.0,
        status=None,
        ignore_range=False,
        accept_ranges=True,
        chunk=4096,
    ):
        self.data = bytes(data)
        self.fail_left = int(fail_first)
        self.fail_status = int(fail_status)
        self.drop_after = drop_after
        self.stall_after = stall_after
        self.stall = float(stall)
        self.times_left = int(times)
        self.slow = float(slow)
        self.status = status
        self.ignore_range = ignore_range
        self.accept_ranges = accept_ranges
        self.chunk = int(chunk)
        self.etag = '"' + hashlib.sha256(self.data).hexdigest()[:16] + '"'


class ServedURL(str):
    """The base URL plus the server's request log, concurrency record and fault controls."""

    def __new__(cls, url, state):
        obj = super().__new__(cls, url)
        obj._state = state
        return obj

    def add(self, path, data, **faults):
        if not path.startswith("/"):
            path = "/" + path
        with self._state["lock"]:
            self._state["files"][path] = _Resource(data, **faults)
        return self.rstrip("/") + path

    @property
    def log(self):
        with self._state["lock"]:
            return list(self._state["log"])

    requests = log  # the name the directory-serving tests use

    def fail_next(self, n, status=500):
        """The next `n` requests (any path) get `status`."""
        with self._state["lock"]:
            self._state["fail_left"], self._state["fail_status"] = int(n), int(status)

    def count(self, path=None, method="GET"):
        return sum(1 for e in self.log if e.method == method and (path is None or e.path == path))

    @property
    def posted(self):
        """(path, body bytes) of every POST, in arrival order."""
        with self._state["lock"]:
            return list(self._state["posted"])

    @property
    def max_in_flight(self):
        with self._state["lock"]:
            return self._state["max_in_flight"]

    @property
    def in_flight(self):
        with self._state["lock"]:
            return self._state["in_flight"]


def _parse_range(header, size):
    """(start, end) inclusive for a single byte range, None to ignore it, or 'bad' if unsatisfiable."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header or "")
    if not match or (not match.group(1) and not match.group(2)):
        return None  # malformed or multi-range: serve the whole body, as RFC 9110 allows
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if start >= size or (last and int(last) < start):
            return "bad"
        return start, end
    suffix = int(last)
    if suffix == 0 or size == 0:
        return "bad"
    return max(0, size - suffix), size - 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do; every response has a length
    timeout = 30  # an idle or stuck connection cannot hold a thread for ever
    state = None  # set per server by subclassing

    # -- bookkeeping -------------------------------------------------------------------------
    def setup(self):
        super().setup()
        with self.state["lock"]:
            self.state["connections"].add(self.connection)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        with self.state["lock"]:
            self.state["connections"].discard(self.connection)

    def _start(self):
        self._counted = True
        with self.state["lock"]:
            self.state["in_flight"] += 1
            self.state["max_in_flight"] = max(self.state["max_in_flight"], self.state["in_flight"])

    def _done(self):
        if getattr(self, "_counted", False):
            self._counted = False
            with self.state["lock"]:
                self.state["in_flight"] -= 1

    def _record(self, status):
        with self.state["lock"]:
            self.state["log"].append(Entry(self.command, self.path, self.headers.get("Range"), status))

    def log_message(self, *args):  # keep test output quiet
        pass

    def _sleep(self, seconds):
        return self.state["stop"].wait(seconds)  # True when the server is stopping

    # -- responses ---------------------------------------------------------------------------
    def _plain(self, status, text, extra=()):
        body = text.encode()
        self._record(status)
        self.send_response(status)
        for key, value in extra:
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._done()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        """Answer like GET (the registered bytes, with the faults); the request body is kept in `posted`."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.state["lock"]:
            self.state["posted"].append((self.path, body))
        self.do_GET()

    def do_GET(self):
        self._start()
        try:
            self._serve()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
        finally:
            self._done()

    def _global_fault(self):
        state = self.state
        with state["lock"]:
            if state["fail_left"] > 0:
                state["fail_left"] -= 1
                return state["fail_status"]
            hook = state["hook"]
        return hook(self.command, self.path) if hook is not None else None

    def _from_directory(self, path):
        root = self.state["root"]
        if root is None:
            return None
        file = (root / unquote(path).lstrip("/")).resolve()
        if root not in file.parents or not file.is_file():
            return None
        return _Resource(file.read_bytes())

    def _serve(self):
        injected = self._global_fault()
        if injected:
            return self._plain(int(injected), "injected fault")
        path = self.path.split("?", 1)[0]
        with self.state["lock"]:
            res = self.state["files"].get(path)
            fail = None
            if res is not None and self.command != "HEAD" and res.fail_left > 0:
                res.fail_left -= 1
                fail = res.fail_status
        if res is None:
            res = self._from_directory(path)
        if res is None:
            return self._plain(404, "not found")
        if res.status is not None:
            return self._plain(int(res.status), res.data.decode("utf-8", "replace") or "injected status")
        if fail is not None:
            return self._plain(fail, "injected fault")

        size = len(res.data)
        start, end, status = 0, size - 1, 200
        wanted = None if res.ignore_range else self.headers.get("Range")
        if wanted is not None and self.headers.get("If-Range") not in (None, res.etag, LAST_MODIFIED):
            wanted = None  # the client's copy is stale: send everything
        if wanted is not None:
            span = _parse_range(wanted, size)
            if span == "bad":
                return self._plain(416, "range not satisfiable", [("Content-Range", f"bytes */{size}")])
            if span is not None:
                (start, end), status = span, 206
        body = res.data[start : end + 1]

        drop = stall = None
        if self.command != "HEAD" and (res.drop_after is not None or res.stall_after is not None):
            with self.state["lock"]:
                if res.times_left > 0:
                    res.times_left -= 1
                    drop, stall = res.drop_after, res.stall_after

        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", res.etag)
        self.send_header("Last-Modified", LAST_MODIFIED)
        if res.accept_ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return

        limit = len(body)
        if drop is not None:
            limit = min(limit, int(drop))
        if stall is not None:
            limit = min(limit, int(stall))
        sent = 0
        while sent < limit:
            piece = body[sent : min(sent + res.chunk, limit)]
            if res.slow and self._sleep(res.slow):
                break
            if sent + len(piece) >= len(body):
                self._done()  # see module docstring: never count a finished exchange twice
            self.wfile.write(piece)
            sent += len(piece)
        if sent == len(body) and len(body) == 0:
            self._done()
        if drop is not None and sent < len(body):
            self._hang_up()
        elif stall is not None and sent < len(body):
            self.wfile.flush()
            self._sleep(res.stall)
            self._hang_up()

    def _hang_up(self):
        self.wfile.flush()
        self._done()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@contextmanager
def serve_bytes(files=None, *, root=None, fail_first=0, fail_status=500, hook=None):
    """Serve registered bytes on a free loopback port in background threads; stop cleanly on exit.

    files: optional {path: bytes} registered without faults (use `base.add` for faults);
    root: a directory whose files answer the paths not registered;
    fail_first / fail_status / hook: faults for every request (see the module docstring)."""
    state = {
        "root": Path(root).resolve() if root is not None else None,
        "fail_left": int(fail_first),
        "fail_status": int(fail_status),
        "hook": hook,
        "lock": threading.Lock(),
        "log": [],
        "files": {},
        "in_flight": 0,
        "max_in_flight": 0,
        "connections": set(),
        "stop": threading.Event(),
        "posted": [],
    }
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = False  # so that server_close() joins the handler threads
    server.block_on_close = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    slash = "/" if root is not None else ""  # a directory's URL ends with a slash, as it does on a web server
    base = ServedURL(f"http://127.0.0.1:{server.server_address[1]}{slash}", state)
    for path, data in (files or {}).items():
        base.add(path, data)
    try:
        yield base
    finally:
        state["stop"].set()
        server.shutdown()
        with state["lock"]:
            open_connections = list(state["connections"])
        for conn in open_connections:  # idle keep-alive connections would block their threads
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        thread.join(timeout=5)


def serve_directory(path, fail_first=0, fail_status=500, hook=None):
    """Serve the files under `path` (read at each request); the base URL ends with a slash."""
    return serve_bytes(root=path, fail_first=fail_first, fail_status=fail_status, hook=hook)


def closed_port_url(name="data.csv"):
    """A loopback URL on a port nobody listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"
