import hashlib
import json

import pandas as pd
import pytest

from metasig.config import gate_defaults
from metasig.errors import InputError
from metasig.publish.gate import gate_task
from metasig.publish.registry import ChecksumError, publish, verify, version_of


def fake_model(root, group, auc_low=0.9, perm_high=0.6, d="wdbc", t="malignant", m="xgb", seed=1):
    """A trained-model folder as the training step writes it (artifact files are stand-ins)."""
    folder = root / d / t / group / m
    art = folder / "model"
    art.mkdir(parents=True)
    features = [f"gene{i}" for i in range(3)]
    files = {
        "features.json": json.dumps(features),
        "preprocessing.skops": f"fake-preprocessing-{group}-{seed}",
        "model.json": json.dumps({"booster": group, "seed": seed}),
        "artifact.json": json.dumps(
            {
                "model_kind": "xgboost",
                "kind": "binary",
                "classes": ["B", "M"],
                "positive": "M",
                "estimator_file": "model.json",
            }
        ),
    }
    lines = []
    for name, text in files.items():
        (art / name).write_text(text)
        lines.append(f"{hashlib.sha256(text.encode()).hexdigest()}  {name}")
    (art / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    metric = lambda est, lo, hi: {"estimate": est, "ci_low": lo, "ci_high": hi}  # noqa: E731
    doc = {
        "dataset": d,
        "task": t,
        "group": group,
        "model": m,
        "kind": "binary",
        "model_kind": "xgboost",
        "n_samples": 100,
        "n_features": 3,
        "features": features,
        "classes": ["B", "M"],
        "metrics": {
            "roc_auc": metric(auc_low + 0.05, auc_low, min(auc_low + 0.08, 1.0)),
            "accuracy": metric(0.9, 0.85, 0.95),
        },
        "permuted": {"roc_auc": metric(0.5, 0.4, perm_high), "accuracy": metric(0.6, 0.5, 0.7)},
        "best_params": {"max_depth": 3},
        "cv": {"outer_folds": 5, "outer_repeats": 3, "inner_folds": 3, "bootstrap": 1000, "permuted_repeats": 1},
        "seed": seed,
    }
    (folder / "metrics.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
    return doc


@pytest.fixture
def trained(tmp_path):
    models = tmp_path / "models"
    docs = [fake_model(models, "good"), fake_model(models, "weak", auc_low=0.5, perm_high=0.62)]
    gate = gate_task(docs, gate_defaults("binary"))
    return models, tmp_path / "registry", docs, gate


def test_only_passing_models_are_published(trained):
    models, registry, _, gate = trained
    index = publish(gate, models, registry)
    assert [e["name"] for e in index["models"]] == ["wdbc.malignant.good.xgb"]
    entry = index["models"][0]
    folder = registry / entry["path"]
    assert folder.is_dir() and not (registry / "wdbc" / "malignant" / "weak").exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [
            "features.json",
            "preprocessing.skops",
            "model.json",
            "artifact.json",
            "SHA256SUMS",
            "metrics.json",
            "model_card.md",
        ]
    )
    verify(folder)
    assert index["latest"] == {"wdbc.malignant.good.xgb": entry["version"]}
    assert entry["gate"].startswith("passed: roc_auc ci_low 0.9")
    assert entry["metrics"]["roc_auc"]["ci_low"] == 0.9 and entry["kind"] == "binary"
    card = (folder / "model_card.md").read_text()
    for needle in (
        "class `M`",
        "gene0",
        "5 outer folds",
        "Permuted-label control",
        "## Gate decision\npassed: roc_auc",
        "Research use only",
        (models / "wdbc/malignant/good/xgb/model/SHA256SUMS").read_text().split()[0],
    ):
        assert needle in card
    on_disk = json.loads((registry / "index.json").read_text())  # strict JSON, same content
    assert on_disk == index
    assert not [p for p in registry.rglob("*") if p.name.endswith(".tmp")]


def test_version_is_deterministic_and_content_addressed(trained, tmp_path):
    models, registry, _, gate = trained
    art = models / "wdbc/malignant/good/xgb"
    v1 = version_of(art / "model", art / "metrics.json")
    assert len(v1) == 12 and int(v1, 16) >= 0
    other = tmp_path / "other"
    fake_model(other, "good")
    assert version_of(other / "wdbc/malignant/good/xgb/model", other / "wdbc/malignant/good/xgb/metrics.json") == v1
    fake_model(tmp_path / "reseeded", "good", seed=2)
    r = tmp_path / "reseeded/wdbc/malignant/good/xgb"
    assert version_of(r / "model", r / "metrics.json") != v1
    assert publish(gate, models, registry)["models"][0]["version"] == v1


def test_republish_is_idempotent_and_append_only(trained, tmp_path):
    models, registry, _, gate = trained
    first = publish(gate, models, registry)
    before = (registry / "index.json").read_bytes()
    assert publish(gate, models, registry) == first
    assert (registry / "index.json").read_bytes() == before

    # New results for the same model: a second version is added, the first stays listed.
    models2 = tmp_path / "models2"
    docs2 = [fake_model(models2, "good", seed=7)]
    second = publish(gate_task(docs2, gate_defaults("binary")), models2, registry)
    versions = [e["version"] for e in second["models"]]
    assert len(versions) == 2 and versions[0] == first["models"][0]["version"]
    assert second["latest"]["wdbc.malignant.good.xgb"] == versions[1]

    # A vanished version folder drops out of the index; latest falls back to what remains.
    import shutil

    shutil.rmtree(registry / second["models"][1]["path"])
    third = publish(pd.DataFrame(columns=gate.columns), models, registry)
    assert [e["version"] for e in third["models"]] == [versions[0]]
    assert third["latest"]["wdbc.malignant.good.xgb"] == versions[0]


def test_failing_now_removes_latest_alias_but_keeps_versions(trained):
    models, registry, docs, gate = trained
    publish(gate, models, registry)
    failed = gate.copy()
    failed["passed"] = False
    index = publish(failed, models, registry)
    assert len(index["models"]) == 1 and index["latest"] == {}


def test_tampered_artifact_is_refused(trained):
    models, registry, _, gate = trained
    (models / "wdbc/malignant/good/xgb/model/model.json").write_text('{"booster": "evil"}')
    with pytest.raises(ChecksumError, match="sha256 mismatch.*refusing to register") as info:
        publish(gate, models, registry)
    assert isinstance(info.value, InputError) and info.value.field == "model.json"
    assert not (registry / "wdbc").exists() or not any((registry / "wdbc").rglob("model.json"))


def test_damaged_registry_version_is_reported(trained):
    models, registry, _, gate = trained
    index = publish(gate, models, registry)
    (registry / index["models"][0]["path"] / "features.json").write_text("[]")
    with pytest.raises(ChecksumError, match="damaged; remove it"):
        publish(gate, models, registry)


def test_unsafe_checksum_names_and_unlisted_files(trained):
    models, registry, _, gate = trained
    art = models / "wdbc/malignant/good/xgb/model"
    (art / "notes.txt").write_text("not checksummed")
    index = publish(gate, models, registry)
    assert not (registry / index["models"][0]["path"] / "notes.txt").exists()
    with (art / "SHA256SUMS").open("a") as handle:
        handle.write(f"{'0' * 64}  ../../escape.txt\n")
    with pytest.raises(ChecksumError, match="unsafe"):
        verify(art)


def test_gate_rows_from_tsv(trained, tmp_path):
    models, registry, _, gate = trained
    gate.to_csv(tmp_path / "gate.tsv", sep="\t", index=False)
    rows = pd.read_csv(tmp_path / "gate.tsv", sep="\t", dtype=str)  # passed as the strings "True"/"False"
    index = publish(rows, models, registry)
    assert [e["group"] for e in index["models"]] == ["good"]
