"""Rule adapters of the publishing stage: gate, registry, MLflow, leaderboard."""

import logging

from metasig import io
from metasig.learn.metrics_file import read_metrics
from metasig.logs import logged
from metasig.publish.gate_table import read_gates, write_gates
from metasig.publish.registry_index import read_index

log = logging.getLogger("metasig")

__all__ = ["logged", "gate", "read_gates", "register", "log_mlflow", "leaderboard"]


def gate(metrics_files, gate_cfg, gate_out, random_files=()):
    """Gate a task's models; `random_files`: the random_sets.tsv of those that have them."""
    from metasig.learn.layout import job_of
    from metasig.learn.random_sets_file import read_random_sets
    from metasig.publish.gate import gate_task

    random_sets = {job_of(f): read_random_sets(f) for f in random_files}
    rows = gate_task([read_metrics(f) for f in metrics_files], gate_cfg, random_sets)
    write_gates(rows, gate_out)
    log.info("%d of %d models passed the gate", int(rows["passed"].sum()), len(rows))


def register(gate_files, models_root, registry_root, index_out):
    from metasig.publish.registry import publish

    index = publish(read_gates(gate_files), models_root, registry_root)
    log.info("registry: %d model version(s) indexed in %s", len(index["models"]), index_out)


def log_mlflow(registry_root, tracking_uri, experiment, logged_out):
    from metasig.publish.tracking import log_to_mlflow

    index = read_index(registry_root)
    logged = log_to_mlflow(index["models"], registry_root, tracking_uri, experiment)
    io.write_json(
        {"tracking_uri": tracking_uri, "experiment": experiment, "registered": [list(x) for x in logged]}, logged_out
    )


def leaderboard(metrics_files, gate_files, table_out):
    from metasig.publish.leaderboard import leaderboard as build
    from metasig.publish.leaderboard import to_markdown

    table = build([read_metrics(f) for f in metrics_files], read_gates(gate_files))
    with io.atomic_path(table_out) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    # the log shows the table readably: estimate [95% CI], the permuted control, the verdict
    log.info("leaderboard (%d models):\n%s", len(table), to_markdown(table))
