"""Reading a training job's outputs for the engine benchmark, the targets of issue 12, and the
table (Markdown + JSON under benchmarks/)."""

import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd

from metasig.bench.scratch import REPO

N_FOLDS = 5  # outer folds per repeat (default CV); split s is repeat s // 5, fold s % 5
TIME_LIMIT = {"a": 600, "b": 300, "c": 300, "d": 600}  # seconds, ALL-genes jobs at full size
MEMORY_LIMIT = 2_000_000_000  # bytes: "under 2 GB" per job, in SI units (1,907 MiB)
COLUMNS = [
    "case",
    "job",
    "shape",
    "today",
    "reference",
    "metasig",
    "speedup vs today",
    "speedup vs reference",
    "metric",
    "permuted",
    "metric difference",
    "peak RSS",
    "peak PSS",
    "targets met",
]


def headline(task_kind):
    return "c_index" if task_kind == "survival" else "roc_auc"


def job_outputs(outdir, task_kind, outer_fits=15):
    """{metric, permuted, fit_s, nested_cv_s, per_outer_fit_s} from metrics.json and timing.json;
    outer_fits: fits of the real-label nested CV (5 folds x 3 repeats by default)."""
    doc = json.loads((outdir / "metrics.json").read_text())
    timing = json.loads((outdir / "timing.json").read_text())
    name = headline(task_kind)
    return {
        "metric": doc["metrics"][name]["estimate"],
        "permuted": doc["permuted"][name]["estimate"],
        "fit_s": timing["fit_seconds"],
        "nested_cv_s": timing.get("nested_cv_seconds"),
        "per_outer_fit_s": per_outer_fit(timing, outer_fits),
    }


def per_outer_fit(timing, outer_fits):
    """Seconds per real-label outer fit with the job's threads: its folds' own seconds (summed over
    the n_jobs that ran at once) / outer fits / n_jobs. Engines before the single pool recorded the
    nested CV's wall time and no n_jobs."""
    if "nested_cv_seconds" not in timing:
        return None
    return timing["nested_cv_seconds"] / outer_fits / timing.get("n_jobs", 1)


