"""Leaderboard: one row per dataset x task x gene group x model, with CIs, the permuted control,
the gate decision and, where configured, the random-gene-set control of the gate metric; plus a
compact Markdown rendering for the README and the report."""

import math

import pandas as pd

from metasig.config import METRICS as TASK_METRICS
from metasig.learn.metrics_file import interval
from metasig.publish.gate_table import ID_COLUMNS, RANDOM_COLUMNS, flag, gate_lookup


def _metric_order(docs):
    """Canonical metric order (config.METRICS), then any others alphabetically."""
    seen = {m for doc in docs for block in ("metrics", "permuted") for m in (doc.get(block) or {})}
    canonical = [m for kind in ("binary", "survival") for m in TASK_METRICS[kind]]
    ordered = [m for m in dict.fromkeys(canonical) if m in seen]
    return ordered + sorted(seen - set(ordered))


def leaderboard(metrics_docs, gate_rows=None) -> pd.DataFrame:
    """Build the leaderboard; sorted by dataset, task, then the task's gate metric (descending).

    gate_rows: DataFrame/records from `metasig.publish.gate.gate_task` (concatenated over tasks), or None.
    Without a gate row a model's gate columns are <NA> and it is ranked by its first metric.
    """
    docs = list(metrics_docs)
    metrics = _metric_order(docs)
    # ranking metrics also carry the metric on pooled out-of-fold predictions (see metrics.bootstrap_ci)
    pooled = [m for m in metrics if any("pooled" in ((d.get("metrics") or {}).get(m) or {}) for d in docs)]
    gates = gate_lookup(gate_rows)
    rows = []
    for doc in docs:
        key = tuple(str(doc.get(k)) for k in ID_COLUMNS)
        row = {k: doc.get(k) for k in ID_COLUMNS}
        # n_left_out: samples of the dataset the task could not use (missing label, time, event)
        row.update(
            kind=doc.get("kind"),
            n_samples=doc.get("n_samples"),
            n_left_out=doc.get("n_left_out"),
            n_features=doc.get("n_features"),
        )
        for metric in metrics:
            real = interval(doc.get("metrics"), metric)
            row[metric] = real["estimate"]
            row[f"{metric}_ci_low"] = real["ci_low"]
            row[f"{metric}_ci_high"] = real["ci_high"]
            if metric in pooled:
                row[f"{metric}_pooled"] = real["pooled"]
        for metric in metrics:
            perm = interval(doc.get("permuted"), metric)
            row[f"permuted_{metric}"] = perm["estimate"]
            row[f"permuted_{metric}_ci_low"] = perm["ci_low"]
            row[f"permuted_{metric}_ci_high"] = perm["ci_high"]
        gate = gates.get(key)
        own = [m for m in metrics if m in (doc.get("metrics") or {})]
        row["gate_metric"] = gate["metric"] if gate else (own[0] if own else pd.NA)
        row["gate_passed"] = flag(gate["passed"]) if gate else pd.NA
        row["gate_reason"] = gate.get("reason") if gate else pd.NA
        row["no_signal"] = flag(gate.get("no_signal")) if gate else pd.NA
        # the random-gene-set control of the gate metric, on rows that have one (K > 0)
        has_random = gate is not None and (_number(gate.get("random_sets")) or 0) > 0
        for column in RANDOM_COLUMNS:
            row[column] = _number(gate.get(column)) if has_random else pd.NA
        rows.append(row)

    columns = (
        ID_COLUMNS
        + ["kind", "n_samples", "n_left_out", "n_features"]
        + [f"{m}{s}" for m in metrics for s in ("", "_ci_low", "_ci_high", "_pooled") if s != "_pooled" or m in pooled]
        + [f"permuted_{m}{s}" for m in metrics for s in ("", "_ci_low", "_ci_high")]
        + ["gate_metric", "gate_passed", "gate_reason", "no_signal"]
        + RANDOM_COLUMNS
    )
    frame = pd.DataFrame(rows, columns=columns)
    frame["gate_passed"] = frame["gate_passed"].astype("boolean")
    frame["no_signal"] = frame["no_signal"].astype("boolean")
    frame["random_sets"] = frame["random_sets"].astype("Int64")
    for column in RANDOM_COLUMNS[1:]:
        frame[column] = pd.to_numeric(frame[column]).astype(float)
    if frame.empty:
        return frame
    rank = [
        row[m] if isinstance(m, str) and m in frame.columns else math.nan
        for m, (_, row) in zip(frame["gate_metric"], frame.iterrows())
    ]
    frame["_rank"] = pd.to_numeric(pd.Series(rank, index=frame.index), errors="coerce")
    frame = frame.sort_values(
        ["dataset", "task", "_rank", "group", "model"],
        ascending=[True, True, False, True, True],
        na_position="last",
        kind="stable",
    )
    return frame.drop(columns="_rank").reset_index(drop=True)


def _number(value):
    """A gate-table number (read back from TSV, maybe empty) as a float, or None when missing."""
    value = pd.to_numeric(value, errors="coerce")
    return None if value is None or pd.isna(value) else float(value)


def _cell(row, metric, digits):
    est = row.get(metric)
    if est is None or pd.isna(est):
        return "–"
    lo, hi = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return f"{est:.{digits}f}"
    return f"{est:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _random_cell(row, digits):
    """ "100: 0.912, 0.951, p = 0.0099": the random-set control of the row's gate metric, or "–"."""
    k = row.get("random_sets")
    if k is None or pd.isna(k) or not k:
        return "–"
    return f"{int(k)}: {row['random_median']:.{digits}f}, {row['random_p95']:.{digits}f}, p = {row['random_p']:.2g}"


def _escape(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame, metrics=None, digits=3, reasons=False) -> str:
    """Compact Markdown table: identity, chosen metrics as "0.973 [0.962, 0.982]", the permuted
    control of each row's gate metric, its random-gene-set control (when some row has one: K, the
    random sets' median and 95th percentile, the p-value), and the gate verdict ("pass", "fail",
    "no signal").

    metrics: which metrics to show (default: every metric with a value somewhere in `df`).
    reasons: add the gate's full sentence as a last column.
    """
    if metrics is None:
        metrics = [
            c
            for c in df.columns
            if f"{c}_ci_low" in df.columns and not c.startswith("permuted_") and df[c].notna().any()
        ]
    random = "random_sets" in df.columns and bool((df["random_sets"].fillna(0) > 0).any())
    header = ["dataset", "task", "group", "model", *metrics, "permuted (gate metric)"]
    header += ["random sets: K, median, p95, p"] * random + ["gate"]
    if reasons:
        header.append("reason")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in df.iterrows():
        gate_metric = row.get("gate_metric")
        permuted = (
            f"{gate_metric}: {_cell(row, f'permuted_{gate_metric}', digits)}"
            if isinstance(gate_metric, str) and f"permuted_{gate_metric}" in df.columns
            else "–"
        )
        passed, nosig = row.get("gate_passed"), row.get("no_signal")
        verdict = "–" if pd.isna(passed) else ("pass" if passed else "fail")
        if not pd.isna(nosig) and bool(nosig):
            verdict += " (no signal)"
        cells = [row.get(k) for k in ID_COLUMNS] + [_cell(row, m, digits) for m in metrics] + [permuted]
        cells += [_random_cell(row, digits)] * random + [verdict]
        if reasons:
            cells.append("" if pd.isna(row.get("gate_reason")) else row.get("gate_reason"))
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
