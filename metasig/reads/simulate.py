"""A simulated RNA-seq cohort with a known answer: a synthetic transcriptome, per-sample expression
with biological (negative-binomial) variation and a planted differential-expression signature, and
paired-end Illumina-like reads.

The division of labour: this module does what a read simulator does not know about (genes,
transcripts, expression per sample, fragment sampling); Debian's `mason_frag_sequencing`
(seqan-apps) turns the fragments into reads with its Illumina error and quality model. Everything
is seeded, so the same seed gives byte-identical files.

Outputs (in out_dir): transcriptome.fa.gz, tx2gene.tsv, samples.tsv, units.tsv,
truth_counts.tsv (genes x samples: fragments simulated per gene), truth_genes.tsv (per gene:
baseline, set, planted direction, log2 fold change), truth_samples.tsv (per sample: read pairs, of
them from transcripts and from background), groups.gmt and
{sample}_R1.fq.gz / {sample}_R2.fq.gz (mates share their names, as Illumina's do).

A fraction of each sample's reads ("background", like intronic and intergenic reads in real
libraries) comes from random sequence that is not in the transcriptome, so the mapping rate is
realistic (about 1 - background) and a sample can be given a poor one to exercise mapping QC.

groups.gmt holds two sets of equal size: PLANTED (the genes with a planted fold change) and
UNCHANGED (the null set: genes of similar expression without one). The null set is not called
"NULL" because YAML and pandas both read a bare NULL as a missing value.
"""

import argparse
import gzip
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from metasig import io

MASON = "mason_frag_sequencing"
_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
_GC_PROBS = np.array([0.275, 0.225, 0.225, 0.275])  # A C G T: GC content 0.45
_MAX_RUN = 6  # longest homopolymer allowed: keeps the sequence free of low-complexity stretches
_MIN_EXON = 60
_GZIP_LEVEL = 3  # about as small as level 6 for FASTQ, several times faster
PLANTED_SET, NULL_SET = "PLANTED", "UNCHANGED"


# ---- transcriptome -------------------------------------------------------------------------------


def _random_dna(rng, n):
    """n random bases (GC 0.45) as codes 0..3, with homopolymer runs broken at _MAX_RUN."""
    codes = rng.choice(4, size=n, p=_GC_PROBS).astype(np.int8)
    while True:
        # same[i]: base i+1 repeats base i; _MAX_RUN of those in a row end a run one base too long
        same = codes[1:] == codes[:-1]
        window = np.convolve(same.astype(np.int8), np.ones(_MAX_RUN, dtype=np.int8), mode="valid")
        bad = np.flatnonzero(window == _MAX_RUN) + _MAX_RUN
        if bad.size == 0:
            return codes
        pos = bad[0]  # fix one at a time: a change can end the next overlapping run too
        codes[pos] = (codes[pos] + rng.integers(1, 4)) % 4


def _isoforms(rng, n_exons):
    """Exon index lists for 1-3 transcripts of a gene: the full set, then skipped internal exons or
    an alternative first exon. Distinct by construction."""
    full = list(range(n_exons))
    wanted = rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25])
    out = [full]
    internal = list(rng.permutation(np.arange(1, n_exons - 1)))
    while len(out) < wanted and internal:
        skip = internal.pop()
        out.append([e for e in full if e != skip])
    if len(out) < wanted and n_exons > 2:
        out.append(full[1:])  # alternative transcription start
    return out


