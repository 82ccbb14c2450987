"""Config validation: every bad config fails with a message naming the file and the field."""

from copy import deepcopy

import pytest
import yaml
from conftest import REPO

from metasig import config as mconfig
from metasig.errors import InputError


@pytest.fixture
def default():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_default_and_example_configs_are_valid(default, monkeypatch):
    monkeypatch.chdir(REPO)
    mconfig.check(default, "config.yaml")
    for example in (REPO / "config" / "examples").glob("*.yaml"):
        mconfig.check(yaml.safe_load(example.read_text()), example.name)


def test_jobs_cover_every_group_and_model(default, monkeypatch):
    monkeypatch.chdir(REPO)
    jobs = mconfig.jobs(mconfig.check(default))
    wdbc = [j for j in jobs if j[0] == "wdbc"]
    assert len(wdbc) == 3 * 4
    assert ("gse7390", "metastasis", "GSE7390_76_PROBES", "coxph") in jobs


def mutate(cfg, path, value):
    out = deepcopy(cfg)
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


BAD = [
    (("datasets", "wdbc", "unit"), "grams", "datasets.wdbc.unit"),
    (("datasets", "wdbc", "tasks", "malignancy", "positive"), KeyError, "datasets.wdbc.tasks.malignancy"),
    (("datasets", "wdbc", "tasks", "malignancy", "models"), ["nosuchmodel"], "datasets.wdbc.tasks.malignancy.models"),
    (("datasets", "wdbc", "tasks", "malignancy", "models"), ["coxph"], "datasets.wdbc.tasks.malignancy.models"),
    (("datasets", "gse7390", "tasks", "metastasis", "time"), KeyError, "datasets.gse7390.tasks.metastasis"),
    (("datasets", "wdbc", "source"), "ftp", "datasets.wdbc.source"),
    (("cv", "outer_folds"), 1, "cv.outer_folds"),
    (("datasets", "wdbc", "gene_groups", "mean"), [], "datasets.wdbc.gene_groups.mean"),
    (("datasets", "wdbc", "gene_groups", "bad/name"), ["a"], "datasets.wdbc.gene_groups"),
    (("datasets", "wdbc", "gene_groups", "gmtgroup"), {"gmt": "nope.gmt"}, "datasets.wdbc.gene_groups.gmtgroup.gmt"),
    (
        ("datasets", "wdbc", "tasks", "malignancy", "gate"),
        {"metric": "c_index", "min": 0.5},
        "datasets.wdbc.tasks.malignancy.gate.metric",
    ),
    (("datasets", "wdbc", "tasks", "malignancy", "groups"), ["nope"], "datasets.wdbc.tasks.malignancy.groups"),
    (("models", "xgboost", "kind"), "deep_learning", "models.xgboost.kind"),
]


@pytest.mark.parametrize("path,value,field", BAD, ids=[b[2] + ":" + str(b[1]) for b in BAD])
def test_bad_config_names_file_and_field(default, monkeypatch, path, value, field):
    monkeypatch.chdir(REPO)
    with pytest.raises(InputError) as err:
        mconfig.check(mutate(default, path, value), "my.yaml")
    assert err.value.file == "my.yaml"
    assert err.value.field.startswith(field), err.value


