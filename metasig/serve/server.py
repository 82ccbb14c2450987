"""Run the app with uvicorn; access log lines go to stderr as JSON, one per request."""

import gc
import logging
import sys

from metasig.serve.app import Settings, create_app


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


def run(settings: Settings, host="127.0.0.1", port=8080, access_log=True):
    import uvicorn

    configure_logging(access_log)
    app = create_app(settings)
    # Startup objects (modules, the parsed index) live as long as the server: keep them out of
    # the cyclic collector's scans, which otherwise show up as latency spikes.
    gc.collect()
    gc.freeze()
    # uvicorn's own access log is off: the app writes a structured line per request instead.
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning", timeout_keep_alive=30,
                server_header=False)
