"""The warm worker (metasig.learn.warm): clients are real processes, each test has its own socket
directory (METASIG_WARM_DIR) and stops its servers. Servers preload nothing here (fast), except in the
determinism test, which uses the real preload."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metasig import io
from metasig.data.groups_file import write_groups

REPO = Path(__file__).resolve().parents[2]
JOBS = textwrap.dedent(
    """
    import os, sys, time

    def ok(out):
        print("hello from the job")
        with open(out, "w") as f:
            f.write(f"{os.getpid()} {os.getppid()} {os.getcwd()} {os.environ.get('WARM_TEST_VAR')}")

    def boom():
        raise ValueError("boom")

    def code(n):
        sys.exit(n)

    def sleep(out):
        with open(out, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    """
)
CLIENT = "import json, sys; from metasig.learn import warm; warm.run(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3])"
NOTE = "running in-process"


class Warm:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.base = Path(tempfile.mkdtemp(prefix="mw", dir="/tmp"))  # socket paths must stay short
        self.dir = self.base / "s"
        (tmp_path / "wjobs.py").write_text(JOBS)
        # a script, as Snakemake runs one: sys.path[0] is its folder, whatever the cwd
        (tmp_path / "client.py").write_text(CLIENT)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("METASIG_WARM")}
        self.env.update(
            PYTHONPATH=os.pathsep.join([str(REPO), str(tmp_path)]),
            METASIG_WARM_DIR=str(self.dir),
            METASIG_WARM_PRELOAD="",
            METASIG_WARM_IDLE="120",
        )

    def start(self, target, kwargs=None, env=None, cwd=None):
        log = str(self.tmp / "job.log")
        args = [sys.executable, str(self.tmp / "client.py"), target, json.dumps(kwargs or {}), log]
        return subprocess.Popen(
            args,
            env={**self.env, **(env or {})},
            cwd=cwd or self.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, target, kwargs=None, env=None, cwd=None):
        proc = self.start(target, kwargs, env, cwd)
        out, err = proc.communicate(timeout=120)
        return proc.returncode, out, err, proc.pid

    def servers(self):
        return sorted(int(p.read_text()) for p in self.dir.glob("*.pid")) if self.dir.is_dir() else []

    def close(self):
        pids = self.servers()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:  # killed by its test
                pass
        for pid in pids:
            assert _gone(pid), f"server {pid} did not exit on SIGTERM"
        assert not list(self.dir.glob("*.sock")) if self.dir.is_dir() else True
        shutil.rmtree(self.base, ignore_errors=True)


def _gone(pid, wait_s=30.0):
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _wait_for(path, wait_s=60.0):
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not (path.exists() and path.read_text()):
        time.sleep(0.05)
    return int(path.read_text())


def _fields(path):
    pid, ppid, cwd, var = path.read_text().split(" ")
    return int(pid), int(ppid), cwd, var


@pytest.fixture
def warm(tmp_path):
    w = Warm(tmp_path)
    yield w
    w.close()


def test_the_first_client_starts_a_server_and_the_second_reuses_it(warm, tmp_path):
    assert warm.servers() == []
    rc, out, err, client = warm.run("wjobs:ok", {"out": str(tmp_path / "a")})
    assert rc == 0, err
    assert NOTE not in err
    assert "hello from the job" in out  # the job's stdout is the client's
    [server] = warm.servers()
    pid, ppid, cwd, var = _fields(tmp_path / "a")
    assert ppid == server and pid != client
    assert "warm worker: the job used" in (tmp_path / "job.log").read_text()  # what Snakemake's benchmark misses

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rc, out, err, _ = warm.run("wjobs:ok", {"out": str(tmp_path / "b")}, env={"WARM_TEST_VAR": "x1"}, cwd=elsewhere)
    assert rc == 0, err
    assert warm.servers() == [server]  # no new server
    pid2, ppid2, cwd2, var2 = _fields(tmp_path / "b")
    assert ppid2 == server and pid2 != pid
    assert (cwd, var, cwd2, var2) == (str(tmp_path), "None", str(elsewhere), "x1")  # the client's cwd and env


def test_a_failing_job_reports_its_status_and_traceback(warm, tmp_path):
    rc, _, err, _ = warm.run("wjobs:boom")
    assert rc == 1
    assert "Traceback" in err and "ValueError: boom" in err
    assert NOTE not in err
    assert "ValueError: boom" in (tmp_path / "job.log").read_text()
    assert len(warm.servers()) == 1
    rc, _, err, _ = warm.run("wjobs:code", {"n": 3})
    assert rc == 3, err


def test_edited_code_never_runs_in_a_stale_server(warm, tmp_path):
    copy = tmp_path / "pkg"
    shutil.copytree(REPO / "metasig", copy / "metasig", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": os.pathsep.join([str(copy), str(tmp_path)])}
    rc, _, err, _ = warm.run("wjobs:ok", {"out": str(tmp_path / "a")}, env=env)
    assert rc == 0, err
    first = _fields(tmp_path / "a")[1]
    with open(copy / "metasig" / "learn" / "steps.py", "a") as f:
        f.write("\n# edited\n")
    rc, _, err, _ = warm.run("wjobs:ok", {"out": str(tmp_path / "b")}, env=env)
    assert rc == 0, err
    second = _fields(tmp_path / "b")[1]
    assert first != second
    assert sorted([first, second]) == warm.servers()
    assert len(list(warm.dir.glob("*.sock"))) == 2


@pytest.mark.parametrize("kind", ["shared", "file"])
def test_an_unusable_socket_directory_falls_back_to_in_process(warm, tmp_path, kind):
    if kind == "shared":
        warm.dir.mkdir(mode=0o755)
        os.chmod(warm.dir, 0o755)  # readable by others: not private
    else:
        warm.dir.write_text("not a directory")
    rc, out, err, client = warm.run("wjobs:ok", {"out": str(tmp_path / "a")})
    assert rc == 0, err
    assert err.count(NOTE) == 1
    assert NOTE in (tmp_path / "job.log").read_text()
    assert _fields(tmp_path / "a")[0] == client  # ran in the client itself
    if kind == "shared":
        assert list(warm.dir.iterdir()) == []
        warm.dir.rmdir()
    else:
        warm.dir.unlink()


def test_opting_out_runs_in_process_without_a_server(warm, tmp_path):
    rc, _, err, client = warm.run("wjobs:ok", {"out": str(tmp_path / "a")}, env={"METASIG_WARM": "0"})
    assert rc == 0, err
    assert NOTE not in err
    assert _fields(tmp_path / "a")[0] == client
    assert not warm.dir.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_cancelling_the_client_kills_the_job(warm, tmp_path, signum):
    proc = warm.start("wjobs:sleep", {"out": str(tmp_path / "pid")})
    child = _wait_for(tmp_path / "pid")
    proc.send_signal(signum)
    proc.communicate(timeout=60)
    assert proc.returncode == (-signal.SIGKILL if signum == signal.SIGKILL else 128 + signum)
    assert _gone(child)  # SIGKILL: the server sees the client go and kills the job
    assert len(warm.servers()) == 1  # the server survives its job


def test_a_server_lost_mid_job_fails_the_job_without_running_it_again(warm, tmp_path):
    proc = warm.start("wjobs:sleep", {"out": str(tmp_path / "pid")})
    child = _wait_for(tmp_path / "pid")
    [server] = warm.servers()
    os.kill(server, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "lost the server" in err and NOTE not in err
    assert _gone(child)
    assert int((tmp_path / "pid").read_text()) == child  # not run again in the client
    # the next job finds the dead server's socket, starts a new one
    rc, _, err, _ = warm.run("wjobs:ok", {"out": str(tmp_path / "a")})
    assert rc == 0, err
    assert NOTE not in err and warm.servers() == [_fields(tmp_path / "a")[1]] != [server]


def test_concurrent_clients_share_one_new_server(warm, tmp_path):
    procs = [warm.start("wjobs:ok", {"out": str(tmp_path / f"o{i}")}) for i in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert NOTE not in err
    servers = {_fields(tmp_path / f"o{i}")[1] for i in range(4)}
    assert len(servers) == 1 and list(servers) == warm.servers()


def test_an_idle_server_exits_and_the_next_job_starts_another(warm, tmp_path):
    env = {"METASIG_WARM_IDLE": "0.2"}
    rc, _, err, _ = warm.run("wjobs:ok", {"out": str(tmp_path / "a")}, env=env)
    assert rc == 0, err
    first = _fields(tmp_path / "a")[1]
    assert _gone(first)
    assert not list(warm.dir.glob("*.sock")) and warm.servers() == []
    rc, _, err, _ = warm.run("wjobs:ok", {"out": str(tmp_path / "b")}, env=env)
    assert rc == 0, err
    assert NOTE not in err and _fields(tmp_path / "b")[1] != first


def _study(folder):
    rng = np.random.default_rng(0)
    genes = [f"G{j:03d}" for j in range(30)]
    matrix = pd.DataFrame(rng.normal(size=(40, 30)), columns=genes)
    matrix.index = pd.Index([f"s{i:02d}" for i in range(40)], name="sample")
    matrix.iloc[:20, :3] += 1.0
    io.write_matrix(matrix, folder / "m.parquet", "log2", "symbol", extra={"source": "test"})
    io.write_sheet(pd.DataFrame({"sample": matrix.index, "status": ["yes"] * 20 + ["no"] * 20}), folder / "s.tsv")
    write_groups({"g": {"genes": genes[:6], "missing": []}}, folder / "g.json")


@pytest.mark.parametrize("kind", ["elasticnet", "xgboost"])
def test_a_training_job_gives_identical_outputs_in_process_and_warm(warm, tmp_path, kind):
    _study(tmp_path)
    grid = {"elasticnet": {"C": [0.1, 1.0], "l1_ratio": [0.5]}, "xgboost": {"n_estimators": [10], "max_depth": [2]}}
    warm.env.pop("METASIG_WARM_PRELOAD")  # the real preload
    outputs = {}
    for mode in ("0", "1"):
        kwargs = dict(
            matrix_in=str(tmp_path / "m.parquet"),
            samples_in=str(tmp_path / "s.tsv"),
            groups_in=str(tmp_path / "g.json"),
            outdir=str(tmp_path / f"out{mode}"),
            identity={"dataset": "d", "task": "t", "group": "g", "model": kind},
            task_cfg={"type": "binary", "label": "status", "positive": "yes"},
            model_cfg={"kind": kind, "search": grid[kind]},
            cv={"outer_folds": 2, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 20, "permuted_repeats": 1},
            preprocessing={"scale": True},
            normalization="none",
            covariates=[],
            seed=3,
            threads=1,
        )
        rc, _, err, _ = warm.run("metasig.learn.steps:train", kwargs, env={"METASIG_WARM": mode})
        assert rc == 0, err
        assert NOTE not in err
        names = ("metrics.json", "predictions.tsv")
        outputs[mode] = {name: (tmp_path / f"out{mode}" / name).read_bytes() for name in names}
    assert len(warm.servers()) == 1  # the second run went through the server
    assert outputs["0"] == outputs["1"]


def test_the_jit_warm_up_runs_the_training_path_cleanly(capsys):
    """What the server runs before forking when skglm is loaded: tiny single-threaded elastic-net
    jobs (binary and multiclass) through metasig.learn.job; a failure would only be logged."""
    from metasig.learn import warm_server

    warm_server.warm_jit()
    err = capsys.readouterr().err
    assert "JIT warm-up" in err and "failed" not in err
