"""The ready example configs as the engine benchmark rewrites them (`--configs`): each becomes a
valid config on a synthetic table of its shape, whose sample sheet carries what the example's
tasks and CV read."""

import pytest

from metasig import config as config_module
from metasig import io
from metasig.bench import engine_configs, synthetic
from metasig.learn import tasks


@pytest.mark.parametrize("example", sorted(engine_configs.EXAMPLES))
def test_each_example_becomes_a_valid_config_on_its_synthetic_table(example, tmp_path):
    case = synthetic.QUICK[engine_configs.EXAMPLES[example]]
    name = engine_configs.study(example, case, tmp_path)
    config = config_module.check(config_module.read_yaml(tmp_path / name), name, base_dir=tmp_path)
    (dname, dataset), *_ = config["datasets"].items()
    assert dataset["source"] == "table" and config["mlflow"]["enabled"] is False
    assert not set(engine_configs.DROPPED_TASKS.get(example, [])) & set(dataset["tasks"])
    sheet = io.read_sheet(tmp_path / dataset["samples"])
    assert io.read_matrix(tmp_path / dataset["matrix"])[0].shape == (case.n_samples, case.n_genes)
    for tname, task in dataset["tasks"].items():
        cv = config_module.cv_settings(config, dname, tname)
        samples, y = tasks.target(sheet, task, sheet_file="samples.tsv", folds=cv)
        assert len(samples) == case.n_samples and len(set(map(str, y))) == len(case.classes)
        if cv.get("group_by"):  # her2_tcga_xena keeps a patient's samples together: one sample each here
            groups = tasks.group_values(sheet, samples, cv["group_by"])
            assert len(set(groups)) == len(samples)
