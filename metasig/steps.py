"""The workflow's steps as plain functions of paths and settings. Rule scripts are thin adapters
that pass Snakemake's inputs, outputs and params here, so every step is testable without Snakemake."""

import logging
import sys
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from metasig import io
from metasig.normalize import IN_FOLD

log = logging.getLogger("metasig")


@contextmanager
def logged(log_file):
    """Send metasig's log lines to the rule's log file and to stderr; record a failure in both."""
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    handlers = [logging.FileHandler(log_file, mode="w"), logging.StreamHandler(sys.stderr)]
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    for handler in handlers:
        handler.setFormatter(fmt)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield log
    except Exception as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        raise
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()


def read_checked(dataset_cfg, name, cache, config_file, groups, reads=None, base_dir=".", folds=None):
    """Read a source and run every check on it (tables, labels, folds, gene groups); return
    (matrix, sheet, meta). `folds`: {task: {"outer_folds", "inner_folds"}} (see validate.check_folds)."""
    from metasig import genesets, sources, validate
    from metasig.sources import reads as reads_source

    if reads:
        matrix, sheet, meta = reads_source.load(dataset_cfg, reads)
    else:
        matrix, sheet, meta = sources.load(dataset_cfg, name, base_dir, cache, config_file)
    matrix_file = dataset_cfg.get("matrix") or dataset_cfg.get("url") or (reads or {}).get("qc") or f"builtin:{dataset_cfg.get('name')}"
    validate.check_dataset(matrix, sheet, dataset_cfg, matrix_file, sheet_file=dataset_cfg.get("samples", matrix_file),
                           folds=folds, where=f"datasets.{name}")
    features = list(matrix.columns) + list(dataset_cfg.get("covariates", []))
    genesets.resolve(groups, features, config_file, field_prefix=f"datasets.{name}.gene_groups")
    return matrix, sheet, meta


def load_dataset(dataset_cfg, name, matrix_out, samples_out, cache, config_file, groups, reads=None, base_dir=".", folds=None):
    """Read a source, check it (tables, labels, folds, gene groups) and write the two data contracts.
    Nothing is written unless every check passes. `reads`: for reads datasets, which workflow
    input is which (see metasig.sources.reads)."""
    matrix, sheet, meta = read_checked(dataset_cfg, name, cache, config_file, groups, reads, base_dir, folds)
    io.write_matrix(matrix, matrix_out, meta["unit"], meta["namespace"], extra=meta)
    io.write_sheet(sheet, samples_out)
    log.info("%s: %d samples x %d genes (%s, %s)", name, *matrix.shape, meta["unit"], meta["namespace"])


LOCAL_SOURCES = ("builtin", "table")  # fully checkable before any job: no download, no reads to quantify
SHEET_SOURCES = ("fastq", "bam")  # a local sample sheet, checkable before the reads are quantified


def check_inputs(datasets, config_file, cache, marker_dir, base_dir="."):
    """Check every local dataset's inputs before any job runs, so that a bad dataset stops the
    run before another dataset's outputs are written. datasets: {name: (dataset_cfg, groups, folds)}.
    Downloaded sources (url, xena, gdc, geo) and simulated reads can only be checked once fetched
    or made: their load_dataset job does it. A passed check leaves a marker keyed by the
    configuration, the input files' size and mtime and metasig's code, so an unchanged study is not
    re-read at every Snakemake call (dry runs stay fast)."""
    import hashlib
    import json

    from metasig import validate
    from metasig.sources.table import read_sample_sheet

    base = Path(base_dir)
    checked = {d: v for d, v in datasets.items() if v[0].get("source") in LOCAL_SOURCES + SHEET_SOURCES}
    if not checked:
        return False
    files = sorted({str(base / ds[k]) for ds, _, _ in checked.values() for k in ("matrix", "samples") if ds.get(k)}
                   | {str(base / g["gmt"]) for ds, _, _ in checked.values() for g in ds["gene_groups"].values() if isinstance(g, dict)}
                   | {str(p) for p in Path(__file__).parent.rglob("*.py")})

    def stamp(path):
        st = Path(path).stat()
        return [path, st.st_size, st.st_mtime_ns]

    key = json.dumps({"datasets": checked, "files": [stamp(f) for f in files]}, sort_keys=True, default=str)
    marker = Path(marker_dir) / f"inputs-{hashlib.sha256(key.encode()).hexdigest()[:16]}.ok"
    if marker.exists():
        return False
    for name, (ds, groups, folds) in checked.items():
        if ds["source"] in LOCAL_SOURCES:
            read_checked(ds, name, cache, config_file, groups, base_dir=base_dir, folds=folds)
        else:
            sheet = read_sample_sheet(base / ds["samples"], ds["samples"], ds.get("encoding"))
            for tname, task in ds["tasks"].items():
                validate.check_folds(sheet, task, folds[tname], ds["samples"], f"datasets.{name}.tasks.{tname}")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)
    return True


