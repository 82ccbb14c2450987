"""Aligned BAM files checked before counting: readable, @SQ lines, coordinate-sorted, indexed (an index
is built when possible). Each failure is an InputError naming the file and the header tag.
"""

import os
from pathlib import Path

import pysam

from metasig import io
from metasig.errors import InputError


def _open_bam(path, where):
    try:
        return pysam.AlignmentFile(str(path), "r", check_sq=False)
    except OSError as exc:
        if "EOF marker" in str(exc):
            raise InputError(where, "(file)", "truncated: no BGZF end-of-file marker; copy or write it again") from exc
        raise InputError(where, "(file)", f"cannot read: {exc}") from exc
    except ValueError as exc:
        raise InputError(where, "(file)", f"not a BAM file: {exc}") from exc


def _index_of(path):
    for candidate in (f"{path}.bai", path.with_suffix(".bai"), f"{path}.csi"):
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def check_bam(path) -> dict:
    """Check an aligned BAM before counting: readable, @SQ lines, SO:coordinate in @HD and an index
    (.bai/.csi beside it; built with samtools index when missing and the folder is writable).
    Returns n_references, mapped and unmapped (from the index), index and index_created."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputError(where, "(file)", "BAM file not found")
    with _open_bam(path, where) as bam:
        if not bam.is_bam:
            raise InputError(where, "(file)", f"not a BAM file ({bam.format}); convert it with samtools view -b")
        header = bam.header.to_dict()
    references = header.get("SQ") or []
    if not references:
        raise InputError(
            where, "@SQ", "the header has no @SQ lines (reference sequences); was it written without its header?"
        )
    order = (header.get("HD") or {}).get("SO")
    if order != "coordinate":
        raise InputError(
            where, "@HD SO", f"not coordinate-sorted: sort with samtools sort (the header says SO:{order or '(none)'})"
        )
    index, created = _index_of(path), False
    if index is None:
        index, created = _build_index(path, where, references), True
    with _open_bam(path, where) as bam:
        if not bam.has_index():
            raise InputError(where, "(index)", f"htslib does not find the index {index}")
        return {
            "n_references": bam.nreferences,
            "mapped": bam.mapped,
            "unmapped": bam.unmapped,
            "index": str(index),
            "index_created": created,
        }


def _build_index(path, where, references):
    folder = path.parent
    if not os.access(folder, os.W_OK):
        raise InputError(
            where,
            "(index)",
            f"no index (.bai/.csi) beside the BAM and its folder {folder} is not "
            f"writable; run samtools index on it where you can write",
        )
    csi = max(int(r.get("LN", 0)) for r in references) >= 1 << 29  # BAI cannot address longer references
    target = Path(f"{path}.csi" if csi else f"{path}.bai")
    try:
        with io.atomic_path(target) as tmp:
            pysam.index(*(["-c"] if csi else []), "-o", str(tmp), str(path))
    except pysam.SamtoolsError as exc:
        raise InputError(
            where,
            "(index)",
            "samtools index failed: the records are probably not in coordinate "
            "order although the header says SO:coordinate; sort with samtools sort",
        ) from exc
    except OSError as exc:
        raise InputError(where, "(index)", f"cannot write the index {target}: {exc}") from exc
    return target
