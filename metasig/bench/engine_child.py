"""One benchmark job in its own process: `python -P engine_child.py SPEC.json`.

Run by path with -P (the script's folder stays off sys.path) and only the standard library at the
top, so the same file runs today's engine from an extracted old commit (PYTHONPATH=that tree,
whose package layout was flat: metasig.steps) and the branch's engine (metasig.learn.steps).
spec["mode"]: "train" calls steps.train exactly as scripts/train.py does; "reference" runs the
plain scikit-learn reference on one outer split (metasig.bench.reference). The result is written
as JSON to spec["result"].
"""

import inspect
import json
import logging
import resource
import sys
import time
from pathlib import Path


def _train(spec):
    import metasig

    # By the tree on PYTHONPATH, not by trying: an editable install's finder serves submodules the
    # old tree lacks (metasig.learn) from the branch, which would mix the two engines.
    if (Path(metasig.__file__).parent / "learn").is_dir():
        from metasig.learn import steps
    else:  # the flat layout of older commits
        from metasig import steps

    # as scripts/train.py calls it: Snakemake's threads (older commits read cv.n_jobs only)
    threads = {"threads": spec["threads"]} if "threads" in inspect.signature(steps.train).parameters else {}
    steps.train(
        spec["matrix"],
        spec["samples"],
        spec["groups"],
        outdir=spec["outdir"],
        identity=spec["identity"],
        task_cfg=spec["task"],
        model_cfg=spec["model"],
        cv={**spec["cv"], "n_jobs": spec["threads"]},
        preprocessing=spec["preprocessing"],
        normalization=spec["normalization"],
        covariates=[],
        seed=spec["seed"],
        **threads,
    )
    return {}


def _reference(spec):
    from metasig.bench import reference

    return reference.run_split(spec)


def main(path):
    started = time.perf_counter()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    with open(path) as handle:
        spec = json.load(handle)
    out = (_train if spec["mode"] == "train" else _reference)(spec)
    out["child_wall_s"] = time.perf_counter() - started
    out["child_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(spec["result"], "w") as handle:
        json.dump(out, handle)


if __name__ == "__main__":
    main(sys.argv[1])
