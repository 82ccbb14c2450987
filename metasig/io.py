"""The data contracts between workflow steps (see DESIGN.md): expression matrix and sample sheet.

Every write is atomic (temp file + rename) so a failed step never leaves a half-written output.
"""

import errno
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

UNITS = ("counts", "tpm", "fpkm", "log2", "microarray", "features")
NAMESPACES = ("symbol", "ensembl", "entrez", "probe", "feature")
_META_KEY = b"metasig"
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path):
    """Yield a temp path beside `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; outputs are shared as usual
        os.replace(tmp, path)
    except OSError as exc:
        # pyarrow reports a full disk as an OSError without errno, in its message only
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) and "No space left" not in str(exc):
            raise
        # a bare "No space left on device" does not say which disk: name the file being written
        raise OSError(
            exc.errno or errno.ENOSPC,
            f"no space left on the device (or over quota) while writing {path}: "
            "free some space there, or point the workflow at a larger disk",
            str(path),
        ) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def sha256_file(path, chunk=1 << 20):
    """Hex sha256 of a file, read in chunks (downloads and artifacts can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_empty_dirs(folder, root):
    """Remove `folder` and its parents up to (not including) `root` while they are empty, so a
    failed download leaves no empty cache folders behind."""
    root, folder = Path(root).resolve(), Path(folder).resolve()
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def write_json(obj, path):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path):
    return json.loads(Path(path).read_text())


def write_matrix(matrix: pd.DataFrame, path, unit: str, namespace: str, extra: dict | None = None):
    """Samples x genes float matrix as Parquet; unit, ID namespace and `extra` provenance travel
    in the file metadata."""
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; expected one of {UNITS}")
    if namespace not in NAMESPACES:
        raise ValueError(f"unknown namespace {namespace!r}; expected one of {NAMESPACES}")
    frame = matrix.astype("float64")
    frame.index = frame.index.astype(str)
    frame.index.name = "sample"
    frame.columns = frame.columns.astype(str)
    table = pa.Table.from_pandas(frame, preserve_index=True)
    meta = dict(table.schema.metadata or {})
    meta[_META_KEY] = json.dumps({**(extra or {}), "unit": unit, "namespace": namespace}).encode()
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)


def read_matrix(path):
    """Return (matrix, meta) where meta holds at least 'unit' and 'namespace'."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(_META_KEY, b"{}"))
    return table.to_pandas(), meta


def write_sheet(sheet: pd.DataFrame, path):
    """Sample sheet as TSV, one row per sample, `sample` first."""
    with atomic_path(path) as tmp:
        sheet.to_csv(tmp, sep="\t", index=False)


def read_sheet(path) -> pd.DataFrame:
    # Only an empty cell is missing (write_sheet writes NaN as ""): 'NA', 'None', 'null' are text,
    # so a sample called NA or a class called None is never turned into a missing value.
    return pd.read_csv(path, sep="\t", dtype={"sample": str}, keep_default_na=False, na_values=[""])
