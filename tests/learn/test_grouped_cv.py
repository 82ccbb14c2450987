"""Grouped cross-validation (cv.group_by, cv.scheme): no group is ever split, outer, inner or in
the permuted control; without grouping the splits are exactly the sample-level ones; grouping
removes the optimism near-duplicate samples of one patient give sample-level CV."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold

from metasig.data import checks
from metasig.errors import InputError
from metasig.learn import metrics, models, splits
from metasig.learn import nested_cv as ncv
from metasig.learn.job import train, write_outputs

BINARY = ["0", "1"]


def _design(rng, kind):
    """A random design: 4-40 groups of 1-6 samples, class imbalance, labels constant within
    groups or not; returns (y, groups as text, k outer folds)."""
    n_groups = int(rng.integers(4, 41))
    sizes = rng.integers(1, 7, n_groups)
    codes = np.repeat(rng.permutation(n_groups), sizes)  # groups in scattered order
    groups = np.array([f"p{c}" for c in codes])
    n = len(groups)
    per_group = rng.random() < 0.5
    rate = rng.uniform(0.1, 0.5)
    if kind == "survival":
        y = np.empty(n, dtype=[("event", bool), ("time", float)])
        event, time = rng.random(n_groups) < rate, rng.uniform(1, 100, n_groups).round(1)
        y["event"] = event[codes] if per_group else rng.random(n) < rate
        y["time"] = time[codes] if per_group else rng.uniform(1, 100, n).round(1)
    elif kind == "multiclass":
        p = [rate, (1 - rate) / 2, (1 - rate) / 2]
        y = (
            np.array(["a", "b", "c"])[rng.choice(3, n_groups, p=p)][codes]
            if per_group
            else rng.choice(np.array(["a", "b", "c"]), n, p=p)
        )
    else:
        y = (rng.random(n_groups) < rate).astype(int)[codes] if per_group else (rng.random(n) < rate).astype(int)
    k = int(rng.integers(2, min(n_groups, 6) + 1))
    return y, groups, k


def _check_partition(parts, groups, n):
    """Test (or validation) parts of one repeat: every sample once, no group in two parts, and no
    group on both sides of a split."""
    tested = np.concatenate([test for _, test in parts])
    assert sorted(tested) == list(range(n))
    owner = {}
    for i, (fit, test) in enumerate(parts):
        assert len(test) and not set(groups[fit]) & set(groups[test])
        for g in set(groups[test]):
            assert owner.setdefault(g, i) == i, f"group {g} in two test folds"


@pytest.mark.filterwarnings("ignore:The least populated class")  # small random designs, on purpose
@pytest.mark.parametrize("kind", ["binary", "multiclass", "survival"])
def test_no_group_is_ever_split_over_random_designs(kind):
    rng = np.random.default_rng({"binary": 1, "multiclass": 2, "survival": 3}[kind])
    checked = 0
    for _ in range(150):
        y, groups, k = _design(rng, kind)
        strata = splits.strata(y, kind)
        if np.max(np.unique(strata, return_counts=True)[1]) < k:
            continue  # StratifiedGroupKFold needs one stratum with k samples (the checks refuse less)
        seed = int(rng.integers(1000))
        cv = {"outer_folds": k, "outer_repeats": 2, "inner_folds": 2}
        outer = splits.outer_splits(y, kind, cv, seed, groups)
        assert sorted({r for r, *_ in outer}) == [0, 1]
        for r in (0, 1):
            parts = [(tr, te) for rep, _, tr, te in outer if rep == r]
            assert len(parts) == k
            _check_partition(parts, groups, len(y))
        for _, _, fit, _ in outer:  # inner splits of each outer training part
            if len(set(groups[fit])) >= 2:
                inner = splits.inner_splits(y[fit], kind, cv, seed, groups[fit])
                _check_partition(inner, groups[fit], len(fit))
        logo = splits.outer_splits(y, kind, {**cv, "scheme": "leave_one_group_out"}, seed, groups)
        assert len(logo) == len(set(groups)) and {r for r, *_ in logo} == {0}
        _check_partition([(tr, te) for _, _, tr, te in logo], groups, len(y))
        assert all(len(set(groups[te])) == 1 for *_, te in logo)
        _check_permutation(y, groups, seed)
        checked += 1
    assert checked > 100


def _check_permutation(y, groups, seed):
    perm = splits.permute(y, seed, groups)
    assert perm.dtype == y.dtype and len(perm) == len(y)
    labels = pd.Series(list(map(repr, y.tolist())))
    moved = pd.Series(list(map(repr, perm.tolist())))
    before = labels.groupby(groups).agg(lambda v: tuple(sorted(v)))
    after = moved.groupby(groups).agg(lambda v: tuple(sorted(v)))
    if (labels.groupby(groups).nunique() == 1).all():
        # whole groups swap labels: still one label per group, the groups' labels reshuffled
        assert (moved.groupby(groups).nunique() == 1).all()
        assert sorted(before.str[0]) == sorted(after.str[0])
    else:  # a free permutation of the samples' labels
        assert sorted(labels) == sorted(moved)
        assert np.array_equal(perm, y[np.random.default_rng(seed).permutation(len(y))])
    assert np.array_equal(perm, splits.permute(y, seed, groups))  # seeded


def test_without_groups_the_splits_and_permutation_are_the_sample_level_ones():
    """Ungrouped studies must not change: the splits and the permutation are exactly those of
    RepeatedStratifiedKFold, StratifiedKFold(shuffle) and default_rng(seed).permutation."""
    rng = np.random.default_rng(0)
    X = np.zeros((97, 1))
    for kind, y in (("binary", (rng.random(97) < 0.3).astype(int)), ("multiclass", rng.choice(list("abc"), 97))):
        cv = {"outer_folds": 5, "outer_repeats": 3, "inner_folds": 3, "scheme": "kfold"}
        ours = splits.outer_splits(y, kind, cv, 42)
        ref = RepeatedStratifiedKFold(n_splits=5, n_repeats=3, random_state=42).split(X, y)
        for (repeat, fold, tr, te), (rtr, rte), i in zip(ours, ref, range(15)):
            assert (repeat, fold) == divmod(i, 5) and np.array_equal(tr, rtr) and np.array_equal(te, rte)
        assert len(ours) == 15
        inner = splits.inner_splits(y, kind, cv, 42)
        for (tr, va), (rtr, rva) in zip(inner, StratifiedKFold(3, shuffle=True, random_state=42).split(X, y)):
            assert np.array_equal(tr, rtr) and np.array_equal(va, rva)
        assert np.array_equal(splits.permute(y, 42), y[np.random.default_rng(42).permutation(len(y))])


@pytest.fixture(scope="module")
def duplicates():
    """60 patients with random labels, each measured 3 times almost identically (3 aliquots):
    there is no biology to learn, only patients to recognise."""
    rng = np.random.default_rng(13)
    n_patients, p = 60, 30
    profile = rng.normal(size=(n_patients, p))
    label = rng.permutation(np.r_[np.zeros(n_patients // 2, int), np.ones(n_patients // 2, int)])
    patient = np.repeat(np.arange(n_patients), 3)
    X = profile[patient] + rng.normal(scale=0.05, size=(len(patient), p))
    X = pd.DataFrame(X, index=[f"s{i}" for i in range(len(patient))], columns=[f"g{j}" for j in range(p)])
    return X, label[patient], np.array([f"P{i:02d}" for i in patient])


CV = {"outer_folds": 5, "outer_repeats": 1, "inner_folds": 3, "bootstrap": 200, "permuted_repeats": 1}
FOREST = {"kind": "random_forest", "params": {"n_estimators": 20}, "search": {"min_samples_leaf": [1, 3]}}
TASK = {"type": "binary", "label": "y", "positive": "1"}


def test_near_duplicate_samples_inflate_sample_level_cv_but_not_grouped_cv(duplicates):
    X, y, patient = duplicates
    pipeline, grid = models.build(FOREST, "binary", {"scale": True}, "none", seed=0)

    def auc(groups, cv):
        pred = ncv.nested_cv(pipeline, grid, X, y, "binary", cv, seed=0, groups=groups)
        return metrics.bootstrap_ci(pred, metrics.classification_metric_fn(BINARY), 200, 0)["roc_auc"]["estimate"]

    leaky, grouped = auc(None, CV), auc(patient, {**CV, "group_by": "patient"})
    print(f"near-duplicate aliquots: sample-level ROC-AUC {leaky:.3f}, grouped by patient {grouped:.3f}")
    assert leaky > 0.9  # the model recognises the patient of a test sample's twins
    assert 0.3 <= grouped <= 0.7  # no signal: chance


def test_job_records_grouping_and_keeps_groups_together_in_every_control(duplicates, tmp_path):
    X, y, patient = duplicates
    cv = {**CV, "outer_repeats": 2, "group_by": "patient", "permuted_repeats": 2}
    seen = []
    real_search = ncv.search

    def spy(pipeline, grid, X, y_train, kind, inner, *rest, rows=None):
        seen.append((list(X.index if rows is None else X.index[rows]), inner))  # the training part's samples
        return real_search(pipeline, grid, X, y_train, kind, inner, *rest, rows=rows)

    of = dict(zip(X.index, patient))
    ncv.search = spy
    try:
        result = train(X, y, TASK, FOREST, cv, {"scale": True}, "none", seed=5, groups=patient)
    finally:
        ncv.search = real_search
    # inner splits (outer folds, permuted control, final fit) never split a patient
    assert len(seen) == 2 * 5 + 2 * 5 + 1
    for index, inner in seen:
        g = np.array([of[s] for s in index])
        _check_partition(inner, g, len(index))
    pred = result.predictions
    pred = pred.assign(patient=pred["sample"].map(of))
    for (_, _), part in pred.groupby(["control", "repeat"]):
        assert (part.groupby("patient")["fold"].nunique() == 1).all()  # one fold per patient
    permuted = pred[pred["control"] == "permuted"]
    assert (permuted.groupby(["repeat", "patient"])["y_true"].nunique() == 1).all()  # labels move by patient
    real = pred[pred["control"] == "real"].drop_duplicates("sample").set_index("sample")["y_true"]
    assert (permuted.set_index("sample")["y_true"] != real.reindex(permuted["sample"]).to_numpy()).any()
    identity = {"dataset": "d", "task": "t", "group": "ALL", "model": "rf", "model_kind": "random_forest"}
    write_outputs(result, tmp_path / "a", identity, list(X.columns))
    doc = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert doc["cv"]["group_by"] == "patient" and doc["cv"]["scheme"] == "kfold" and doc["cv"]["n_groups"] == 60
    # same seed, same bytes, with outer folds fitted two at a time
    again = train(X, y, TASK, FOREST, cv, {"scale": True}, "none", seed=5, n_jobs=2, groups=patient)
    write_outputs(again, tmp_path / "b", identity, list(X.columns))
    assert (tmp_path / "a" / "metrics.json").read_bytes() == (tmp_path / "b" / "metrics.json").read_bytes()


def test_grouped_bootstrap_resamples_patients():
    """Five identical copies of each of 40 patients: resampling the copies one by one pretends
    to 200 independent samples; resampling patients gives the wider, honest interval."""
    rng = np.random.default_rng(4)
    label = rng.permutation(np.r_[np.zeros(20, int), np.ones(20, int)])
    score = np.clip(0.5 + 0.25 * (label - 0.5) + rng.normal(scale=0.25, size=40), 0, 1)
    patient = np.repeat(np.arange(40), 5)
    pred = pd.DataFrame(
        {"repeat": 0, "fold": 0, "sample": [f"s{i}" for i in range(200)], "y_true": label[patient]}
    ).assign(score=score[patient])
    fn = metrics.classification_metric_fn(BINARY)
    plain = metrics.bootstrap_ci(pred, fn, 500, 0)["roc_auc"]
    grouped = metrics.bootstrap_ci(pred, fn, 500, 0, groups=dict(zip(pred["sample"], patient)))["roc_auc"]
    assert plain["estimate"] == grouped["estimate"]
    width = {k: ci["ci_high"] - ci["ci_low"] for k, ci in (("plain", plain), ("grouped", grouped))}
    assert width["grouped"] > 1.7 * width["plain"]  # about sqrt(5) wider
    # one group per sample: the same as no groups
    same = metrics.bootstrap_ci(pred, fn, 500, 0, groups={s: s for s in pred["sample"]})["roc_auc"]
    assert same == plain
    with pytest.raises(ValueError, match="no group for sample s0"):
        metrics.bootstrap_ci(pred, fn, 50, 0, groups={"s1": 1})


def test_leave_one_group_out(duplicates, tmp_path):
    X, y, patient = duplicates
    batch = np.array([f"B{int(p[1:]) % 6}" for p in patient])  # 6 batches of 10 patients
    cv = {**CV, "outer_repeats": 3, "group_by": "batch", "scheme": "leave_one_group_out"}
    result = train(X, y, TASK, FOREST, cv, {"scale": True}, "none", seed=0, groups=batch)
    real = result.predictions[result.predictions["control"] == "real"]
    assert set(real["repeat"]) == {0} and len(real) == len(X)  # one repeat, each sample once
    by_fold = real.assign(batch=real["sample"].map(dict(zip(X.index, batch)))).groupby("fold")["batch"]
    assert (by_fold.nunique() == 1).all() and sorted(by_fold.first()) == sorted(set(batch))
    assert result.cv["outer_folds"] == 6 and result.cv["outer_repeats"] == 1
    identity = {"dataset": "d", "task": "t", "group": "ALL", "model": "rf", "model_kind": "random_forest"}
    write_outputs(result, tmp_path, identity, list(X.columns))
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["cv"]["scheme"] == "leave_one_group_out" and doc["cv"]["n_groups"] == 6


def test_ungrouped_metrics_json_records_no_grouping(duplicates, tmp_path):
    X, y, _ = duplicates
    result = train(X, y, TASK, FOREST, CV, {"scale": True}, "none", seed=0)
    identity = {"dataset": "d", "task": "t", "group": "ALL", "model": "rf", "model_kind": "random_forest"}
    write_outputs(result, tmp_path, identity, list(X.columns))
    assert set(json.loads((tmp_path / "metrics.json").read_text())["cv"]) == {
        "outer_folds",
        "outer_repeats",
        "inner_folds",
        "bootstrap",
        "permuted_repeats",
        "tuning",  # out_of_bag: a forest on ungrouped samples (tests/learn/test_oob.py)
    }
    with pytest.raises(ValueError, match="go together"):
        train(X, y, TASK, FOREST, {**CV, "group_by": "patient"}, {"scale": True}, "none", seed=0)


# ---- up-front checks ----------------------------------------------------------------------------


def _sheet(n_patients=10, per=2, positive_every=2, prefix="P"):
    rows = []
    for p in range(n_patients):
        for a in range(per):
            rows.append(
                {
                    "sample": f"{prefix}{p:02d}-{a}",
                    "y": "pos" if p % positive_every == 0 else "neg",
                    "patient": f"{prefix}{p:02d}",
                }
            )
    return pd.DataFrame(rows)


BIN = {"type": "binary", "label": "y", "positive": "pos", "models": ["m"]}
WHERE = "datasets.d.tasks.t"


def test_group_column_missing_or_empty_is_an_input_error():
    sheet = _sheet()
    with pytest.raises(InputError) as err:
        checks.check_folds(sheet, BIN, {"outer_folds": 3, "inner_folds": 2, "group_by": "donor"}, "s.tsv", WHERE)
    assert err.value.field == "donor" and "datasets.d.tasks.t.cv.group_by" in err.value.problem
    assert "not found" in err.value.problem
    sheet.loc[3, "patient"] = ""
    with pytest.raises(InputError) as err:
        checks.check_folds(sheet, BIN, {"outer_folds": 3, "inner_folds": 2, "group_by": "patient"}, "s.tsv", WHERE)
    assert err.value.field == "patient" and "P01-1" in err.value.problem and "no group value" in err.value.problem


def test_too_few_groups_is_an_input_error():
    folds = {"outer_folds": 5, "inner_folds": 3, "group_by": "patient"}
    checks.check_folds(_sheet(n_patients=20), BIN, folds, "s.tsv", WHERE)  # 10 groups per class: fine
    with pytest.raises(InputError) as err:  # 4 groups, 5 folds
        checks.check_folds(_sheet(n_patients=4, per=5), BIN, folds, "s.tsv", WHERE)
    assert err.value.field == "patient" and "4 group(s)" in err.value.problem
    # enough samples per class (sample-level folds would pass), too few positive patients
    with pytest.raises(InputError) as err:
        checks.check_folds(_sheet(n_patients=12, per=4, positive_every=4), BIN, folds, "s.tsv", WHERE)
    assert "class 'pos' occurs in 3 group(s)" in err.value.problem
    logo = {**folds, "scheme": "leave_one_group_out"}
    with pytest.raises(InputError) as err:  # a class in 2 patients: left out, 1 remains for 3 inner folds
        checks.check_folds(_sheet(n_patients=8, per=3, positive_every=4), BIN, logo, "s.tsv", WHERE)
    assert "class 'pos' occurs in 2 group(s)" in err.value.problem and "leaving one group out" in err.value.problem
    checks.check_folds(_sheet(n_patients=8, per=3, positive_every=2), BIN, {**logo, "inner_folds": 2}, "s.tsv", WHERE)


def test_shared_tcga_participants_warn_once_with_the_fix(caplog):
    sheet = _sheet(n_patients=10, per=1)
    barcodes = [f"TCGA-A1-A{p:03d}-01A" for p in range(10)]
    sheet["sample"] = barcodes
    folds = {"outer_folds": 3, "inner_folds": 2}
    with caplog.at_level(logging.WARNING, logger="metasig.data.checks"):
        checks.check_folds(sheet, BIN, folds, "s.tsv", WHERE)  # one sample per participant: quiet
        assert not caplog.records
        normals = sheet.head(4).assign(sample=[b.replace("-01A", "-11A") for b in barcodes[:4]])
        checks.check_folds(pd.concat([sheet, normals]), BIN, folds, "s.tsv", WHERE)
        grouped = {**folds, "group_by": "patient"}
        checks.check_folds(
            pd.concat([sheet, normals]).assign(patient=lambda f: f["sample"].str[:12]), BIN, grouped, "s.tsv", WHERE
        )
    (record,) = caplog.records
    assert "4 TCGA participant(s)" in record.message and "cv.group_by" in record.message and WHERE in record.message


def test_scheme_needs_group_by_in_the_config(tmp_path):
    from metasig import config as mconfig

    cfg = {
        "models": {"m": {"kind": "elasticnet"}},
        "datasets": {
            "d": {
                "source": "builtin",
                "name": "breast_cancer",
                "unit": "features",
                "namespace": "feature",
                "gene_groups": {"ALL": "ALL"},
                "tasks": {"t": {**BIN, "cv": {"scheme": "leave_one_group_out"}}},
            }
        },
    }
    with pytest.raises(InputError) as err:
        mconfig.check(cfg, "c.yaml")
    assert err.value.field == "datasets.d.tasks.t.cv.scheme" and "group_by" in err.value.problem
    cfg["cv"] = {"group_by": "patient"}
    checked = mconfig.check(cfg, "c.yaml")
    assert mconfig.fold_settings(checked, "d", "t") == {
        "outer_folds": 5,
        "inner_folds": 3,
        "group_by": "patient",
        "scheme": "leave_one_group_out",
    }
    cfg["datasets"]["d"]["tasks"]["t"]["cv"] = {"group_by": None}  # a task may opt out of a top-level grouping
    assert mconfig.fold_settings(mconfig.check(cfg, "c.yaml"), "d", "t") == {"outer_folds": 5, "inner_folds": 3}
    cfg.pop("cv")
    cfg["datasets"]["d"]["tasks"]["t"].pop("cv")
    assert mconfig.fold_settings(mconfig.check(cfg, "c.yaml"), "d", "t") == {"outer_folds": 5, "inner_folds": 3}


def test_training_job_reads_the_group_column(tmp_path, duplicates):
    """The rule adapter takes each sample's group from the sample sheet; an empty cell stops the
    job before any fit, naming the sheet and the column."""
    from metasig import io
    from metasig.learn import steps

    X, y, patient = duplicates
    X = X.iloc[:60].rename_axis("sample")
    io.write_matrix(X, tmp_path / "m.parquet", "log2", "symbol", extra={"source": "test"})
    sheet = pd.DataFrame({"sample": X.index, "y": np.where(y[:60] == 1, "1", "0"), "patient": patient[:60]})
    io.write_sheet(sheet, tmp_path / "s.tsv")
    io.write_json({"ALL": {"genes": list(X.columns)}}, tmp_path / "g.json")
    cv = {**CV, "group_by": "patient", "bootstrap": 100}

    def job(out):
        steps.train(
            tmp_path / "m.parquet",
            tmp_path / "s.tsv",
            tmp_path / "g.json",
            tmp_path / out,
            {"dataset": "d", "task": "t", "group": "ALL", "model": "enet"},
            TASK,
            {"kind": "elasticnet", "search": {"C": [1.0], "l1_ratio": [0.5]}},
            cv,
            {"scale": True},
            "none",
            [],
            3,
        )

    job("ok")
    doc = json.loads((tmp_path / "ok" / "metrics.json").read_text())
    assert doc["cv"]["group_by"] == "patient" and doc["cv"]["n_groups"] == 20
    pred = pd.read_csv(tmp_path / "ok" / "predictions.tsv", sep="\t")
    pred["patient"] = pred["sample"].map(dict(zip(sheet["sample"], sheet["patient"])))
    assert (pred.groupby(["control", "repeat", "patient"])["fold"].nunique() == 1).all()
    io.write_sheet(sheet.assign(patient=[""] + list(sheet["patient"][1:])), tmp_path / "s.tsv")
    with pytest.raises(InputError) as err:
        job("bad")
    assert err.value.field == "patient" and "s0" in err.value.problem and not (tmp_path / "bad").exists()


def test_up_front_input_check_names_dataset_task_and_column(tmp_path):
    """The check every local dataset gets while Snakemake plans the run (before any job)."""
    from metasig.data import steps as data_steps

    sheet = _sheet(n_patients=12, per=2)
    matrix = pd.DataFrame(
        np.random.default_rng(0).poisson(50, (len(sheet), 6)),
        index=sheet["sample"],
        columns=[f"G{i}" for i in range(6)],
    )
    (tmp_path / "input").mkdir()
    matrix.rename_axis("sample").to_csv(tmp_path / "input" / "m.csv")
    sheet.to_csv(tmp_path / "input" / "s.tsv", sep="\t", index=False)
    ds = {
        "source": "table",
        "matrix": "input/m.csv",
        "samples": "input/s.tsv",
        "unit": "counts",
        "namespace": "symbol",
        "gene_groups": {"ALL": "ALL"},
        "tasks": {"t": BIN},
    }

    def check(folds):
        return data_steps.check_inputs(
            {"d": (ds, {"ALL": "ALL"}, {"t": folds})}, "my.yaml", "cache", tmp_path / "mk", tmp_path
        )

    with pytest.raises(InputError) as err:
        check({"outer_folds": 3, "inner_folds": 2, "group_by": "donor", "scheme": "kfold"})
    assert (err.value.file, err.value.field) == ("input/s.tsv", "donor")
    assert "datasets.d.tasks.t.cv.group_by" in err.value.problem
    assert check({"outer_folds": 3, "inner_folds": 2, "group_by": "patient", "scheme": "kfold"}) is True


def test_survival_job_keeps_patients_together():
    """Survival: folds stratified on the event and grouped; the control moves (time, event) by patient."""
    rng = np.random.default_rng(8)
    patient = np.repeat(np.arange(40), 2)
    X = pd.DataFrame(rng.normal(size=(40, 4))[patient] + rng.normal(scale=0.1, size=(80, 4)))
    X.index = [f"s{i}" for i in range(80)]
    X.columns = [f"g{j}" for j in range(4)]
    y = np.empty(80, dtype=[("event", bool), ("time", float)])
    y["event"] = (rng.random(40) < 0.5)[patient]
    y["time"] = rng.uniform(10, 100, 40)[patient]
    groups = np.array([f"P{p}" for p in patient])
    model = {"kind": "coxph", "search": {"penalizer": [0.1, 1.0], "l1_ratio": [0.0]}}
    cv = {**CV, "outer_folds": 3, "inner_folds": 2, "group_by": "patient"}
    result = train(
        X, y, {"type": "survival", "time": "time", "event": "event"}, model, cv, {}, "none", 1, groups=groups
    )
    pred = result.predictions.assign(patient=lambda f: f["sample"].map(dict(zip(X.index, groups))))
    assert (pred.groupby(["control", "repeat", "patient"])["fold"].nunique() == 1).all()
    permuted = pred[pred["control"] == "permuted"]
    assert (permuted.groupby("patient")[["time", "event"]].nunique() == 1).all().all()
    assert np.isfinite(result.metrics["c_index"]["estimate"]) and result.cv["n_groups"] == 40


def test_permutation_breaks_a_batchs_class_mix():
    """Labels that vary within batches: the control must not keep each batch's class mix, or a batch
    effect that tracks it scores above chance. Over many seeds a 90%-positive batch averages the
    overall rate of positives."""
    sizes, rates = [10, 12, 14, 16, 18, 20], [0.1, 0.3, 0.5, 0.5, 0.7, 0.9]
    groups = np.repeat([f"b{i}" for i in range(6)], sizes)
    y = np.concatenate([(np.arange(n) < round(r * n)).astype(int) for n, r in zip(sizes, rates)])
    last = groups == "b5"
    mixes = [splits.permute(y, seed, groups)[last].mean() for seed in range(300)]
    assert y[last].mean() == 0.9
    assert abs(np.mean(mixes) - y.mean()) < 0.05
