"""The engine benchmark (metasig.bench.engine): its synthetic data and its harness on a tiny shape."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from metasig import io
from metasig.bench import engine, engine_report, engine_run, reference, synthetic

TINY = replace(synthetic.QUICK["a"], n_genes=80, classes={"negative": 60, "positive": 15}, n_sets=5, planted=12)


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    for name in ("one", "two"):
        synthetic.write(TINY, tmp_path / name)
    for file in ("normalized.parquet", "samples.tsv", "groups.json", "manifest.json"):
        assert (tmp_path / "one" / file).read_bytes() == (tmp_path / "two" / file).read_bytes(), file
    other = synthetic.generate(TINY, seed=1)[0]
    assert not np.allclose(other.to_numpy(), synthetic.generate(TINY)[0].to_numpy())


def test_seed_shapes_and_class_sizes():
    a, b, c, d = (synthetic.FULL[k] for k in "abcd")
    assert (a.n_samples, a.n_genes, a.classes["positive"]) == (1218, 20530, 124)
    assert (b.n_samples, b.n_genes, len(b.classes)) == (281, 22283, 7) and len(set(b.classes.values())) == 7
    assert (c.n_samples, c.n_genes, len(c.classes)) == (801, 20531, 5)
    assert d.kind == "survival" and d.n_samples == 1218
    for case in synthetic.QUICK.values():  # quick shapes keep every class big enough for stratified CV
        assert min(case.classes.values()) >= 8


@pytest.mark.parametrize("letter", ["a", "b", "d"])
def test_written_files_follow_the_contracts(tmp_path, letter):
    case = synthetic.QUICK[letter]
    manifest = synthetic.write(case, tmp_path)
    matrix, meta = io.read_matrix(tmp_path / "normalized.parquet")
    sheet = io.read_sheet(tmp_path / "samples.tsv")
    groups = io.read_json(tmp_path / "groups.json")
    assert matrix.shape == (case.n_samples, case.n_genes) and meta["unit"] == case.unit
    assert list(sheet["sample"]) == list(matrix.index)
    assert groups["ALL"]["genes"] == list(matrix.columns)
    assert all(set(g["genes"]) <= set(matrix.columns) and g["missing"] == [] for g in groups.values())
    assert (matrix.to_numpy() > 0).all()  # log2(x + 1) of positive expression
    if case.kind == "survival":
        assert abs(sheet["event"].mean() - case.event_rate) < 0.03 and (sheet["time"] > 0).all()
    else:
        assert sheet[case.label].value_counts().to_dict() == case.classes
    if letter == "a":  # the HER2 example's gene set is among the planted genes
        assert set(synthetic.ERBB2_AMPLICON) <= set(manifest["planted_genes"])
        assert 10 <= min(len(g["genes"]) for name, g in groups.items() if name.startswith("GS"))
        assert max(len(g["genes"]) for g in groups.values() if g is not groups["ALL"]) <= 200


def _cv_auc(matrix, y, genes):
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    return cross_val_score(model, matrix[genes], y, cv=folds, scoring="roc_auc").mean()


def test_planted_signal_is_found_and_null_groups_are_at_chance():
    case = replace(synthetic.QUICK["a"], n_genes=600, classes={"negative": 360, "positive": 40}, n_sets=10)
    matrix, sheet, groups, manifest = synthetic.generate(case)
    y = (sheet[case.label] == "positive").to_numpy()
    assert _cv_auc(matrix, y, manifest["planted_genes"]) > 0.8
    nulls = [g for g in groups if g.startswith("GS") and g not in manifest["groups_with_planted"]]
    assert len(nulls) >= 5
    assert abs(np.mean([_cv_auc(matrix, y, groups[g]) for g in nulls]) - 0.5) < 0.08


def test_survival_hazard_follows_the_planted_genes():
    from sksurv.metrics import concordance_index_censored

    matrix, sheet, _, manifest = synthetic.generate(synthetic.QUICK["d"])
    planted = StandardScaler().fit_transform(matrix[manifest["planted_genes"]])
    random_genes = StandardScaler().fit_transform(matrix.drop(columns=manifest["planted_genes"]).iloc[:, :40])
    event, time = sheet["event"].astype(bool), sheet["time"]

    # the oracle risk is unknown here; the first principal direction of the planted block is not:
    # it must order survival better than the same from genes without signal
    def c_of(block):
        top = np.linalg.svd(block, full_matrices=False)[0][:, 0]
        c = concordance_index_censored(event, time, top)[0]
        return max(c, 1 - c)

    assert c_of(planted) > c_of(random_genes)


@pytest.mark.parametrize("kind", ["xgboost", "elasticnet", "random_forest", "logistic", "svm", "coxph", "xgboost_cox"])
def test_reference_grid_is_metasigs(kind):
    from metasig.learn import models

    task = "survival" if kind in ("coxph", "xgboost_cox") else "binary"
    _, grid = models.build({"kind": kind}, task, {"scale": True}, "none", 0)
    ours = {k.removeprefix("model__"): list(v) for k, v in grid.items()}
    # the svm reference is CalibratedClassifierCV(SVC()): its SVC's parameters are estimator__*
    assert ours == {k.removeprefix("estimator__"): v for k, v in reference.GRIDS[kind].items()}


def test_harness_runs_a_tiny_job_and_fills_every_column(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(synthetic.QUICK, "a", TINY)
    # a short CV so the job takes seconds; outer split 0 is the same as the default CV's
    monkeypatch.setattr(
        engine, "CV", {"outer_folds": 5, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 20, "permuted_repeats": 1}
    )
    summary = engine.main(
        ["--quick", "--case", "a", "--model", "elasticnet", "--no-small-groups", "--threads", "1"]
        + ["--today", "off", "--workdir", str(tmp_path / "work"), "--save-dir", str(tmp_path), "--out", "t"]
    )
    out = capsys.readouterr().out
    assert "start  a/ALL/elasticnet [metasig]" in out and "done   a/ALL/elasticnet [reference]" in out
    (row,) = summary["rows"]
    assert row["metasig"]["status"] == "ok" and row["reference"]["status"] == "ok"
    assert 0 <= row["metasig"]["metric"] <= 1 and row["metasig"]["peak_rss_mb"] > 0
    assert row["metric_difference"] is not None and row["speedup_vs_reference"] > 0
    table = (tmp_path / "t.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| case"))
    assert [c.strip() for c in header.strip("|").split("|")] == engine_report.COLUMNS
    cells = engine_report.table_rows(summary["rows"])[0]
    assert all(cells[c] not in ("", None) for c in engine_report.COLUMNS)
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["rows"][0]["case"] == "a" and saved["gpu"]


def test_per_fold_metric_is_read_for_the_requested_splits(tmp_path):
    rows = []
    for repeat in range(2):
        for fold in range(5):
            y = np.array([0, 1, 0, 1])
            score = np.array([0.1, 0.9, 0.2, 0.3]) if (repeat, fold) == (0, 1) else np.array([0.9, 0.1, 0.8, 0.2])
            for i in range(4):
                rows.append(["real", repeat, fold, f"s{i}", y[i], score[i]])
    frame = pd.DataFrame(rows, columns=["control", "repeat", "fold", "sample", "y_true", "score"])
    frame.to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    assert engine_report.fold_metrics(tmp_path / "p.tsv", "binary", [0, 1]) == {0: 0.0, 1: 1.0}


def test_child_gives_the_job_its_threads_as_scripts_train_does(monkeypatch):
    """The benchmark's job must get Snakemake's threads (steps.train(threads=)), or every job it
    times runs its outer folds one at a time."""
    import importlib.util

    from metasig.learn import steps

    seen = {}

    def train(*args, threads=1, **kwargs):
        seen["threads"] = threads

    monkeypatch.setattr(steps, "train", train)
    spec = importlib.util.spec_from_file_location("engine_child", engine.REPO / "metasig" / "bench" / "engine_child.py")
    child = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(child)
    job = {"matrix": "m", "samples": "s", "groups": "g", "outdir": "o", "identity": {}, "task": {}, "model": {}}
    child._train({**job, "cv": {}, "preprocessing": {}, "normalization": "none", "seed": 0, "threads": 3})
    assert seen["threads"] == 3


def test_child_runs_an_old_flat_tree_not_the_branchs_steps(tmp_path):
    """Today's engine (metasig/steps.py, no metasig.learn) runs from its extracted tree on
    PYTHONPATH. The project's editable install serves missing submodules from the branch, so the
    child must pick the old tree's steps by its layout, not by trying the new import first."""
    import subprocess
    import sys

    old = tmp_path / "old" / "metasig"
    old.mkdir(parents=True)
    (old / "__init__.py").write_text("")
    marker = tmp_path / "ran_old_steps"
    (old / "steps.py").write_text(f"def train(*args, **kwargs):\n    open({str(marker)!r}, 'w').close()\n")
    job = {"matrix": "m", "samples": "s", "groups": "g", "outdir": "o", "identity": {}, "task": {}, "model": {}}
    spec = {**job, "mode": "train", "cv": {}, "preprocessing": {}, "normalization": "none", "seed": 0, "threads": 1}
    spec["result"] = str(tmp_path / "result.json")
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    child = engine.REPO / "metasig" / "bench" / "engine_child.py"
    env = {"PYTHONPATH": str(tmp_path / "old"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-P", str(child), str(tmp_path / "spec.json")], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert marker.exists()


def test_reference_sweep_members_are_metasigs():
    from metasig.learn import models

    ours = models._sweep_members(0)
    refs = [entry["model"][0] for entry in reference._sweep_grid(0)]
    assert [type(r).__name__ for r in refs] == ["LogisticRegression"] * 3 + ["SGDClassifier"]
    assert [r.l1_ratio for r in refs[:3]] == [m.l1_ratio for m in ours[:3]]
    keys = ("loss", "max_iter", "tol", "class_weight")
    assert {k: refs[3].get_params()[k] for k in keys} == {k: ours[3].get_params()[k] for k in keys}


def test_per_outer_fit_divides_the_folds_own_seconds_by_the_threads_that_ran_them():
    from metasig.bench.engine_report import per_outer_fit

    assert per_outer_fit({"nested_cv_seconds": 60.0, "n_jobs": 2}, 15) == 2.0  # one pool: folds' own seconds
    assert per_outer_fit({"nested_cv_seconds": 30.0}, 15) == 2.0  # older engines: the wall time, no n_jobs
    assert per_outer_fit({"fit_seconds": 30.0}, 15) is None


def test_a_today_run_killed_at_the_timeout_gives_a_lower_bound():
    metasig = {"status": "ok", "wall_s": 20.0, "fit_s": 18.0, "metric": 0.8, "permuted": 0.5, "peak_pss_mb": 300}
    for today_wall, expected in ((300.0, True), (150.0, None)):  # 15x proven; 7.5x proves nothing
        row = {"case": "a", "group": "ALL", "quick": True, "shape": [200, 300], "model": "elasticnet"}
        row.update(metasig=dict(metasig), today={"status": "timeout", "wall_s": today_wall}, reference=None)
        engine_report.compare(row)
        assert row["speedup_vs_today"] is None and row["speedup_vs_today_at_least"] == today_wall / 20.0
        assert row["targets"][">= 10x today"] is expected
        cells = engine_report.table_rows([row])[0]
        assert cells["speedup vs today"] == f"> {today_wall / 20.0:.1f}x" and cells["today"].startswith("timeout")


class _FakeProcess:
    """memory_info().rss and memory_full_info().pss of a process, counting the PSS readings."""

    def __init__(self, rss, pss):
        self.rss, self.pss, self.pss_reads = rss, pss, 0

    def memory_info(self):
        return type("Info", (), {"rss": self.rss})()

    def memory_full_info(self):
        self.pss_reads += 1
        return type("Info", (), {"pss": self.pss})()


def test_tree_memory_reads_pss_at_new_rss_highs_and_every_second_only(monkeypatch):
    procs = [_FakeProcess(100, 80), _FakeProcess(50, 30)]
    monkeypatch.setattr(engine_run.TreeMemory, "_tree", lambda self: procs)
    memory = engine_run.TreeMemory(os.getpid())
    memory.sample(0.0)
    assert (memory.peak_rss, memory.peak_pss, procs[0].pss_reads) == (150, 110, 1)
    memory.sample(0.2)  # same RSS, 0.2 s later: PSS not read again
    assert procs[0].pss_reads == 1
    procs[1].rss, procs[1].pss = 60, 40  # a new RSS high: read at once
    memory.sample(0.4)
    assert (memory.peak_rss, memory.peak_pss, procs[0].pss_reads) == (160, 120, 2)
    procs[1].rss, procs[1].pss = 55, 45  # below the RSS peak, but PSS grew: read after a second
    memory.sample(0.6)
    assert memory.peak_pss == 120
    memory.sample(1.5)
    assert (memory.peak_pss, procs[0].pss_reads) == (125, 3)
    procs[0].rss = procs[1].rss = 50  # RSS 100 <= peak PSS 125: PSS cannot exceed it, not read
    memory.sample(5.0)
    assert procs[0].pss_reads == 3


def test_tree_memory_of_a_real_child_counts_what_it_holds():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; b = b'x' * (200 * 2**20); print(1, flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
    )
    try:
        child.stdout.readline()  # allocated and written, so resident
        memory = engine_run.TreeMemory(child.pid)
        memory.sample(0.0)
        assert 200 * 2**20 < memory.peak_rss < 400 * 2**20
        assert 190 * 2**20 < memory.peak_pss <= memory.peak_rss
    finally:
        child.kill()
        child.wait()


def test_the_memory_target_is_2_gb_in_si_units_and_memory_is_shown_in_mib():
    """Under 2 GB: 2,000,000,000 bytes, 1,907 MiB; a job at 1,950 MiB (2,045 MB) misses it."""
    for pss_mib, met in ((1_900, True), (1_950, False)):
        metasig = {
            "status": "ok",
            "wall_s": 20.0,
            "fit_s": 18.0,
            "metric": 0.8,
            "permuted": 0.5,
            "peak_pss_mb": pss_mib,
        }
        row = {"case": "a", "group": "ALL", "quick": False, "shape": [1218, 20530], "model": "elasticnet"}
        row.update(metasig=metasig, today=None, reference=None)
        engine_report.compare(row)
        assert row["targets"]["peak memory < 2 GB"] is met
        assert engine_report.table_rows([row])[0]["peak PSS"] == f"{pss_mib:,} MiB"


def test_reference_screens_tree_classifiers_as_metasig_does():
    from metasig.learn import models

    assert reference.SCREEN_K == {k: v for k, v in models.WIDE_INPUT_SELECT_K.items() if k != "xgboost_cox"}


@pytest.mark.parametrize("screen", [True, False])
def test_reference_fits_the_screen_inside_every_fit_unless_told_not_to(tmp_path, monkeypatch, screen):
    from sklearn.feature_selection import SelectKBest

    synthetic.write(TINY, tmp_path)
    monkeypatch.setitem(reference.SCREEN_K, "xgboost", 7)
    screened = []
    fit = SelectKBest.fit

    def spy(self, X, y):
        screened.append((X.shape, self.k))
        return fit(self, X, y)

    monkeypatch.setattr(SelectKBest, "fit", spy)
    spec = {"data_dir": str(tmp_path), "group": "ALL", "task": synthetic.task_cfg(TINY), "model": {"kind": "xgboost"}}
    out = reference.run_split({**spec, "seed": 0, "split": 0, "threads": 1, "screen": screen})
    assert 0 <= out["metric"] <= 1
    if screen:  # 4 candidates x 3 inner splits + the refit, each on its own rows
        n_train = TINY.n_samples - out["test_size"]
        assert len(screened) == 13 and {k for _, k in screened} == {7}
        assert {shape[1] for shape, _ in screened} == {TINY.n_genes}
        assert max(shape[0] for shape, _ in screened) == n_train > min(shape[0] for shape, _ in screened)
    else:
        assert screened == []
