"""Hostile input data (issue 10, section C): every case is a clear error before any work that names
the file, the field or sample and what is wrong, leaving nothing on disk; or a visible count of
what was left out, never a silent drop."""

import errno
import gzip

import numpy as np
import pandas as pd
import pytest

from metasig import io
from metasig.data import sources
from metasig.data import steps as data_steps
from metasig.data.groups_file import write_groups
from metasig.data.sources import table
from metasig.errors import InputError
from metasig.learn import steps as learn_steps
from metasig.learn import tasks
from metasig.learn.tasks import target
from metasig.logs import logged
from metasig.reads import steps as reads_steps


def _write(path, text, **kw):
    path.write_text(text, **kw)
    return path


def _sheet(tmp_path, text, name="samples.tsv"):
    """A sample sheet as the workflow reads it: written by the user, read by the source, written
    and read again as results/<dataset>/samples.tsv."""
    user = table.read_sample_sheet(_write(tmp_path / f"user_{name}", text))
    io.write_sheet(user, tmp_path / name)
    return io.read_sheet(tmp_path / name)


def _table_cfg(matrix, **extra):
    return {"source": "table", "matrix": matrix, "unit": "counts", "namespace": "symbol", **extra}


# ---- C1: NA-like label values are text; left-out samples are counted and named ----------------


def test_na_like_label_values_are_classes_not_missing(tmp_path):
    rows = "".join(f"s{i}\t{v}\n" for i, v in enumerate(["NA", "None", "null", "NA", "None", "null", ""]))
    sheet = _sheet(tmp_path, "sample\tsubtype\n" + rows)
    samples, y = target(sheet, {"type": "multiclass", "label": "subtype"}, "samples.tsv")
    assert sorted(set(y)) == ["NA", "None", "null"]  # before: all NaN, one class left -> error
    assert list(samples) == [f"s{i}" for i in range(6)]
    from metasig.learn.tasks import left_out  # new in the fix

    assert left_out(sheet, {"type": "multiclass", "label": "subtype"}) == {"missing subtype": ["s6"]}


def test_task_missing_says_which_values_mean_missing(tmp_path):
    sheet = _sheet(
        tmp_path, "sample\tstatus\n" + "".join(f"s{i}\t{v}\n" for i, v in enumerate(["yes", "no"] * 3 + ["NA", "N/A"]))
    )
    task = {"type": "binary", "label": "status", "positive": "yes", "missing": ["NA", "N/A"]}
    samples, y = target(sheet, task, "samples.tsv")
    assert len(samples) == 6 and y.sum() == 3
    from metasig.learn.tasks import left_out  # new in the fix

    assert left_out(sheet, task) == {"missing status": ["s6", "s7"]}


def test_survival_time_na_text_says_how_to_mark_missing(tmp_path):
    sheet = _sheet(tmp_path, "sample\ttime\tevent\ns1\t5\t1\ns2\tNA\t0\ns3\t7\t1\ns4\t\t1\n")
    task = {"type": "survival", "time": "time", "event": "event"}
    with pytest.raises(InputError) as err:
        target(sheet, task, "samples.tsv")
    message = str(err.value)
    assert "samples.tsv" in message and "'time'" in message and "sample s2: 'NA'" in message
    assert "leave the cell empty" in message and "`missing`" in message
    from metasig.learn.tasks import left_out  # new in the fix

    assert left_out(sheet, task) == {"missing time": ["s4"]}


def test_samples_dropped_for_a_missing_derived_label_are_named(caplog):
    import logging

    from metasig.data.sources.labels import derive_labels

    sheet = pd.DataFrame({"sample": ["a", "b", "c"], "HER2": ["Positive", "Equivocal", "Negative"]})
    spec = {
        "her2": {"column": "HER2", "map": {"Positive": "pos", "Negative": "neg", "Equivocal": None}, "missing": "drop"}
    }
    with caplog.at_level(logging.INFO, logger="metasig"):
        out = derive_labels(sheet, spec, "clinical.tsv")
    assert list(out["sample"]) == ["a", "c"]
    assert "label her2: samples dropped for a missing value: b" in caplog.text


