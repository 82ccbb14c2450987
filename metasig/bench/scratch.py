"""A scratch copy of the workflow, so benchmarks and tests never touch the checkout's results."""

import contextlib
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PARTS = ["Snakefile", "rules", "scripts", "config", "resources", "envs", "profiles", "metasig"]


def scratch_copy(dest):
    """Copy the workflow (not its results or venv) into `dest` and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / part)
    return dest


@contextlib.contextmanager
def scratch_workdir(keep=None, prefix="metasig-bench-"):
    """A scratch copy of the workflow to run in: the folder `keep`, kept afterwards, or a temporary
    folder removed at the end, whatever happens."""
    workdir = scratch_copy(Path(keep) if keep else Path(tempfile.mkdtemp(prefix=prefix)))
    try:
        yield workdir
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
