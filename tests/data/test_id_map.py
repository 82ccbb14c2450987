"""ID mapping for any source (`id_map`): each collapse rule on a hand-made matrix whose answer is
worked out here, Ensembl version stripping, bad map files, and the gene groups that are found only
thanks to the mapping."""

import gzip

import numpy as np
import pandas as pd
import pytest

from metasig import io
from metasig.config import check_schema
from metasig.data import id_map
from metasig.data import steps as data_steps
from metasig.errors import InputError

# probe -> gene; p6 is not in the map, p7 has an empty gene: both are dropped
MAP = {"p1": "A", "p2": "A", "p3": "A", "p4": "B", "p5": "C", "p7": "", "p8": "D", "p9": "D"}
# column order decides the gene order (C, A, B, D) and the ties (p9 before p8)
COLUMNS = {
    "p5": [7, 6, 5, 4],
    "p1": [1, 2, 3, 4],  # A: mean 2.5, variance 1.67
    "p6": [9, 9, 9, 9],
    "p2": [5, 5, 5, 5],  # A: the highest mean (5), no variance
    "p4": [2, 2, 2, 2],
    "p3": [0, 8, 0, 8],  # A: the highest variance (21.3), mean 4
    "p7": [3, 3, 3, 3],
    "p9": [0, 2, 0, 2],  # D: mean 1, like p8: the tie goes to p9, first in the matrix
    "p8": [1, 1, 1, 1],
}


def _matrix(columns=COLUMNS):
    frame = pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in columns.items()})
    frame.index = pd.Index([f"s{i}" for i in range(len(frame))], name="sample")
    return frame


def _map_file(path, rows=MAP, header=("probe_id", "symbol"), sep="\t"):
    text = sep.join(header) + "\n" + "".join(f"{k}{sep}{v}\n" for k, v in rows.items())
    path.write_text(text)
    return path


def _cfg(file="map.tsv", **extra):
    return {"file": file, "from": "probe_id", "to": "symbol", **extra}


@pytest.mark.parametrize("rule, chosen", [("max_mean", {"A": "p2", "D": "p9"}), ("max_var", {"A": "p3", "D": "p9"})])
def test_max_rules_pick_the_probe_by_hand(tmp_path, rule, chosen):
    _map_file(tmp_path / "map.tsv")
    out, record = id_map.apply(_matrix(), _cfg(collapse=rule), tmp_path, "config.yaml", "datasets.d.id_map")
    assert list(out.columns) == ["C", "A", "B", "D"]  # genes in the order of their first probe
    matrix = _matrix()
    for gene, probe in {"C": "p5", "B": "p4", **chosen}.items():
        assert out[gene].tolist() == matrix[probe].tolist(), gene
    assert (record["ids"], record["unmapped"], record["features"], record["collapse"]) == (9, 2, 4, rule)


def test_mean_averages_the_probes_per_sample(tmp_path):
    _map_file(tmp_path / "map.tsv")
    out, _ = id_map.apply(_matrix(), _cfg(collapse="mean"), tmp_path)
    assert out["A"].tolist() == pytest.approx([(1 + 5 + 0) / 3, (2 + 5 + 8) / 3, (3 + 5 + 0) / 3, (4 + 5 + 8) / 3])
    assert out["D"].tolist() == pytest.approx([0.5, 1.5, 0.5, 1.5])
    assert out["C"].tolist() == [7, 6, 5, 4] and list(out.columns) == ["C", "A", "B", "D"]


def test_keep_keeps_every_mapped_probe_named_gene_bar_id(tmp_path):
    _map_file(tmp_path / "map.tsv")
    out, record = id_map.apply(_matrix(), _cfg(collapse="keep"), tmp_path)
    assert list(out.columns) == ["C|p5", "A|p1", "A|p2", "B|p4", "A|p3", "D|p9", "D|p8"]
    assert out["A|p3"].tolist() == COLUMNS["p3"] and record["features"] == 7
    # a gene group in gene names selects every probe of its genes, in matrix order
    from metasig.data.groups import missing_report, resolve

    resolved = resolve({"g": ["A", "D", "Z"]}, list(out.columns), id_map=record)
    assert resolved["g"]["genes"] == ["A|p1", "A|p2", "A|p3", "D|p9", "D|p8"]
    assert resolved["g"]["missing"] == ["Z"] and resolved["g"]["found"] == 2 and resolved["g"]["mapped"] == 2
    assert "g: 2/3 genes present in 5 column(s) (2 found only after ID mapping); missing: Z" in missing_report(resolved)


