"""Report figures: each function writes a valid, non-empty figure on synthetic binary, multiclass
and survival outputs, survives degenerate inputs, and writes identical SVG bytes twice."""

import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from metasig.io import read_matrix, read_sheet, write_matrix, write_sheet
from metasig.report import confusion, curves, importance, leaderboard, pca, qc, survival

SVG_NS = "{http://www.w3.org/2000/svg}svg"


def assert_svg(path):
    data = path.read_bytes()
    assert len(data) > 2000, f"{path.name} is suspiciously small"
    root = ET.fromstring(data)
    assert root.tag == SVG_NS
    return data.decode()


def svg_texts(text):
    """Matplotlib writes every text element as an XML comment beside its glyph paths."""
    return re.findall(r"<!-- (.*?) -->", text)


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


# ---- synthetic training outputs (formats as in the shared plan) ----------------------------


def binary_predictions(n=60, repeats=2, folds=3, signal=2.0, seed=0):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 == 0).astype(int)
    rows = []
    for control in ("real", "permuted"):
        for r in range(repeats):
            fold = rng.permutation(np.arange(n) % folds)
            strength = signal if control == "real" else 0.0
            score = 1 / (1 + np.exp(-(strength * (y - 0.5) * 2 + rng.normal(0, 1, n))))
            rows.append(
                pd.DataFrame(
                    {
                        "control": control,
                        "repeat": r,
                        "fold": fold,
                        "sample": [f"S{i:03d}" for i in range(n)],
                        "y_true": y,
                        "score": score,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def multiclass_predictions(n=45, classes=("LumA", "Basal", "Her2"), seed=1):
    rng = np.random.default_rng(seed)
    y = np.array([classes[i % len(classes)] for i in range(n)])
    rows = []
    for control in ("real", "permuted"):
        logits = rng.normal(0, 1, (n, len(classes)))
        if control == "real":
            logits[np.arange(n), [classes.index(c) for c in y]] += 2.0
        proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        frame = pd.DataFrame(
            {
                "control": control,
                "repeat": 0,
                "fold": np.arange(n) % 3,
                "sample": [f"M{i}" for i in range(n)],
                "y_true": y,
            }
        )
        for j, c in enumerate(classes):
            frame[f"proba_{c}"] = proba[:, j]
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def survival_predictions(n=80, repeats=2, seed=2):
    rng = np.random.default_rng(seed)
    risk_true = rng.normal(0, 1, n)
    time = rng.exponential(10 * np.exp(-risk_true)) + 0.1
    event = (rng.random(n) < 0.7).astype(int)
    rows = []
    for r in range(repeats):
        rows.append(
            pd.DataFrame(
                {
                    "control": "real",
                    "repeat": r,
                    "fold": rng.permutation(np.arange(n) % 4),
                    "sample": [f"P{i}" for i in range(n)],
                    "time": time,
                    "event": event,
                    "risk": risk_true + rng.normal(0, 0.5, n),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def metrics_doc(group, model, est, perm=0.5, metric="roc_auc", width=0.06):
    return {
        "dataset": "wdbc",
        "task": "malignant",
        "group": group,
        "model": model,
        "kind": "binary",
        "metrics": {metric: {"estimate": est, "ci_low": est - width, "ci_high": est + width}},
        "permuted": {metric: {"estimate": perm, "ci_low": perm - 0.08, "ci_high": perm + 0.08}},
    }


@pytest.fixture
def docs_and_gate():
    docs = [
        metrics_doc("ALL", "xgboost", 0.93),
        metrics_doc("ALL", "elasticnet", 0.97),
        metrics_doc("metagene_19", "xgboost", 0.55),
        metrics_doc("metagene_3", "elasticnet", 0.62),
    ]
    gate = pd.DataFrame(
        {
            "group": [d["group"] for d in docs],
            "model": [d["model"] for d in docs],
            "passed": [True, True, False, False],
            "min": 0.6,
            "bound": "ci_low",
        }
    )
    return docs, gate


def expression(n_samples=30, n_genes=50, seed=3, counts=False):
    rng = np.random.default_rng(seed)
    values = (
        rng.negative_binomial(5, 0.01, (n_samples, n_genes)).astype(float)
        if counts
        else rng.normal(6, 2, (n_samples, n_genes))
    )
    return pd.DataFrame(
        values, index=[f"S{i:03d}" for i in range(n_samples)], columns=[f"G{j}" for j in range(n_genes)]
    )


# ---- every figure on normal inputs ---------------------------------------------------------


def test_leaderboard_marks_gate_and_no_signal(tmp_path, docs_and_gate):
    docs, gate = docs_and_gate
    out = leaderboard.leaderboard_plot(docs, gate, tmp_path / "leaderboard.svg", "roc_auc")
    texts = svg_texts(assert_svg(out))
    assert "ALL · elasticnet" in texts and "metagene_19 · xgboost" in texts
    assert "0.550 [0.490, 0.610]  no signal" in texts
    assert "0.970 [0.910, 1.030]" in texts  # a model that beats the permuted control is not flagged
    assert "gate threshold (0.60)" in texts


def test_leaderboard_row_order_and_text(tmp_path, docs_and_gate, monkeypatch):
    docs, gate = docs_and_gate
    seen = {}
    original = leaderboard.save

    def capture(fig, path):
        ax = fig.axes[0]
        pairs = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels())))
        seen["labels"] = [label for _, label in pairs]  # bottom to top
        seen["texts"] = [t.get_text() for t in ax.texts]
        seen["lines"] = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        return original(fig, path)

    monkeypatch.setattr(leaderboard, "save", capture)
    leaderboard.leaderboard_plot(docs, gate, tmp_path / "lb.svg", "roc_auc")
    # Best model on top.
    assert seen["labels"][-1] == "ALL · elasticnet"
    assert seen["labels"][0] == "metagene_19 · xgboost"
    no_signal = [t for t in seen["texts"] if "no signal" in t]
    assert len(no_signal) == 2  # 0.55 and 0.62 have CIs overlapping the permuted 0.42-0.58
    assert seen["lines"] and seen["lines"][0].get_xdata()[0] == pytest.approx(0.6)


def test_roc_pr_binary_and_multiclass(tmp_path):
    out = curves.roc_pr_plot(
        {"ALL · xgboost": binary_predictions(), "weak": binary_predictions(signal=0.2, seed=5)},
        tmp_path / "roc.svg",
        "binary",
    )
    legend = [t for t in svg_texts(assert_svg(out)) if "AUC" in t]
    assert len(legend) == 2 and legend[0].startswith("ALL · xgboost (pooled AUC ")
    out = curves.roc_pr_plot({"ALL · rf": multiclass_predictions()}, tmp_path / "roc_mc.svg", "multiclass")
    assert_svg(out)


def test_roc_legend_auc_matches_sklearn(tmp_path, monkeypatch):
    from sklearn.metrics import roc_auc_score

    preds = binary_predictions()
    real = preds[preds.control == "real"]
    expected = roc_auc_score(real.y_true, real.score)
    seen = {}
    original = curves.save

    def capture(fig, path):
        seen["legend"] = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
        return original(fig, path)

    monkeypatch.setattr(curves, "save", capture)
    curves.roc_pr_plot({"job": preds}, tmp_path / "roc.svg", "binary")
    assert f"AUC {expected:.3f}" in seen["legend"][0]


def test_confusion_binary_and_multiclass(tmp_path, monkeypatch):
    seen = {}
    original = confusion.save

    def capture(fig, path):
        seen.setdefault("images", []).append(fig.axes[0].get_images()[0].get_array().sum())
        return original(fig, path)

    monkeypatch.setattr(confusion, "save", capture)
    assert_svg(confusion.confusion_plot(binary_predictions(n=60), ["benign", "malignant"], tmp_path / "cm.svg"))
    assert_svg(confusion.confusion_plot(multiclass_predictions(n=45), None, tmp_path / "cm_mc.svg"))
    # Counts come from one repeat of the real control: each sample once.
    assert seen["images"] == [60, 45]


def test_calibration_and_importance(tmp_path):
    assert_svg(
        curves.calibration_plot({"a": binary_predictions(), "b": binary_predictions(seed=9)}, tmp_path / "cal.svg")
    )
    assert_svg(curves.calibration_plot({"mc": multiclass_predictions()}, tmp_path / "cal_mc.svg"))
    imp = pd.DataFrame({"feature": [f"GENE{i}" for i in range(30)], "importance": np.linspace(3, 0, 30)})
    texts = svg_texts(assert_svg(importance.importance_plot(imp, tmp_path / "imp.svg", top=10)))
    assert "GENE0" in texts and "GENE9" in texts and "GENE10" not in texts
    multi = {"ALL · xgboost": imp, "metagene_3 · elasticnet": imp.head(3), "empty": None}
    texts = svg_texts(assert_svg(importance.importance_plot(multi, tmp_path / "imp_multi.svg", top=5)))
    assert "metagene_3 · elasticnet" in texts and "no feature importance available" in texts


def test_km_plot_reports_logrank(tmp_path, monkeypatch):
    seen = {}
    original = survival.save

    def capture(fig, path):
        seen["title"] = fig.axes[0].get_title()
        return original(fig, path)

    monkeypatch.setattr(survival, "save", capture)
    assert_svg(survival.km_plot(survival_predictions(), tmp_path / "km.svg"))
    assert "log-rank p = " in seen["title"] and "n/a" not in seen["title"]


def test_pca_and_qc_from_workflow_files(tmp_path):
    matrix = expression()
    matrix.iloc[0] += 8  # one shifted sample: QC must flag it
    write_matrix(matrix, tmp_path / "normalized.parquet", unit="log2", namespace="symbol")
    sheet = pd.DataFrame({"sample": matrix.index, "subtype": ["A", "B", "C"] * 10, "time": np.arange(30) + 1.0})
    write_sheet(sheet, tmp_path / "samples.tsv")
    m, meta = read_matrix(tmp_path / "normalized.parquet")
    s = read_sheet(tmp_path / "samples.tsv")
    assert_svg(pca.pca_plot(m, s, "subtype", tmp_path / "pca.svg"))
    assert_svg(pca.pca_plot(m, s, "time", tmp_path / "pca_num.svg"))  # continuous colour
    assert_svg(pca.pca_plot(m, s, "absent", tmp_path / "pca_none.svg"))
    texts = svg_texts(assert_svg(qc.qc_plot(m, meta["unit"], tmp_path / "qc.svg")))
    assert any("1 possible outlier" in t for t in texts)


def test_qc_flags_outlier_and_caps_samples(tmp_path, monkeypatch):
    seen = {}
    original = qc.save

    def capture(fig, path):
        seen["ticks"] = [t.get_text() for t in fig.axes[1].get_xticklabels()]
        seen["title"] = fig._suptitle.get_text()
        return original(fig, path)

    monkeypatch.setattr(qc, "save", capture)
    counts = expression(n_samples=150, n_genes=40, counts=True)
    counts.iloc[77] *= 20  # library size outlier
    qc.qc_plot(counts, "counts", tmp_path / "qc.svg")
    assert len(seen["ticks"]) == 100
    assert "S077" in seen["ticks"]  # extreme samples are always shown
    assert "1 possible outlier" in seen["title"]


def test_png_output(tmp_path):
    assert_png(curves.roc_pr_plot({"job": binary_predictions()}, tmp_path / "roc.png", "binary"))


# ---- degenerate inputs ---------------------------------------------------------------------


def test_degenerate_inputs_do_not_crash(tmp_path):
    one_class = binary_predictions()
    one_class["y_true"] = 0
    nan_scores = binary_predictions()
    nan_scores.loc[::4, "score"] = np.nan
    all_nan = binary_predictions()
    all_nan["score"] = np.nan
    jobs = {"one class": one_class, "nan": nan_scores, "all nan": all_nan, "empty": pd.DataFrame()}
    assert_svg(curves.roc_pr_plot(jobs, tmp_path / "roc.svg", "binary"))
    assert_svg(curves.roc_pr_plot({}, tmp_path / "roc_empty.svg", "binary"))
    assert_svg(curves.roc_pr_plot({"s": survival_predictions()}, tmp_path / "roc_surv.svg", "survival"))
    assert_svg(curves.calibration_plot(jobs, tmp_path / "cal.svg"))
    assert_svg(curves.calibration_plot({"all nan": all_nan}, tmp_path / "cal_nan.svg"))
    assert_svg(confusion.confusion_plot(one_class, ["neg", "pos"], tmp_path / "cm.svg"))
    assert_svg(confusion.confusion_plot(all_nan, ["neg", "pos"], tmp_path / "cm_nan.svg"))
    assert_svg(confusion.confusion_plot(pd.DataFrame(), None, tmp_path / "cm_empty.svg"))
    mc = multiclass_predictions()
    mc.loc[3, "proba_LumA"] = np.nan
    texts = svg_texts(assert_svg(confusion.confusion_plot(mc, ["LumA", "Basal"], tmp_path / "cm_mc.svg")))
    assert "Her2" in texts  # a class missing from the given list is still shown

    tied = survival_predictions()
    tied["risk"] = 1.0
    assert_svg(survival.km_plot(tied, tmp_path / "km_tied.svg"))
    no_events = survival_predictions()
    no_events["event"] = 0
    assert_svg(survival.km_plot(no_events, tmp_path / "km_noevent.svg"))
    assert_svg(survival.km_plot(pd.DataFrame(), tmp_path / "km_empty.svg"))

    assert_svg(importance.importance_plot(pd.DataFrame(columns=["feature", "importance"]), tmp_path / "imp.svg"))
    assert_svg(
        importance.importance_plot(
            pd.DataFrame({"feature": ["a", "b"], "importance": [0.0, np.nan]}), tmp_path / "imp0.svg"
        )
    )

    missing_metric = {"dataset": "d", "task": "t", "group": "g", "model": "m", "metrics": {}, "permuted": {}}
    assert_svg(leaderboard.leaderboard_plot([missing_metric], None, tmp_path / "lb.svg", "roc_auc"))
    assert_svg(leaderboard.leaderboard_plot([], None, tmp_path / "lb_empty.svg", "roc_auc"))

    tiny = expression(n_samples=2, n_genes=3)
    assert_svg(pca.pca_plot(tiny, None, None, tmp_path / "pca.svg"))
    constant = expression()
    constant.loc[:, :] = 1.0
    assert_svg(pca.pca_plot(constant, None, None, tmp_path / "pca_const.svg"))
    assert_svg(qc.qc_plot(constant, "log2", tmp_path / "qc_const.svg"))
    assert_svg(qc.qc_plot(pd.DataFrame(), "log2", tmp_path / "qc_empty.svg"))


# ---- determinism ---------------------------------------------------------------------------


def test_svg_output_is_deterministic(tmp_path, docs_and_gate):
    docs, gate = docs_and_gate
    calls = [
        lambda p: leaderboard.leaderboard_plot(docs, gate, p, "roc_auc"),
        lambda p: curves.roc_pr_plot({"job": binary_predictions()}, p, "binary"),
        lambda p: survival.km_plot(survival_predictions(), p),
        lambda p: qc.qc_plot(expression(), "log2", p),
    ]
    for i, call in enumerate(calls):
        first = call(tmp_path / f"a{i}.svg").read_bytes()
        second = call(tmp_path / f"b{i}.svg").read_bytes()
        assert first == second, f"figure {i} differs between two identical calls"


# ---- report captions -----------------------------------------------------------------------

CAPTIONS = [
    "workflow",
    "leaderboard",
    "roc_pr",
    "confusion",
    "calibration",
    "km",
    "importance",
    "pca",
    "qc",
    "leaderboard_table",
    "gate",
    "random_sets",
]


def render_caption(name, params):
    """Render a caption the way Snakemake's report does (Jinja, then docutils), failing on RST warnings."""
    from pathlib import Path
    from types import SimpleNamespace

    from docutils.core import publish_parts
    from jinja2 import Environment
    from snakemake.iocontainers import Params, Wildcards

    source = (Path(__file__).resolve().parents[2] / "resources" / "report" / f"{name}.rst").read_text()
    config = {
        "datasets": {
            "nsclc": {
                "tasks": {
                    "status": {"type": "binary", "label": "SurvivalStatus", "positive": "Dead"},
                    "os": {"type": "survival", "time": "time", "event": "event"},
                }
            }
        }
    }
    snakemake = SimpleNamespace(
        wildcards=Wildcards(fromdict={"dataset": "nsclc", "task": "status"}),
        params=Params(fromdict=params),
        config=config,
    )
    text = Environment(trim_blocks=True, lstrip_blocks=True).from_string(source).render(snakemake=snakemake)
    html = publish_parts(text, writer="html", settings_overrides={"halt_level": 2, "report_level": 2})
    return html["html_body"]


@pytest.mark.parametrize("name", CAPTIONS)
def test_captions_render(name):
    gate = {"metric": "roc_auc", "bound": "ci_low", "min": 0.6, "beat_permuted": True}
    full = render_caption(name, {"gate": gate, "unit": "fpkm", "colour_by": "SurvivalStatus"})
    bare = render_caption(name, {})  # rules without these params must still render
    assert len(bare) > 300 and "{{" not in full and "{%" not in full
    if name in ("leaderboard", "gate"):
        assert "roc_auc" in full and "0.6" in full and "roc_auc" not in bare
    if name == "random_sets":
        assert "roc_auc" in full and "Venet" in full
    if name in ("leaderboard", "roc_pr", "gate", "km", "pca", "qc", "random_sets"):
        assert "nsclc" in full
    if name == "workflow":
        assert "nsclc / status" in full and "SurvivalStatus" in full and "binary task" in full


def test_random_sets_plot_shows_each_signature_against_its_random_sets(tmp_path):
    from metasig.report.random_sets import random_sets_plot

    def doc(group, auc):
        return {"group": group, "model": "enet", "metrics": {"roc_auc": {"estimate": auc, "ci_low": 0, "ci_high": 1}}}

    weak, strong = np.linspace(0.5, 0.69, 20), np.linspace(0.8, 0.99, 20)
    rows = [(doc("ordinary", 0.9), strong), (doc("special", 0.9), np.r_[weak, np.nan])]
    text = assert_svg(random_sets_plot(rows, tmp_path / "random.svg", "roc_auc"))
    texts = svg_texts(text)
    assert "p = 0.048 (K = 20)" in texts and "p = 0.52 (K = 20)" in texts  # the NaN set is not counted
    labels = [t for t in texts if t.endswith("enet")]
    assert labels[:2] == ["special · enet", "ordinary · enet"]  # lowest p-value on top
    assert random_sets_plot(rows, tmp_path / "again.svg", "roc_auc").read_bytes() == text.encode()
    assert "no random gene sets" in " ".join(svg_texts(assert_svg(random_sets_plot([], tmp_path / "e.svg", "roc_auc"))))