def make_transcriptome(n_genes, seed):
    """Random genes of 3-8 exons (GC ~0.45, full transcript 800-3000 nt) with 1-3 transcripts each
    sharing exons. Returns (fasta_records [(tx_id, seq)], tx2gene DataFrame[transcript, gene]).
    Gene IDs SIMG0001..., transcript IDs SIMT0001-1..."""
    if n_genes < 1:
        raise ValueError(f"n_genes must be >= 1, got {n_genes}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    records, rows = [], []
    for g in range(1, n_genes + 1):
        total = int(np.exp(rng.uniform(np.log(800), np.log(3000))))
        n_exons = int(rng.integers(3, 9))
        lengths = _MIN_EXON + np.floor(rng.dirichlet(np.full(n_exons, 3.0)) * (total - _MIN_EXON * n_exons)).astype(int)
        codes = _random_dna(rng, int(lengths.sum()))
        seq = _BASES[codes].tobytes().decode()
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        exons = [seq[bounds[i] : bounds[i + 1]] for i in range(n_exons)]
        gene = f"SIMG{g:04d}"
        for t, exon_ids in enumerate(_isoforms(rng, n_exons), start=1):
            tx = f"SIMT{g:04d}-{t}"
            records.append((tx, "".join(exons[e] for e in exon_ids)))
            rows.append((tx, gene))
    return records, pd.DataFrame(rows, columns=["transcript", "gene"])


# ---- expression ----------------------------------------------------------------------------------


def _choose_sets(rng, genes, baseline, planted_genes):
    """(planted, null) gene lists of equal size, both drawn from genes above the lowest quartile of
    baseline expression so that the two sets are comparable and the planted change is visible."""
    eligible = np.array(genes)[baseline >= np.quantile(baseline, 0.25)]
    if isinstance(planted_genes, (int, np.integer)):
        k = int(planted_genes)
        if k < 1 or 2 * k > len(eligible):
            raise ValueError(
                f"planted_genes={k}: need 1 <= 2 * planted_genes <= {len(eligible)} "
                f"(genes above the lowest expression quartile); simulate more genes"
            )
        picked = rng.choice(eligible, size=2 * k, replace=False)
        return sorted(picked[:k]), sorted(picked[k:])
    planted = list(dict.fromkeys(str(g) for g in planted_genes))
    unknown = [g for g in planted if g not in set(genes)]
    if unknown or not planted:
        raise ValueError(f"planted_genes: not simulated genes: {unknown[:5]}" if unknown else "planted_genes is empty")
    rest = [g for g in eligible if g not in set(planted)]
    if len(rest) < len(planted):
        raise ValueError(f"not enough other genes ({len(rest)}) for a null set of {len(planted)}")
    return planted, sorted(rng.choice(rest, size=len(planted), replace=False))


def _fragments(rng, tx_counts, tx_lengths, fragment_mean, fragment_sd, min_length):
    """Vectorised fragment sampling: per fragment (transcript index, start, length), in random
    order. Lengths ~ Normal(mean, sd), at least min_length, truncated to the transcript."""
    tx = np.repeat(np.arange(len(tx_counts)), tx_counts)
    tx = tx[rng.permutation(tx.size)]
    length = np.rint(rng.normal(fragment_mean, fragment_sd, size=tx.size)).astype(np.int64)
    length = np.minimum(np.maximum(length, min_length), tx_lengths[tx])
    start = np.floor(rng.random(tx.size) * (tx_lengths[tx] - length + 1)).astype(np.int64)
    return tx, start, length


# ---- sequencing (mason) ----------------------------------------------------------------------------


def _gzip(src, dest):
    """gzip without a timestamp or file name in the header, so equal input gives equal bytes."""
    with (
        io.atomic_path(dest) as tmp,
        open(src, "rb") as fin,
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=_GZIP_LEVEL) as fout,
    ):
        shutil.copyfileobj(fin, fout, 1 << 20)


def _sequence(fragments_fa, r1, r2, read_length, seed, prefix, n_expected, workdir):
    """Paired-end Illumina reads (FR, both strands) from a FASTA of fragments, one pair per
    fragment, through mason; gzipped into r1/r2."""
    plain1, plain2 = Path(workdir) / "r1.fq", Path(workdir) / "r2.fq"
    cmd = [
        MASON,
        "-q",
        "--seed",
        str(seed),
        "-i",
        str(fragments_fa),
        "-o",
        str(plain1),
        "-or",
        str(plain2),
        "--seq-technology",
        "illumina",
        "--illumina-read-length",
        str(read_length),
        "--seq-mate-orientation",
        "FR",
        "--seq-strands",
        "both",
        "--read-name-prefix",
        prefix,
    ]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{MASON} failed (exit {done.returncode}): {done.stderr.strip()[-800:]}")
    for plain in (plain1, plain2):
        with open(plain, "rb") as handle:
            n_lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
        if n_lines != 4 * n_expected:
            raise RuntimeError(f"{MASON} wrote {n_lines // 4} reads to {plain.name}, expected {n_expected}")
    _gzip(plain1, r1)
    _gzip(plain2, r2)


