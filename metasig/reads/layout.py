"""Where a reads dataset's files are: its units (from the units sheet, or known in advance for a
simulated cohort) and the paths the workflow reads them from. Used while Snakemake builds its DAG."""

import pandas as pd

from metasig.config import schema_defaults


def simulation_settings(simulation: dict) -> dict:
    """A study's `simulation:` entry with the schema's defaults for what it leaves out."""
    return {**schema_defaults("dataset", "simulation"), **(simulation or {})}


def simulated_samples(simulation: dict) -> list[str]:
    """Sample IDs of a simulated cohort: first half control, second half treated."""
    n = 2 * int(simulation_settings(simulation)["samples_per_condition"])
    return [f"S{i:02d}" for i in range(1, n + 1)]


def simulated_units(dataset: str, simulation: dict) -> pd.DataFrame:
    """One paired-end unit per simulated sample, written by the simulate rules."""
    folder = f"results/{dataset}/simulated"
    samples = simulated_samples(simulation)
    return pd.DataFrame(
        {
            "sample": samples,
            "unit": "run1",
            "fq1": [f"{folder}/{s}_R1.fq.gz" for s in samples],
            "fq2": [f"{folder}/{s}_R2.fq.gz" for s in samples],
        }
    )


def planted_genes(simulation: dict) -> list[str]:
    """The genes a simulated cohort changes between conditions: SIMG0001 ... SIMG00NN."""
    return [f"SIMG{i:04d}" for i in range(1, int(simulation_settings(simulation)["planted"]) + 1)]