def fold_metrics(predictions_tsv, task_kind, splits):
    """{split: ROC-AUC (macro OVR) or C-index} of the real-label outer splits, from predictions.tsv."""
    from sklearn.metrics import roc_auc_score
    from sksurv.metrics import concordance_index_censored

    frame = pd.read_csv(predictions_tsv, sep="\t", dtype={"sample": str, "y_true": str})
    frame = frame[frame["control"] == "real"]
    out = {}
    for split in splits:
        part = frame[(frame["repeat"] == split // N_FOLDS) & (frame["fold"] == split % N_FOLDS)]
        if task_kind == "survival":
            value = concordance_index_censored(part["event"].astype(bool), part["time"], part["risk"])[0]
        elif task_kind == "binary":
            value = roc_auc_score(part["y_true"].astype(int), part["score"])
        else:
            cols = sorted(c for c in part.columns if c.startswith("proba_"))
            labels = [c[len("proba_") :] for c in cols]
            value = roc_auc_score(part["y_true"], part[cols].to_numpy(), multi_class="ovr", labels=labels)
        out[split] = float(value)
    return out


def median_runs(runs):
    """One engine's repeated runs -> medians of the timings and memory, metrics of the first."""
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return {"status": runs[0]["status"], "wall_s": runs[0]["wall_s"], "runs": len(runs)}
    out = dict(ok[0])
    for key in ("wall_s", "fit_s", "peak_rss_mb", "peak_pss_mb", "per_outer_fit_s", "nested_cv_s"):
        values = [r[key] for r in ok if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    out["overhead_s"] = out["wall_s"] - out["fit_s"]
    out["runs"] = len(ok)
    out["walls"] = [round(r["wall_s"], 2) for r in ok]
    return out


def compare(row):
    """Speedups, metric difference and the targets of one job row (in place)."""
    m, today, ref = row["metasig"], row.get("today"), row.get("reference")
    ok = m.get("status") == "ok"
    row["speedup_vs_today"] = today["wall_s"] / m["wall_s"] if ok and today and today.get("status") == "ok" else None
    if ok and today and today.get("status") == "timeout":  # killed at the timeout: a lower bound
        row["speedup_vs_today_at_least"] = today["wall_s"] / m["wall_s"]
    ref_ok = ref and ref.get("per_outer_fit_s") and ok and m.get("per_outer_fit_s")
    row["speedup_vs_reference"] = ref["per_outer_fit_s"] / m["per_outer_fit_s"] if ref_ok else None
    if ref and ref.get("timed_out") and ok and m.get("per_outer_fit_s"):
        row["speedup_vs_reference_at_least"] = ref["timeout_s"] / m["per_outer_fit_s"]
    diffs = []
    if ok and ref:
        for split, value in (ref.get("fold_metric") or {}).items():
            if value is not None and m.get("fold_metric", {}).get(split) is not None:
                diffs.append(m["fold_metric"][split] - value)
    row["metric_difference"] = float(np.mean(diffs)) if diffs else None
    row["targets"] = targets(row)
    return row


def targets(row):
    """{target: True/False/None (not measured here)} of issue 12 for this job."""
    m = row["metasig"]
    ok = m.get("status") == "ok"
    out = {}
    limit = TIME_LIMIT[row["case"]] if row["group"] == "ALL" and not row["quick"] else None
    out[f"wall <= {limit} s" if limit else "wall (full size, ALL)"] = (ok and m["wall_s"] <= limit) if limit else None
    vs_today = row["speedup_vs_today"]
    if vs_today is None and row.get("speedup_vs_today_at_least", 0) >= 10:
        vs_today = 10.0  # today's run was killed late enough to prove it
    out[">= 10x today"] = None if vs_today is None else vs_today >= 10
    vs_ref = row["speedup_vs_reference"]
    if vs_ref is None and row.get("speedup_vs_reference_at_least", 0) >= 5:
        vs_ref = 5.0  # the reference timed out late enough to prove it
    out[">= 5x reference"] = None if vs_ref is None else vs_ref >= 5
    diff = row["metric_difference"]
    out["|metric diff| <= 0.01"] = None if diff is None else abs(diff) <= 0.01
    out["permuted 0.5 +/- 0.1"] = (abs(m["permuted"] - 0.5) <= 0.1) if ok and m.get("permuted") is not None else None
    # judged on the tree's PSS: worker processes share the matrix and libraries, which RSS counts
    # once per process (older results have RSS only)
    memory = m.get("peak_pss_mb") or m.get("peak_rss_mb")  # MiB
    out["peak memory < 2 GB"] = memory * 2**20 < MEMORY_LIMIT if memory else None
    if not ok:
        out["job finished"] = False
    return out


def _s(value, digits=1):
    return "—" if value is None else f"{value:.{digits}f} s"


def _x(value, at_least=None):
    if value is None:
        return f"> {at_least:.1f}x" if at_least else "—"
    return f"{value:.1f}x"


def _engine_cell(result):
    if not result:
        return "—"
    if result.get("status") != "ok":
        return f"{result['status'].split(' (')[0]} ({result['wall_s']:.0f} s)"
    return f"{result['wall_s']:.1f} s (fit {result['fit_s']:.1f})"


def _reference_cell(ref):
    if not ref:
        return "—"
    if ref.get("per_outer_fit_s") is None:
        return f"> {ref['timeout_s']:.0f} s/fit" if ref.get("timed_out") else ref.get("status", "—")
    return f"{ref['per_outer_fit_s']:.1f} s/fit ({len(ref['fold_metric'])} fold(s))"


def _targets_cell(marks):
    failed = [name for name, v in marks.items() if v is False]
    measured = [v for v in marks.values() if v is not None]
    if failed:
        return "no: " + "; ".join(failed)
    return f"yes ({len(measured)} of {len(marks)} measured)" if measured else "—"


def table_rows(rows):
    out = []
    for row in rows:
        m = row["metasig"]
        metasig_cell = _engine_cell(m)
        if m.get("per_outer_fit_s"):
            metasig_cell += f"; {m['per_outer_fit_s']:.1f} s/fit"
        out.append(
            {
                "case": row["case"],
                "job": f"{row['group']}/{row['model']}" + (" (cuda)" if row.get("device") == "cuda" else ""),
                "shape": f"{row['shape'][0]} x {row['shape'][1]}",
                "today": _engine_cell(row.get("today")),
                "reference": _reference_cell(row.get("reference")),
                "metasig": metasig_cell,
                "speedup vs today": _x(row["speedup_vs_today"], row.get("speedup_vs_today_at_least")),
                "speedup vs reference": _x(row["speedup_vs_reference"], row.get("speedup_vs_reference_at_least")),
                "metric": "—" if m.get("metric") is None else f"{m['metric']:.3f}",
                "permuted": "—" if m.get("permuted") is None else f"{m['permuted']:.3f}",
                "metric difference": "—" if row["metric_difference"] is None else f"{row['metric_difference']:+.3f}",
                "peak RSS": "—" if not m.get("peak_rss_mb") else f"{m['peak_rss_mb']:,.0f} MiB",
                "peak PSS": "—" if not m.get("peak_pss_mb") else f"{m['peak_pss_mb']:,.0f} MiB",
                "targets met": _targets_cell(row["targets"]),
            }
        )
    return out


def markdown(rows):
    cells = table_rows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(c[k]) for k in COLUMNS) + " |" for c in cells]
    return "\n".join(lines)


def save(summary, name, out=REPO / "benchmarks"):
    """<out>/<name>.json and .md; by default in benchmarks/ (not tracked) beside the other
    benchmarks' summaries."""
    out = Path(out)
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    md = [f"# {summary['title']}", "", *summary["notes"], "", markdown(summary["rows"]), ""]
    if summary.get("gpu"):
        md += [f"GPU: {summary['gpu']}", ""]
    (out / f"{name}.md").write_text("\n".join(md))
    return out / f"{name}.md"