@pytest.mark.parametrize("rule", id_map.COLLAPSE)
def test_every_rule_matches_a_plain_reimplementation_on_random_data(rule):
    rng = np.random.default_rng(3)
    probes = [f"x{i}" for i in range(40)]
    genes = rng.choice(["G1", "G2", "G3", "G4", "G5"], size=40)
    mapping = {p: g for p, g in zip(probes, genes) if p != "x7"}  # x7 unmapped
    matrix = pd.DataFrame(rng.normal(size=(12, 40)) * rng.uniform(0.1, 3, 40) + rng.normal(0, 4, 40), columns=probes)
    out = id_map.collapse(matrix, mapping, rule)
    order = []
    for p in probes:
        if p in mapping and mapping[p] not in order:
            order.append(mapping[p])
    if rule == "keep":
        assert list(out.columns) == [f"{mapping[p]}|{p}" for p in probes if p in mapping]
        return
    assert list(out.columns) == order
    for gene in order:
        block = matrix[[p for p in probes if mapping.get(p) == gene]].to_numpy()
        if rule == "mean":
            expected = block.mean(axis=1)
        else:
            score = block.mean(axis=0) if rule == "max_mean" else block.var(axis=0, ddof=1)
            expected = block[:, int(np.argmax(score))]
        np.testing.assert_allclose(out[gene].to_numpy(), expected)


def test_strip_version_alone_collapses_versions_of_one_gene(tmp_path):
    columns = {
        "ENSG00000141510.16": [1, 1, 1, 1],
        "ENSG00000091831.9": [2, 3, 2, 3],
        "ENSG00000141510.17": [4, 4, 4, 4],  # the same gene as the first once stripped: higher mean
        "ENSG00000002586.20_PAR_Y": [5, 5, 5, 5],  # the PAR_Y copy stays apart from its X copy
        "ENSG00000002586.20": [6, 6, 6, 6],
        "RP11-34P13.7": [7, 7, 7, 7],  # not an Ensembl ID: left as it is
    }
    out, record = id_map.apply(_matrix(columns), {"strip_version": True, "collapse": "max_mean"}, tmp_path)
    assert list(out.columns) == [
        "ENSG00000141510",
        "ENSG00000091831",
        "ENSG00000002586_PAR_Y",
        "ENSG00000002586",
        "RP11-34P13.7",
    ]
    assert out["ENSG00000141510"].tolist() == [4, 4, 4, 4]
    assert record["versions_stripped"] == 5 and record["unmapped"] == 0


def test_strip_version_also_applies_to_the_map_files_ids(tmp_path):
    _map_file(tmp_path / "map.tsv", {"ENSG00000141510.11": "TP53", "ENSG00000091831": "ESR1"}, ("gene_id", "name"))
    matrix = _matrix({"ENSG00000141510.16": [1, 2, 3, 4], "ENSG00000091831.9": [2, 3, 2, 3], "XYZ": [0, 0, 0, 0]})
    cfg = {"file": "map.tsv", "from": "gene_id", "to": "name", "strip_version": True}
    out, record = id_map.apply(matrix, cfg, tmp_path)
    assert list(out.columns) == ["TP53", "ESR1"] and out["TP53"].tolist() == [1, 2, 3, 4]
    assert record["unmapped"] == 1
    # without stripping nothing matches, and the error says what to set
    with pytest.raises(InputError) as err:
        id_map.apply(matrix, {**cfg, "strip_version": False}, tmp_path)
    assert (err.value.file, err.value.field) == ("map.tsv", "gene_id")
    assert "none of the matrix's 3 IDs" in err.value.problem and "strip_version: true" in err.value.problem


def test_csv_and_gzipped_map_files_and_several_targets_take_the_first(tmp_path):
    text = "probe_id,symbol\np1,A\np1,Q\np2,B\n"
    (tmp_path / "map.csv").write_text(text)
    (tmp_path / "map.csv.gz").write_bytes(gzip.compress(text.encode()))
    matrix = _matrix({"p1": [1, 2, 3, 4], "p2": [4, 3, 2, 1]})
    for name in ("map.csv", "map.csv.gz"):
        out, record = id_map.apply(matrix, _cfg(name), tmp_path)
        assert list(out.columns) == ["A", "B"] and record["several_targets"] == 1


@pytest.mark.parametrize(
    "name, text, field, said",
    [
        ("map.tsv", "probe\tsymbol\np1\tA\n", "probe_id", "column named by id_map.from not found"),
        ("map.tsv", "probe_id\tgene\np1\tA\n", "symbol", "column named by id_map.to not found"),
        ("map.tsv", "probe_id,symbol\np1,A\n", "probe_id", "header is comma-separated"),
        ("map.csv", "probe_id\tsymbol\np1\tA\n", "probe_id", "header is tab-separated"),
        ("map.tsv", "", "(file)", "the ID map is empty"),
        ("map.tsv", "probe_id\tsymbol\n", "symbol", "no row of the ID map has both"),
        ("map.tsv", "probe_id\tsymbol\nzz\tA\n", "probe_id", "none of the matrix's 9 IDs is in this column"),
    ],
)
def test_bad_map_files_name_the_file_and_the_column(tmp_path, name, text, field, said):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError) as err:
        id_map.apply(_matrix(), _cfg(name), tmp_path)
    assert (err.value.file, err.value.field) == (name, field)
    assert said in err.value.problem


