"""Run the app with uvicorn; access log lines go to stderr as JSON, one per request."""

import gc
import logging
import sys

from uvicorn.protocols.http.h11_impl import H11Protocol

from metasig.serve.app import Settings, create_app

# Connection limits (see README "Serving"): idle keep-alive connections are closed after
# KEEP_ALIVE s, a request whose headers are not complete HEADER_TIMEOUT s after the connection
# opened (or after the previous response) is cut off, and past MAX_CONNECTIONS open connections
# or running requests uvicorn answers 503. The body's own deadline is Settings.body_timeout.
KEEP_ALIVE = 5
HEADER_TIMEOUT = 10
MAX_CONNECTIONS = 256


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for the request headers, which uvicorn lacks: a
    client sending a header a byte at a time would otherwise hold its connection forever."""

    header_timeout = HEADER_TIMEOUT
    _header_timer = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self):
        super().on_response_complete()
        self._arm_header_deadline()

    def connection_lost(self, exc):
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm_header_deadline(self):
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_deadline, self.cycle)

    def _header_deadline(self, cycle):
        # Same cycle as when armed, and it is finished (or none yet): no new request's headers
        # have been completed since.
        waiting = self.cycle is cycle and (cycle is None or cycle.response_complete)
        if waiting and not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(
    app, timeout_keep_alive=KEEP_ALIVE, header_timeout=HEADER_TIMEOUT, limit_concurrency=MAX_CONNECTIONS, **options
):
    """The uvicorn Config `metasig serve` runs with (the tests use it too)."""
    import uvicorn

    protocol = type("HeaderDeadline", (HeaderDeadline,), {"header_timeout": header_timeout})
    # uvicorn's own access log is off: the app writes a structured line per request instead.
    return uvicorn.Config(
        app,
        http=protocol,
        access_log=False,
        log_level="warning",
        server_header=False,
        timeout_keep_alive=timeout_keep_alive,
        limit_concurrency=limit_concurrency,
        **options,
    )


def configure_logging(access=True):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log = logging.getLogger("metasig.serve.access")
    access_log.handlers[:] = [handler]
    access_log.propagate = False
    access_log.setLevel(logging.INFO if access else logging.WARNING)
    main = logging.getLogger("metasig.serve")
    if not main.handlers:
        plain = logging.StreamHandler(sys.stderr)
        plain.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        main.addHandler(plain)
    main.setLevel(logging.INFO)


def run(settings: Settings, host="127.0.0.1", port=8080, access_log=True, max_connections=MAX_CONNECTIONS):
    import uvicorn

    configure_logging(access_log)
    app = create_app(settings)
    # Startup objects (modules, the parsed index) live as long as the server: keep them out of
    # the cyclic collector's scans, which otherwise show up as latency spikes.
    gc.collect()
    gc.freeze()
    uvicorn.Server(uvicorn_config(app, host=host, port=port, limit_concurrency=max_connections)).run()
