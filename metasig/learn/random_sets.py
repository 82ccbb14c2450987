"""The random-gene-set control: is a signature better than gene sets of its size drawn at random?

Gene-signature studies mislead when most random gene sets predict about as well as the signature
(Venet, Dumont & Detours, PLoS Comput Biol 2011). For one (dataset, task, group, model), K sets of
the group's size (its genes found in the dataset) are drawn from all of the dataset's measured genes,
the group's own included: the null is "any genes of this platform", as in Venet et al. and
Bioconductor's SigCheck, and it does not depend on the signature. Covariates the group holds are
not genes: every random set keeps them, so only the genes are put to the test.

Each set goes through the same model, preprocessing and nested CV (same seed, so the same outer
folds) as the signature; only the point estimates are kept (no bootstrap, permuted control or
final fit). `compare` gives the empirical p-value (1 + #random >= signature) / (1 + K).
"""

import hashlib
import logging
import time as clock

import numpy as np

log = logging.getLogger("metasig.learn.random_sets")


def set_seeds(seed, dataset, task, group, count) -> list:
    """One 63-bit seed per random set, from the study seed and the job's names only, so set i is the
    same whatever the job order, the chunking or the model (every model of a group sees the same sets)."""
    names = hashlib.sha256(f"{dataset}\0{task}\0{group}".encode()).digest()
    entropy = [int(seed), *np.frombuffer(names, dtype=np.uint32).tolist()]
    return [
        int(np.random.SeedSequence(entropy, spawn_key=(i,)).generate_state(1, np.uint64)[0] >> 1) for i in range(count)
    ]


def draw(pool, size, set_seed) -> list:
    """`size` distinct genes of `pool` (sorted first, so the pool's order does not matter), in pool
    order: `numpy.random.default_rng(set_seed).choice(sorted(pool), size, replace=False)`."""
    pool = sorted(set(pool))
    if not 0 < size < len(pool):
        raise ValueError(f"a random set of {size} genes needs a pool of more than {size} genes (has {len(pool)})")
    picked = np.random.default_rng(set_seed).choice(len(pool), size=size, replace=False)
    return [pool[i] for i in sorted(picked)]


def genes_hash(genes) -> str:
    """A short fingerprint of a gene set (order-independent), to tell sets apart in the TSV."""
    return hashlib.sha1(",".join(sorted(genes)).encode()).hexdigest()[:12]


def score(
    X, y, kind, model_cfg, cv, preprocessing, normalization, seed, covariates=(), subset=None, n_jobs=1, groups=None
):
    """Point estimates {metric: value} of one feature set under the job's nested CV: the same
    pipeline, grid, folds and per-fold estimates as `metasig.learn.job.train` (estimates do not
    depend on the bootstrap, so none is drawn). `groups`: as in job.train (grouped CV)."""
    from metasig.config import schema_defaults
    from metasig.learn.job import job_pipeline
    from metasig.learn.metrics import bootstrap_ci, metric_fn_for
    from metasig.learn.nested_cv import nested_cv

    cv = {**schema_defaults("cv"), **(cv or {})}
    y = np.asarray(y)
    pipeline, grid = job_pipeline(X, kind, model_cfg, preprocessing, normalization, seed, covariates, subset)
    groups = None if groups is None else np.asarray(groups).astype(str)
    predictions = nested_cv(pipeline, grid, X, y, kind, cv, seed, n_jobs, groups)
    metric_fn = metric_fn_for(kind, None if kind == "survival" else [str(c) for c in np.unique(y)])
    return {m: v["estimate"] for m, v in bootstrap_ci(predictions, metric_fn, 0, seed).items()}


def run(frame_of, pool, size, seeds, scorer, headline) -> list:
    """Score every random set: `frame_of(genes)` gives (X, subset) for a set, `scorer(X, subset)` its
    {metric: estimate}. Each set is logged with its metric, so a long job shows its progress.
    Returns rows {"set", "seed", "n_genes", "genes_sha1", <metrics>, "genes"}."""
    rows = []
    started = clock.perf_counter()
    for i, set_seed in enumerate(seeds, start=1):
        genes = draw(pool, size, set_seed)
        X, subset = frame_of(genes)
        metrics = scorer(X, subset)
        rows.append(
            {"set": i, "seed": set_seed, "n_genes": size, "genes_sha1": genes_hash(genes), **metrics, "genes": genes}
        )
        log.info(
            "random set %d/%d (%s): %s %.4f (%.0f s so far)",
            i,
            len(seeds),
            rows[-1]["genes_sha1"],
            headline,
            metrics.get(headline, float("nan")),
            clock.perf_counter() - started,
        )
    return rows


def compare(signature, random_values) -> dict:
    """The signature's metric against its random sets' (higher is better; gate metrics all are):
    {"random_sets": K, "random_median", "random_p95", "random_p"} with the empirical p-value
    (1 + #{random >= signature}) / (1 + K). Random sets whose metric is undefined (NaN) are left out
    of K; no usable random set or no signature value gives NaN statistics."""
    values = np.asarray(random_values, dtype=float)
    values = values[np.isfinite(values)]
    k = len(values)
    if k == 0:
        return {"random_sets": 0, "random_median": np.nan, "random_p95": np.nan, "random_p": np.nan}
    p = (1 + int(np.sum(values >= signature))) / (1 + k) if np.isfinite(signature) else np.nan
    return {
        "random_sets": k,
        "random_median": float(np.median(values)),
        "random_p95": float(np.percentile(values, 95)),
        "random_p": float(p),
    }
