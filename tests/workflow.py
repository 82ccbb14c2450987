"""Run the real workflow in a scratch copy of the checkout, so tests never touch the repo's results."""

import atexit
import functools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from metasig.bench.scratch import REPO
from metasig.bench.scratch import scratch_copy as workflow_copy

__all__ = ["REPO", "clean_checkout", "planned_jobs", "snakemake", "workflow_copy"]


@functools.cache
def clean_checkout():
    """One copy of the workflow per test session with no results/, logs/ or .snakemake/: dry runs
    and lint see what a new clone sees, whatever the user's own checkout holds or is running."""
    workdir = Path(tempfile.mkdtemp(prefix="metasig-clean-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    return workflow_copy(workdir)


def snakemake(workdir, *args, check=True, timeout=1800):
    """Run snakemake from this interpreter's environment; return the CompletedProcess."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def planned_jobs(workdir, *args):
    """Job counts per rule of a dry run: {rule: count}."""
    out = snakemake(workdir, "-n", "--quiet", "rules", *args).stdout
    counts = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].isdigit() and fields[0] not in ("total", "job"):
            counts[fields[0]] = int(fields[1])
    return counts
