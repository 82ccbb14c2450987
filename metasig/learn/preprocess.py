"""In-fold preprocessing: scikit-learn transformers that learn their parameters from the training
fold only, so nothing about a test sample leaks into the model that scores it.

All fitted state is plain numpy arrays and floats, so a fitted pipeline saves with skops and
loads without trusting arbitrary objects.
"""

import copy
import logging
import numbers
import warnings

import numpy as np
import pandas as pd
from scipy import special
from scipy.sparse import issparse
from scipy.stats import trim_mean
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.feature_selection import SelectKBest, SelectorMixin, f_classif
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import FLOAT_DTYPES, _check_feature_names, check_is_fitted, validate_data

log = logging.getLogger("metasig.learn.preprocess")

# Columns taken at a time by the steps whose whole-array computation makes temporaries the size of
# a training fold (160 MB each at 975 x 20,530): the Cox screen's scores, the scaler's statistics
# and the imputer's medians. Per column the results are those of the whole-array computation.
COLUMN_CHUNK = 1024


def _allow_nan_tags(tags):
    tags.input_tags.allow_nan = True
    return tags


# ---- DESeq2 variance-stabilizing transformation ---------------------------------------------


class DESeq2VST(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """DESeq2 VST fitted on the training fold's raw counts (pydeseq2), applied to new samples.

    Fit: pydeseq2 `DeseqDataSet.vst_fit()` (intercept-only design) on the training counts gives
    the genes' log geometric means (median-of-ratios size factors) and the dispersion trend
    (parametric a0 + a1/mean, or pydeseq2's mean-dispersion fallback when the trend does not
    converge). Only those numbers are kept. Transform: size factor of each sample against the
    *training* geometric means, then pydeseq2's VST formula with the *training* trend; so the
    transform of a sample never depends on the other samples it is transformed with.

    Two deliberate differences from `DeseqDataSet.vst_transform(counts)`: a new sample's size
    factor is the median over the reference genes where that sample has a non-zero count (a zero
    would enter pydeseq2's median as -inf); and when every training gene has a zero somewhere,
    size factors use DESeq2's "poscounts" method (pydeseq2 would switch to iterative size factors,
    which re-estimates them on the data being transformed: a train/test leak).
    Counts are rounded to integers first (Salmon/tximport give estimated counts).
    """

    _method = "vst"  # the config's name for it, so messages name the method the user chose

    def __init__(self, fit_type="parametric"):
        self.fit_type = fit_type

    def fit(self, X, y=None):
        from pydeseq2.dds import DeseqDataSet

        counts = self._counts(X, reset=True)
        poscounts = bool((counts == 0).any(axis=0).all())
        index = pd.Index([f"s{i}" for i in range(counts.shape[0])])
        genes = pd.Index([f"g{j}" for j in range(counts.shape[1])])
        dds = DeseqDataSet(
            counts=pd.DataFrame(counts.astype(np.int64), index=index, columns=genes),
            metadata=pd.DataFrame(index=index),
            design=pd.DataFrame({"Intercept": 1.0}, index=index),
            fit_type=self.fit_type,
            size_factors_fit_type="poscounts" if poscounts else "ratio",
            quiet=True,
            n_cpus=1,
        )
        with warnings.catch_warnings():
            # pydeseq2 warns when it falls back to the mean dispersion trend; we record it instead.
            warnings.filterwarnings("ignore", message="The dispersion trend curve fitting did not converge")
            dds.vst_fit()
        self.size_factor_method_ = "poscounts" if poscounts else "ratio"
        self.logmeans_ = np.asarray(dds.logmeans, dtype=float)
        self.reference_genes_ = np.asarray(dds.filtered_genes, dtype=bool)
        if poscounts:
            self.reference_genes_ &= self.logmeans_ > 0
        self.sf_scale_ = 1.0
        raw = self._raw_size_factors(counts)
        if poscounts:  # DESeq2 poscounts normalizes size factors to a geometric mean of 1
            self.sf_scale_ = float(np.exp(np.mean(np.log(raw))))
        self.vst_fit_type_ = dds.vst_fit_type
        if self.vst_fit_type_ == "parametric":
            self.trend_a0_, self.trend_a1_ = (float(c) for c in dds.uns["vst_trend_coeffs"])
            self.mean_disp_ = np.nan
        else:
            disp = dds.var["vst_genewise_dispersions"]
            usable = disp[disp > 10 * dds.min_disp]
            self.mean_disp_ = float(trim_mean(usable, proportiontocut=0.001)) if len(usable) else np.nan
            self.trend_a0_ = self.trend_a1_ = np.nan
            if not np.isfinite(self.mean_disp_):
                raise ValueError(
                    f"DESeq2VST: no dispersion could be estimated from {counts.shape[1]} gene(s) and "
                    f"{counts.shape[0]} samples (size factors from so few genes normalize the "
                    "signal away); use more genes or normalization 'log2cpm'"
                )
        return self

    def transform(self, X):
        check_is_fitted(self, "logmeans_")
        counts = self._counts(X, reset=False)
        normed = counts / self.size_factors(counts)[:, None]
        if self.vst_fit_type_ == "parametric":
            a0, a1 = self.trend_a0_, self.trend_a1_
            return np.log2((1 + a1 + 2 * a0 * normed + 2 * np.sqrt(a0 * normed * (1 + a1 + a0 * normed))) / (4 * a0))
        d = self.mean_disp_
        return (2 * np.arcsinh(np.sqrt(d * normed)) - np.log(d) - np.log(4)) / np.log(2)

    def size_factors(self, counts):
        """Size factors of (rounded) count rows against the training geometric means."""
        sf = self._raw_size_factors(counts) / self.sf_scale_
        bad = ~np.isfinite(sf) | (sf <= 0)
        if bad.any():
            raise ValueError(
                f"{self._method} normalization: sample row {int(np.flatnonzero(bad)[0])} has no counts in any of the "
                f"{int(self.reference_genes_.sum())} reference genes; cannot compute its size factor"
            )
        return sf

    def _raw_size_factors(self, counts):
        ref = counts[:, self.reference_genes_]
        with np.errstate(divide="ignore"):
            ratios = np.log(ref) - self.logmeans_[self.reference_genes_]
        ratios[ref <= 0] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows are reported by the caller
            return np.exp(np.nanmedian(ratios, axis=1))

    def _counts(self, X, reset):
        X = validate_data(self, X, reset=reset, dtype=np.float64, ensure_all_finite=True)
        if (X < 0).any():
            raise ValueError(
                f"{self._method} normalization needs raw non-negative counts; found negative values. Covariates must "
                "bypass VST (make_preprocessing(..., covariates=[...])), and log-scale data should "
                "use normalization 'none'"
            )
        return np.rint(X)


class MedianOfRatiosLog2(DESeq2VST):
    """DESeq2's median-of-ratios size factors fitted on the training fold (geometric means of its
    genes; DESeq2's "poscounts" when every gene has a zero), then log2(normalized count + 1).
    The size factors correct library size *and* composition: when a few genes take a larger share
    of the reads, CPM pushes every other gene down, median-of-ratios does not. No dispersion fit,
    so it is cheap enough to refit in every fold and grid point."""

    _method = "deseq2"

    def __init__(self):
        pass

    def fit(self, X, y=None):
        counts = self._counts(X, reset=True)
        with np.errstate(divide="ignore"):
            logs = np.log(counts)
        self.logmeans_ = logs.mean(axis=0)
        self.reference_genes_ = np.isfinite(self.logmeans_)
        self.sf_scale_ = 1.0
        self.size_factor_method_ = "ratio"
        if not self.reference_genes_.any():  # every gene has a zero somewhere: DESeq2's poscounts
            self.size_factor_method_ = "poscounts"
            self.logmeans_ = np.where(counts > 0, logs, 0.0).sum(axis=0) / counts.shape[0]
            self.reference_genes_ = self.logmeans_ > 0
            self.sf_scale_ = float(np.exp(np.mean(np.log(self._raw_size_factors(counts)))))
        return self

    def transform(self, X):
        check_is_fitted(self, "logmeans_")
        counts = self._counts(X, reset=False)
        return np.log2(counts / self.size_factors(counts)[:, None] + 1)


# Normalizations fitted inside the training folds, on every gene of the library.
IN_FOLD_NORMALIZATIONS = {"vst": DESeq2VST, "deseq2": MedianOfRatiosLog2}


# ---- filters and selectors --------------------------------------------------------------------


class ColumnSubset(SelectorMixin, BaseEstimator):
    """Keep the columns at `indices`. After DESeq2VST, which needs every gene of the library to
    estimate size factors, this narrows the transformed matrix to one gene group's genes."""

    def __init__(self, indices=()):
        self.indices = indices

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def _get_support_mask(self):
        mask = np.zeros(self.n_features_in_, dtype=bool)
        mask[list(self.indices)] = True
        return mask


class _NanTolerantFilter(SelectorMixin, BaseEstimator):
    """A feature filter whose fit sets `support_`; NaN (e.g. a missing covariate) is allowed."""

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_

    def __sklearn_tags__(self):
        return _allow_nan_tags(super().__sklearn_tags__())


class MinMeanFilter(_NanTolerantFilter):
    """Keep features whose training-fold mean is >= min_mean (NaN ignored)."""

    def __init__(self, min_mean=None):
        self.min_mean = min_mean

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column -> NaN mean -> dropped
            self.means_ = np.nanmean(X, axis=0)
        if self.min_mean is None:
            self.support_ = np.ones(X.shape[1], dtype=bool)
        else:
            self.support_ = self.means_ >= self.min_mean
        if not self.support_.any():
            raise ValueError(
                f"MinMeanFilter: no feature has a training-fold mean >= {self.min_mean} "
                f"(largest mean: {np.nanmax(self.means_) if np.isfinite(self.means_).any() else 'n/a'}); "
                "lower preprocessing.min_mean"
            )
        return self


class TopVarianceFilter(_NanTolerantFilter):
    """Keep the n features with the largest training-fold variance (all of them if n >= #features).
    Ties are broken by column order, so the choice is deterministic."""

    def __init__(self, n=None):
        self.n = n

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.variances_ = np.nan_to_num(np.nanvar(X, axis=0), nan=-1.0)
        keep = X.shape[1] if self.n is None else min(int(self.n), X.shape[1])
        order = np.argsort(-self.variances_, kind="stable")
        self.support_ = np.zeros(X.shape[1], dtype=bool)
        self.support_[order[:keep]] = True
        return self


class SelectKBestCapped(SelectKBest):
    """SelectKBest that quietly keeps every feature when k exceeds their number (small gene
    groups meet a global select_k), instead of warning on every fold. f_classif is computed by
    anova_f: f_classif itself copies its input by class and squares the copies."""

    def _check_params(self, X, y):
        pass

    def fit(self, X, y):
        if self.score_func is not f_classif:
            return super().fit(X, y)
        X, y = validate_data(self, X, y)
        self.scores_, self.pvalues_ = anova_f(X, y)
        return self


def anova_f(X, y):
    """f_classif's F statistic and p-values, from the same sums (f_oneway's formula) taken as one
    product of X with the class indicators and one pass over X's squares: f_classif copies X by
    class and squares the copies, 0.2 s a call on a fold of 20,000 genes, 4 calls per outer fold
    of a tree model's search."""
    X = np.asarray(X, dtype=np.float64)  # no copy of a float array
    classes, codes = np.unique(y, return_inverse=True)
    indicators = np.zeros((len(classes), len(y)))
    indicators[codes, np.arange(len(y))] = 1.0
    n_per_class = indicators.sum(axis=1)
    n, k = len(y), len(classes)
    class_sums = indicators @ X
    square_of_sums = class_sums.sum(axis=0) ** 2 / n
    between = (class_sums**2 / n_per_class[:, None]).sum(axis=0) - square_of_sums
    within = np.einsum("ij,ij->j", X, X) - square_of_sums - between
    msb, msw = between / (k - 1), within / (n - k)
    with np.errstate(divide="ignore", invalid="ignore"):  # constant genes: as f_classif's, without its warning
        f = msb / msw
    return f, special.fdtrc(k - 1, n - k, f)


class ChunkedStandardScaler(StandardScaler):
    """StandardScaler whose fit takes `chunk` columns at a time: scikit-learn's computes the
    variance through temporaries of the input's size (a NaN-free copy, X - mean), 320 MB more
    per outer-fold fit at 20,000 genes, in every worker at once. Each column's statistics are
    the same, bit for bit; transform is StandardScaler's."""

    chunk = COLUMN_CHUNK

    def fit(self, X, y=None, sample_weight=None):
        if sample_weight is not None or issparse(X) or np.ndim(X) != 2 or np.shape(X)[1] <= self.chunk:
            return super().fit(X, y, sample_weight)
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")  # a float array: no copy
        blocks = [X[:, start : start + self.chunk] for start in range(0, X.shape[1], self.chunk)]
        parts = [StandardScaler(with_mean=self.with_mean, with_std=self.with_std).fit(b) for b in blocks]
        for name in ("mean_", "var_", "scale_"):
            values = [getattr(part, name) for part in parts]
            setattr(self, name, None if values[0] is None else np.concatenate(values))
        counts = [part.n_samples_seen_ for part in parts]
        if all(np.ndim(c) == 0 for c in counts):
            self.n_samples_seen_ = counts[0]  # no NaN: one count for every column
        else:  # a NaN somewhere: a count per column, as StandardScaler's
            self.n_samples_seen_ = np.concatenate([np.broadcast_to(c, b.shape[1]) for c, b in zip(counts, blocks)])
        return self


def cox_score(X, y, chunk=COLUMN_CHUNK):
    """Univariate Cox score-test statistic of each column (Breslow ties): U^2 / I at beta = 0.
    y is a structured array with fields 'event' (bool) and 'time' (float). Columns go `chunk` at a
    time: the risk-set sums take several arrays of the input's size, which at 20,000 genes would
    be gigabytes."""
    X = np.asarray(X)
    event, time = np.asarray(y["event"], dtype=bool), np.asarray(y["time"], dtype=float)
    order = np.argsort(-time, kind="stable")
    event, time = event[order], time[order]
    # Risk set of sample i = every sample with time >= time_i: in descending order that is the
    # prefix up to the last sample tied with i.
    end = np.searchsorted(-time, -time, side="right") - 1
    n_at_risk = (end + 1)[:, None]
    scores = np.empty(X.shape[1])
    for start in range(0, X.shape[1], chunk):
        part = np.asarray(X[order, start : start + chunk], dtype=float)
        mean = np.cumsum(part, axis=0)[end] / n_at_risk
        var = np.maximum(np.cumsum(part**2, axis=0)[end] / n_at_risk - mean**2, 0.0)
        U = (part - mean)[event].sum(axis=0)
        info = var[event].sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            scores[start : start + chunk] = np.where(info > 1e-12, U**2 / info, 0.0)
    return scores


class CoxScoreSelector(SelectorMixin, BaseEstimator):
    """Keep the k features with the largest univariate Cox score statistic (survival analogue
    of SelectKBest(f_classif)); all of them if k >= #features."""

    def __init__(self, k=10):
        self.k = k

    def fit(self, X, y):
        X = validate_data(self, X, dtype=np.float64)
        self.scores_ = cox_score(X, y)
        keep = min(int(self.k), X.shape[1])
        order = np.argsort(-self.scores_, kind="stable")
        self.support_ = np.zeros(X.shape[1], dtype=bool)
        self.support_[order[:keep]] = True
        return self

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_


# ---- principal components ----------------------------------------------------------------------


class InFoldPCA(PCA):
    """PCA fitted on the training fold. An integer n_components larger than the fold allows
    (min(samples, features)) is capped to it with a logged warning, so a small fold or gene group
    does not stop the run; a float in (0, 1) keeps the fewest components explaining that fraction
    of the fold's variance. Outputs are named PC1..PCk. svd_solver "auto" with random_state set is
    deterministic (exact LAPACK SVD, or the seeded randomized SVD for few components of a large
    matrix); components' signs are fixed by scikit-learn's svd_flip."""

    _capped = set()  # (requested, cap) pairs already reported, so each is logged once per process

    def _fit(self, X):
        requested = self.n_components
        limit = min(np.shape(X))
        if isinstance(requested, numbers.Integral) and requested > limit:
            if (requested, limit) not in self._capped:
                self._capped.add((requested, limit))
                log.warning(
                    "preprocessing.pca: %d components requested, but a training fold of %d samples x %d features "
                    "has at most %d; using %d",
                    requested,
                    *np.shape(X),
                    limit,
                    limit,
                )
            self.n_components = limit
            try:
                return super()._fit(X)
            finally:
                self.n_components = requested
        return super()._fit(X)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "n_components_")
        return np.asarray([f"PC{i + 1}" for i in range(self.n_components_)], dtype=object)


