"""The rule scripts' log: metasig's log lines go to the rule's log file and to stderr."""

import logging
import sys
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("metasig")


@contextmanager
def logged(log_file):
    """Send metasig's log lines to the rule's log file and to stderr; record a failure in both."""
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    handlers = [logging.FileHandler(log_file, mode="w"), logging.StreamHandler(sys.stderr)]
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    for handler in handlers:
        handler.setFormatter(fmt)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield log
    except Exception as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        raise
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()