def _counts(n=24, genes=6, seed=0):
    rng = np.random.default_rng(seed)
    samples = [f"s{i:02d}" for i in range(n)]
    frame = pd.DataFrame(
        rng.poisson(50, size=(n, genes)).astype(float), index=samples, columns=[f"G{j}" for j in range(genes)]
    )
    frame.index.name = "sample"
    return frame


def test_left_out_samples_are_named_in_the_log_and_counted_in_metrics_leaderboard_report(tmp_path):
    from metasig.publish.leaderboard import leaderboard
    from metasig.report.leaderboard import sample_note

    matrix = _counts(24)
    status = ["yes", "no"] * 10 + ["", "", "", "maybe"]  # three blanks; 'maybe' is a (negative) value
    io.write_matrix(matrix, tmp_path / "matrix.parquet", "log2", "symbol")
    io.write_sheet(pd.DataFrame({"sample": matrix.index, "status": status}), tmp_path / "samples.tsv")
    write_groups({"ALL": {"genes": list(matrix.columns), "missing": []}}, tmp_path / "groups.json")
    identity = {"dataset": "d", "task": "t", "group": "ALL", "model": "enet"}
    cv = {"outer_folds": 2, "outer_repeats": 1, "inner_folds": 2, "bootstrap": 10, "permuted_repeats": 1, "n_jobs": 1}
    with logged(tmp_path / "train.log"):
        learn_steps.train(
            tmp_path / "matrix.parquet",
            tmp_path / "samples.tsv",
            tmp_path / "groups.json",
            tmp_path / "job",
            identity,
            {"type": "binary", "label": "status", "positive": "yes"},
            {"kind": "elasticnet", "search": {"C": [1.0], "l1_ratio": [0.5]}},
            cv,
            {"scale": True},
            "none",
            [],
            1,
        )
    log = (tmp_path / "train.log").read_text()
    assert "3 sample(s) left out: missing status (3: s20, s21, s22)" in log
    doc = io.read_json(tmp_path / "job" / "metrics.json")
    assert (doc["n_samples"], doc["n_left_out"], doc["left_out"]) == (21, 3, {"missing status": 3})
    board = leaderboard([doc])
    assert board.loc[0, ["n_samples", "n_left_out"]].tolist() == [21, 3]
    assert sample_note(doc) == "\n(n = 21 samples; 3 left out: missing status (3))"


# ---- C6: types ---------------------------------------------------------------------------------


def test_blank_in_01_label_column_still_matches_positive_1(tmp_path):
    sheet = _sheet(
        tmp_path, "sample\tresponse\n" + "".join(f"s{i}\t{v}\n" for i, v in enumerate(["1", "0"] * 3 + [""]))
    )
    assert sheet["response"].dtype == float  # the blank makes pandas read 1.0 / 0.0
    samples, y = target(sheet, {"type": "binary", "label": "response", "positive": 1}, "samples.tsv")
    assert list(y) == [1, 0] * 3 and len(samples) == 6
    assert tasks.class_names(sheet, {"type": "binary", "label": "response", "positive": 1}) == ["0", "1"]


def test_positive_yes_read_by_yaml_as_boolean_gets_a_hint_to_quote_it(tmp_path):
    import yaml

    task = yaml.safe_load("type: binary\nlabel: smoker\npositive: yes\n")
    sheet = _sheet(tmp_path, "sample\tsmoker\n" + "".join(f"s{i}\t{v}\n" for i, v in enumerate(["yes", "no"] * 3)))
    with pytest.raises(InputError) as err:
        target(sheet, task, "samples.tsv")
    message = str(err.value)
    assert "samples.tsv" in message and "'smoker'" in message and "positive class 'True' does not occur" in message
    assert "quote the value" in message and 'positive: "yes"' in message


def test_class_messages_name_the_label_as_written_not_its_code(tmp_path):
    sheet = _sheet(tmp_path, "sample\tgrade\n" + "".join(f"s{i}\t{v}\n" for i, v in enumerate([1, 1, 1, 2])))
    with pytest.raises(InputError) as err:
        target(sheet, {"type": "binary", "label": "grade", "positive": 1}, "samples.tsv")
    assert "class '2' has 1 sample(s)" in str(err.value) and "np." not in str(err.value)
    only = _sheet(tmp_path, "sample\tstatus\ns1\tyes\ns2\tyes\n", "only.tsv")
    with pytest.raises(InputError) as err:
        target(only, {"type": "binary", "label": "status", "positive": "yes"}, "only.tsv")
    assert "only one class ('yes')" in str(err.value)