def test_bad_id_map_config_names_the_config_field(tmp_path):
    with pytest.raises(InputError) as err:
        id_map.apply(_matrix(), {"file": "map.tsv", "to": "symbol"}, tmp_path, "c.yaml", "datasets.d.id_map")
    assert (err.value.file, err.value.field) == ("c.yaml", "datasets.d.id_map.from")
    with pytest.raises(InputError) as err:
        id_map.apply(_matrix(), {"collapse": "max_mean"}, tmp_path, "c.yaml", "datasets.d.id_map")
    assert err.value.field == "datasets.d.id_map" and "strip_version" in err.value.problem
    with pytest.raises(InputError, match="map.tsv: field '\\(file\\)': ID map file not found"):
        id_map.apply(_matrix(), _cfg(), tmp_path)
    config = {
        "models": {"m": {"kind": "elasticnet"}},
        "datasets": {
            "d": {
                "source": "table",
                "matrix": "m.tsv",
                "unit": "log2",
                "namespace": "symbol",
                "gene_groups": {"ALL": "ALL"},
                "tasks": {"t": {"type": "binary", "label": "y", "positive": "a", "models": ["m"]}},
                "id_map": {"file": "map.tsv", "to": "symbol"},
            }
        },
    }
    with pytest.raises(InputError) as err:
        check_schema(config, "c.yaml")
    assert "id_map" in err.value.field and "from" in str(err.value)


def test_table_dataset_mapped_at_load_and_groups_count_genes_found_only_by_mapping(tmp_path, caplog):
    import logging

    matrix = pd.DataFrame(
        {
            "ENSG00000141510.16": [1.0, 2, 3, 4, 5, 6],
            "ENSG00000091831.9": [2.0, 3, 2, 3, 2, 3],
            "GATA3": [5.0, 4, 3, 2, 1, 0],
            "ENSG99999999999.1": [1.0, 1, 1, 1, 1, 1],
        },
        index=pd.Index([f"s{i}" for i in range(6)], name="sample"),
    )
    matrix.to_csv(tmp_path / "m.tsv", sep="\t")
    (tmp_path / "samples.tsv").write_text("sample\ty\n" + "".join(f"s{i}\t{'ab'[i % 2]}\n" for i in range(6)))
    _map_file(
        tmp_path / "ens.tsv", {"ENSG00000141510": "TP53", "ENSG00000091831": "ESR1", "GATA3": "GATA3"}, ("id", "sym")
    )
    cfg = {
        "source": "table",
        "matrix": "m.tsv",
        "samples": "samples.tsv",
        "unit": "log2",
        "namespace": "symbol",
        "id_map": {"file": "ens.tsv", "from": "id", "to": "sym", "strip_version": True, "collapse": "max_mean"},
        "tasks": {"t": {"type": "binary", "label": "y", "positive": "a"}},
    }
    groups = {"er": ["ESR1", "GATA3", "FOXA1"], "p53": ["TP53"]}
    out = tmp_path / "results"
    with caplog.at_level(logging.INFO, logger="metasig"):
        data_steps.load_dataset(
            cfg, "d", out / "matrix.parquet", out / "samples.tsv", "cache", "c.yaml", groups, base_dir=tmp_path
        )
    assert "id_map ens.tsv: 4 ID(s) -> 3 gene(s) by max_mean; 1 unmapped ID(s) dropped" in caplog.text
    loaded, meta = io.read_matrix(out / "matrix.parquet")
    assert list(loaded.columns) == ["TP53", "ESR1", "GATA3"] and meta["namespace"] == "symbol"
    assert meta["id_map"]["as_is"] == ["GATA3"] and meta["id_map"]["versions_stripped"] == 3
    with caplog.at_level(logging.INFO, logger="metasig"):
        data_steps.gene_groups(out / "matrix.parquet", groups, [], out / "groups.json", "c.yaml")
    resolved = io.read_json(out / "groups.json")
    assert resolved["er"] == {"genes": ["ESR1", "GATA3"], "missing": ["FOXA1"], "mapped": 1}
    assert resolved["p53"]["mapped"] == 1
    assert "er: 2/3 genes present (1 found only after ID mapping); missing: FOXA1" in caplog.text


def test_geo_collapse_is_the_shared_one():
    from metasig.data.sources import geo

    assert geo.collapse is id_map.collapse and "max_var" in geo.COLLAPSE