def _write_fasta_gz(records, path, width=80):
    with (
        io.atomic_path(path) as tmp,
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out,
    ):
        for name, seq in records:
            lines = "\n".join(seq[i : i + width] for i in range(0, len(seq), width))
            out.write(f">{name}\n{lines}\n".encode())


# ---- the cohort ------------------------------------------------------------------------------------


# simulate_cohort's parameters that a study's `simulation:` entry sets, by their name there; left
# None, they take the config schema's default (the one place it is written).
SCHEMA_NAMES = {
    "n_per_condition": "samples_per_condition",
    "n_genes": "genes",
    "planted_genes": "planted",
    "fold_change": "fold_change",
    "reads_per_sample": "reads",
    "seed": "seed",
}


def schema_settings(**given):
    """The SCHEMA_NAMES parameters: those given (not None), else the schema's defaults."""
    from metasig.config import schema_defaults

    defaults = schema_defaults("dataset", "simulation")
    return {name: defaults[key] if given.get(name) is None else given[name] for name, key in SCHEMA_NAMES.items()}


def simulate_cohort(
    out_dir,
    n_per_condition=None,
    n_genes=None,
    planted_genes=None,
    fold_change=None,
    reads_per_sample=None,
    read_length=75,
    fragment_mean=250,
    fragment_sd=30,
    seed=None,
    dispersion=0.1,
    baseline_sdlog=1.0,
    background=0.05,
    low_mapping=None,
    units_per_sample=1,
    conditions=("control", "treated"),
):
    """Simulate a two-condition cohort into out_dir; returns a dict of the written paths.

    planted_genes: how many genes get a planted fold change (int), or their IDs. Half of them go up
    by `fold_change` in the second condition, the other half down by it; a null set of as many
    unchanged genes (matched: also above the lowest expression quartile) is written beside them
    (GMT sets PLANTED_SET and NULL_SET).
    Expression per sample: gene baseline ~ log-normal(0, baseline_sdlog), times a gamma factor of
    mean 1 and variance `dispersion` (so counts are negative binomial), times the planted fold
    change; a gene's transcripts share it in fixed proportions; fragments are drawn in proportion
    to abundance x effective length; each sample gets exactly `reads_per_sample` read pairs.
    background: fraction of each sample's read pairs drawn from sequence outside the transcriptome
    (expected to stay unmapped); low_mapping: {sample: fraction} overrides it for some samples.
    units_per_sample > 1 splits each sample's fragments into that many FASTQ pairs (lanes).
    Parameters left None take the config schema's `simulation` defaults (see SCHEMA_NAMES)."""
    settings = schema_settings(
        n_per_condition=n_per_condition,
        n_genes=n_genes,
        planted_genes=planted_genes,
        fold_change=fold_change,
        reads_per_sample=reads_per_sample,
        seed=seed,
    )
    n_per_condition, n_genes, planted_genes, fold_change, reads_per_sample, seed = (
        settings.values()
    )  # SCHEMA_NAMES order
    if shutil.which(MASON) is None:
        raise RuntimeError(f"{MASON} not found on PATH (Debian package seqan-apps)")
    if n_per_condition < 1 or reads_per_sample < units_per_sample or units_per_sample < 1:
        raise ValueError("need n_per_condition >= 1 and reads_per_sample >= units_per_sample >= 1")
    low_mapping = dict(low_mapping or {})
    if not all(0 <= f < 1 for f in [background, *low_mapping.values()]):
        raise ValueError("background fractions must be in [0, 1)")
    if fold_change <= 0:
        raise ValueError(f"fold_change must be > 0, got {fold_change}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))

    records, tx2gene = make_transcriptome(n_genes, seed)
    genes = list(dict.fromkeys(tx2gene["gene"]))
    gene_index = pd.Index(genes).get_indexer(tx2gene["gene"])
    tx_lengths = np.array([len(s) for _, s in records], dtype=np.int64)
    eff_length = np.maximum(tx_lengths - fragment_mean + 1, 1).astype(float)
    # fixed isoform proportions per gene
    tx_share = rng.gamma(2.0, size=len(records))
    tx_share /= np.bincount(gene_index, weights=tx_share)[gene_index]

    baseline = rng.lognormal(0.0, baseline_sdlog, size=len(genes))
    planted, null = _choose_sets(rng, genes, baseline, planted_genes)
    up = set(planted[: (len(planted) + 1) // 2])
    log2fc = pd.Series(0.0, index=genes)
    log2fc[planted] = [np.log2(fold_change) if g in up else -np.log2(fold_change) for g in planted]

    samples = [f"S{i:02d}" for i in range(1, 2 * n_per_condition + 1)]
    condition = [conditions[0]] * n_per_condition + [conditions[1]] * n_per_condition
    treated = np.array([c == conditions[1] for c in condition])
    bio = rng.gamma(1.0 / dispersion, dispersion, size=(len(genes), len(samples)))
    abundance = baseline[:, None] * bio * np.where(treated[None, :], 2.0 ** log2fc.to_numpy()[:, None], 1.0)
    propensity = abundance[gene_index] * tx_share[:, None] * eff_length[:, None]
    propensity /= propensity.sum(axis=0, keepdims=True)

    unknown = sorted(set(low_mapping) - set(samples))
    if unknown:
        raise ValueError(f"low_mapping names samples that are not simulated: {unknown} (samples are {samples[0]}..)")

    truth = pd.DataFrame(0, index=pd.Index(genes, name="gene"), columns=samples, dtype=np.int64)
    # background "genome" appended after the transcripts as one extra pseudo-transcript
    bg_rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    bg_seq = _BASES[_random_dna(bg_rng, 200_000)].tobytes()
    seqs = "".join(s for _, s in records).encode() + bg_seq
    seq_lengths = np.append(tx_lengths, len(bg_seq))
    offsets = np.concatenate([[0], np.cumsum(seq_lengths)[:-1]])
    n_background = {}
    min_length = read_length + 10  # mason needs the fragment to hold a whole read, indels included
    if tx_lengths.min() < min_length:
        raise ValueError(f"read_length {read_length} too long for the shortest transcript ({tx_lengths.min()} nt)")
    units = []
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".simulate.") as work:
        for j, sample in enumerate(samples):
            srng = np.random.default_rng(np.random.SeedSequence([seed, 2, j]))
            n_bg = int(srng.binomial(reads_per_sample, low_mapping.get(sample, background)))
            tx_counts = srng.multinomial(reads_per_sample - n_bg, propensity[:, j])
            truth[sample] = np.bincount(gene_index, weights=tx_counts, minlength=len(genes)).astype(np.int64)
            n_background[sample] = n_bg
            tx, start, length = _fragments(
                srng, np.append(tx_counts, n_bg), seq_lengths, fragment_mean, fragment_sd, min_length
            )
            begin = offsets[tx] + start
            for u, chunk in enumerate(np.array_split(np.arange(tx.size), units_per_sample), start=1):
                fa = Path(work) / "fragments.fa"
                fa.write_bytes(
                    b"".join(
                        b">%d\n%s\n" % (i, seqs[b : b + n])
                        for i, b, n in zip(chunk, begin[chunk].tolist(), length[chunk].tolist())
                    )
                )
                stem = sample if units_per_sample == 1 else f"{sample}_L{u:03d}"
                r1, r2 = out_dir / f"{stem}_R1.fq.gz", out_dir / f"{stem}_R2.fq.gz"
                _sequence(
                    fa,
                    r1,
                    r2,
                    read_length,
                    seed=(seed % 100_000) * 1000 + j * 10 + u,
                    prefix=f"{stem}.",
                    n_expected=chunk.size,
                    workdir=work,
                )
                units.append({"sample": sample, "unit": f"run{u}", "fq1": str(r1), "fq2": str(r2)})

    paths = {
        "transcriptome": out_dir / "transcriptome.fa.gz",
        "tx2gene": out_dir / "tx2gene.tsv",
        "samples": out_dir / "samples.tsv",
        "units": out_dir / "units.tsv",
        "truth_counts": out_dir / "truth_counts.tsv",
        "truth_genes": out_dir / "truth_genes.tsv",
        "truth_samples": out_dir / "truth_samples.tsv",
        "groups": out_dir / "groups.gmt",
    }
    _write_fasta_gz(records, paths["transcriptome"])
    _write_tsv(tx2gene, paths["tx2gene"])
    io.write_sheet(pd.DataFrame({"sample": samples, "condition": condition}), paths["samples"])
    _write_tsv(pd.DataFrame(units, columns=["sample", "unit", "fq1", "fq2"]), paths["units"])
    _write_tsv(truth.reset_index(), paths["truth_counts"])
    n_bg = pd.Series(n_background)[samples].to_numpy()
    _write_tsv(
        pd.DataFrame(
            {
                "sample": samples,
                "condition": condition,
                "read_pairs": reads_per_sample,
                "transcript_pairs": reads_per_sample - n_bg,
                "background_pairs": n_bg,
            }
        ),
        paths["truth_samples"],
    )
    direction = pd.Series("unchanged", index=genes)
    direction[planted] = ["up" if g in up else "down" for g in planted]
    _write_tsv(
        pd.DataFrame(
            {
                "gene": genes,
                "baseline": baseline,
                "set": [PLANTED_SET if g in set(planted) else NULL_SET if g in set(null) else "other" for g in genes],
                "direction": direction.to_numpy(),
                "log2fc": log2fc.to_numpy(),
            }
        ),
        paths["truth_genes"],
    )
    with io.atomic_path(paths["groups"]) as tmp:
        tmp.write_text(
            f"{PLANTED_SET}\tfold change {fold_change:g} in {conditions[1]} (half up, half down)\t"
            + "\t".join(planted)
            + "\n"
            + f"{NULL_SET}\tunchanged genes, matched in expression\t"
            + "\t".join(null)
            + "\n"
        )
    paths["fastq"] = {u["sample"]: [] for u in units}
    for u in units:
        paths["fastq"][u["sample"]].append((Path(u["fq1"]), Path(u["fq2"])))
    return paths


def _write_tsv(frame, path):
    with io.atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m metasig.reads.simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    # defaults (None): the config schema's, as in simulate_cohort
    parser.add_argument("--samples-per-condition", type=int)
    parser.add_argument("--reads", type=int, help="read pairs per sample")
    parser.add_argument("--genes", type=int)
    parser.add_argument("--planted", type=int, help="genes with a planted fold change")
    parser.add_argument("--fold-change", type=float)
    parser.add_argument("--read-length", type=int, default=75)
    parser.add_argument(
        "--background",
        type=float,
        default=0.05,
        help="fraction of read pairs from outside the transcriptome (unmapped)",
    )
    parser.add_argument(
        "--low-mapping",
        action="append",
        default=[],
        metavar="SAMPLE=FRACTION",
        help="give one sample this background fraction (repeatable), e.g. S03=0.6",
    )
    parser.add_argument("--units-per-sample", type=int, default=1)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    low_mapping = {}
    for item in args.low_mapping:
        name, _, fraction = item.partition("=")
        try:
            low_mapping[name] = float(fraction)
        except ValueError:
            parser.error(f"--low-mapping expects SAMPLE=FRACTION, got {item!r}")
    paths = simulate_cohort(
        args.out_dir,
        n_per_condition=args.samples_per_condition,
        n_genes=args.genes,
        planted_genes=args.planted,
        fold_change=args.fold_change,
        reads_per_sample=args.reads,
        read_length=args.read_length,
        background=args.background,
        low_mapping=low_mapping,
        units_per_sample=args.units_per_sample,
        seed=args.seed,
    )
    for key, value in paths.items():
        if key != "fastq":
            print(f"{key}\t{value}")
    print(f"fastq\t{sum(len(v) for v in paths['fastq'].values())} pairs for {len(paths['fastq'])} samples")


if __name__ == "__main__":
    main()