def normalize(matrix_in, matrix_out, method):
    from metasig.normalize import normalize as apply

    matrix, meta = io.read_matrix(matrix_in)
    io.write_matrix(apply(matrix, method), matrix_out, meta["unit"], meta["namespace"], extra={**meta, "normalization": method})
    log.info("normalized %d x %d with %s", *matrix.shape, method)


def gene_groups(matrix_in, groups, covariates, groups_out, config_file, originals=None):
    """Resolve the groups against the matrix; `originals`: group -> its GMT set name, for sets
    renamed to a safe name (kept in the JSON as `gmt_name` and shown in the log)."""
    from metasig import genesets

    matrix, _ = io.read_matrix(matrix_in)
    resolved = genesets.resolve(groups, list(matrix.columns) + list(covariates), config_file, field_prefix="gene_groups")
    for group, original in (originals or {}).items():
        resolved[group]["gmt_name"] = original
    log.info("gene groups:\n%s", genesets.missing_report(resolved))
    io.write_json(resolved, groups_out)


def feature_frame(matrix_in, samples_in, groups_in, group, task_cfg, covariates, normalization):
    """Features of one group (normalized genes + offered covariates) and the task's target, on the
    samples that carry the task's label. With in-fold VST, size factors need the whole library:
    the frame then holds every gene (+ the group's covariates) and `subset` gives the positions
    of the group's genes among them. Returns (X, y, class names, subset or None)."""
    from metasig.tasks import target

    matrix, _ = io.read_matrix(matrix_in)
    sheet = io.read_sheet(samples_in)
    samples, y = target(sheet, task_cfg, sheet_file=samples_in)
    features = io.read_json(groups_in)[group]["genes"]
    genes = [f for f in features if f in matrix.columns]
    if covariates:
        matrix = matrix.join(sheet.set_index("sample")[list(covariates)].astype(float))
    subset = None
    if normalization in IN_FOLD and genes:
        position = {gene: i for i, gene in enumerate(matrix.columns[: len(matrix.columns) - len(covariates)])}
        subset = [position[g] for g in genes]
        features = [c for c in matrix.columns if c not in covariates] + [c for c in features if c in covariates]
    return matrix.loc[samples, features], y, class_names(sheet, task_cfg), subset


def class_names(sheet, task_cfg):
    """Binary tasks: [negative, positive] label names as written in the sample sheet."""
    from metasig.tasks import _cells
    from metasig.sources.labels import _text

    if task_cfg["type"] != "binary":
        return None
    positive = _text(task_cfg["positive"])
    others = sorted(set(_cells(sheet, task_cfg["label"], task_cfg).dropna()) - {positive})
    return [others[0] if len(others) == 1 else f"not {positive}", positive]


