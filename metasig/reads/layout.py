"""Where a reads dataset's files are: its units (from the units sheet, or known in advance for a
simulated cohort) and the paths the workflow reads them from and writes them to. Used while
Snakemake builds its DAG (rules/common.smk and rules/reads.smk only wire what this returns).

`ds` is a dataset's entry of the checked config; `units` its units table (`units_table`).
"""

import pandas as pd

from metasig.config import schema_defaults

# Dataset sources whose matrix is quantified from sequencing reads by the workflow (not to be
# confused with a unit's read columns, metasig.reads.units.UNIT_READ_COLUMNS).
READS_DATASET_SOURCES = ("fastq", "bam", "simulated")
SALMON_SOURCES = ("fastq", "simulated")  # quantified by salmon (bam: featureCounts)


def is_reads(ds) -> bool:
    return ds["source"] in READS_DATASET_SOURCES


def uses_salmon(ds) -> bool:
    return ds["source"] in SALMON_SOURCES


def simulated_folder(dataset) -> str:
    return f"results/{dataset}/simulated"


def simulation_settings(simulation: dict) -> dict:
    """A study's `simulation:` entry with the schema's defaults for what it leaves out."""
    return {**schema_defaults("dataset", "simulation"), **(simulation or {})}


def simulated_samples(simulation: dict) -> list[str]:
    """Sample IDs of a simulated cohort: first half control, second half treated."""
    n = 2 * int(simulation_settings(simulation)["samples_per_condition"])
    return [f"S{i:02d}" for i in range(1, n + 1)]


def simulated_units(dataset: str, simulation: dict) -> pd.DataFrame:
    """One paired-end unit per simulated sample, written by the simulate rules."""
    folder = simulated_folder(dataset)
    samples = simulated_samples(simulation)
    return pd.DataFrame(
        {
            "sample": samples,
            "unit": "run1",
            "fq1": [f"{folder}/{s}_R1.fq.gz" for s in samples],
            "fq2": [f"{folder}/{s}_R2.fq.gz" for s in samples],
        }
    )


def simulated_outputs(dataset: str, simulation: dict) -> dict:
    """Every file the simulation of a dataset writes, by role."""
    folder, table = simulated_folder(dataset), simulated_units(dataset, simulation)
    return {
        "transcriptome": f"{folder}/transcriptome.fa.gz",
        "tx2gene": f"{folder}/tx2gene.tsv",
        "samples": f"{folder}/samples.tsv",
        "truth": f"{folder}/truth_counts.tsv",
        "reads": list(table["fq1"]) + list(table["fq2"]),
    }


def planted_genes(simulation: dict) -> list[str]:
    """The genes a simulated cohort changes between conditions: SIMG0001 ... SIMG00NN."""
    return [f"SIMG{i:04d}" for i in range(1, int(simulation_settings(simulation)["planted"]) + 1)]


# ---- any reads dataset -----------------------------------------------------------------------


def sample_sheet(dataset, ds):
    return f"{simulated_folder(dataset)}/samples.tsv" if ds["source"] == "simulated" else ds.get("samples")


def units_table(dataset, ds) -> pd.DataFrame:
    """The units sheet of a reads dataset, read and checked (simulated ones: from the config)."""
    if ds["source"] == "simulated":
        return simulated_units(dataset, ds["simulation"])
    from metasig.data.sources.table import read_sample_sheet
    from metasig.reads.units import read_units

    return read_units(ds["units"], samples=list(read_sample_sheet(ds["samples"])["sample"]))


def unit_row(units, sample, unit):
    return units[(units["sample"] == sample) & (units["unit"] == unit)].iloc[0]


def samples(units) -> list:
    return list(dict.fromkeys(units["sample"]))


def is_paired(row) -> bool:
    return isinstance(row.get("fq2"), str) or isinstance(row.get("sra"), str)


def raw_fastq(dataset, row) -> list:
    """A unit's FASTQ files: as listed, or fetched from SRA (rule sra_fetch's outputs)."""
    if isinstance(row.get("sra"), str):
        return [f"results/{dataset}/sra/{row['sra']}_{mate}.fastq.gz" for mate in (1, 2)]
    return [row["fq1"], row["fq2"]] if is_paired(row) else [row["fq1"]]


