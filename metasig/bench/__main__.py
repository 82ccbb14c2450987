"""`make bench`: wall time of the default study from scratch and the per-job overhead of Snakemake
(median job wall time minus the in-process fit time the job itself measured); and, for reads, the
throughput of the per-sample chain (validate -> fastp -> salmon) and the share of its wall time
spent outside fastp and salmon themselves.

Everything runs in a scratch copy of the workflow so the checkout's own results are left alone.
Usage: python -m metasig.bench [study|reads] [--config FILE] [--cores N] [--keep DIR]
       python -m metasig.bench serve [--out FILE]   (options: metasig/bench/serve.py)
       python -m metasig.bench dag                  (options: metasig/bench/dag.py)
       python -m metasig.bench engine [--quick]     (options: metasig/bench/engine.py)
       python -m metasig.bench overhead [--jobs N]  (options: metasig/bench/overhead.py)
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

import pandas as pd
import yaml

from metasig.bench.scratch import REPO, scratch_workdir


def job_overheads(workdir):
    """Per training job: (wall seconds from Snakemake's benchmark file, fit seconds from timing.json)."""
    rows = []
    for bench in sorted((workdir / "benchmarks" / "train").rglob("*.tsv")):
        job = bench.relative_to(workdir / "benchmarks" / "train").with_suffix("")
        timing = json.loads((workdir / "results" / "models" / job / "timing.json").read_text())
        wall = float(pd.read_csv(bench, sep="\t")["s"].iloc[0])
        rows.append(
            {
                "job": str(job),
                "wall_s": wall,
                "fit_s": timing["fit_seconds"],
                "overhead_s": wall - timing["fit_seconds"],
            }
        )
    return pd.DataFrame(rows)


def run_snakemake(workdir, args):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", *args, "--quiet", "rules"], cwd=workdir, check=True)
    return time.perf_counter() - start


def bench_study(workdir, args):
    wall = run_snakemake(workdir, ["--cores", str(args.cores), "--configfile", args.config])
    jobs = job_overheads(workdir)
    print(jobs.sort_values("wall_s", ascending=False).to_string(index=False, float_format="%.2f"))
    return {
        "config": args.config,
        "cores": args.cores,
        "study_wall_s": round(wall, 1),
        "training_jobs": len(jobs),
        "median_job_wall_s": round(statistics.median(jobs.wall_s), 2),
        "median_job_fit_s": round(statistics.median(jobs.fit_s), 2),
        "median_job_overhead_s": round(statistics.median(jobs.overhead_s), 2),
    }


def _bench_s(path):
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0])


def bench_reads(workdir, args):
    """The per-sample chain on a simulated cohort, after its reads and salmon index exist: wall
    time of Snakemake running validate + fastp + salmon quant for every sample, against the time
    fastp and salmon themselves ran (their jobs' benchmark files), with the same number of cores.
    The time outside the tools is split into the pysam validation job, Snakemake's one-off start
    (from launch to the first job, and after the last) and the gaps between jobs."""
    config_file = "resources/test_configs/reads_bench.yaml"
    simulation = yaml.safe_load((workdir / config_file).read_text())["datasets"]["sim"]["simulation"]
    config = ["--configfile", config_file, "--cores", str(args.cores)]
    n_samples = 2 * simulation["samples_per_condition"]
    run_snakemake(workdir, [*config, "results/sim/salmon/index"])
    quantified = [f"results/sim/salmon/S{i:02d}" for i in range(1, n_samples + 1)]
    wall = run_snakemake(workdir, [*config, *quantified])
    bench = workdir / "benchmarks" / "sim"
    tool_s = sum(_bench_s(f) for step in ("fastp", "salmon") for f in (bench / step).glob("*.tsv"))
    validate_s = _bench_s(bench / "validate_reads.tsv")
    # first job start and last job end, from output times: validation opens the chain, salmon closes it
    first_start = (workdir / "results/sim/qc/validated_units.tsv").stat().st_mtime - validate_s
    last_end = max(f.stat().st_mtime for d in quantified for f in (workdir / d).rglob("*"))
    jobs_span = last_end - first_start
    pairs = simulation["reads"] * n_samples
    # fastp and salmon jobs run with `threads: 2`: each holds min(2, cores) of the cores
    busy = tool_s * min(2, args.cores) / args.cores
    return {
        "samples": n_samples,
        "read_pairs": pairs,
        "cores": args.cores,
        "chain_wall_s": round(wall, 2),
        "read_pairs_per_s": round(pairs / wall),
        "fastp_plus_salmon_s": round(tool_s, 2),
        "share_outside_tools": round(max(0.0, 1 - busy / wall), 3),
        "of_which_validation": round(validate_s / wall, 3),
        "of_which_snakemake_start": round((wall - jobs_span) / wall, 3),
        "of_which_gaps_between_jobs": round(max(0.0, jobs_span - validate_s - busy) / wall, 3),
        "share_outside_tools_from_first_job": round(max(0.0, 1 - busy / jobs_span), 3),
    }


def save(what, summary):
    """Keep a benchmark's summary as benchmarks/bench_<what>.json (not tracked)."""
    out = REPO / "benchmarks" / f"bench_{what}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:  # the serving benchmark has its own options
        from metasig.bench.serve import main as serve_main

        return serve_main(argv[1:])
    if argv[:1] == ["engine"]:  # the training engine at the seeds' scale (see metasig/bench/engine.py)
        from metasig.bench.engine import main as engine_main

        return engine_main(argv[1:])
    if argv[:1] == ["dag"]:  # a generated 5,000-model study's dry run (see metasig/bench/dag.py)
        from metasig.bench.dag import main as dag_main

        return save("dag", dag_main(argv[1:]))
    if argv[:1] == ["overhead"]:  # per-job overhead on a 1,000-job study (see metasig/bench/overhead.py)
        from metasig.bench.overhead import main as overhead_main

        return save("overhead", overhead_main(argv[1:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("study", "reads"), default="study")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--cores", type=int, default=8)
    parser.add_argument("--keep", help="run in this directory and keep it")
    args = parser.parse_args(argv)

    with scratch_workdir(args.keep) as workdir:
        summary = (bench_reads if args.what == "reads" else bench_study)(workdir, args)
    print(json.dumps(summary, indent=2))
    save(args.what, summary)
    return summary


if __name__ == "__main__":
    main()
