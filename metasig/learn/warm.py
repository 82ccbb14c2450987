"""Warm worker for training jobs: a per-user server that has already imported the training libraries
(and compiled numba's JIT where skglm is used) forks one child per job. The job process (the rule
script) only connects, hands over its cwd, environment, umask and stdin/stdout/stderr, and waits
for the child's exit status, so a small job no longer pays ~2 s of imports (and JIT) per process.

Client: `run(target, kwargs, log)`; the same `call()` runs the job in the child or, when the server
cannot take it, in the client itself (one log line says so). Opt out with METASIG_WARM=0.

The socket is keyed by everything a child must share with the job that asked for it: the Python
executable, sys.path, the umask, the site-packages' modification times, a hash of the metasig
package's sources (edited code never runs in a stale server) and the cluster job/step (a server
lives in one allocation's cgroup, so jobs of another allocation must not run inside it).

Protocol (one connection per job): client -> header (length, stdio mask) + its stdio fds, pickled
request; server forks a child that waits on a pipe, and answers ("started", pid); the client
commits with b"g", which the server forwards to the child: the child runs only after that, so a
client that falls back to in-process never runs a job that also ran in a child. Then the server
reaps the child and sends ("exit", code). A client that disconnects has its child killed.

Settings (environment): METASIG_WARM=0 (off), METASIG_WARM_DIR (socket directory, default
$XDG_RUNTIME_DIR/metasig or /tmp/metasig-<uid>, created 0700), METASIG_WARM_IDLE (seconds a server
stays up without jobs, default 120), METASIG_WARM_PRELOAD (comma-separated modules to import,
"metasig.learn.*" for every training module; default PRELOAD). `python -m metasig.learn.warm stop`
stops this user's servers.
"""

import fcntl
import hashlib
import os
import pickle
import signal
import socket
import stat
import struct
import sys
import time

IDLE_S = 120.0
START_TIMEOUT_S = 120.0  # for the first answer: a new server may still be importing
SPAWN_TIMEOUT_S = 30.0  # for a new server to listen
KILL_GRACE_S = 5.0  # SIGTERM, then SIGKILL
PRELOAD = (
    "metasig.learn.*",
    "threadpoolctl",
    "xgboost",
    "pyarrow.pandas_compat",  # reading the matrix
    "pandas.io.formats.csvs",  # writing predictions.tsv
    "sksurv.functions",
    "sksurv.linear_model",  # metasig.learn.cox: CoxnetSurvivalAnalysis, BreslowEstimator
    "sksurv.metrics",
    "sksurv.nonparametric",
    "sksurv.util",
    "pydeseq2.dds",
)
# the server imports single-threaded; children get the job's own values back with its environment
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_CLUSTER_VARS = ("SLURM_JOB_ID", "SLURM_STEP_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID")
_HEADER = struct.Struct("!IB")  # request length, mask of the std fds sent
_LENGTH = struct.Struct("!I")
_OFF = ("0", "false", "no", "off")


class Unavailable(Exception):
    """The server cannot take the job and nothing of it ran. `retry`: a new connection may work."""

    def __init__(self, reason, retry=False):
        super().__init__(reason)
        self.retry = retry


class _Cancelled(BaseException):
    pass


# ---------------------------------------------------------------- the job itself (client or child)


def call(target, kwargs, log, note=None):
    """Run `target` ("module:function") with `kwargs` in this process, logging to `log`."""
    import importlib

    from metasig.logs import logged

    module, name = target.split(":")
    function = getattr(importlib.import_module(module), name)
    with logged(log) as logger:
        if note:
            logger.warning(note)
        function(**kwargs)


# ---------------------------------------------------------------- client


def run(target, kwargs, log):
    """Run the job through the warm worker, else in-process; exit with the job's status if it failed."""
    if os.environ.get("METASIG_WARM", "1").strip().lower() in _OFF:
        return call(target, kwargs, log)
    for attempt in range(2):
        try:
            code = _remote(target, kwargs, log)
        except Unavailable as exc:
            if exc.retry and attempt == 0:
                continue
            return call(target, kwargs, log, note=f"warm worker unavailable ({exc}); running in-process")
        if code:
            sys.exit(code)
        return None


