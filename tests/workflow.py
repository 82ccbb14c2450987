"""Run the real workflow in a scratch copy of the checkout, so tests never touch the repo's results."""

import subprocess
import sys

from metasig.bench import REPO
from metasig.bench import scratch_copy as workflow_copy

__all__ = ["REPO", "planned_jobs", "snakemake", "workflow_copy"]


def snakemake(workdir, *args, check=True, timeout=1800):
    """Run snakemake from this interpreter's environment; return the CompletedProcess."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
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
