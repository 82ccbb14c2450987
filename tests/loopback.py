"""A loopback HTTP server for tests: serves a directory on 127.0.0.1, records every request and can
inject faults (e.g. the first N requests fail with HTTP 500).

    with serve_directory(tmp_path, fail_first=1) as base:   # base == "http://127.0.0.1:<port>/"
        requests.get(base + "file.csv")
        assert base.requests[-1].status == 200

`base` is a str (the URL) that also carries `.requests` (a list of Request(method, path, status)),
`.count(path=None)` and `.fail_next(n, status=500)` for changing faults mid-test.
"""

import functools
import socket
import threading
from collections import namedtuple
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

Request = namedtuple("Request", "method path status")


class ServedURL(str):
    """The base URL plus the server's request log and fault controls."""

    def __new__(cls, url, state):
        obj = super().__new__(cls, url)
        obj._state = state
        return obj

    @property
    def requests(self):
        with self._state["lock"]:
            return list(self._state["log"])

    def count(self, path=None, method="GET"):
        """Requests seen (optionally only those for `path`, e.g. '/data.csv')."""
        return sum(1 for r in self.requests if r.method == method and (path is None or r.path == path))

    def fail_next(self, n, status=500):
        with self._state["lock"]:
            self._state["fail_left"], self._state["fail_status"] = n, status


class _Handler(SimpleHTTPRequestHandler):
    state = None  # set per server through functools.partial-like subclassing

    def _fault(self):
        state = self.state
        with state["lock"]:
            status = None
            if state["fail_left"] > 0:
                state["fail_left"] -= 1
                status = state["fail_status"]
            elif state["hook"] is not None:
                status = state["hook"](self.command, self.path)
        if status:
            self.send_error(status, "injected fault")
            return True
        return False

    def do_GET(self):
        if not self._fault():
            super().do_GET()

    def do_HEAD(self):
        if not self._fault():
            super().do_HEAD()

    def log_request(self, code="-", size="-"):
        with self.state["lock"]:
            self.state["log"].append(Request(self.command, self.path, int(code) if str(code).isdigit() else code))

    def log_message(self, *args):  # keep test output quiet
        pass


@contextmanager
def serve_directory(path, fail_first=0, fail_status=500, hook=None):
    """Serve `path` on a free loopback port in a background thread; stop on exit.

    fail_first: the first N requests get `fail_status` instead of the file.
    hook: optional callable(method, path) -> HTTP status to inject, or None to serve normally.
    """
    state = {"lock": threading.Lock(), "log": [], "fail_left": fail_first, "fail_status": fail_status, "hook": hook}
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(path)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield ServedURL(f"http://127.0.0.1:{server.server_address[1]}/", state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url(name="data.csv"):
    """A loopback URL on a port nobody listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"
