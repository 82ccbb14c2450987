"""The data contracts between workflow steps (see DESIGN.md): expression matrix and sample sheet.

Every write is atomic (temp file + rename) so a failed step never leaves a half-written output.
"""

import collections
import ctypes
import errno
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
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


# Columns per read: a 20,000-gene table read whole holds two to three times its size in Arrow's
# memory pool (730 MB for a 200 MB matrix); read in chunks into one array, it holds its own size.
READ_CHUNK = 2000


def read_matrix(path, columns=None, spill_dir=None):
    """Return (matrix, meta) where meta holds at least 'unit' and 'namespace'.

    `columns`: read only these gene columns, in this order (the sample index always comes along);
    a training job on a 15-gene group then reads 15 columns of a 20,000-gene file, not all of them.
    `spill_dir`: build the values in a memory-mapped file there (it must outlive the matrix). Worker
    processes given the matrix then map the same pages, where joblib would write the values to a
    file of its own and the job would hold them twice (0.2 GB at 1,218 x 20,530)."""
    parquet = pq.ParquetFile(path)  # its footer is parsed once (20,000 columns take a while)
    schema = parquet.schema_arrow
    meta = json.loads((schema.metadata or {}).get(_META_KEY, b"{}"))
    genes = matrix_columns(path, schema) if columns is None else _checked_columns(path, schema, columns)
    index = _index_columns(schema)
    if not index or any(schema.field(g).type != pa.float64() for g in genes):  # not written by write_matrix
        return parquet.read(columns=[*genes, *index]).to_pandas(), meta
    frame = parquet.read(columns=index).to_pandas()  # the sample index, rebuilt from the pandas metadata
    # column-major, the layout pandas keeps a float frame in: fold copies keep it, and results stay
    # bit for bit what they were when the matrix came from Arrow's to_pandas
    shape = (len(frame), len(genes))
    values = np.empty(shape, order="F") if spill_dir is None or not all(shape) else _mapped(spill_dir, shape)
    for start in range(0, len(genes), READ_CHUNK):
        part = parquet.read(columns=genes[start : start + READ_CHUNK])
        for j, column in enumerate(part.columns):
            values[:, start + j] = column.to_numpy()  # nulls (NaN written by pandas) come back as NaN
    parquet = part = None  # the parsed footer (70 MB at 20,000 columns) and the last chunk
    pa.default_memory_pool().release_unused()
    _return_freed_heap()
    if isinstance(values.base, np.memmap):  # read-only from here: no process may change what all share
        values.base.flush()
        values = _mapped(spill_dir, shape, values.base.filename)
    return pd.DataFrame(values, index=frame.index, columns=pd.Index(genes, name=frame.columns.name), copy=False), meta


def _return_freed_heap():
    """Give the C heap's freed pages back to the system (glibc's malloc_trim). A 20,000-column
    file's parsed footer and chunks left about 80 MB freed but held by the job's process all
    through its workers' fits; elsewhere (not glibc) nothing is done."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _mapped(folder, shape, name=None):
    """An (n, p) column-major view of a (p, n) row-major memory-mapped file in `folder` (new and
    writable), or of the existing file `name` (read-only). The file is row-major because joblib
    rebuilds a mapped array in worker processes in the file's order, and pandas hands it the
    (p, n) transpose it keeps: a column-major file came back scrambled there."""
    mode = "w+" if name is None else "r"
    if name is None:
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".matrix", delete=False) as handle:
            name = handle.name
    return np.memmap(name, dtype=float, mode=mode, shape=shape[::-1]).T


def matrix_columns(path, schema=None):
    """The gene columns of a matrix file, in file order, from its footer only (no data read)."""
    schema = schema or pq.read_schema(path)
    index = set(_index_columns(schema))
    return [name for name in schema.names if name not in index]


def _index_columns(schema):
    pandas_meta = json.loads((schema.metadata or {}).get(b"pandas", b"{}"))
    return [c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)]  # a RangeIndex is a dict


def _checked_columns(path, schema, columns):
    columns = [str(c) for c in columns]
    known = set(matrix_columns(path, schema))
    unknown = [c for c in columns if c not in known]
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise KeyError(f"{path}: the matrix has no column {shown}")
    twice = sorted(c for c, n in collections.Counter(columns).items() if n > 1)  # list.count: 5 s at 20,000
    if twice:
        raise ValueError(f"{path}: columns asked for more than once: {', '.join(twice)}")
    return columns


def write_sheet(sheet: pd.DataFrame, path):
    """Sample sheet as TSV, one row per sample, `sample` first."""
    with atomic_path(path) as tmp:
        sheet.to_csv(tmp, sep="\t", index=False)


def read_sheet(path) -> pd.DataFrame:
    # Only an empty cell is missing (write_sheet writes NaN as ""): 'NA', 'None', 'null' are text,
    # so a sample called NA or a class called None is never turned into a missing value.
    return pd.read_csv(path, sep="\t", dtype={"sample": str}, keep_default_na=False, na_values=[""])
