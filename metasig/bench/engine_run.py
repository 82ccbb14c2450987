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


def _tree_memory(proc):
    """(RSS, PSS) of a process and its descendants (e.g. joblib workers), in bytes. RSS counts a
    page shared by several processes (libraries, a memory-mapped matrix) in each of them; PSS
    splits it among them, so the tree's PSS is the memory the job really holds."""
    rss = pss = 0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                info = p.memory_full_info()
                rss, pss = rss + info.rss, pss + info.pss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return rss, pss


def run_child(spec, rundir, pythonpath, threads, timeout):
    """Run engine_child.py on `spec` in its own session; return the child's result dict plus
    wall_s (launch to exit, interpreter start and imports included), peak_rss_mb (the larger of
    the process tree's resident memory sampled every 0.2 s and the child's own ru_maxrss from
    wait4), peak_pss_mb (the tree's proportional set size, sampled) and status: "ok", "timeout"
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
        watched, peak, peak_pss, status = psutil.Process(proc.pid), 0, 0, None
        while True:
            pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(wait_status)
                break
            rss, pss = _tree_memory(watched)
            peak, peak_pss = max(peak, rss), max(peak_pss, pss)
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
    rss_mb = max(peak / 2**20, usage.ru_maxrss / 1024)
    return {**out, "status": status, "wall_s": wall, "peak_rss_mb": rss_mb, "peak_pss_mb": peak_pss / 2**20 or rss_mb}


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
