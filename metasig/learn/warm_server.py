"""The warm worker's server (see metasig.learn.warm): preloads the training libraries, then forks one
child per job. Single-threaded on purpose: it never runs a multi-threaded computation before a fork
(OpenMP and BLAS thread pools do not survive fork); children size their own pools per job."""

import atexit
import fcntl
import os
import pickle
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback

from metasig.learn import warm

_PEER = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid
_REQUEST_TIMEOUT_S = 10.0


class Job:
    def __init__(self, pid, conn, go):
        self.pid, self.conn, self.go = pid, conn, go  # go: write end of the child's start pipe
        self.kill_at = None
        self.watched = False  # conn registered with the selector


class Server:
    def __init__(self, path):
        self.path = path
        self.stem = path[: -len(".sock")]
        self.jobs = {}  # pid -> Job
        self.idle_s = float(os.environ.get("METASIG_WARM_IDLE", warm.IDLE_S))
        self.last_job = time.monotonic()
        self.stopping = False
        self.sel = selectors.DefaultSelector()
        # signals only wake the loop; the loop does the work
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)  # the starting client holds the lock and removed any stale socket
        self.listener.listen(128)
        self.inode = os.stat(path).st_ino
        with open(self.stem + ".pid", "w") as out:
            out.write(str(os.getpid()))
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        _log(f"listening at {path}")
        preload()
        self.last_job = time.monotonic()

    def _stop(self, signum, frame):
        self.stopping = True

    # ------------------------------------------------------------ loop

    def loop(self):
        try:
            while True:
                if self.stopping:
                    self._close_listener()
                    for job in self.jobs.values():
                        self._kill(job)
                if self.listener is None and not self.jobs:
                    return
                for key, _ in self.sel.select(self._timeout()):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        _drain(self.wake_r)
                    else:
                        self._client_event(key.data)
                self._reap()
                self._escalate()
                if not self.jobs and self.listener is not None and time.monotonic() - self.last_job > self.idle_s:
                    self._retire()
        finally:
            self._close_listener()
            _log("exiting")

    def _timeout(self):
        now = time.monotonic()
        deadlines = [job.kill_at for job in self.jobs.values() if job.kill_at is not None]
        if not self.jobs and self.listener is not None:
            deadlines.append(self.last_job + self.idle_s)
        return max(0.0, min(deadlines) - now) + 0.01 if deadlines else None

    def _retire(self):
        """Idle: stop listening, under the start lock so no client starts a server meanwhile;
        connections already queued are still served."""
        try:
            with open(self.stem + ".lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.listener.setblocking(False)
                while self.listener is not None:
                    try:
                        self._accept()
                    except BlockingIOError:
                        self._close_listener()
        except BlockingIOError:
            pass  # a client is starting or connecting: try again at the next timeout

    def _close_listener(self):
        if self.listener is None:
            return
        try:
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
                os.unlink(self.stem + ".pid")
        except OSError:
            pass
        self.sel.unregister(self.listener)
        self.listener.close()
        self.listener = None

    # ------------------------------------------------------------ jobs

    def _accept(self):
        conn, _ = self.listener.accept()
        try:
            request, fds = self._read_request(conn)
        except Exception as exc:  # a bad client must not stop the server
            _log(f"dropped a connection: {exc!r}")
            conn.close()
            return
        go_r, go_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            _child(go_r, request, fds, self._own_fds(conn))
        os.close(go_r)
        for fd in fds.values():
            os.close(fd)
        try:
            os.setpgid(pid, pid)  # also done by the child: whichever runs first
        except OSError:
            pass
        job = Job(pid, conn, go_w)
        self.jobs[pid] = job
        try:
            warm._send(conn, ("started", pid))
        except OSError:
            self._kill(job)
        self.sel.register(conn, selectors.EVENT_READ, job)
        job.watched = True

    def _read_request(self, conn):
        conn.settimeout(_REQUEST_TIMEOUT_S)
        if hasattr(socket, "SO_PEERCRED"):
            uid = _PEER.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEER.size))[1]
            if uid != os.getuid():
                raise PermissionError(f"peer uid {uid}")
        size = warm._HEADER.size
        data, fds, _, _ = socket.recv_fds(conn, size, 3)
        data += warm._exactly(conn, size - len(data), started=bool(data))
        length, mask = warm._HEADER.unpack(data)
        std = [fd for fd in (0, 1, 2) if mask & (1 << fd)]
        if len(fds) != len(std):
            for fd in fds:
                os.close(fd)
            raise ValueError(f"{len(fds)} file descriptors for {len(std)} std streams")
        request = pickle.loads(warm._exactly(conn, length, started=True))
        conn.settimeout(None)
        return request, dict(zip(std, fds))

    def _own_fds(self, conn):
        """The server's descriptors, for a new child to close."""
        socks = [self.listener, self.wake_r, self.wake_w, conn, self.sel] + [job.conn for job in self.jobs.values()]
        fds = [s.fileno() for s in socks if s is not None and hasattr(s, "fileno")]
        return fds + [job.go for job in self.jobs.values() if job.go is not None]

    def _client_event(self, job):
        """The client sent its go, or went away (then its child is killed)."""
        try:
            data = job.conn.recv(1)
        except OSError:
            data = b""
        if data == b"g" and job.go is not None:
            _write_close(job.go)
            job.go = None
            return
        self.sel.unregister(job.conn)
        job.watched = False
        self._kill(job)

    def _kill(self, job):
        if job.go is not None:  # not started: closing the pipe ends the child
            os.close(job.go)
            job.go = None
        if job.kill_at is None:
            warm._kill_group(job.pid, signal.SIGTERM)
            job.kill_at = time.monotonic() + warm.KILL_GRACE_S

    def _escalate(self):
        now = time.monotonic()
        for job in self.jobs.values():
            if job.kill_at is not None and now >= job.kill_at:
                warm._kill_group(job.pid, signal.SIGKILL)
                job.kill_at = now + 3600

    def _reap(self):
        for pid in list(self.jobs):
            try:
                done, status, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                done, status, usage = pid, 255 << 8, None
            if not done:
                continue
            job = self.jobs.pop(pid)
            if job.go is not None:
                os.close(job.go)
            try:
                used = None if usage is None else (usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)
                warm._send(job.conn, ("exit", os.waitstatus_to_exitcode(status), used))
            except OSError:
                pass
            if job.watched:
                self.sel.unregister(job.conn)
            job.conn.close()
            self.last_job = time.monotonic()


