"""The overhead benchmark's generated study: a valid table-source config whose training targets are
the asked number of jobs, on groups of 5-20 genes of its matrix (metasig.bench.overhead)."""

import pandas as pd
import yaml

from metasig import config as mconfig
from metasig import io
from metasig.bench import overhead


def test_generated_study_has_the_asked_jobs_on_small_groups(tmp_path):
    path, targets = overhead.generate(tmp_path, n_jobs=7, seed=1)
    config = mconfig.check(yaml.safe_load((tmp_path / path).read_text()), path, base_dir=tmp_path)
    jobs = mconfig.jobs(config, base_dir=tmp_path)
    assert len(targets) == 7 and len(set(targets)) == 7
    planned = {f"results/models/{d}/{t}/{g}/{m}/metrics.json" for d, t, g, m in jobs}
    assert set(targets) <= planned and len(planned) == 8  # 4 sets x 2 models, the first 7 asked
    matrix, _ = io.read_matrix(tmp_path / overhead.STUDY_DIR / "matrix.parquet")
    assert matrix.shape == overhead.SHAPE
    gmt = mconfig.read_gmt(tmp_path / overhead.STUDY_DIR / "sets.gmt")
    assert all(5 <= len(genes) <= 20 for genes in gmt.values())
    assert {g for genes in gmt.values() for g in genes} <= set(matrix.columns)
    sheet = pd.read_csv(tmp_path / overhead.STUDY_DIR / "samples.tsv", sep="\t")
    assert list(sheet["sample"]) == list(matrix.index) and set(sheet["status"]) == {"case", "control"}
