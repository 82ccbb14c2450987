"""`python -m metasig.bench engine`: the training engine at the seeds' scale (issue 12).

Per job (case x model kind x group), in its own process: the real training job
(metasig.learn.steps.train, called as scripts/train.py calls it, default CV: 5 x 3 outer, 3 inner,
permuted control, 1,000 bootstrap resamples) of the branch ("metasig") and, on the quick shapes,
of today's engine (commit eeec69e, "today"); wall time (launch to exit), the fit time the job
measured (timing.json), peak RSS and PSS of its process tree, the headline metric and its permuted
control. The plain reference (metasig/bench/reference.py) runs on the first K outer splits only:
its time per outer fit is compared with metasig's (engine_report.per_outer_fit), its per-fold metric with
metasig's on the same splits (from predictions.tsv). Cases: a (HER2-shaped binary), b (leukemia,
7 classes), c (pan-cancer, 5 classes), d (survival variant of a); see metasig/bench/synthetic.py.
`--configs` runs the ready example configs on synthetic tables instead (engine_configs.py).
"""

import argparse
import datetime
import shutil
import sys
import tempfile
import time
from pathlib import Path

from metasig.bench import engine_report as report
from metasig.bench import reference, synthetic
from metasig.bench.engine_run import BASELINE, extract_baseline, gpu_status, run_child
from metasig.bench.scratch import REPO

MODELS = {
    "binary": ["xgboost", "elasticnet", "linear_sweep", "random_forest", "svm", "logistic"],
    "multiclass": ["xgboost", "elasticnet", "linear_sweep", "random_forest", "svm", "logistic"],
    "survival": ["coxph", "xgboost_cox"],
}
TODAY_KINDS = {"xgboost", "elasticnet", "linear_sweep", "random_forest", "coxph", "xgboost_cox"}  # kinds eeec69e has
CV = {"outer_folds": 5, "outer_repeats": 3, "inner_folds": 3, "bootstrap": 1000, "permuted_repeats": 1}
PREPROCESSING = {"min_mean": None, "top_variance": None, "select_k": None, "scale": True}
SEED = 42


class Progress:
    """One line per job started/finished, with the time since the benchmark started."""

    def __init__(self):
        self.started = time.perf_counter()

    def __call__(self, text):
        elapsed = datetime.timedelta(seconds=round(time.perf_counter() - self.started))
        print(f"[{elapsed}] {text}", flush=True)


def small_groups(manifest, groups, n=3):
    """A few small groups of case (a): the named planted set, one with planted genes, one without."""
    planted = [g for g in manifest["groups_with_planted"] if g not in ("ALL", "ERBB2_amplicon")]
    null = sorted((g for g in groups if g.startswith("GS") and g not in planted), key=lambda g: len(groups[g]))
    picks = [g for g in ["ERBB2_amplicon", *planted[:1], *null[:1]] if g in groups]
    return picks[:n]


def plan(args):
    """[(case letter, group, model kind)] to run."""
    jobs = []
    for letter in args.case:
        kind = synthetic.FULL[letter].kind
        for model in [m for m in MODELS[kind] if not args.model or m in args.model]:
            jobs.append((letter, "ALL", model))
            if letter == "a" and args.small_groups:
                jobs += [(letter, "<small>", model)]
    return jobs


def train_spec(case, data_dir, group, model, outdir, device=None):
    model_cfg = {"kind": model, **({"params": {"device": device}} if device else {})}
    return {
        "mode": "train",
        "matrix": str(data_dir / "normalized.parquet"),
        "samples": str(data_dir / "samples.tsv"),
        "groups": str(data_dir / "groups.json"),
        "outdir": str(outdir),
        "identity": {
            "dataset": case.name,
            "task": case.label if case.kind != "survival" else "os",
            "group": group,
            "model": model,
        },
        "task": synthetic.task_cfg(case),
        "model": model_cfg,
        "cv": CV,
        "preprocessing": PREPROCESSING,
        "normalization": "none",
        "seed": SEED,
    }


def run_engine(name, spec, rundir, pythonpath, args, case, say, label):
    """`args.repeats` runs of one engine on one job; medians, metrics and per-fold metrics."""
    runs = []
    for r in range(args.repeats):
        say(f"start  {label} [{name}] run {r + 1}/{args.repeats}")
        outdir = Path(rundir) / f"r{r}"
        job = {**spec, "threads": args.threads, "outdir": str(outdir / "job")}
        result = run_child(job, outdir, pythonpath, args.threads, args.job_timeout)
        if result["status"] == "ok":
            result.update(report.job_outputs(outdir / "job", case.kind, CV["outer_folds"] * CV["outer_repeats"]))
            splits = range(args.reference_folds or 1)
            result["fold_metric"] = report.fold_metrics(outdir / "job" / "predictions.tsv", case.kind, splits)
            say(
                f"done   {label} [{name}] in {result['wall_s']:.1f} s (fit {result['fit_s']:.1f} s, "
                f"{report.headline(case.kind)} {result['metric']:.3f}, permuted {result['permuted']:.3f}, "
                f"RSS {result['peak_rss_mb']:.0f} MiB, PSS {result['peak_pss_mb']:.0f} MiB)"
            )
        else:
            say(f"FAILED {label} [{name}]: {result['status']} after {result['wall_s']:.0f} s")
        runs.append(result)
        if result["status"] != "ok":
            break  # a timeout will not get faster
    return report.median_runs(runs)


