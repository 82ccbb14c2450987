"""The random-gene-set control: a planted signature ranks first among random sets of its size, null
signatures land mid-distribution, the draw is deterministic and of the group's size, and the job
writes one row per set through the same nested CV as the signature."""

import numpy as np
import pandas as pd
import pytest

from metasig import io
from metasig.data.groups_file import write_groups
from metasig.learn import random_sets, steps
from metasig.learn.job import train
from metasig.learn.random_sets_file import metric_values, read_random_sets

CV = {"outer_folds": 3, "outer_repeats": 1, "inner_folds": 3, "bootstrap": 100, "permuted_repeats": 1}
MODEL = {"kind": "elasticnet", "search": {"C": [1.0], "l1_ratio": [0.5]}}  # one candidate: no inner search
PREP = {"scale": True}
N_GENES, PLANTED, SIZE, K = 1000, 10, 10, 39


@pytest.fixture(scope="module")
def planted():
    """200 samples x 1,000 noise genes; the first 10 shift by half a standard deviation between the
    classes. One planted gene alone predicts weakly (ROC-AUC ~0.64), all ten well (~0.87); a random
    set of 10 holds on average 0.1 of them (two or more in ~0.4% of sets), so random sets are mostly
    chance and never near the signature."""
    rng = np.random.default_rng(11)
    n = 200
    y = rng.permutation(np.repeat([0, 1], n // 2))
    X = rng.normal(size=(n, N_GENES))
    X[:, :PLANTED] += 0.5 * y[:, None]
    genes = [f"G{j:04d}" for j in range(N_GENES)]
    return pd.DataFrame(X, index=[f"s{i:03d}" for i in range(n)], columns=genes), y


def _score(X, y, genes):
    return random_sets.score(X[genes], y, "binary", MODEL, CV, PREP, "none", seed=0)["roc_auc"]


@pytest.fixture(scope="module")
def random_scores(planted):
    X, y = planted
    seeds = random_sets.set_seeds(0, "synthetic", "task", "signature", K)

    def scorer(Xs, _subset):
        return {"roc_auc": _score(Xs, y, list(Xs.columns))}

    rows = random_sets.run(lambda genes: (X[genes], None), list(X.columns), SIZE, seeds, scorer, "roc_auc")
    return np.array([r["roc_auc"] for r in rows])


def test_planted_signature_ranks_first(planted, random_scores):
    X, y = planted
    signature = _score(X, y, list(X.columns[:PLANTED]))
    result = random_sets.compare(signature, random_scores)
    print(f"planted {signature:.3f}; random median {result['random_median']:.3f}, max {random_scores.max():.3f}")
    assert result["random_sets"] == K
    assert result["random_p"] == pytest.approx(1 / (K + 1))  # no random set reaches it
    assert signature > result["random_p95"] + 0.1


def test_null_signatures_land_mid_distribution(planted, random_scores):
    """A signature of noise genes is exchangeable with the random sets, so its p-value is uniform:
    one alone can land anywhere. Eight disjoint noise signatures average near 0.5 (sd of the mean of
    8 uniforms ~0.1), none ranks first, and the planted one stays apart."""
    X, y = planted
    nulls = [list(X.columns[PLANTED + 10 * j : PLANTED + 10 * j + SIZE]) for j in range(8)]
    ps = [random_sets.compare(_score(X, y, genes), random_scores)["random_p"] for genes in nulls]
    print("null p-values:", [round(p, 3) for p in ps])
    assert 0.2 <= np.mean(ps) <= 0.8
    assert min(ps) > 1 / (K + 1)


def test_compare_formula():
    values = [0.5, 0.6, 0.7, 0.8, np.nan]  # the undefined set is left out: K = 4
    out = random_sets.compare(0.7, values)
    assert out["random_sets"] == 4
    assert out["random_p"] == pytest.approx((1 + 2) / (1 + 4))  # 0.7 and 0.8 reach 0.7
    assert out["random_median"] == pytest.approx(0.65)
    assert out["random_p95"] == pytest.approx(0.8 - 0.05 * 0.1 * 3)  # linear interpolation at 95%
    assert random_sets.compare(0.9, values)["random_p"] == pytest.approx(1 / 5)
    assert random_sets.compare(0.1, values)["random_p"] == pytest.approx(1.0)
    assert random_sets.compare(0.7, [np.nan])["random_sets"] == 0


def test_draw_is_deterministic_of_the_right_size_and_order_free():
    pool = [f"g{i}" for i in range(50)]
    seeds = random_sets.set_seeds(42, "d", "t", "grp", 20)
    assert seeds == random_sets.set_seeds(42, "d", "t", "grp", 20)
    assert seeds[:5] == random_sets.set_seeds(42, "d", "t", "grp", 5)  # set i does not depend on K
    for other in [(43, "d", "t", "grp"), (42, "e", "t", "grp"), (42, "d", "u", "grp"), (42, "d", "t", "grq")]:
        assert set(random_sets.set_seeds(*other, 20)).isdisjoint(seeds)
    sets = [random_sets.draw(pool, 7, s) for s in seeds]
    assert all(len(s) == len(set(s)) == 7 and set(s) <= set(pool) for s in sets)
    assert len({tuple(s) for s in sets}) == 20  # distinct draws
    assert sets[3] == random_sets.draw(list(reversed(pool)), 7, seeds[3])  # the pool's order does not matter
    with pytest.raises(ValueError):
        random_sets.draw(pool, 50, seeds[0])


def test_score_is_the_signature_jobs_estimate(planted):
    """The control compares like with like: `score` of the group's genes equals the estimate that
    job.train writes to metrics.json (same pipeline, folds and per-fold mean)."""
    X, y = planted
    genes = list(X.columns[:PLANTED])
    result = train(X[genes], y, {"type": "binary", "positive": 1}, MODEL, CV, PREP, "none", 0)
    assert _score(X, y, genes) == pytest.approx(result.metrics["roc_auc"]["estimate"], abs=1e-12)


def test_job_writes_one_row_per_set_with_the_group_size(planted, tmp_path):
    X, y = planted
    sheet = pd.DataFrame({"sample": X.index, "status": np.where(y == 1, "case", "control")})
    io.write_matrix(X, tmp_path / "normalized.parquet", unit="log2", namespace="feature")
    io.write_sheet(sheet, tmp_path / "samples.tsv")
    signature = ["G0001", "G0002", "G0003", "not_measured"]
    write_groups({"sig": {"genes": signature[:3], "missing": signature[3:]}}, tmp_path / "groups.json")
    out = tmp_path / "random_sets.tsv"
    args = dict(
        identity={"dataset": "syn", "task": "status", "group": "sig", "model": "enet"},
        count=4,
        task_cfg={"type": "binary", "label": "status", "positive": "case"},
        model_cfg=MODEL,
        cv=CV,
        preprocessing=PREP,
        normalization="none",
        covariates=[],
        seed=3,
    )
    files = [tmp_path / "normalized.parquet", tmp_path / "samples.tsv", tmp_path / "groups.json"]
    steps.train_random_sets(*files, out, **args)
    table = read_random_sets(out)
    assert list(table["set"]) == [1, 2, 3, 4]
    assert (table["n_genes"] == 3).all() and all(len(g) == 3 for g in table["genes"])
    seeds = random_sets.set_seeds(3, "syn", "status", "sig", 4)
    assert list(table["seed"]) == seeds
    assert [list(g) for g in table["genes"]] == [random_sets.draw(list(X.columns), 3, s) for s in seeds]
    values = metric_values(table, "roc_auc")
    assert np.isfinite(values).all() and set(table["genes_sha1"]) == {random_sets.genes_hash(g) for g in table["genes"]}
    first = out.read_bytes()
    steps.train_random_sets(*files, out, **args)
    assert out.read_bytes() == first  # the same sets and scores on a rerun


def test_a_groups_covariates_stay_in_every_random_set(planted, tmp_path):
    """Covariates are not genes: they are neither drawn nor counted, and every random set keeps them."""
    X, y = planted
    sheet = pd.DataFrame({"sample": X.index, "status": np.where(y == 1, "case", "control"), "age": y * 10.0})
    io.write_matrix(X, tmp_path / "normalized.parquet", unit="log2", namespace="feature")
    io.write_sheet(sheet, tmp_path / "samples.tsv")
    write_groups({"mixed": {"genes": ["G0500", "G0501", "age"], "missing": []}}, tmp_path / "groups.json")
    out = tmp_path / "random_sets.tsv"
    files = [tmp_path / "normalized.parquet", tmp_path / "samples.tsv", tmp_path / "groups.json"]
    steps.train_random_sets(
        *files,
        out,
        identity={"dataset": "syn", "task": "status", "group": "mixed", "model": "enet"},
        count=2,
        task_cfg={"type": "binary", "label": "status", "positive": "case"},
        model_cfg=MODEL,
        cv=CV,
        preprocessing=PREP,
        normalization="none",
        covariates=["age"],
        seed=3,
    )
    table = read_random_sets(out)
    assert (table["n_genes"] == 2).all() and not any("age" in g for g in table["genes"])
    # age separates the classes perfectly, so every set that keeps it scores 1.0
    assert (metric_values(table, "roc_auc") == 1.0).all()


def test_grouped_job_scores_random_sets_on_the_signatures_grouped_folds(planted, tmp_path):
    """With cv.group_by, a random set equal to the signature scores what the grouped signature job
    does (same grouped folds), and differs from the same set under sample-level folds."""
    X, y = planted
    patients = np.repeat([f"p{i:03d}" for i in range(len(X) // 2)], 2)  # two samples per patient
    y = np.repeat(y[::2], 2)  # a patient's samples share the label
    sheet = pd.DataFrame({"sample": X.index, "status": np.where(y == 1, "case", "control"), "patient": patients})
    io.write_matrix(X, tmp_path / "normalized.parquet", unit="log2", namespace="feature")
    io.write_sheet(sheet, tmp_path / "samples.tsv")
    genes = list(X.columns[:PLANTED])
    write_groups({"sig": {"genes": genes, "missing": []}}, tmp_path / "groups.json")
    grouped = {**CV, "group_by": "patient", "scheme": "kfold"}
    task = {"type": "binary", "label": "status", "positive": "case"}
    files = [tmp_path / "normalized.parquet", tmp_path / "samples.tsv", tmp_path / "groups.json"]
    out = tmp_path / "random_sets.tsv"
    identity = {"dataset": "syn", "task": "status", "group": "sig", "model": "enet"}
    common = dict(task_cfg=task, model_cfg=MODEL, preprocessing=PREP, normalization="none", covariates=[], seed=5)
    # the pool is the whole matrix, so sets differ from the signature; compare through one fixed set
    seed = random_sets.set_seeds(5, "syn", "status", "sig", 1)[0]
    drawn = random_sets.draw(list(X.columns), len(genes), seed)
    steps.train_random_sets(*files, out, identity=identity, count=1, cv=grouped, **common)
    value = metric_values(read_random_sets(out), "roc_auc")[0]
    labels = (y == 1).astype(int)
    expected = train(
        X[drawn], labels, {"type": "binary", "positive": 1}, MODEL, grouped, PREP, "none", 5, groups=patients
    )
    ungrouped = train(X[drawn], labels, {"type": "binary", "positive": 1}, MODEL, CV, PREP, "none", 5)
    assert value == pytest.approx(expected.metrics["roc_auc"]["estimate"], abs=1e-6)  # the TSV keeps 6 digits
    assert abs(value - ungrouped.metrics["roc_auc"]["estimate"]) > 1e-3


def test_random_sets_leave_out_the_classes_the_signature_job_leaves_out(planted, tmp_path):
    """A class below min_class_size is left out of the random sets' task as of the signature's."""
    X, y = planted
    status = np.where(y == 1, "case", "control").astype(object)
    status[:2] = "rare"  # 2 samples: below the default minimum of 3 outer folds
    sheet = pd.DataFrame({"sample": X.index, "status": status})
    io.write_matrix(X, tmp_path / "normalized.parquet", unit="log2", namespace="feature")
    io.write_sheet(sheet, tmp_path / "samples.tsv")
    write_groups({"sig": {"genes": list(X.columns[:PLANTED]), "missing": []}}, tmp_path / "groups.json")
    files = [tmp_path / "normalized.parquet", tmp_path / "samples.tsv", tmp_path / "groups.json"]
    out = tmp_path / "random_sets.tsv"
    task = {"type": "multiclass", "label": "status"}
    identity = {"dataset": "syn", "task": "status", "group": "sig", "model": "enet"}
    steps.train_random_sets(
        *files,
        out,
        identity=identity,
        count=1,
        task_cfg=task,
        model_cfg=MODEL,
        cv=CV,
        preprocessing=PREP,
        normalization="none",
        covariates=[],
        seed=5,
    )
    drawn = read_random_sets(out)["genes"][0]
    kept = status != "rare"
    expected = random_sets.score(
        X[list(drawn)][kept], status[kept].astype(str), "multiclass", MODEL, CV, PREP, "none", 5
    )
    assert metric_values(read_random_sets(out), "roc_auc")[0] == pytest.approx(expected["roc_auc"], abs=1e-6)
