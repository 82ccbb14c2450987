"""From quantifier outputs to metasig's data contracts, and the per-dataset mapping QC table.

salmon quant.sf files are aggregated to genes with pytximport (length-scaled counts + TPM), featureCounts
tables are read as they are, and every sample gets a mapping-QC row (reads in, reads kept by fastp,
mapping rate, library size) so that a badly mapped sample is flagged, and by config excluded, with a
sentence saying why.
"""

import gzip
import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from metasig.errors import InputError

log = logging.getLogger("metasig.reads")

QUANT_COLUMNS = ("Name", "Length", "EffectiveLength", "TPM", "NumReads")
FC_FIXED = ("Geneid", "Chr", "Start", "End", "Strand", "Length")
QC_COLUMNS = (
    "sample",
    "reads_in",
    "reads_after_fastp",
    "read_unit",
    "mapping_rate",
    "num_mapped",
    "library_size",
    "flagged",
    "excluded",
    "reason",
)
MIN_SAMPLES = 4
_VERSION = re.compile(r"\.\d+$")
_ATTR = re.compile(r'(\w+)\s+(?:"([^"]*)"|([^\s;"]+))')


# ----------------------------------------------------------------------------------------------
# transcript -> gene map


def tx2gene_table(tx2gene_tsv=None, gtf=None, strip_version=False) -> pd.DataFrame:
    """The transcript -> gene map as a DataFrame [transcript, gene], one row per transcript.

    From a TSV with a header naming `transcript` and `gene`, or from a GTF (`transcript_id` and
    `gene_id` of its transcript rows; exon rows if the GTF has no transcript rows). IDs are taken as
    written; `strip_version=True` drops a trailing `.N` version from both columns.
    """
    if (tx2gene_tsv is None) == (gtf is None):
        raise ValueError("give exactly one of tx2gene_tsv or gtf")
    if tx2gene_tsv is not None:
        where, table = str(tx2gene_tsv), _read_tx2gene_tsv(tx2gene_tsv)
    else:
        where, table = str(gtf), _read_gtf_map(gtf)
    if strip_version:
        table = table.assign(
            transcript=table["transcript"].str.replace(_VERSION, "", regex=True),
            gene=table["gene"].str.replace(_VERSION, "", regex=True),
        )
    table = table.drop_duplicates().reset_index(drop=True)
    clash = table["transcript"].duplicated(keep=False)
    if clash.any():
        tx = table.loc[clash, "transcript"].iloc[0]
        genes = sorted(table.loc[table["transcript"] == tx, "gene"])
        raise InputError(
            where,
            "transcript",
            f"{clash.sum()} rows map a transcript to more than one gene (e.g. {tx} -> {', '.join(genes)})",
        )
    return table


def _read_tx2gene_tsv(path):
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(path, "(file)", "file not found") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(path, "(file)", f"not a readable TSV: {exc}") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("transcript", "gene") if c not in table.columns]
    if missing:
        raise InputError(
            path,
            missing[0],
            f"missing column(s) {missing}; the header must name 'transcript' and 'gene' (found {list(table.columns)})",
        )
    table = table[["transcript", "gene"]].apply(lambda col: col.str.strip())
    empty = (table == "").any(axis=1)
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        col = "transcript" if table.iloc[row]["transcript"] == "" else "gene"
        raise InputError(path, col, f"empty value in data row {row + 1}")
    if table.empty:
        raise InputError(path, "(rows)", "the map has no data rows")
    return table


def _read_gtf_map(path):
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "(file)", "file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    by_feature = {"transcript": [], "other": []}
    try:
        with opener(path, "rt") as handle:
            for lineno, line in enumerate(handle, 1):
                if not line.strip() or line.startswith("#"):
                    continue
                fields = line.rstrip("\n").split("\t")
                if len(fields) != 9:
                    raise InputError(
                        path, f"line {lineno}", f"expected 9 tab-separated GTF columns, found {len(fields)}"
                    )
                if "transcript_id" not in fields[8]:
                    continue
                attrs = {
                    m.group(1): m.group(2) if m.group(2) is not None else m.group(3) for m in _ATTR.finditer(fields[8])
                }
                tx, gene = attrs.get("transcript_id", ""), attrs.get("gene_id", "")
                if not tx:  # e.g. transcript_id "" on gene rows of some GTFs
                    continue
                if not gene:
                    raise InputError(path, f"line {lineno}", f"transcript {tx} has no gene_id attribute")
                by_feature["transcript" if fields[2] == "transcript" else "other"].append((tx, gene))
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise InputError(path, "(file)", f"not a readable GTF: {exc}") from None
    pairs = by_feature["transcript"] or by_feature["other"]
    if not pairs:
        raise InputError(path, "transcript_id", "no rows carry transcript_id and gene_id attributes")
    return pd.DataFrame(pairs, columns=["transcript", "gene"])