def test_url_source_requires_checksum(monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = yaml.safe_load((REPO / "config" / "examples" / "nsclc_metagenes.yaml").read_text())
    del cfg["datasets"]["nsclc"]["sha256"]
    with pytest.raises(InputError, match="sha256"):
        mconfig.check(cfg, "nsclc.yaml")


def test_gmt_groups_expand_to_their_sets(tmp_path):
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("SET_A\tdesc\tG1\tG2\nSET_B\tdesc\tG3\n")
    cfg = {"datasets": {"d": {"gene_groups": {"x": {"gmt": str(gmt)}, "y": ["G9"]}}}}
    assert mconfig.expanded_groups(cfg, "d") == {"SET_A": ["G1", "G2"], "SET_B": ["G3"], "y": ["G9"]}


def test_defaults_merge_in_order(default):
    default["datasets"]["wdbc"]["tasks"]["malignancy"]["cv"] = {"outer_folds": 10}
    cv = mconfig.cv_settings(default, "wdbc", "malignancy")
    assert cv["outer_folds"] == 10 and cv["outer_repeats"] == default["cv"]["outer_repeats"]
    assert mconfig.gate_settings(default, "gse7390", "metastasis")["metric"] == "c_index"
    assert mconfig.normalization(default, "wdbc") == "none"


def test_a_tasks_cv_overrides_only_what_it_sets(default, monkeypatch):
    """A checked config's task `cv` must not come back filled with the schema's defaults, which
    would silently override the top-level cv (scheme, fold counts) it does not mention."""
    monkeypatch.chdir(REPO)
    default["cv"] = {**default["cv"], "outer_folds": 4, "bootstrap": 200, "scheme": "kfold", "group_by": "batch"}
    default["datasets"]["wdbc"]["tasks"]["malignancy"]["cv"] = {"inner_folds": 2}
    checked = mconfig.check(deepcopy(default), "config.yaml")
    cv = mconfig.cv_settings(checked, "wdbc", "malignancy")
    assert (cv["outer_folds"], cv["bootstrap"], cv["group_by"], cv["inner_folds"]) == (4, 200, "batch", 2)
    assert mconfig.cv_settings(checked, "gse7390", "metastasis")["permuted_repeats"] == 1  # schema default


def test_random_sets_jobs_and_checks(default, monkeypatch):
    """random_sets: jobs only for the listed (or default) groups and models; ALL is never a default
    and cannot be listed; gate.beat_random needs random sets for every gated model, and enough of
    them for the smallest p-value to reach random_p."""
    monkeypatch.chdir(REPO)
    task = ("datasets", "wdbc", "tasks", "malignancy")
    cfg = mutate(default, (*task, "random_sets"), {"count": 20, "models": ["elasticnet"]})
    jobs = mconfig.random_set_jobs(mconfig.check(cfg))
    assert jobs == [("wdbc", "malignancy", g, "elasticnet") for g in ("mean", "worst")]  # not ALL
    assert mconfig.random_set_jobs(mconfig.check(mutate(default, (*task, "random_sets"), KeyError))) == []
    assert mconfig.check(mutate(default, (*task, "random_sets"), KeyError))["datasets"]["wdbc"]["tasks"]["malignancy"][
        "random_sets"
    ] == {"count": 0}  # the schema's default, filled in

    def fails(random_sets, gate=None, field="random_sets.groups"):
        bad = mutate(default, (*task, "random_sets"), random_sets)
        if gate:
            bad = mutate(bad, (*task, "gate"), gate)
        with pytest.raises(InputError) as err:
            mconfig.check(bad, "config.yaml")
        assert f"datasets.wdbc.tasks.malignancy.{field}" in str(err.value), str(err.value)
        return str(err.value)

    assert "is ALL" in fails({"count": 5, "groups": ["ALL"]})
    fails({"count": 5, "groups": ["nosuchgroup"]})
    fails({"count": 5, "models": ["coxph"]}, field="random_sets.models")
    beat = {"metric": "roc_auc", "min": 0.6, "beat_random": True}
    message = fails({"count": 20, "groups": ["mean"], "models": ["elasticnet"]}, beat, "gate.beat_random")
    assert "worst/elasticnet" in message and "mean/xgboost" in message and "mean/elasticnet" not in message
    narrow = mutate(default, (*task, "groups"), ["mean"])
    narrow = mutate(narrow, (*task, "models"), ["elasticnet"])
    narrow = mutate(narrow, (*task, "gate"), beat)
    mconfig.check(mutate(narrow, (*task, "random_sets"), {"count": 19}))  # 1/20 <= 0.05
    with pytest.raises(InputError, match="random_sets.count"):
        mconfig.check(mutate(narrow, (*task, "random_sets"), {"count": 18}))  # 1/19 > 0.05