# ---- C3: zero-library sample with in-fold DESeq2 -----------------------------------------------


@pytest.mark.parametrize(
    "normalization, said", [(None, "'deseq2' (what 'auto' picks for unit counts)"), ("vst", "'vst'")]
)
def test_zero_library_sample_caught_at_load_naming_file_sample_and_method(tmp_path, normalization, said):
    matrix = _counts(6)
    matrix.loc["s03"] = 0.0
    matrix.to_csv(tmp_path / "counts.tsv", sep="\t")
    cfg = _table_cfg("counts.tsv", **({"normalization": normalization} if normalization else {}))
    out = tmp_path / "results"
    with pytest.raises(InputError) as err:
        data_steps.load_dataset(
            cfg,
            "d",
            out / "matrix.parquet",
            out / "samples.tsv",
            tmp_path / "cache",
            "config.yaml",
            {"ALL": "ALL"},
            base_dir=tmp_path,
        )
    message = str(err.value)
    assert message.startswith("counts.tsv: field 's03'") and "no counts (library size 0" in message
    assert f"normalization {said}" in message
    assert not out.exists()  # nothing written


# ---- C7: reads -------------------------------------------------------------------------------


def test_transcriptome_and_tx2gene_ids_are_checked_against_each_other(tmp_path):
    from metasig.reads.transcripts import check_transcript_ids

    fasta = tmp_path / "tx.fa.gz"
    with gzip.open(fasta, "wt") as handle:
        handle.write("".join(f">ENST{i:05d}.1|ENSG{i:05d}|x\nACGTACGT\n" for i in range(20)))
    _write(tmp_path / "tx2gene.tsv", "transcript\tgene\n" + "".join(f"ENST{i:05d}.1\tG{i}\n" for i in range(20)))
    with pytest.raises(InputError) as err:
        check_transcript_ids(fasta, tx2gene=tmp_path / "tx2gene.tsv")
    message = str(err.value)
    assert str(fasta) in message and str(tmp_path / "tx2gene.tsv") in message
    assert "none of the transcriptome's 20 IDs is in the transcript-to-gene map" in message
    assert "ENST00000.1|ENSG00000|x" in message and "GENCODE" in message
    _write(
        tmp_path / "tx2gene.tsv",
        "transcript\tgene\n" + "".join(f"ENST{i:05d}.1|ENSG{i:05d}|x\tG{i}\n" for i in range(19)),
    )
    assert check_transcript_ids(fasta, tx2gene=tmp_path / "tx2gene.tsv") == {"transcripts": 20, "unmatched": 1}


def test_validate_reads_step_checks_the_transcriptome_and_writes_nothing(tmp_path):
    fasta = _write(tmp_path / "tx.fa", ">T1\nACGT\n>T2\nACGT\n")
    tx2gene = _write(tmp_path / "tx2gene.tsv", "transcript\tgene\nX1\tG1\nX2\tG2\n")
    units = pd.DataFrame({"sample": [], "unit": []})
    with pytest.raises(InputError, match="none of the transcriptome's 2 IDs"):
        reads_steps.validate_reads(
            units, tmp_path / "qc" / "validated_units.tsv", transcripts={"transcriptome": fasta, "tx2gene": tx2gene}
        )
    assert not (tmp_path / "qc").exists()


def test_file_named_gz_that_is_not_gzip_fails_validation(tmp_path):
    from metasig.reads.fastq import check_fastq, fasta_ids

    fastq = _write(tmp_path / "r1.fastq.gz", "@r1\nACGT\n+\nIIII\n")
    with pytest.raises(InputError) as err:
        check_fastq(fastq)
    assert str(fastq) in str(err.value) and "not gzip-compressed" in str(err.value)
    with pytest.raises(InputError, match="not gzip-compressed"):
        fasta_ids(_write(tmp_path / "tx.fa.gz", ">T1\nACGT\n"))


# ---- C8: table files -----------------------------------------------------------------------------