# ---------------------------------------------------------------- child


def _child(go_r, request, fds, server_fds):
    """In the forked child: wait for the client's go, become the job's process, run it, exit."""
    code = 70
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setpgid(0, 0)
        for fd in server_fds:
            _close(fd)
        go = os.read(go_r, 1)
        os.close(go_r)
        if go != b"g":
            os._exit(0)  # the client never committed: nothing ran
        for std in (0, 1, 2):
            if std in fds:
                os.dup2(fds[std], std)
                os.close(fds[std])
            else:
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, std)
                os.close(devnull)
        sys.stdout.reconfigure(line_buffering=os.isatty(1))
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.umask(request["umask"])
        sys.argv = request["argv"]
        code = _run(request)
        threading._shutdown()  # as at interpreter exit: join non-daemon threads, then atexit
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _run(request):
    """The job's exit status as a Python process running it would have it."""
    try:
        warm.call(request["target"], request["kwargs"], request["log"])
        return 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        return 128 + signal.SIGINT
    except BaseException:
        sys.excepthook(*sys.exc_info())
        return 1


# ---------------------------------------------------------------- preload


def preload():
    """Import the training path's libraries (import only), then warm numba's JIT if skglm is used."""
    import importlib
    import pkgutil

    names = os.environ.get("METASIG_WARM_PRELOAD")
    names = warm.PRELOAD if names is None else [n.strip() for n in names.split(",") if n.strip()]
    started = time.perf_counter()
    for name in names:
        if name == "metasig.learn.*":
            import metasig.learn

            modules = [f"metasig.learn.{m.name}" for m in pkgutil.iter_modules(metasig.learn.__path__)]
            for module in ["metasig.io", "metasig.logs", *modules]:
                _import(importlib, module)
        else:
            _import(importlib, name)
    if "skglm" in sys.modules:
        warm_jit()
    _log(f"preloaded {len(sys.modules)} modules in {time.perf_counter() - started:.1f} s")


def _import(importlib, name):
    try:
        importlib.import_module(name)
    except Exception as exc:  # an optional library missing here is imported, or not, by the job itself
        _log(f"not preloaded: {name}: {exc!r}")


def warm_jit():
    """skglm's numba kernels compile at first use (~10 s CPU) and would be compiled again by every
    new process: run tiny elastic-net jobs (binary and 3 classes) through the training path, on one
    thread, so every forked child inherits the compiled code."""
    import numpy as np
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from metasig.learn import job

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(60, 5)), columns=[f"g{i}" for i in range(5)])
    cv = {"outer_folds": 2, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 5, "permuted_repeats": 1}
    model = {"kind": "elasticnet", "search": {"C": [1.0], "l1_ratio": [0.5]}}
    tasks = [
        ({"type": "binary", "label": "y", "positive": "a"}, np.arange(60) % 2, ["b", "a"]),
        ({"type": "multiclass", "label": "y"}, np.array(["a", "b", "c"] * 20), None),
    ]
    started = time.perf_counter()
    with threadpool_limits(limits=1):
        for task, y, classes in tasks:
            try:
                job.train(X, y, task, model, cv, {"scale": True}, "none", 0, classes, [], None, 1)
            except Exception as exc:
                _log(f"JIT warm-up ({task['type']}) failed: {exc!r}")
    _log(f"JIT warm-up {time.perf_counter() - started:.1f} s")


# ---------------------------------------------------------------- helpers


def _log(message):
    print(f"{time.strftime('%H:%M:%S')} [{os.getpid()}] {message}", file=sys.stderr, flush=True)


def _drain(sock):
    try:
        while sock.recv(4096):
            pass
    except BlockingIOError:
        pass


def _write_close(fd):
    try:
        os.write(fd, b"g")
    except OSError:
        pass
    os.close(fd)


def _close(fd):
    try:
        os.close(fd)
    except OSError:
        pass