def train(matrix_in, samples_in, groups_in, outdir, identity, task_cfg, model_cfg, cv, preprocessing, normalization, covariates, seed):
    from metasig import train as training

    from metasig.tasks import left_out, left_out_text

    X, y, classes, subset = feature_frame(matrix_in, samples_in, groups_in, identity["group"], task_cfg, covariates, normalization)
    if normalization in IN_FOLD and subset is None:
        normalization = "none"  # a group of covariates only: there are no counts to transform
    # samples the task cannot use are counted and named, never dropped silently
    left = left_out(io.read_sheet(samples_in), task_cfg, samples_in)
    log.info("%s: %d samples x %d features; %s", ".".join(identity.values()), *X.shape, left_out_text(left))
    result = training.train(X, y, task_cfg, model_cfg, cv, preprocessing, normalization, seed, classes, covariates, subset)
    training.write_outputs(result, outdir, {**identity, "kind": task_cfg["type"], "model_kind": model_cfg["kind"], "seed": seed, "cv": cv},
                           list(X.columns), left_out=left)


def gate(metrics_files, gate_cfg, gate_out):
    from metasig.gate import gate_task

    rows = gate_task([io.read_json(f) for f in metrics_files], gate_cfg)
    with io.atomic_path(gate_out) as tmp:
        rows.to_csv(tmp, sep="\t", index=False)
    log.info("%d of %d models passed the gate", int(rows["passed"].sum()), len(rows))


def read_gates(gate_files):
    return pd.concat([pd.read_csv(f, sep="\t") for f in gate_files], ignore_index=True)


def register(gate_files, models_root, registry_root, index_out):
    from metasig.registry import publish

    index = publish(read_gates(gate_files), models_root, registry_root)
    log.info("registry: %d model version(s) indexed in %s", len(index["models"]), index_out)


def log_mlflow(registry_root, tracking_uri, experiment, logged_out):
    from metasig.tracking import log_to_mlflow

    index = io.read_json(Path(registry_root) / "index.json")
    logged = log_to_mlflow(index["models"], registry_root, tracking_uri, experiment)
    io.write_json({"tracking_uri": tracking_uri, "experiment": experiment, "registered": [list(x) for x in logged]}, logged_out)


def leaderboard(metrics_files, gate_files, table_out):
    from metasig.leaderboard import leaderboard as build

    table = build([io.read_json(f) for f in metrics_files], read_gates(gate_files))
    with io.atomic_path(table_out) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")


def qc_plots(matrix_in, samples_in, colour_by, qc_out, pca_out):
    from metasig import plots

    matrix, meta = io.read_matrix(matrix_in)
    transformed = meta.get("normalization") not in (None, "none", *IN_FOLD)
    unit = "log2" if transformed else meta["unit"]
    sheet = io.read_sheet(samples_in).set_index("sample").loc[matrix.index].reset_index()
    plots.qc_plot(matrix, unit, qc_out)
    plots.pca_plot(matrix, sheet, colour_by, pca_out)


def plot_task(figure, metrics_files, prediction_files, importance_files, gate_file, gate_cfg, out):
    """One figure of a task. Curves show the best model of each gene group; single-model figures
    (confusion, Kaplan-Meier, importance) show the task's best model, by the gate metric."""
    from metasig import plots

    docs = [io.read_json(f) for f in metrics_files]
    metric = gate_cfg["metric"]
    order = sorted(range(len(docs)), key=lambda i: -docs[i]["metrics"][metric]["estimate"])
    best = order[0]
    best_per_group = {}
    for i in order:
        best_per_group.setdefault(docs[i]["group"], i)

    def label(i):
        return f"{docs[i]['group']} / {docs[i]['model']}"

    def predictions(i):
        return pd.read_csv(prediction_files[i], sep="\t", dtype={"sample": str})

    if figure == "leaderboard":
        plots.leaderboard_plot(docs, pd.read_csv(gate_file, sep="\t"), out, metric, gate=gate_cfg)
    elif figure in ("roc_pr", "calibration"):
        by_job = {label(i): predictions(i) for i in best_per_group.values()}
        if figure == "roc_pr":
            plots.roc_pr_plot(by_job, out, docs[best]["kind"])
        else:
            plots.calibration_plot(by_job, out)
    elif figure == "confusion":
        plots.confusion_plot(predictions(best), docs[best]["classes"], out, title=f"Confusion matrix (out-of-fold) of {label(best)}")
    elif figure == "km":
        plots.km_plot(predictions(best), out, title=f"Survival by out-of-fold predicted risk of {label(best)}")
    elif figure == "importance":
        plots.importance_plot(pd.read_csv(importance_files[best], sep="\t"), out, title=f"Top 20 features of {label(best)} (final model)")
    else:
        raise ValueError(f"unknown figure {figure!r}")
    log.info("%s of %s (best: %s)", figure, out, label(best))


