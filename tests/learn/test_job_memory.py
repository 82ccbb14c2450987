"""A training job's memory request (rule train's mem_mb) against the peaks the engine benchmark
measured (README, Scale; 2 threads), and read from a dataset's own files."""

import numpy as np
import pandas as pd
import pytest

from metasig import io
from metasig.data import groups_file
from metasig.learn import job_memory

# (samples, genes, threads, measured peak PSS in MiB): the largest job of each shape
MEASURED = [(1218, 20530, 2, 2012), (801, 20531, 2, 1698), (281, 22283, 2, 1283), (569, 76, 1, 270)]


@pytest.mark.parametrize("n, p, threads, peak_mib", MEASURED)
def test_the_request_covers_the_measured_peak_without_doubling_it(n, p, threads, peak_mib):
    request_mib = job_memory.estimate_mb(n, p, threads) / 1.048576
    assert peak_mib * 1.1 <= request_mib <= max(2 * peak_mib, job_memory.FLOOR_MB)


def test_more_samples_genes_or_threads_ask_for_more():
    base = job_memory.estimate_mb(800, 20000, 2)
    assert job_memory.estimate_mb(1600, 20000, 2) > base
    assert job_memory.estimate_mb(800, 40000, 2) > base
    assert job_memory.estimate_mb(800, 20000, 4) > base
    assert job_memory.estimate_mb(800, 20000, 2) % 100 == 0


def test_the_request_reads_the_dataset_files(tmp_path):
    """A job asks for its group's genes, or the whole library with in-fold VST (its size factors
    need every gene); before the files exist, for the floor."""
    sheet = pd.DataFrame({"sample": [f"s{i}" for i in range(1218)], "label": ["a", "b"] * 609})
    io.write_sheet(sheet, tmp_path / "samples.tsv")
    genes = [f"g{j}" for j in range(20530)]
    matrix = pd.DataFrame(np.ones((3, len(genes))), columns=genes, index=["s0", "s1", "s2"])
    io.write_matrix(matrix, tmp_path / "matrix.parquet", "counts", "symbol")
    groups = {"ALL": {"genes": genes, "missing": []}, "small": {"genes": genes[:15], "missing": []}}
    groups_file.write_groups(groups, tmp_path / "groups.json")
    files = [tmp_path / name for name in ("matrix.parquet", "samples.tsv", "groups.json")]

    def ask(group, normalization="none"):
        return job_memory.train_mem_mb(*files, group, normalization, 2)

    assert ask("ALL") == job_memory.estimate_mb(1218, 20530, 2) > 3000
    assert ask("small") == job_memory.FLOOR_MB
    assert ask("small", "vst") == ask("ALL")
    absent = [tmp_path / "absent.parquet", tmp_path / "absent.tsv", tmp_path / "absent.json"]
    assert job_memory.train_mem_mb(*absent, "ALL", "none", 2) == job_memory.FLOOR_MB
    assert job_memory.train_mem_mb(*absent, "ALL", "vst", 2) == job_memory.FLOOR_MB