def run_reference(case, data_dir, group, model, rundir, args, say, label):
    folds, fold_metric, timed_out = [], {}, False
    for split in range(args.reference_folds):
        say(f"start  {label} [reference] outer split {split + 1}/{args.reference_folds}")
        spec = {
            "mode": "reference",
            "data_dir": str(data_dir),
            "group": group,
            "task": synthetic.task_cfg(case),
            "model": {"kind": model},
            "seed": SEED,
            "split": split,
            "threads": args.threads,
            "screen": args.reference_screen,
        }
        result = run_child(spec, Path(rundir) / f"split{split}", REPO, args.threads, args.reference_timeout)
        folds.append({"split": split, **result})
        if result["status"] != "ok":
            say(f"STOP   {label} [reference] split {split + 1}: {result['status']} after {result['wall_s']:.0f} s")
            timed_out = result["status"] == "timeout"
            break
        fold_metric[split] = result["metric"]
        say(f"done   {label} [reference] split {split + 1} in {result['fit_s']:.1f} s (metric {result['metric']:.3f})")
    fit_times = [f["fit_s"] for f in folds if f["status"] == "ok"]
    return {
        "folds": folds,
        "fold_metric": fold_metric,
        "per_outer_fit_s": sum(fit_times) / len(fit_times) if fit_times and not timed_out else None,
        "timed_out": timed_out,
        "timeout_s": args.reference_timeout,
        "screen": reference.SCREEN_K.get(model) if args.reference_screen else None,
        "status": "ok" if fit_times and not timed_out else folds[-1]["status"] if folds else "not run",
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m metasig.bench engine", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (synthetic.QUICK); runs today's engine too")
    parser.add_argument("--case", nargs="+", choices=sorted(synthetic.FULL), default=sorted(synthetic.FULL))
    parser.add_argument("--model", nargs="+", help="model kinds to run (default: every kind of each case)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per job of each engine; timings are medians")
    parser.add_argument("--threads", type=int, default=2, help="the job's threads (cv n_jobs, as Snakemake's)")
    parser.add_argument("--reference-folds", type=int, default=1, help="outer splits the reference runs (0: none)")
    parser.add_argument("--reference-timeout", type=float, default=600, help="seconds per reference outer fit")
    parser.add_argument(
        "--reference-all-genes",
        dest="reference_screen",
        action="store_false",
        help="fit the reference's tree classifiers on every gene, without metasig's in-fold screen",
    )
    parser.add_argument("--job-timeout", type=float, help="seconds per training job (default 900 quick, 1800 full)")
    parser.add_argument("--today", choices=("auto", "on", "off"), default="auto", help="auto: with --quick only")
    parser.add_argument("--no-small-groups", dest="small_groups", action="store_false")
    parser.add_argument("--no-gpu", dest="gpu", action="store_false", help="skip the GPU run even if one is visible")
    parser.add_argument("--configs", action="store_true", help="run the ready example configs instead")
    parser.add_argument("--workdir", help="keep data and job outputs here (default: a temporary folder)")
    parser.add_argument("--out", help="summary name (default bench_engine[_quick])")
    parser.add_argument("--save-dir", default=str(REPO / "benchmarks"), help="where the summary goes")
    args = parser.parse_args(argv)
    if args.configs:
        from metasig.bench.engine_configs import main as configs_main

        return configs_main(args)
    args.job_timeout = args.job_timeout or (900 if args.quick else 1800)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="metasig-engine-"))
    try:
        summary = bench(args, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return summary


def bench(args, workdir):
    say = Progress()
    cases = synthetic.QUICK if args.quick else synthetic.FULL
    jobs = plan(args)
    today_dir, today_note = None, "not run (full shapes: today's engine runs with --quick)"
    if args.today == "on" or (args.today == "auto" and args.quick):
        today_dir, reason = extract_baseline(workdir / f"today_{BASELINE}")
        today_note = f"commit {BASELINE}" if today_dir else f"not run: {reason}"
    data, rows = {}, []
    say(f"engine benchmark: {len(jobs)} job(s), {'quick' if args.quick else 'full'} shapes, in {workdir}")
    for letter, group, model in jobs:
        case = cases[letter]
        if letter not in data:
            say(f"data   case {letter} ({case.name}): {case.n_samples} x {case.n_genes}")
            data[letter] = (workdir / "data" / letter, synthetic.write(case, workdir / "data" / letter))
        data_dir, manifest = data[letter]
        groups = {g: v["genes"] for g, v in synthetic.io.read_json(data_dir / "groups.json").items()}
        for grp in small_groups(manifest, groups) if group == "<small>" else [group]:
            rows.append(run_job(args, case, letter, data_dir, grp, model, len(groups[grp]), workdir, today_dir, say))
    gpu = gpu_row(args, cases, data, workdir, rows, say)
    summary = {
        "title": f"Engine benchmark ({'quick' if args.quick else 'full'} shapes), {datetime.date.today()}",
        "notes": notes(args, today_note),
        "settings": {k: v for k, v in vars(args).items()},
        "gpu": gpu,
        "rows": rows,
    }
    print()
    print(report.markdown(rows))
    print(f"\nGPU: {gpu}")
    path = report.save(summary, args.out or ("bench_engine_quick" if args.quick else "bench_engine"), args.save_dir)
    print(f"saved {path} and {path.with_suffix('.json')}")
    return summary


def run_job(args, case, letter, data_dir, group, model, n_genes, workdir, today_dir, say, device=None):
    label = f"{letter}/{group}/{model}" + (f" ({device})" if device else "")
    rundir = workdir / "runs" / letter / group / (model + (f"_{device}" if device else ""))
    spec = train_spec(case, data_dir, group, model, rundir, device)
    row = {"case": letter, "group": group, "model": model, "shape": [case.n_samples, n_genes], "quick": args.quick}
    row["device"] = device or "cpu"
    row["metasig"] = run_engine("metasig", dict(spec), rundir / "metasig", REPO, args, case, say, label)
    if today_dir and not device and model in TODAY_KINDS:
        row["today"] = run_engine("today", dict(spec), rundir / "today", today_dir, args, case, say, label)
    if args.reference_folds and not device:
        row["reference"] = run_reference(case, data_dir, group, model, rundir / "reference", args, say, label)
    return report.compare(row)


def gpu_row(args, cases, data, workdir, rows, say):
    """Case (a) xgboost on the GPU when one is visible; the speedup over the CPU row."""
    if not args.gpu:
        return "not run (--no-gpu)"
    usable, reason = gpu_status()
    if not usable:
        say(f"GPU    no GPU visible ({reason})")
        return f"no GPU visible ({reason})"
    cpu = next((r for r in rows if (r["case"], r["group"], r["model"]) == ("a", "ALL", "xgboost")), None)
    if cpu is None or "a" not in data:
        return f"GPU visible ({reason}) but case a xgboost was not selected"
    row = run_job(args, cases["a"], "a", data["a"][0], "ALL", "xgboost", cpu["shape"][1], workdir, None, say, "cuda")
    rows.append(row)
    if row["metasig"]["status"] != "ok" or cpu["metasig"]["status"] != "ok":
        return f"{reason}: cuda run {row['metasig']['status']}"
    return f"{reason}: case a xgboost {cpu['metasig']['wall_s'] / row['metasig']['wall_s']:.1f}x faster than the CPU"


def notes(args, today_note):
    return [
        f"Machine: {__import__('os').cpu_count()} CPU(s); each job runs with {args.threads} thread(s) "
        "(cv n_jobs and BLAS/OpenMP threads, as a Snakemake job with that many threads).",
        "today / metasig: one training job in its own process, launch to exit (imports, reading the matrix, "
        "writing outputs included), with the fit time the job measured itself (timing.json fit_seconds); "
        f"median of {args.repeats} run(s). Default CV: 5 x 3 outer, 3 inner, permuted control (1 x 5), "
        "1,000 bootstrap resamples, seed 42.",
        f"today: {today_note}.",
        f"reference: plain GridSearchCV (metasig/bench/reference.py) on the first {args.reference_folds} outer "
        "split(s) only, same splits and grid"
        + (
            " and, for xgboost and random_forest, the same in-fold screen (SelectKBest(f_classif, k=200)); "
            if args.reference_screen
            else ", every gene (--reference-all-genes); "
        )
        + "'reference' is its mean time per outer fit (search + refit), "
        f"capped at {args.reference_timeout:.0f} s per fit. 'speedup vs reference' = that / metasig's time per "
        "outer fit (its real-label folds' seconds / outer fits / the job's threads, which fit that many folds at "
        "once). Nothing is extrapolated to whole jobs.",
        "metric: metasig's headline estimate (ROC-AUC, macro one-vs-rest for multiclass, or Harrell's C) and the "
        "permuted control's; 'metric difference' = metasig - reference, mean over the compared splits' "
        "per-fold metric (from predictions.tsv).",
        "peak RSS / PSS (MiB): the job's process tree (joblib workers included), RSS sampled every 0.2 s (or the "
        "main process's ru_maxrss if larger), PSS at each new RSS high and at least every second; PSS counts "
        "a page shared by workers once.",
        "Targets (issue 12): wall <= 10 min (a, d) / 5 min (b, c) for ALL-genes jobs at full size; >= 10x "
        "today; >= 5x reference; |metric difference| <= 0.01; permuted 0.5 +/- 0.1; "
        "peak PSS < 2 GB (2,000 MB = 1,907 MiB). "
        "'yes (k of n measured)': every target measured here was met; unmeasured ones (—) are not claimed.",
    ]


if __name__ == "__main__":
    main(sys.argv[1:])