def pca_components(value):
    """preprocessing.pca as PCA's n_components: an int (a whole float such as 10.0 too) or a fraction."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# ---- missing values ----------------------------------------------------------------------------


class MedianImputer(SimpleImputer):
    """SimpleImputer(strategy="median") that skips scikit-learn's masked-array median when the
    training fold has no missing value (np.median took a tenth of its time on 20,000 genes, where
    the imputer is fitted once per inner split of every outer fold). The medians are taken
    `chunk` genes at a time, each chunk copied gene by gene (rows of the copy) so that the
    partition runs along contiguous memory: np.median's values in half its time."""

    chunk = COLUMN_CHUNK

    def __init__(self, *, missing_values=np.nan, strategy="median", fill_value=None, copy=True):
        super().__init__(missing_values=missing_values, strategy=strategy, fill_value=fill_value, copy=copy)

    def _dense_fit(self, X, strategy, missing_values, fill_value):
        if strategy == "median" and len(X) and not np.isnan(X).any():
            return np.concatenate([_middle(X[:, s : s + self.chunk].T) for s in range(0, X.shape[1], self.chunk)])
        return super()._dense_fit(X, strategy, missing_values, fill_value)

    # SimpleImputer copies its input in fit and in transform even when there is nothing to fill:
    # at 20,000 genes that is two extra copies of a fold per fit, in every thread. Fitting never
    # writes into X, nor does a transform of finite values, so both skip the copy then; the array
    # returned has the same values and memory layout as SimpleImputer's copy.
    # A frame of float columns is validated as its values, its column names checked apart:
    # scikit-learn inspects a frame's dtypes column by column, 0.3 s per call at 20,531 genes,
    # 4 s of a 28 s outer fold of the pan-cancer shape.
    def fit(self, X, y=None):
        saved, self.copy = self.copy, False  # fit is never concurrent on one estimator
        try:
            if not _float_frame(X):
                return super().fit(X, y)
            super().fit(X.to_numpy(), y)
            _check_feature_names(self, X, reset=True)  # the frame's names, as fitting on it keeps them
            return self
        finally:
            self.copy = saved

    def transform(self, X):
        if not _all_finite_floats(X):
            return super().transform(X)
        uncopied = copy.copy(self)  # transform may be concurrent (the server): self stays as it is
        uncopied.copy = False
        if _float_frame(X):
            _check_feature_names(self, X, reset=False)  # raises on other names, as transforming the frame would
            uncopied.__dict__.pop("feature_names_in_", None)
            X = X.to_numpy()
        if not np.isfinite(self.statistics_).all():
            return SimpleImputer.transform(uncopied, X)
        # Nothing to fill and no gene to drop: SimpleImputer would validate X, then look for
        # missing values cell by cell (0.1 s a call on a fold of 20,000 genes). Same checks (the
        # width among them), same array, but a read-only one is not copied to be made writeable,
        # as nothing is written into it (a final fit's refit on the job's shared matrix: 200 MB).
        return validate_data(
            uncopied, X, reset=False, accept_sparse="csc", dtype=FLOAT_DTYPES, ensure_all_finite="allow-nan", copy=False
        )


