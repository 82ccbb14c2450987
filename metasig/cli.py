"""The `metasig` command. Subcommands:

metasig serve [--registry results/registry] [--host 127.0.0.1] [--port 8080]
              [--max-models 64] [--max-memory-mb 1024] [--max-body-mb 16] [--max-connections 256]
              [--token-file PATH | env METASIG_TOKEN_FILE | --token T | env METASIG_TOKEN]
              [--no-access-log]
"""

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    return parse


def parser():
    p = argparse.ArgumentParser(prog="metasig", description="metasig command-line tools")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser(
        "serve",
        help="serve every registered model over the V2 inference protocol",
        description="One HTTP endpoint for every model in the registry (V2 / Open Inference "
        "Protocol, Triton repository API, SageMaker-style /invocations).",
    )
    s.add_argument(
        "--registry", default="results/registry", help="registry folder with index.json (default: %(default)s)"
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    s.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    s.add_argument(
        "--max-models",
        type=_positive(int),
        default=64,
        help="most models kept in memory; least recently used are unloaded (default: %(default)s)",
    )
    s.add_argument(
        "--max-memory-mb",
        type=_positive(float),
        default=1024,
        help="memory budget of loaded models, estimated from artifact sizes (default: %(default)s)",
    )
    s.add_argument(
        "--token",
        default=None,
        help="require 'Authorization: Bearer TOKEN' (default: env METASIG_TOKEN; none = no auth); "
        "visible in ps, so prefer --token-file",
    )
    s.add_argument("--token-file", default=None, help="read the token from this file (default: env METASIG_TOKEN_FILE)")
    s.add_argument(
        "--max-body-mb",
        type=_positive(float),
        default=16,
        help="largest accepted request body; larger ones get 413 (default: %(default)s)",
    )
    s.add_argument(
        "--max-connections",
        type=_positive(int),
        default=256,
        help="open connections (or running requests) beyond which requests get 503 (default: %(default)s)",
    )
    s.add_argument("--no-access-log", action="store_true", help="do not write a JSON line per request")
    return p


def serve(args):
    from metasig.publish.registry_index import index_path
    from metasig.serve.app import Settings
    from metasig.serve.server import run

    registry = Path(args.registry)
    if not registry.is_dir():
        sys.exit(
            f"metasig serve: registry folder {registry} not found; run the workflow first (make run) or pass --registry"
        )
    if not index_path(registry).is_file():
        sys.exit(
            f"metasig serve: {index_path(registry)} not found; no model has been published to this "
            f"registry yet (models are published when they pass the gate)"
        )
    token = _token(args)
    if token is None and not _loopback(args.host):
        logging.getLogger("metasig.serve").warning(
            "metasig serve: listening on %s without a token: anyone who can reach this address can use the "
            "server; pass --token-file (or set METASIG_TOKEN_FILE)",
            args.host,
        )
    settings = Settings(
        registry=str(registry),
        max_models=args.max_models,
        max_memory_mb=args.max_memory_mb,
        token=token,
        max_body_mb=args.max_body_mb,
    )
    run(
        settings,
        host=args.host,
        port=args.port,
        access_log=not args.no_access_log,
        max_connections=args.max_connections,
    )


def _token(args):
    """The bearer token: a file (option, then environment) first, so it stays out of `ps`."""
    path = args.token_file or os.environ.get("METASIG_TOKEN_FILE")
    if path:
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            sys.exit(f"metasig serve: cannot read the token file {path}: {exc.strerror}")
        if not token:
            sys.exit(f"metasig serve: the token file {path} is empty")
        return token
    return args.token or os.environ.get("METASIG_TOKEN") or None


def _loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def main(argv=None):
    args = parser().parse_args(argv)
    if args.command == "serve":
        serve(args)


if __name__ == "__main__":
    main()