def test_comma_separated_tsv_is_named_in_plain_words(tmp_path):
    _write(tmp_path / "m.tsv", "sample,G1,G2\ns1,1,2\ns2,3,4\n")
    with pytest.raises(InputError) as err:
        table.read(tmp_path / "m.tsv")
    message = str(err.value)
    assert str(tmp_path / "m.tsv") in message and "comma-separated" in message and "format: csv" in message
    _write(tmp_path / "sheet.tsv", "sample,status\ns1,yes\n")
    with pytest.raises(InputError, match="comma-separated: rename it to .csv"):
        table.read_sample_sheet(tmp_path / "sheet.tsv")


def test_gzip_data_without_gz_suffix_is_named(tmp_path):
    (tmp_path / "m.tsv").write_bytes(gzip.compress(b"sample\tG1\ns1\t1\n"))
    with pytest.raises(InputError) as err:
        table.read(tmp_path / "m.tsv")
    assert "gzip-compressed but its name does not end in .gz" in str(err.value) and "m.tsv.gz" in str(err.value)


def test_latin1_file_says_what_to_do_and_encoding_option_reads_it(tmp_path):
    (tmp_path / "m.csv").write_bytes(b"sample,G1,G2\ns1,1,2\ns2,3,4\ns3,5,6\ns4,7,8\n")
    (tmp_path / "samples.csv").write_bytes("sample,site\ns1,Malmö\ns2,Köln\ns3,Malmö\ns4,Köln\n".encode("latin-1"))
    cfg = _table_cfg("m.csv", samples="samples.csv", unit="log2")
    with pytest.raises(InputError) as err:
        sources.load(cfg, "d", base_dir=tmp_path)
    message = str(err.value)
    assert (
        message.startswith("samples.csv: field '(file)'") and "not UTF-8" in message and "encoding: latin-1" in message
    )
    _, sheet, _ = sources.load({**cfg, "encoding": "latin-1"}, "d", base_dir=tmp_path)
    assert list(sheet["site"]) == ["Malmö", "Köln", "Malmö", "Köln"]


def test_sample_id_NA_is_kept_as_text(tmp_path):
    _write(tmp_path / "m.tsv", "sample\tG1\tG2\nNA\t1\t2\nNULL\t3\t4\ns3\t5\tNA\n")
    _write(tmp_path / "samples.tsv", "sample\tstatus\nNA\tyes\nNULL\tno\ns3\tNA\n")
    matrix, sheet, _ = sources.load(_table_cfg("m.tsv", samples="samples.tsv", unit="log2"), "d", base_dir=tmp_path)
    assert list(matrix.index) == ["NA", "NULL", "s3"] and list(sheet["sample"]) == ["NA", "NULL", "s3"]
    assert list(sheet["status"]) == ["yes", "no", "NA"]
    assert np.isnan(matrix.loc["s3", "G2"])  # 'NA' in a value column is still a missing value


def test_transposed_matrix_is_recognised(tmp_path):
    _write(tmp_path / "m.tsv", "gene\ts1\ts2\ts3\nG1\t1\t2\t3\nG2\t4\t5\t6\n")
    _write(tmp_path / "samples.tsv", "sample\tstatus\ns1\tyes\ns2\tno\ns3\tyes\n")
    with pytest.raises(InputError) as err:
        sources.load(_table_cfg("m.tsv", samples="samples.tsv", unit="log2"), "d", base_dir=tmp_path)
    assert str(err.value).startswith("m.tsv: field 'orientation'")
    assert "looks like genes x samples: set `orientation: genes_by_samples`" in str(err.value)
    _write(tmp_path / "with_label.tsv", "gene\ts1\ts2\ts3\nstatus\tyes\tno\tyes\nG1\t1\t2\t3\n")
    with pytest.raises(InputError, match="looks like genes x samples: set `orientation: genes_by_samples`"):
        table.read(tmp_path / "with_label.tsv", sheet_columns=["status"])


# ---- C10: MLflow reruns and full disks ----------------------------------------------------------


def test_disk_full_names_the_path_and_leaves_nothing(tmp_path, monkeypatch):
    target_file = tmp_path / "out" / "metrics.json"

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_text", full)
    with pytest.raises(OSError) as err:
        io.write_json({"a": 1}, target_file)
    assert err.value.errno == errno.ENOSPC and str(target_file) in str(err.value)
    assert list((tmp_path / "out").iterdir()) == []  # no temp file, no half-written output