# ----------------------------------------------------------------------------------------------
# salmon -> gene matrices


def _quant_file(directory):
    path = Path(directory)
    return path if path.name.startswith("quant.sf") else path / "quant.sf"


def _read_quant(path):
    if not path.is_file():
        raise InputError(path, "(file)", "salmon quant.sf not found")
    try:
        table = pd.read_csv(path, sep="\t", dtype={"Name": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(path, "(file)", f"not a readable salmon quant.sf: {exc}") from None
    missing = [c for c in QUANT_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(path, missing[0], f"missing column(s) {missing} (found {list(table.columns)})")
    return table


def _missing_hint(missing, known):
    """Say why IDs might not match when a version suffix is the only difference."""
    known_stripped = {_VERSION.sub("", k) for k in known}
    if any(_VERSION.sub("", m) in known_stripped for m in missing[:100]):
        return "; they match once version suffixes (.N) are ignored: build the map and the index from the same release"
    return "; the map probably belongs to another transcriptome"


def salmon_to_matrix(quant_dirs: dict, tx2gene: pd.DataFrame):
    """Gene-level (counts, tpm), both samples x genes, from salmon outputs (sample -> quant dir or quant.sf).

    Counts are tximport's length-scaled TPM ("length_scaled_tpm"): each sample keeps its library total
    (sum of NumReads) while the average-transcript-length bias between samples is removed. TPM is the
    sum of transcript TPMs per gene. Genes sorted by ID, samples in the dict's order.
    """
    # heavy import (xarray, anndata): only when quantifying
    from pytximport import tximport

    if not quant_dirs:
        raise ValueError("no salmon outputs given")
    files = {sample: _quant_file(d) for sample, d in quant_dirs.items()}
    mapped = set(tx2gene["transcript"])
    first_names = None
    first_file = None
    for sample, path in files.items():
        names = _read_quant(path)["Name"]
        if first_names is None:
            first_names, first_file = names, path
            absent = names[~names.isin(mapped)].tolist()
            if absent:
                raise InputError(
                    path,
                    "Name",
                    f"{len(absent)} of {len(names)} transcripts are not in the "
                    f"transcript->gene map (e.g. {', '.join(absent[:5])})" + _missing_hint(absent, mapped),
                )
        elif not names.equals(first_names):
            # pytximport assigns values by position: every file must list the same transcripts in order
            raise InputError(
                path,
                "Name",
                f"transcripts differ from those of {first_file} (sample "
                f"'{sample}' was quantified against a different index)",
            )
    tx_map = tx2gene.rename(columns={"transcript": "transcript_id", "gene": "gene_id"})[["transcript_id", "gene_id"]]
    result = tximport(
        [str(p) for p in files.values()],
        data_type="salmon",
        transcript_gene_map=tx_map.copy(),  # pytximport edits the map in place
        counts_from_abundance="length_scaled_tpm",
        ignore_transcript_version=False,  # IDs are matched exactly; stripping is the map's job
        ignore_after_bar=False,
        output_type="xarray",
    )
    samples = list(files)

    def frame(var):
        values = result[var].transpose("gene_id", "file")
        out = pd.DataFrame(values.values.T, index=samples, columns=[str(g) for g in values["gene_id"].values])
        # a sample with no reads has 0/0 scaling: its genes are 0, and mapping QC flags it
        return out.fillna(0.0).sort_index(axis=1).rename_axis("sample").rename_axis(None, axis=1)

    return frame("counts"), frame("abundance")


# ----------------------------------------------------------------------------------------------
# featureCounts


def _read_featurecounts_table(path, first_column):
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "(file)", "featureCounts output not found")
    with open(path) as handle:
        skip = 0
        for line in handle:
            if not line.startswith("#"):
                break
            skip += 1
    try:
        table = pd.read_csv(path, sep="\t", skiprows=skip, dtype={first_column: str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(path, "(file)", f"not a readable featureCounts table: {exc}") from None
    if first_column not in table.columns:
        raise InputError(path, first_column, f"missing column '{first_column}' (found {list(table.columns)})")
    return table


def _match_bams(columns, bam_to_sample, path):
    """featureCounts names count columns by the BAM path as given on its command line; match them to
    samples by exact path, normalised path, absolute path, then a unique file name."""
    lookup = {}
    for bam, sample in bam_to_sample.items():
        for key in {str(bam), os.path.normpath(str(bam)), os.path.abspath(str(bam))}:
            lookup[key] = sample
    basenames = {}
    for bam, sample in bam_to_sample.items():
        basenames.setdefault(os.path.basename(str(bam)), []).append(sample)
    matched, unknown = {}, []
    for col in columns:
        sample = lookup.get(col) or lookup.get(os.path.normpath(col)) or lookup.get(os.path.abspath(col))
        if sample is None and len(basenames.get(os.path.basename(col), [])) == 1:
            sample = basenames[os.path.basename(col)][0]
        if sample is None:
            unknown.append(col)
        else:
            matched[col] = sample
    if unknown:
        raise InputError(
            path, unknown[0], f"column(s) {unknown} match none of the BAM files given ({list(map(str, bam_to_sample))})"
        )
    absent = [s for s in bam_to_sample.values() if s not in matched.values()]
    if absent:
        raise InputError(path, "(columns)", f"no counts column for sample(s) {absent}")
    if len(set(matched.values())) != len(matched):
        raise InputError(path, "(columns)", "two columns map to the same sample")
    return matched


def featurecounts_to_matrix(counts_txt, bam_to_sample: dict) -> pd.DataFrame:
    """Samples x genes counts (float64) from a featureCounts table; samples in `bam_to_sample` order,
    genes sorted by ID."""
    table = _read_featurecounts_table(counts_txt, "Geneid")
    fixed = [c for c in FC_FIXED if c not in table.columns]
    if fixed:
        raise InputError(counts_txt, fixed[0], f"missing featureCounts column(s) {fixed}")
    count_cols = [c for c in table.columns if c not in FC_FIXED]
    matched = _match_bams(count_cols, bam_to_sample, counts_txt)
    if table["Geneid"].duplicated().any():
        raise InputError(
            counts_txt, "Geneid", f"duplicated gene ID {table['Geneid'][table['Geneid'].duplicated()].iloc[0]}"
        )
    counts = table.set_index("Geneid")[count_cols]
    bad = counts.apply(pd.to_numeric, errors="coerce").isna().any()
    if bad.any():
        raise InputError(counts_txt, bad.index[bad][0], "non-numeric counts")
    matrix = counts.astype("float64").rename(columns=matched).T
    order = list(dict.fromkeys(bam_to_sample.values()))
    return matrix.loc[order].sort_index(axis=1).rename_axis("sample").rename_axis(None, axis=1)


# ----------------------------------------------------------------------------------------------
# mapping QC


def _fastp_counts(paths, sample):
    """(reads_in, reads_after, unit) summed over a sample's units; paired units count read pairs
    (fastp's total_reads / 2, the unit salmon counts fragments in), single-end units count reads."""
    before = after = 0
    units = set()
    for path in paths:
        try:
            report = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise InputError(path, "(file)", f"fastp JSON of sample '{sample}' not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(path, "(file)", f"not a fastp JSON report: {exc}") from None
        summary = report.get("summary", {})
        try:
            n_before = int(summary["before_filtering"]["total_reads"])
            n_after = int(summary["after_filtering"]["total_reads"])
        except (KeyError, TypeError, ValueError):
            raise InputError(path, "summary.before_filtering.total_reads", "missing: not a fastp JSON report") from None
        paired = "read2_before_filtering" in report or "read2_mean_length" in summary["before_filtering"]
        divisor = 2 if paired else 1
        units.add("pairs" if paired else "reads")
        before += n_before // divisor
        after += n_after // divisor
    unit = units.pop() if len(units) == 1 else ("fragments" if units else "")
    return before, after, unit


def _salmon_meta(directory):
    path = Path(directory) / "aux_info" / "meta_info.json"
    if not path.is_file():
        raise InputError(path, "(file)", "salmon meta_info.json not found")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, "(file)", f"not a salmon meta_info.json: {exc}") from None
    if "percent_mapped" not in meta:
        raise InputError(path, "percent_mapped", "missing: not a salmon quant meta_info.json")
    return meta


def _fmt_pair(value, floor):
    """Format two rates with enough decimals that they do not print as equal."""
    for digits in range(2, 7):
        a, b = f"{value:.{digits}f}", f"{floor:.{digits}f}"
        if a != b:
            return a, b
    return f"{value!r}", f"{floor!r}"


def _flag(rate, floor, exclude, what="mapping rate"):
    if rate is None or not np.isfinite(rate):
        return True, bool(exclude), f"{what} unknown (no reads processed)"
    if rate < floor:
        shown, shown_floor = _fmt_pair(rate, floor)
        return True, bool(exclude), f"{what} {shown} < floor {shown_floor}"
    return False, False, ""


def mapping_qc(
    samples: list, salmon_dirs: dict, fastp_jsons: dict, min_mapping_rate: float, exclude: bool
) -> pd.DataFrame:
    """One row per sample (in `samples` order), columns QC_COLUMNS.

    reads_in / reads_after_fastp: fastp totals before / after filtering, summed over the sample's units,
    counted as read pairs for paired-end units and reads for single-end ones (`read_unit` says which:
    "pairs", "reads" or "fragments" when a sample mixes both). mapping_rate: salmon's percent_mapped / 100;
    num_mapped: salmon's num_mapped; library_size: sum of quant.sf NumReads. A sample is flagged when its
    mapping rate is under `min_mapping_rate`, and excluded when flagged and `exclude` is true.
    """
    rows = []
    for sample in samples:
        if sample not in salmon_dirs:
            raise ValueError(f"mapping QC: no salmon output for sample '{sample}'")
        if not fastp_jsons.get(sample):
            raise ValueError(f"mapping QC: no fastp report for sample '{sample}'")
        reads_in, reads_after, unit = _fastp_counts(fastp_jsons[sample], sample)
        meta = _salmon_meta(salmon_dirs[sample])
        rate = float(meta["percent_mapped"]) / 100.0
        library = float(_read_quant(_quant_file(salmon_dirs[sample]))["NumReads"].sum())
        flagged, excluded, reason = _flag(rate, min_mapping_rate, exclude)
        rows.append(
            {
                "sample": sample,
                "reads_in": reads_in,
                "reads_after_fastp": reads_after,
                "read_unit": unit,
                "mapping_rate": rate,
                "num_mapped": int(meta.get("num_mapped", 0)),
                "library_size": library,
                "flagged": flagged,
                "excluded": excluded,
                "reason": reason,
            }
        )
    return pd.DataFrame(rows, columns=list(QC_COLUMNS))


def featurecounts_qc(summary_txt, bam_to_sample: dict, min_mapping_rate: float, exclude: bool) -> pd.DataFrame:
    """Mapping QC for BAM datasets from featureCounts' `.summary`: the rate is Assigned / total, where
    total is every alignment or fragment featureCounts saw in the BAM (unmapped reads count only if the
    BAM keeps them). reads_in = that total; reads_after_fastp is empty (no trimming); num_mapped and
    library_size = Assigned. Rows in `bam_to_sample` order, same columns as `mapping_qc`."""
    table = _read_featurecounts_table(summary_txt, "Status")
    cols = [c for c in table.columns if c != "Status"]
    matched = _match_bams(cols, bam_to_sample, summary_txt)
    status = table.set_index("Status")
    if "Assigned" not in status.index:
        raise InputError(summary_txt, "Status", "no 'Assigned' row: not a featureCounts summary")
    rows = {}
    for col, sample in matched.items():
        values = pd.to_numeric(status[col], errors="coerce")
        if values.isna().any():
            raise InputError(summary_txt, col, "non-numeric counts")
        total, assigned = int(values.sum()), int(values["Assigned"])
        rate = assigned / total if total else float("nan")
        flagged, excluded, reason = _flag(rate, min_mapping_rate, exclude, what="assigned rate (featureCounts)")
        rows[sample] = {
            "sample": sample,
            "reads_in": total,
            "reads_after_fastp": np.nan,
            "read_unit": "alignments",
            "mapping_rate": rate,
            "num_mapped": assigned,
            "library_size": float(assigned),
            "flagged": flagged,
            "excluded": excluded,
            "reason": reason,
        }
    order = list(dict.fromkeys(bam_to_sample.values()))
    return pd.DataFrame([rows[s] for s in order], columns=list(QC_COLUMNS))


def apply_exclusion(
    matrix: pd.DataFrame, sheet: pd.DataFrame, qc: pd.DataFrame, qc_file="mapping QC", min_samples=MIN_SAMPLES
):
    """Drop the samples the QC table marks excluded from the matrix (index = sample) and the sheet
    (`sample` column); log one line per excluded sample with its reason. Fewer than `min_samples`
    left is an InputError: nothing downstream can be estimated on so few."""
    excluded = qc.loc[qc["excluded"].astype(bool), ["sample", "reason"]]
    for sample, reason in excluded.itertuples(index=False):
        log.warning("excluded sample %s: %s", sample, reason)
    kept_flagged = qc.loc[qc["flagged"].astype(bool) & ~qc["excluded"].astype(bool), ["sample", "reason"]]
    for sample, reason in kept_flagged.itertuples(index=False):
        log.warning("flagged sample %s kept (exclusion is off): %s", sample, reason)
    drop = set(excluded["sample"].astype(str))
    matrix = matrix.loc[[s for s in matrix.index if str(s) not in drop]]
    sheet = sheet.loc[~sheet["sample"].astype(str).isin(drop)].reset_index(drop=True)
    if len(matrix) < min_samples:
        raise InputError(
            qc_file,
            "excluded",
            f"only {len(matrix)} sample(s) remain after excluding "
            f"{len(drop)} by mapping QC ({', '.join(sorted(drop))}); at least {min_samples} are needed",
        )
    return matrix, sheet
