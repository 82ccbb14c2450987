"""Gene-group resolution: order, missing genes reported, ALL, and a clear error for empty groups."""

import pytest

from metasig import config as cfgmod
from metasig.data.groups import missing_report, resolve
from metasig.errors import InputError

FEATURES = ["VIM", "CD44", "LRIG1", "HPGD", "GDF15", "ENSG00000141510.17"]


def test_resolve_keeps_group_order_and_reports_missing():
    out = resolve({"ALL": "ALL", "m19": ["GDF15", "LRIG1", "NOPE", "HPGD", "LRIG1"], "m9": ["CD48", "CD44"]}, FEATURES)
    assert out["ALL"] == {"genes": FEATURES, "missing": []}
    assert out["m19"] == {"genes": ["GDF15", "LRIG1", "HPGD"], "missing": ["NOPE"]}
    assert out["m9"] == {"genes": ["CD44"], "missing": ["CD48"]}
    assert list(out) == ["ALL", "m19", "m9"]


def test_group_with_no_gene_present_is_an_input_error():
    with pytest.raises(InputError) as err:
        resolve({"ok": ["VIM"], "m4": ["cd44", "LYL1", "ENSG00000141510"]}, FEATURES, file="cfg.yaml")
    e = err.value
    assert e.file == "cfg.yaml" and e.field == "gene_groups.m4"
    assert "none of its 3 genes" in e.problem and "LYL1" in e.problem
    assert "cd44~CD44" in e.problem and "ENSG00000141510~ENSG00000141510.17" in e.problem
    with pytest.raises(InputError) as err:
        resolve({"m4": ["X"]}, FEATURES, field_prefix="datasets.nsclc.gene_groups")
    assert err.value.field == "datasets.nsclc.gene_groups.m4"


def test_missing_report_one_line_per_group():
    report = missing_report(resolve({"ALL": "ALL", "m19": ["GDF15", "NOPE", "ZZZ"]}, FEATURES))
    lines = report.splitlines()
    assert lines == ["ALL: 6/6 genes present", "m19: 1/3 genes present; missing: NOPE, ZZZ"]


def test_resolve_groups_expanded_from_config_and_gmt(tmp_path):
    (tmp_path / "sets.gmt").write_text("setA\tdesc\tVIM\tCD44\tMISSING1\nsetB\tdesc\tHPGD\n")
    config = {"datasets": {"d": {"gene_groups": {"ALL": "ALL", "inline": ["LRIG1"], "g": {"gmt": "sets.gmt"}}}}}
    groups = cfgmod.expanded_groups(config, "d", tmp_path)
    out = resolve(groups, FEATURES)
    assert list(out) == ["ALL", "inline", "setA", "setB"]
    assert out["setA"] == {"genes": ["VIM", "CD44"], "missing": ["MISSING1"]}