# ---- reads -----------------------------------------------------------------------------------


def validate_reads(units_table, table_out, workers=1, transcripts=None):
    """Every FASTQ read to its end and mates paired, every BAM sorted and indexed, and the
    transcriptome's IDs found in the transcript -> gene map (`transcripts`: transcriptome + tx2gene
    or gtf paths), before any tool."""
    from metasig.reads import validate

    if transcripts:
        found = validate.check_transcript_ids(**transcripts)
        log.info("transcriptome: %d transcript(s), %d without a gene in the map", found["transcripts"], found["unmatched"])
    stats = validate.check_units(units_table, workers=workers)
    for bam in units_table.get("bam", pd.Series(dtype=str)).dropna():
        validate.check_bam(bam)
    with io.atomic_path(table_out) as tmp:
        stats.to_csv(tmp, sep="\t", index=False)
    log.info("validated %d unit(s)", len(units_table))


def tpm_matrix(reads, tpm_out):
    """Gene-level TPM beside the counts, for people who want abundances (not used for training)."""
    from metasig.reads import quant
    from metasig.sources.reads import tx2gene

    _, tpm = quant.salmon_to_matrix(reads["quant"], tx2gene(reads))
    io.write_matrix(tpm, tpm_out, "tpm", reads.get("namespace", "feature"))


def sra_fetch(accession, fastq_out, workdir):
    from metasig.reads.sra import fetch

    fetch(accession, fastq_out, workdir)


def mapping_qc(units_table, inputs, floor, exclude, table_out):
    from metasig.reads import quant

    samples = list(dict.fromkeys(units_table["sample"]))
    if "summary" in inputs:
        bam_to_sample = dict(zip(units_table["bam"], units_table["sample"]))
        table = quant.featurecounts_qc(inputs["summary"], bam_to_sample, floor, exclude)
    else:
        reports = {s: [] for s in samples}
        for sample, report in zip(units_table["sample"], inputs["fastp"]):
            reports[sample].append(report)
        salmon = dict(zip(samples, inputs["salmon"]))
        table = quant.mapping_qc(samples, salmon, reports, floor, exclude)
    with io.atomic_path(table_out) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    for row in table[table["flagged"]].itertuples():
        log.warning("sample %s: %s%s", row.sample, row.reason, " (excluded)" if row.excluded else "")


def plot_mapping(table_in, floor, out):
    from metasig import plots

    plots.mapping_plot(pd.read_csv(table_in, sep="\t", dtype={"sample": str}), floor, out)


def simulate_reads(simulation, out_dir):
    """The built-in two-condition cohort: the first `planted` genes change between conditions."""
    from metasig.reads.layout import planted_genes
    from metasig.reads.simulate import simulate_cohort

    paths = simulate_cohort(
        out_dir,
        n_per_condition=simulation.get("samples_per_condition", 8),
        n_genes=simulation.get("genes", 120),
        planted_genes=planted_genes(simulation),
        fold_change=simulation.get("fold_change", 4.0),
        reads_per_sample=simulation.get("reads", 40_000),
        seed=simulation.get("seed", 7),
    )
    log.info("simulated %d samples into %s", len(paths["fastq"]), out_dir)