def socket_dir():
    """The user's private socket directory, created 0700; Unavailable if it is not private."""
    base = os.environ.get("METASIG_WARM_DIR")
    if not base:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        base = os.path.join(runtime, "metasig") if runtime and os.path.isdir(runtime) else f"/tmp/metasig-{os.getuid()}"
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        info = os.lstat(base)
    except OSError as exc:
        raise Unavailable(f"socket directory {base}: {exc}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise Unavailable(f"socket directory {base} is not a directory private to this user (0700)")
    return base


def server_key():
    """Hash of what a server must share with this process (see the module docstring)."""
    from pathlib import Path

    digest = hashlib.sha256()
    umask = os.umask(0)
    os.umask(umask)
    parts = [sys.executable, sys.version, repr(_search_path()), str(umask)]
    parts += [os.environ.get(name, "") for name in _CLUSTER_VARS]
    parts += [str(os.stat(p).st_mtime_ns) for p in sys.path if p.endswith("-packages") and os.path.isdir(p)]
    for part in parts:
        digest.update(part.encode() + b"\0")
    package = Path(__file__).resolve().parents[1]
    for source in sorted(package.rglob("*.py")):
        digest.update(str(source.relative_to(package)).encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def _search_path():
    return [os.path.abspath(p) for p in sys.path]


def _remote(target, kwargs, log):
    folder = socket_dir()
    try:
        key = server_key()
    except OSError as exc:
        raise Unavailable(f"hashing the package: {exc}") from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        request = pickle.dumps(
            {
                "target": target,
                "kwargs": kwargs,
                "log": log,
                "cwd": os.getcwd(),
                "env": dict(os.environ),
                "umask": umask,
                "argv": sys.argv,
            }
        )
    except Exception as exc:
        raise Unavailable(f"the job's arguments cannot be sent: {exc!r}") from None
    sock = _open(os.path.join(folder, key))
    stdio = [fd for fd in (0, 1, 2) if _is_open(fd)]
    mask = sum(1 << fd for fd in stdio)
    try:
        socket.send_fds(sock, [_HEADER.pack(len(request), mask)], stdio)
        sock.sendall(request)
    except OSError as exc:
        sock.close()
        raise Unavailable(f"sending the job: {exc}", retry=True) from None
    return _wait(sock, log)


def _is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _connect(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        return sock
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except OSError as exc:
        sock.close()
        raise Unavailable(f"connecting to {path}: {exc}") from None


def _open(stem):
    """A connection to the server at `stem`.sock, starting the server if none answers. The lock
    makes jobs that start at once share one new server."""
    path = stem + ".sock"
    if len(path.encode()) > 100:
        raise Unavailable(f"socket path too long: {path}")
    sock = _connect(path)
    if sock is not None:
        return sock
    try:
        with open(stem + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            sock = _connect(path)
            if sock is not None:
                return sock
            if os.path.lexists(path):
                os.unlink(path)  # a dead server's
            return _start(stem, path)
    except OSError as exc:
        raise Unavailable(f"starting a server at {path}: {exc}") from None


def _start(stem, path):
    import json
    import subprocess

    env = dict(os.environ, **{name: "1" for name in _THREAD_VARS})
    code = "import json,sys;sys.path[:]=json.loads(sys.argv[1]);from metasig.learn import warm;warm.serve(sys.argv[2])"
    with open(stem + ".log", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(_search_path()), path],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd="/",
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + SPAWN_TIMEOUT_S
    while True:
        sock = _connect(path)
        if sock is not None:
            return sock
        if proc.poll() is not None:
            raise Unavailable(f"the server exited with status {proc.returncode} (see {stem}.log)")
        if time.monotonic() > deadline:
            proc.kill()
            raise Unavailable(f"the server did not listen within {SPAWN_TIMEOUT_S:.0f} s (see {stem}.log)")
        time.sleep(0.02)


def _wait(sock, log):
    """Commit to the started child, wait for its exit status, and kill it if this job is cancelled.
    Until the client sends its go nothing runs, so any failure before that falls back safely."""
    import select

    state = {"pid": None, "signum": None, "since": None}

    def cancel(signum, frame):
        state["signum"], state["since"] = signum, time.monotonic()
        if state["pid"] is None:
            raise _Cancelled
        _kill_group(state["pid"], signal.SIGTERM)

    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {s: signal.signal(s, cancel) for s in handled}
    try:
        sock.settimeout(START_TIMEOUT_S)
        try:
            first = _receive(sock)
            kind, pid = first
        except Exception as exc:
            raise Unavailable(f"no answer from the server: {exc!r}", retry=True) from None
        if kind != "started":
            raise Unavailable(f"the server answered {first!r}", retry=True)
        state["pid"] = pid
        try:
            sock.sendall(b"g")
        except OSError as exc:
            raise Unavailable(f"the server went away: {exc}", retry=True) from None
        # committed: from here on the job may have run, so a failure is the job's failure
        while not select.select([sock], [], [], 1.0)[0]:
            if state["since"] is not None and time.monotonic() - state["since"] > KILL_GRACE_S:
                _kill_group(pid, signal.SIGKILL)
        try:
            kind, code, used = _receive(sock)
            if kind != "exit":
                raise ValueError(f"unexpected message {kind!r}")
        except Exception as exc:
            _kill_group(pid, signal.SIGKILL)
            print(f"metasig warm worker: lost the server while job {pid} ran ({exc!r})", file=sys.stderr)
            return 1
    except _Cancelled:
        return 128 + state["signum"]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sock.close()
    if state["signum"] is not None:
        return 128 + state["signum"]
    if used is not None:
        _note_usage(log, *used)
    if code < 0:
        print(f"metasig warm worker: the job was killed by signal {-code}", file=sys.stderr)
        return 128 - code
    return code


def _note_usage(log, cpu_s, max_rss_mb):
    """Snakemake's benchmark file measures this client only: the job's own CPU time and peak memory
    go to its log (the peak counts the pages shared with the server, as a fresh process would)."""
    try:
        with open(log, "a") as out:
            out.write(f"warm worker: the job used {cpu_s:.2f} s CPU, peak RSS {max_rss_mb:.0f} MB\n")
    except OSError:
        pass


def _receive(sock):
    """One length-prefixed pickle. EOFError if the connection closed before its first byte;
    ValueError if it closed in the middle."""
    head = _exactly(sock, _LENGTH.size)
    return pickle.loads(_exactly(sock, _LENGTH.unpack(head)[0], started=True))


def _exactly(sock, size, started=False):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            if data or started:
                raise ValueError("connection closed in the middle of a message")
            raise EOFError("connection closed")
        data += chunk
    return data


def _send(sock, message):
    data = pickle.dumps(message)
    sock.sendall(_LENGTH.pack(len(data)) + data)


def _kill_group(pid, signum):
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------- server


def serve(path):
    """Listen at `path`, preload, then fork a child per job until idle or SIGTERM."""
    from metasig.learn import warm_server

    warm_server.Server(path).loop()


def stop_all():
    """SIGTERM every server of this user in the socket directory (the pid files name them)."""
    folder = socket_dir()
    for name in sorted(os.listdir(folder)):
        if name.endswith(".pid"):
            try:
                pid = int(open(os.path.join(folder, name)).read())
                os.kill(pid, signal.SIGTERM)
                print(f"stopped {pid}")
            except (OSError, ValueError):
                pass


if __name__ == "__main__":
    if sys.argv[1:] == ["stop"]:
        stop_all()
    else:
        sys.exit("usage: python -m metasig.learn.warm stop")
