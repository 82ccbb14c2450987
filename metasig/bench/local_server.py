"""A server process on 127.0.0.1 for the benchmarks: a free port, start and stop (with the children
it started), its memory, one keep-alive HTTP/1.1 connection, and the wait for its first answer.
"""

import http.client
import os
import socket
import subprocess
import time

import psutil


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree_rss(proc):
    """RSS of a process and its children (mlflow's CLI runs uvicorn as a child)."""
    try:
        p = psutil.Process(proc.pid)
        return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)])
    except psutil.NoSuchProcess:
        return 0


def start(cmd, log_path, env=None):
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    proc.log = log
    return proc


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, 15)  # its own session: the server and the children it started, no one else
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)
    proc.log.close()


class Client:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path, body, headers):
        self.conn.request("POST", path, body=body, headers=headers)
        r = self.conn.getresponse()
        return r.status, r.read()

    def close(self):
        self.conn.close()


def wait_ready(port, probe, proc, timeout=120):
    """Seconds from now until `probe(client)` answers 200 (the first prediction)."""
    start_t = time.perf_counter()
    while time.perf_counter() - start_t < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {proc.log.name}")
        try:
            c = Client(port)
            status, _ = probe(c)
            c.close()
            if status == 200:
                return time.perf_counter() - start_t
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"server not answering within {timeout} s; see {proc.log.name}")