def _middle(rows):
    """Median of each row, as np.median(rows, axis=1), from a contiguous copy partitioned in place."""
    rows = np.array(rows, order="C")
    n = rows.shape[1]
    if n % 2:
        rows.partition(n // 2, axis=1)
        return rows[:, n // 2].copy()
    rows.partition([n // 2 - 1, n // 2], axis=1)
    return (rows[:, n // 2 - 1] + rows[:, n // 2]) / 2


def _float_frame(X):
    return isinstance(X, pd.DataFrame) and set(X.dtypes) == {np.dtype(np.float64)}


def _all_finite_floats(X):
    values = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
    return values.dtype.kind == "f" and bool(np.isfinite(values).all())


# ---- assembling the preprocessing steps ------------------------------------------------------


def make_preprocessing(preprocessing: dict, normalization: str, task_kind: str, seed, covariates=(), subset=None):
    """Preprocessing steps as a list of (name, transformer), all fitted in-fold:

    [DESeq2VST or MedianOfRatiosLog2 for normalization "vst" / "deseq2"] + [MinMeanFilter if
    min_mean] + [TopVarianceFilter if top_variance] + MedianImputer + [univariate selection if
    select_k: f_classif for classification, Cox score for survival] + [ChunkedStandardScaler if scale]
    + [InFoldPCA if pca].

    PCA comes last, after select_k: select_k keeps its meaning (genes ranked by a univariate
    test), PCA then compresses the kept genes, and each component's loadings are over genes, so
    feature importance maps back to genes (metasig.learn.models.feature_importance). After the
    scaler, the components are those of the correlation matrix (scale: false: covariance).

    `covariates` (column names, so the input must be a DataFrame; or column indices) are sample
    annotations beside the genes: they skip the gene-only steps (VST, mean and variance filters)
    through a ColumnTransformer and join the imputer, scaler, selector and PCA. `seed` seeds
    PCA's randomized solver (the only random step). `subset`: with an in-fold normalization, the positions (among
    the gene columns) of the genes to keep after VST has been fitted on all of them.
    """
    preprocessing = preprocessing or {}
    gene_steps = []
    if normalization in IN_FOLD_NORMALIZATIONS:
        gene_steps.append((normalization, IN_FOLD_NORMALIZATIONS[normalization]()))
        if subset is not None:
            gene_steps.append(("subset", ColumnSubset(indices=list(subset))))
    if preprocessing.get("min_mean") is not None:
        gene_steps.append(("min_mean", MinMeanFilter(min_mean=preprocessing["min_mean"])))
    if preprocessing.get("top_variance"):
        gene_steps.append(("top_variance", TopVarianceFilter(n=preprocessing["top_variance"])))
    covariates = list(covariates or ())
    if covariates and gene_steps:
        steps = [
            (
                "genes",
                ColumnTransformer(
                    [("covariates", "passthrough", covariates)],
                    remainder=Pipeline(gene_steps),
                    verbose_feature_names_out=False,
                ),
            )
        ]
    else:
        steps = list(gene_steps)
    steps.append(("impute", MedianImputer()))
    k = preprocessing.get("select_k")
    if k:  # before scaling: both scores ignore a column's scale, and only the kept genes get scaled
        if task_kind == "survival":
            steps.append(("select", CoxScoreSelector(k=k)))
        else:
            steps.append(("select", SelectKBestCapped(f_classif, k=k)))
    if preprocessing.get("scale", True):
        steps.append(("scale", ChunkedStandardScaler()))
    if preprocessing.get("pca") is not None:
        steps.append(("pca", InFoldPCA(n_components=pca_components(preprocessing["pca"]), random_state=seed)))
    return steps
