"""SRA runs as paired FASTQ files through sra-toolkit (prefetch + fasterq-dump). Offline, or for an
accession the archive does not know, it fails with a message that says what to do instead."""

import gzip
import shutil
import subprocess
from pathlib import Path

from metasig.errors import InputError

TIMEOUT_S = 3600


def _run(cmd, accession):
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise InputError(accession, "sra", f"{cmd[0]} timed out after {TIMEOUT_S} s") from exc
    if done.returncode != 0:
        said = [line for line in (done.stderr + done.stdout).splitlines() if "err" in line.lower()]
        detail = f"exit status {done.returncode}" + (f": {said[-1].strip()}" if said else "")
        raise InputError(
            accession,
            "sra",
            f"{cmd[0]} could not fetch it from the Sequence Read Archive ({detail}). Is this "
            "machine offline? Download the FASTQ files elsewhere and list them as fq1/fq2 in the units sheet.",
        )


def fetch(accession: str, fastq_out: list, workdir) -> None:
    """Write `fastq_out` = [R1.fastq.gz, R2.fastq.gz] for a paired run; nothing is left on failure."""
    for tool in ("prefetch", "fasterq-dump"):
        if shutil.which(tool) is None:
            raise InputError(
                accession,
                "sra",
                f"'{tool}' (sra-toolkit) is not installed; run `make bootstrap` as root or use the sra conda env",
            )
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        _run(["prefetch", accession, "--output-directory", str(workdir)], accession)
        _run(["fasterq-dump", "--split-files", "--outdir", str(workdir), str(workdir / accession)], accession)
        for mate, out in zip((1, 2), fastq_out):
            raw = workdir / f"{accession}_{mate}.fastq"
            if not raw.is_file():
                raise InputError(
                    accession, "sra", f"fasterq-dump wrote no mate {mate}: is {accession} a paired-end run?"
                )
            tmp = Path(f"{out}.tmp")
            with raw.open("rb") as src, gzip.open(tmp, "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
