"""Seed-shaped synthetic expression data for the engine benchmark, deterministic from a seed.

Values are log2(x + 1) of log-normal expression, like UCSC Xena's HiSeqV2 tables (unit `log2`,
whose default normalization is `none`, so the file is the training input as it is; the leukemia
case is written as unit `microarray`, also `none`). Structure: per-gene baseline levels and
spreads; correlated gene modules (blocks of genes loading on shared latent factors); a planted
signal of modest strength in a few dozen genes (a class shift, or the hazard for survival);
class sizes as in the seeds. Written in the workflow's own contracts (metasig.io): the matrix
parquet with unit/namespace metadata, the sample sheet, and the groups JSON as the gene-groups
step writes it ({group: {"genes": [...], "missing": []}}).
"""

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from metasig import io

# The HER2 example's gene set (config/examples/her2_tcga_xena.yaml): these names are given to
# planted genes of case (a)/(d), so the example's group resolves on the synthetic matrix.
ERBB2_AMPLICON = ["ERBB2", "GRB7", "PGAP3", "STARD3", "MIEN1", "PNMT", "TCAP"]


@dataclass(frozen=True)
class Case:
    """One benchmark dataset. `classes`: class name -> size (binary: the positive class last);
    survival cases reuse the binary design and add time/event."""

    name: str
    kind: str  # binary | multiclass | survival
    n_genes: int
    classes: dict
    unit: str = "log2"
    namespace: str = "symbol"
    planted: int = 40  # genes carrying the signal (multiclass: per class, split between classes)
    effect: float = 0.3  # class shift of a planted gene, in units of its noise SD
    n_sets: int = 50  # gene sets besides ALL
    event_rate: float = 0.3  # survival: share of samples with an event
    seed: int = 0
    named: tuple = field(default=())  # real gene names given to the first planted genes

    @property
    def n_samples(self):
        return sum(self.classes.values())

    @property
    def label(self):
        return {"binary": "her2", "multiclass": "subtype"}.get(self.kind, "her2")


# Shapes and class sizes of the seeds (issue 12): HER2 on TCGA-BRCA, GSE28497 leukemia subtypes,
# the UCI/TCGA five cancer types (its published class sizes).
_LEUKEMIA = {
    "B_ALL_hyperdip": 87,
    "B_ALL_other": 60,
    "T_ALL": 45,
    "TEL_AML1": 35,
    "E2A_PBX1": 24,
    "MLL": 18,
    "BCR_ABL": 12,
}
_PANCAN = {"BRCA": 300, "KIRC": 146, "LUAD": 141, "PRAD": 136, "COAD": 78}
FULL = {
    "a": Case("her2", "binary", 20530, {"negative": 1094, "positive": 124}, named=tuple(ERBB2_AMPLICON)),
    "b": Case("leukemia", "multiclass", 22283, _LEUKEMIA, unit="microarray", namespace="probe", n_sets=0),
    "c": Case("pancancer", "multiclass", 20531, _PANCAN, n_sets=0),
    "d": Case("her2_surv", "survival", 20530, {"negative": 1094, "positive": 124}, named=tuple(ERBB2_AMPLICON)),
}


def _shrink(classes, n):
    """Class sizes scaled to n samples in all, each class keeping at least 8 (stratified CV)."""
    total = sum(classes.values())
    return {c: max(8, round(k * n / total)) for c, k in classes.items()}


# Quick shapes: small enough that today's engine (whose saga elastic net takes minutes even here)
# finishes a job in minutes; same imbalance and structure.
QUICK = {
    "a": replace(FULL["a"], n_genes=300, classes=_shrink(FULL["a"].classes, 200), n_sets=6),
    "b": replace(FULL["b"], n_genes=300, classes=_shrink(_LEUKEMIA, 150)),
    "c": replace(FULL["c"], n_genes=300, classes=_shrink(_PANCAN, 200)),
    "d": replace(FULL["d"], n_genes=300, classes=_shrink(FULL["a"].classes, 200), n_sets=6),
}


def gene_names(case):
    """Planted genes first in the design, but names do not say which: symbols SYN00001... (probe
    IDs like 200001_at for the microarray case), with `case.named` given to the first planted."""
    if case.namespace == "probe":
        return [f"{200000 + i}_at" for i in range(1, case.n_genes + 1)]
    return [f"SYN{i:05d}" for i in range(1, case.n_genes + 1)]