def trimmed_fastq(dataset, sample, units) -> dict:
    """fastp's output for every unit of a sample, as salmon reads them: {"r1": [...], "r2": [...]}."""
    rows = units[units["sample"] == sample]
    prefix = f"results/{dataset}/fastp"
    if all(is_paired(row) for _, row in rows.iterrows()):
        return {
            "r1": [f"{prefix}/{sample}-{u}.1.fastq.gz" for u in rows["unit"]],
            "r2": [f"{prefix}/{sample}-{u}.2.fastq.gz" for u in rows["unit"]],
        }
    return {"r1": [f"{prefix}/{sample}-{u}.se.fastq.gz" for u in rows["unit"]], "r2": []}


def fastp_reports(dataset, units) -> list:
    return [
        f"results/{dataset}/fastp/{row['sample']}-{row['unit']}{'' if is_paired(row) else '.se'}.json"
        for _, row in units.iterrows()
    ]


def transcriptome(dataset, ds):
    return f"{simulated_folder(dataset)}/transcriptome.fa.gz" if ds["source"] == "simulated" else ds["transcriptome"]


def salmon_dirs(dataset, units) -> list:
    return [f"results/{dataset}/salmon/{s}" for s in samples(units)]


def bam_files(units) -> list:
    return list(units["bam"])


def featurecounts(dataset) -> str:
    return f"results/{dataset}/featurecounts/counts.txt"


def mapping_table(dataset) -> str:
    return f"results/{dataset}/qc/mapping.tsv"


def mapping_qc_inputs(dataset, ds, units) -> dict:
    """Tool outputs that tell how each sample's reads went: fastp + salmon, or featureCounts."""
    if ds["source"] == "bam":
        return {"summary": f"{featurecounts(dataset)}.summary"}
    return {"fastp": fastp_reports(dataset, units), "salmon": salmon_dirs(dataset, units)}


def load_inputs(dataset, ds, units) -> dict:
    """What a dataset's load step reads: local files (so editing them re-runs it) and, for reads
    datasets, the quantifications and the mapping QC table. `units`: None unless `is_reads`."""
    if ds["source"] == "simulated":
        files = [f"{simulated_folder(dataset)}/{f}" for f in ("samples.tsv", "tx2gene.tsv")]
    else:
        files = [ds[key] for key in ("matrix", "samples", "tx2gene", "gtf") if key in ds]
    if (ds.get("id_map") or {}).get("file"):
        files.append(ds["id_map"]["file"])
    inputs = {"files": files}
    if is_reads(ds):
        inputs["quant"] = salmon_dirs(dataset, units) if uses_salmon(ds) else featurecounts(dataset)
        inputs["qc"] = mapping_table(dataset)
    return inputs


def read_inputs(dataset, ds, units, quant, qc):
    """For the load step of a reads dataset: which input is which (None for other sources).
    `quant`, `qc`: the step's inputs of those names (see `load_inputs`)."""
    if not is_reads(ds):
        return None
    simulated = ds["source"] == "simulated"
    return {
        "samples": sample_sheet(dataset, ds),
        "tx2gene": f"{simulated_folder(dataset)}/tx2gene.tsv" if simulated else ds.get("tx2gene"),
        "gtf": None if simulated else ds.get("gtf"),
        "quant": dict(zip(samples(units), salmon_dirs(dataset, units))) if uses_salmon(ds) else quant,
        "bam_samples": dict(zip(units["bam"], units["sample"])) if "bam" in units else {},
        "qc": qc,
        "exclude_low_mapping": ds["exclude_low_mapping"],
        "namespace": ds["namespace"],
    }


def final_outputs(dataset, ds) -> list:
    """The reads stage's own targets of a dataset (none unless `is_reads`)."""
    if not is_reads(ds):
        return []
    outputs = [f"results/{dataset}/qc/multiqc.html", f"results/plots/{dataset}/mapping.svg"]
    if uses_salmon(ds):
        outputs.append(f"results/{dataset}/tpm.parquet")
    return outputs
