"""Memory a training job asks its scheduler for (rule train's `mem_mb`), from the size of its table.

A job holds its matrix once, and each fold's copies (the inner splits, the refit's rows) in every
thread or worker process; a worker process also holds about 300 MiB of its own (imports, numba's
compiled solvers). So the peak grows with samples x genes x threads. Fitted on the peaks the
engine benchmark measured with 2 threads (README, Scale): 1,218 x 20,530 (191 MiB of values)
1,394-2,012 MiB, 801 x 20,531 738-1,698 MiB, 281 x 22,283 476-1,283 MiB; a job of the default study
(569 x 76) 270 MB. A fixed size would be too small for whole transcriptomes (a 500 MB job retried
at 1,000 and 1,500 MB fails three times) or waste a cluster's memory on thousands of small jobs.
"""

import functools
import math

from metasig import io
from metasig.data import groups_file
from metasig.data.normalize import IN_FOLD

FLOOR_MB = 500  # what the default study's jobs need, with room (270 MB measured)
PROCESS_MB = 300  # one Python process with the engine imported
COPIES_PER_THREAD = 4  # fold copies a thread or worker holds at its peak, in matrices
MARGIN = 1.25


def estimate_mb(n_samples, n_features, threads):
    """Peak memory of a training job, in MB rounded up to 100, with a margin of 25%."""
    from metasig.learn.nested_cv import PROCESS_MIN_VALUES  # here: Snakemake's planning imports this module

    values = n_samples * n_features
    matrix = values * 8 / 2**20
    workers = threads if values >= PROCESS_MIN_VALUES else 0  # below, the folds run in threads
    need = PROCESS_MB * (1 + workers) + matrix * (1 + COPIES_PER_THREAD * threads)
    return max(FLOOR_MB, 100 * math.ceil(need * 1.048576 * MARGIN / 100))


def train_mem_mb(matrix, samples, groups, group, normalization, threads):
    """estimate_mb of a job on `group` of a dataset (its matrix, sample sheet and groups.json): the
    group's genes, or the whole library with an in-fold normalization, whose size factors need it.
    Before the files exist (a dry run plans jobs whose inputs are not made yet) the floor."""
    try:
        genes = _n_columns(str(matrix)) if normalization in IN_FOLD else _n_genes(str(groups))[group]
        return estimate_mb(_n_samples(str(samples)), genes, threads)
    except FileNotFoundError:
        return FLOOR_MB


# Cached: Snakemake asks once per job, and a study's jobs share a few files (written once per run)
@functools.cache
def _n_samples(path):
    return len(io.read_sheet(path))


@functools.cache
def _n_genes(path):
    return {name: len(group["genes"]) for name, group in groups_file.read_groups(path).items()}


@functools.cache
def _n_columns(path):
    return len(io.matrix_columns(path))
