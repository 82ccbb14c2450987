"""Running benchmark jobs in child processes: time limit, peak memory of the job's process tree,
today's engine extracted from its commit, and whether a GPU can be used."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

import psutil

from metasig.bench.scratch import REPO

CHILD = Path(__file__).with_name("engine_child.py")
BASELINE = "eeec69e"  # today's engine (issue 12)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


PSS_EVERY = 1.0  # seconds between PSS readings, unless the tree's RSS reaches a new high


class TreeMemory:
    """Peak RSS and PSS of a process and its descendants (e.g. joblib workers), sampled. RSS
    counts a page shared by several processes (libraries, a memory-mapped matrix) in each of them;
    PSS splits it among them, so the tree's PSS is the memory the job really holds. RSS is cheap
    (statm) and read at every sample. PSS walks every page of every process (smaps_rollup: 30 ms
    of CPU per reading at 1.8 GB; read every 0.2 s it took 13% of a core from the job measured), so
    it is read when the tree's RSS reaches a new high or PSS_EVERY seconds have passed, and never
    while the RSS is at most the peak PSS (a tree's PSS is at most its RSS)."""

    def __init__(self, pid):
        self.root = psutil.Process(pid)
        self.peak_rss = self.peak_pss = 0
        self.pss_read_at = -float("inf")

    def sample(self, now):
        procs = self._tree()
        rss = sum(self._read(p, "memory_info", "rss") for p in procs)
        new_high, self.peak_rss = rss > self.peak_rss, max(self.peak_rss, rss)
        if rss > self.peak_pss and (new_high or now - self.pss_read_at >= PSS_EVERY):
            self.pss_read_at = now
            self.peak_pss = max(self.peak_pss, sum(self._read(p, "memory_full_info", "pss") for p in procs))

    def _tree(self):
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    @staticmethod
    def _read(proc, method, field):
        try:
            return getattr(getattr(proc, method)(), field)
        except psutil.Error:  # the process ended between listing and reading
            return 0


def run_child(spec, rundir, pythonpath, threads, timeout):
    """Run engine_child.py on `spec` in its own session; return the child's result dict plus
    wall_s (launch to exit, interpreter start and imports included), peak_rss_mb (the larger of
    the process tree's resident memory sampled every 0.2 s and the child's own ru_maxrss from
    wait4), peak_pss_mb (the tree's proportional set size, TreeMemory) and status: "ok", "timeout"
    (killed after `timeout` s) or "failed (rc N)"."""
    rundir = Path(rundir)
    rundir.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "result": str(rundir / "result.json")}
    (rundir / "spec.json").write_text(json.dumps(spec, indent=1))
    Path(spec["result"]).unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(pythonpath), **{v: str(threads) for v in THREAD_VARS}}
    started = time.perf_counter()
    with open(rundir / "child.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-P", str(CHILD), str(rundir / "spec.json")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        memory, status = TreeMemory(proc.pid), None
        while True:
            pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(wait_status)
                break
            memory.sample(time.perf_counter())
            if status is None and time.perf_counter() - started > timeout:
                status = "timeout"
                os.killpg(proc.pid, signal.SIGKILL)  # the child's own session: it and its workers
            time.sleep(0.2)
    wall = time.perf_counter() - started
    out = {}
    if status is None and proc.returncode == 0 and Path(spec["result"]).is_file():
        out = json.loads(Path(spec["result"]).read_text())
        status = "ok"
    elif status is None:
        status = f"failed (rc {proc.returncode}; see {rundir / 'child.log'})"
    rss_mb = max(memory.peak_rss / 2**20, usage.ru_maxrss / 1024)
    pss_mb = memory.peak_pss / 2**20 or rss_mb
    return {**out, "status": status, "wall_s": wall, "peak_rss_mb": rss_mb, "peak_pss_mb": pss_mb}


def extract_baseline(dest, commit=BASELINE):
    """Today's engine: `git archive <commit>` of the checkout, unpacked into dest (once).
    Returns (path or None, reason when it could not be extracted)."""
    dest = Path(dest)
    if (dest / "metasig").is_dir():
        return dest, None
    if shutil.which("git") is None:
        return None, "git not found"
    proc = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True)
    if proc.returncode != 0:
        return None, f"git archive {commit} failed: {proc.stderr.decode(errors='replace').strip()[:200]}"
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=BytesIO(proc.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest, None


def gpu_status():
    """(True, description) when a GPU is visible and XGBoost was built with CUDA; else
    (False, the reason)."""
    if shutil.which("nvidia-smi") is None:
        return False, "nvidia-smi not found"
    proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    if proc.returncode != 0 or "GPU" not in proc.stdout:
        return False, f"nvidia-smi -L lists no GPU (rc {proc.returncode}): {(proc.stderr or proc.stdout).strip()[:200]}"
    import xgboost

    if not xgboost.build_info().get("USE_CUDA"):
        return False, f"XGBoost {xgboost.__version__} was built without CUDA"
    return True, proc.stdout.strip().splitlines()[0]