def generate(case, seed=None):
    """(matrix samples x genes, sample sheet, groups {name: [genes]}, manifest) for a Case."""
    rng = np.random.default_rng(case.seed if seed is None else seed)
    n, p = case.n_samples, case.n_genes
    names = np.array(gene_names(case), dtype=object)
    order = rng.permutation(p)  # planted genes sit at random columns
    planted_idx = np.sort(order[: case.planted])
    names[planted_idx[: len(case.named)]] = list(case.named)

    labels = np.concatenate([[c] * k for c, k in case.classes.items()])
    labels = labels[rng.permutation(n)]

    # log-scale expression: baseline level and noise SD per gene, shared latent modules
    level = rng.normal(2.0, 1.2, p)  # natural-log scale; exp(level) spans ~0.3 to ~300
    sd = rng.uniform(0.3, 0.9, p)
    z = rng.standard_normal((n, p)).astype(np.float64)
    n_modules = max(5, p // 200)
    module = rng.integers(-1, n_modules, p)  # -1: a gene in no module (about 1 in n_modules + 1)
    factors = rng.standard_normal((n, n_modules))
    loading = rng.uniform(0.4, 1.0, p) * rng.choice([-1.0, 1.0], p)
    in_module = module >= 0
    z[:, in_module] += factors[:, module[in_module]] * loading[in_module]
    z /= np.sqrt(1.0 + np.where(in_module, loading**2, 0.0))  # unit variance again

    direction = rng.choice([-1.0, 1.0], case.planted)
    if case.kind == "multiclass":
        per_class = np.array_split(planted_idx, len(case.classes))
        for cls, idx in zip(case.classes, per_class):
            z[np.ix_(labels == cls, idx)] += case.effect * 2 * direction[: len(idx)]
    else:
        positive = labels == list(case.classes)[-1]
        z[np.ix_(positive, planted_idx)] += case.effect * direction
    values = np.log2(np.exp(level + sd * z) + 1.0)

    samples = [f"S{i:05d}" for i in range(1, n + 1)]
    matrix = pd.DataFrame(values, index=pd.Index(samples, name="sample"), columns=list(names))
    sheet = pd.DataFrame({"sample": samples, case.label: labels})
    if case.kind == "survival":
        sheet["time"], sheet["event"] = _survival(rng, z[:, planted_idx] @ (direction * 0.15), case.event_rate)
    groups = _gene_sets(rng, case, names, planted_idx)
    manifest = {
        "case": case.name,
        "kind": case.kind,
        "shape": [n, p],
        "classes": dict(case.classes),
        "unit": case.unit,
        "planted_genes": [str(g) for g in names[planted_idx]],
        "effect_sd": case.effect,
        "groups_with_planted": [g for g, genes in groups.items() if set(genes) & set(names[planted_idx])],
    }
    if case.kind == "survival":
        manifest["event_share"] = round(float(sheet["event"].mean()), 4)
    return matrix, sheet, groups, manifest


def _survival(rng, risk, event_rate):
    """Exponential event times with hazard exp(risk) (days), independent exponential censoring
    scaled (bisection on a fixed draw) so that about `event_rate` of samples have an event."""
    t_event = rng.exponential(1.0, len(risk)) / np.exp(risk - risk.mean())
    draw = rng.exponential(1.0, len(risk))
    low, high = 1e-6, 1e6
    for _ in range(200):
        scale = np.sqrt(low * high)
        share = np.mean(t_event < scale * draw)
        low, high = (scale, high) if share < event_rate else (low, scale)
    observed = np.minimum(t_event, scale * draw)
    days = np.maximum(1.0, np.round(observed / np.median(observed) * 900.0))
    return days, (t_event < scale * draw).astype(int)


def _gene_sets(rng, case, names, planted_idx):
    """ALL plus `n_sets` sets of 10-200 genes (log-uniform sizes): the first fifth hold 3-10
    planted genes among random others, the rest only genes without signal (null groups)."""
    groups = {"ALL": [str(g) for g in names]}
    if case.kind != "multiclass" and case.named:
        groups["ERBB2_amplicon"] = list(case.named)
    null_pool = np.setdiff1d(np.arange(case.n_genes), planted_idx)
    for i in range(case.n_sets):
        size = int(round(np.exp(rng.uniform(np.log(10), np.log(min(200, len(null_pool) // 2))))))
        with_signal = i < max(1, case.n_sets // 5)
        k = int(rng.integers(3, 11)) if with_signal else 0
        idx = list(rng.choice(planted_idx, min(k, len(planted_idx)), replace=False)) if k else []
        idx += list(rng.choice(null_pool, size - len(idx), replace=False))
        groups[f"GS{i + 1:02d}"] = [str(g) for g in names[np.sort(idx)]]
    return groups


def write(case, outdir, seed=None):
    """Write normalized.parquet, samples.tsv, groups.json and manifest.json into outdir (the
    files a training job reads); returns the manifest."""
    outdir = Path(outdir)
    matrix, sheet, groups, manifest = generate(case, seed)
    io.write_matrix(matrix, outdir / "normalized.parquet", case.unit, case.namespace, extra={"normalization": "none"})
    io.write_sheet(sheet, outdir / "samples.tsv")
    io.write_json({g: {"genes": genes, "missing": []} for g, genes in groups.items()}, outdir / "groups.json")
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def task_cfg(case):
    """The task block a training job gets for this case (as the workflow passes it)."""
    if case.kind == "survival":
        return {"type": "survival", "time": "time", "event": "event", "models": []}
    if case.kind == "binary":
        return {"type": "binary", "label": case.label, "positive": list(case.classes)[-1], "models": []}
    return {"type": "multiclass", "label": case.label, "models": []}
