"""Rule adapter of the training stage: one (dataset, task, group, model) job."""

import logging
import tempfile

import pandas as pd

from metasig import io
from metasig.data.groups_file import group_genes
from metasig.data.normalize import IN_FOLD
from metasig.errors import InputError
from metasig.logs import logged

log = logging.getLogger("metasig")

__all__ = ["logged", "feature_frame", "train", "train_random_sets"]


def feature_frame(
    matrix_in, samples_in, groups_in, group, task_cfg, covariates, normalization, sheet=None, folds=None, spill_dir=None
):
    """Features of one group (normalized genes + offered covariates) and the task's target, on the
    samples that carry the task's label. Only the group's gene columns are read from the matrix,
    except with in-fold VST, whose size factors need the whole library: the frame then holds every
    gene (+ the group's covariates) and `subset` gives the positions of the group's genes among
    them. `sheet`: the sample sheet if already read; `folds`: the task's cv settings (they set its
    default min_class_size: metasig.learn.tasks). `spill_dir`: a folder that outlives X, where a
    matrix big enough for worker processes is memory-mapped (io.read_matrix). Returns (X, y, class
    names, subset or None)."""
    from metasig.learn import tasks

    sheet = io.read_sheet(samples_in) if sheet is None else sheet
    samples, y = tasks.target(sheet, task_cfg, sheet_file=samples_in, folds=folds)
    features = group_genes(groups_in, group)
    names = io.matrix_columns(matrix_in)
    known = set(names)
    genes = [f for f in features if f in known]
    in_fold = normalization in IN_FOLD and genes
    from metasig.learn.nested_cv import PROCESS_MIN_VALUES

    columns = names if in_fold else genes
    spill = spill_dir if len(columns) * len(samples) >= PROCESS_MIN_VALUES else None
    matrix, _ = io.read_matrix(matrix_in, columns=None if in_fold else genes, spill_dir=spill)
    if covariates:
        matrix = matrix.join(sheet.set_index("sample")[list(covariates)].astype(float))
    subset = None
    if in_fold:
        position = {gene: i for i, gene in enumerate(names)}
        subset = [position[g] for g in genes]
        features = [c for c in names if c not in covariates] + [c for c in features if c in covariates]
    if not (matrix.index.equals(pd.Index(samples)) and matrix.columns.equals(pd.Index(features))):
        matrix = matrix.loc[samples, features]  # a copy: at 20,000 genes, one matrix more in memory
    return matrix, y, tasks.class_names(sheet, task_cfg), subset


def train(
    matrix_in,
    samples_in,
    groups_in,
    outdir,
    identity,
    task_cfg,
    model_cfg,
    cv,
    preprocessing,
    normalization,
    covariates,
    seed,
    threads=1,
):
    """One training job. `threads`: the cores the job holds (Snakemake's `threads`): that many outer
    folds are fitted at once, and BLAS/OpenMP pools already loaded are held to it as well."""
    from threadpoolctl import threadpool_limits

    from metasig.learn import job as training
    from metasig.learn.tasks import group_values, left_out, left_out_text

    sheet = io.read_sheet(samples_in)
    with tempfile.TemporaryDirectory(prefix="metasig-train-") as spill:  # the matrix's mapped file, if any
        X, y, classes, subset = feature_frame(
            matrix_in, samples_in, groups_in, identity["group"], task_cfg, covariates, normalization, sheet, cv, spill
        )
        if normalization in IN_FOLD and subset is None:
            normalization = "none"  # a group of covariates only: there are no counts to transform
        # samples the task cannot use are counted and named, never dropped silently
        left = left_out(sheet, task_cfg, samples_in, folds=cv)
        log.info("%s: %d samples x %d features; %s", ".".join(identity.values()), *X.shape, left_out_text(left))
        groups = None
        if cv.get("group_by"):  # grouped CV: every sample's group, checked before any fit
            where = f"task {identity.get('task')}: cv.group_by"
            groups = group_values(sheet, X.index, cv["group_by"], samples_in, where)
        with threadpool_limits(limits=int(threads)):
            result = training.train(
                X,
                y,
                task_cfg,
                model_cfg,
                cv,
                preprocessing,
                normalization,
                seed,
                classes,
                covariates,
                subset,
                int(threads),
                groups=groups,
            )
        training.write_outputs(
            result,
            outdir,
            {**identity, "kind": task_cfg["type"], "model_kind": model_cfg["kind"], "seed": seed, "cv": cv},
            list(X.columns),
            left_out=left,
        )


def train_random_sets(
    matrix_in,
    samples_in,
    groups_in,
    out,
    identity,
    count,
    task_cfg,
    model_cfg,
    cv,
    preprocessing,
    normalization,
    covariates,
    seed,
    threads=1,
):
    """The random-gene-set control of one (dataset, task, group, model) job: `count` random sets of
    the group's gene count (see metasig.learn.random_sets), each through the job's nested CV; writes
    random_sets.tsv. The matrix is read once; each set is a column selection of it."""
    from threadpoolctl import threadpool_limits

    from metasig.learn import random_sets, tasks
    from metasig.learn.random_sets_file import write_random_sets

    sheet = io.read_sheet(samples_in)
    samples, y = tasks.target(sheet, task_cfg, sheet_file=samples_in, folds=cv)  # the signature job's samples
    groups = None
    if cv.get("group_by"):  # the signature's grouped folds, so both are scored on the same splits
        where = f"task {identity.get('task')}: cv.group_by"
        groups = tasks.group_values(sheet, samples, cv["group_by"], samples_in, where)
    covariates = list(covariates or [])
    names = [c for c in io.matrix_columns(matrix_in) if c not in covariates]
    measured = set(names)
    features = group_genes(groups_in, identity["group"])
    genes = [f for f in features if f in measured]
    own_covariates = [f for f in features if f in covariates]
    if not 0 < len(genes) < len(measured):
        raise InputError(
            groups_in,
            identity["group"],
            f"random gene sets need a group with some but not all of the dataset's {len(measured)} measured genes "
            f"(it has {len(genes)}); leave it out of random_sets.groups",
        )
    matrix, _ = io.read_matrix(matrix_in, columns=names)
    if own_covariates:
        matrix = matrix.join(sheet.set_index("sample")[own_covariates].astype(float))
    matrix = matrix.loc[samples]
    in_fold = normalization in IN_FOLD
    position = {gene: i for i, gene in enumerate(names)}

    def frame_of(chosen):
        if in_fold:  # every gene for the in-fold size factors, narrowed to the set after them
            return matrix[names + own_covariates], [position[g] for g in chosen]
        return matrix[chosen + own_covariates], None

    kind = task_cfg["type"]
    headline = "c_index" if kind == "survival" else "roc_auc"
    log.info(
        "%s: %d random sets of %d genes (+ %d covariates) from %d measured genes, %d samples",
        ".".join(identity.values()),
        count,
        len(genes),
        len(own_covariates),
        len(measured),
        len(samples),
    )

    def scorer(X, subset):
        return random_sets.score(
            X, y, kind, model_cfg, cv, preprocessing, normalization, seed, own_covariates, subset, int(threads), groups
        )

    seeds = random_sets.set_seeds(seed, identity["dataset"], identity["task"], identity["group"], int(count))
    with threadpool_limits(limits=int(threads)):
        rows = random_sets.run(frame_of, names, len(genes), seeds, scorer, headline)
    write_random_sets(rows, out)
