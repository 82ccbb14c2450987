"""Support vector machine with calibrated probabilities (Platt scaling fitted on held-out folds).

An SVM gives decision values, not probabilities; ROC-AUC, PR-AUC, the gate and a served model
need probabilities. `SVMClassifier` fits scikit-learn's SVC on all training samples and a sigmoid
per class (Platt 1999, with his smoothed targets) on decision values of samples the SVC did not see:
those of `calibration_folds` stratified internal folds, as `CalibratedClassifierCV(SVC(),
ensemble=False)` does (SVC(probability=True), libsvm's own Platt scaling, is deprecated in
scikit-learn 1.9). Multiclass: SVC's one-vs-rest decision values, one sigmoid per class, rows
normalized to sum to 1; columns in `classes_` (np.unique) order.

Deterministic: SVC without probabilities uses no randomness, and the internal folds are a
StratifiedKFold shuffled with `random_state`. `scale_C` makes the linear kernel's C independent of
the inputs' scale (see the class). Fitted state is the SVC (a type skops trusts by
default) and numpy arrays, so the artifact loads without trusting arbitrary objects.
"""

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted, validate_data

KERNELS = ("linear", "rbf")


def platt_fit(f, target):
    """(A, B) of P(y = 1 | f) = 1 / (1 + exp(A f + B)) by maximum likelihood on Platt's smoothed
    targets ((N+ + 1) / (N+ + 2) and 1 / (N- + 2)), which keep A finite on separable data."""
    f, target = np.asarray(f, dtype=float), np.asarray(target, dtype=bool)
    n_pos, n_neg = int(target.sum()), int((~target).sum())
    t = np.where(target, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def loss(ab):
        z = ab[0] * f + ab[1]  # P = sigmoid(-z); -log-likelihood, overflow-free
        value = np.sum(t * np.logaddexp(0, z) + (1 - t) * np.logaddexp(0, -z))
        d = expit(z) - (1.0 - t)  # d value / d z
        return value, np.array([np.sum(d * f), np.sum(d)])

    start = np.array([0.0, np.log((n_neg + 1.0) / (n_pos + 1.0))])
    return minimize(loss, start, jac=True, method="L-BFGS-B").x


def _sigmoid(f, ab):
    return expit(-(ab[0] * f + ab[1]))


def _platt_per_class(held_out, codes, n_classes):
    """Platt's (A, B) for the positive class (binary) or each class against the rest."""
    targets = [codes == 1] if n_classes == 2 else [codes == k for k in range(n_classes)]
    return np.array([platt_fit(held_out[:, k], t) for k, t in enumerate(targets)])


def _probabilities(decision, platt):
    """Class probabilities from decision values (n x 1 binary, n x classes otherwise)."""
    if len(platt) == 1:
        p = _sigmoid(decision[:, 0], platt[0])
        return np.column_stack([1.0 - p, p])
    p = np.column_stack([_sigmoid(decision[:, k], ab) for k, ab in enumerate(platt)])
    total = p.sum(axis=1, keepdims=True)
    return np.divide(p, total, out=np.full_like(p, 1.0 / p.shape[1]), where=total > 0)


class Gram:
    """Kernel matrices between rows of a training set X (and validation rows) from X X^T, as SVC
    would compute them: linear x.z, RBF exp(-gamma |x - z|^2) with gamma "scale" = 1 / (features x
    variance of the rows the SVC is fitted on), "auto" = 1 / features, or a number."""

    def __init__(self, X, X_valid):
        self.n_features = X.shape[1]
        self.dot, self.dot_valid = X @ X.T, X_valid @ X.T
        self.sq, self.sq_valid = np.einsum("ij,ij->i", X, X), np.einsum("ij,ij->i", X_valid, X_valid)
        self.row_sum = X.sum(axis=1)

    def kernel(self, model, rows, fit_rows):
        """K(rows, fit_rows) for `model`'s kernel; rows None = all training rows, "valid" = the
        validation rows; fit_rows (None = all) are the rows the SVC is fitted on (for gamma)."""
        fit = slice(None) if fit_rows is None else fit_rows
        if isinstance(rows, str):  # "valid"
            dot, sq = self.dot_valid[:, fit], self.sq_valid
        else:
            rows = slice(None) if rows is None else rows
            dot, sq = self.dot[rows][:, fit], self.sq[rows]
        if model.kernel == "linear":
            return dot
        distance = np.maximum(sq[:, None] + self.sq[fit][None, :] - 2.0 * dot, 0.0)
        return np.exp(-self._gamma(model.gamma, fit) * distance)

    def scale_gamma(self, fit_rows):
        """gamma "scale" of the rows fit_rows (None = all)."""
        return self._gamma("scale", slice(None) if fit_rows is None else fit_rows)

    def _gamma(self, gamma, fit):
        if gamma == "auto":
            return 1.0 / self.n_features
        if gamma != "scale":
            return float(gamma)
        values = self.n_features * len(self.sq[fit])
        mean = self.row_sum[fit].sum() / values
        variance = self.sq[fit].sum() / values - mean**2
        return 1.0 / (self.n_features * variance) if variance != 0 else 1.0


class SVMClassifier(ClassifierMixin, BaseEstimator):
    """SVC (kernel linear or rbf, class-balanced by default) with Platt-calibrated probabilities.

    calibration_folds: internal stratified folds whose held-out decision values fit the sigmoids
    (fewer when the smallest class has fewer samples; a class of one sample is an error).
    scale_C: linear kernel only: libsvm gets C / (features x variance of the rows it is fitted on),
    the scale gamma "scale" divides out for the RBF kernel (whose values lie in [0, 1], so its C
    already means the same on any input). Without it, C is per unit of x.z: on 50 principal
    components of 20,000 standardised genes x.z is about 6,000, every C of a usual grid is a hard
    margin, and on classes that overlap libsvm took 19 s (C 1) and 179 s (C 10) per fit where the
    scaled C took 0.01-0.03 s. Off by default: C then means what it means in scikit-learn's SVC."""

    def __init__(
        self,
        C=1.0,
        kernel="rbf",
        gamma="scale",
        class_weight="balanced",
        calibration_folds=3,
        tol=1e-3,
        max_iter=-1,
        scale_C=False,
        random_state=None,
    ):
        self.C = C
        self.kernel = kernel
        self.gamma = gamma
        self.class_weight = class_weight
        self.calibration_folds = calibration_folds
        self.tol = tol
        self.max_iter = max_iter
        self.scale_C = scale_C
        self.random_state = random_state

    def _svc(self, gram, fit_rows, precomputed=True):
        """libsvm's SVC for fitting on `fit_rows` (None = all) of the training set `gram` holds."""
        if self.kernel not in KERNELS:
            raise ValueError(f"SVMClassifier: kernel {self.kernel!r} is not supported; use one of {KERNELS}")
        scaled = self.scale_C and self.kernel == "linear"
        return SVC(
            C=self.C * gram.scale_gamma(fit_rows) if scaled else self.C,
            kernel="precomputed" if precomputed else self.kernel,
            gamma=self.gamma,
            class_weight=self.class_weight,
            tol=self.tol,
            max_iter=self.max_iter,
            decision_function_shape="ovr",
            random_state=self.random_state,
        )

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64)
        self.classes_, codes, splits = self._calibration_splits(X, y)
        # the calibration fits share one Gram matrix (see grid_predictions); the final SVC is fitted
        # on the features, so the saved model needs no training data to predict
        gram = Gram(X, X[:0])
        held_out = np.empty((len(y), 1 if len(self.classes_) == 2 else len(self.classes_)))
        for train, test in splits:
            svc = self._svc(gram, train).fit(gram.kernel(self, train, train), codes[train])
            held_out[test] = self._decision(svc, gram.kernel(self, test, train))
        self.svc_ = self._svc(gram, None, precomputed=False).fit(X, codes)
        self.platt_ = _platt_per_class(held_out, codes, len(self.classes_))
        return self

    def _calibration_splits(self, X, y):
        """(classes, class codes, internal calibration folds) of a training set."""
        classes, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
        if len(classes) < 2:
            raise ValueError("SVMClassifier needs at least two classes")
        folds = min(int(self.calibration_folds), int(counts.min()))
        if folds < 2:
            raise ValueError(
                f"SVMClassifier: class {classes[counts.argmin()]} has {counts.min()} sample(s); "
                "probability calibration needs at least 2 per class"
            )
        splitter = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
        return classes, codes, list(splitter.split(X, codes))

    def grid_predictions(self, X, y, X_valid, candidates):
        """predict_proba(X_valid) of a fit per candidate, in candidate order. Each candidate is four
        SVC fits (three calibration folds and the whole set), and libsvm computes kernel values from
        the raw features in every one; here the linear and RBF kernels of all of them come from one
        Gram matrix X X^T (and X_valid X^T), so at 20,000 genes the search costs one matrix product
        per inner split. Same fits as `fit` up to rounding in the kernel values."""
        X, X_valid = np.asarray(X, dtype=np.float64), np.asarray(X_valid, dtype=np.float64)
        classes, codes, splits = self._calibration_splits(X, y)
        gram = Gram(X, X_valid)
        out = []
        for params in candidates:
            model = clone(self).set_params(**params)
            held_out = np.empty((len(codes), 1 if len(classes) == 2 else len(classes)))
            for train, test in splits:
                svc = model._svc(gram, train).fit(gram.kernel(model, train, train), codes[train])
                held_out[test] = self._decision(svc, gram.kernel(model, test, train))
            svc = model._svc(gram, None).fit(gram.kernel(model, None, None), codes)
            platt = _platt_per_class(held_out, codes, len(classes))
            out.append(_probabilities(self._decision(svc, gram.kernel(model, "valid", None)), platt))
        return out

    @staticmethod
    def _decision(svc, X):
        d = svc.decision_function(X)
        return d[:, None] if d.ndim == 1 else d

    def decision_function(self, X):
        check_is_fitted(self, "svc_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.svc_.decision_function(X)

    def predict_proba(self, X):
        check_is_fitted(self, "svc_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return _probabilities(self._decision(self.svc_, X), self.platt_)

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # ---- importance ---------------------------------------------------------------------------

    @property
    def coef_(self):
        """Linear kernel only: the one-vs-one weight vectors (one row per pair of classes)."""
        if getattr(self, "kernel", None) != "linear":
            raise AttributeError("coef_ exists only for kernel 'linear'")
        return self.svc_.coef_

    @property
    def feature_importances_(self):
        """Non-linear kernels: the mean |gradient| of each one-vs-one decision function over that
        pair's support vectors, averaged over pairs (for a linear kernel this would be |coef_|)."""
        if getattr(self, "kernel", None) == "linear":
            raise AttributeError("use coef_ for kernel 'linear'")
        grads = self.decision_gradients()
        return np.mean([np.abs(g).mean(axis=0) for g in grads], axis=0)

    def decision_gradients(self):
        """[gradient of each one-vs-one decision function at that pair's support vectors], one
        (support vectors x inputs) array per pair of classes: for the RBF kernel,
        grad f(x_a) = -2 gamma sum_b alpha_b K(x_a, s_b) (x_a - s_b). Signed, so a linear map
        applied before the SVM (PCA) can be pulled back through it."""
        check_is_fitted(self, "svc_")
        svc = self.svc_
        sv, dual = svc.support_vectors_, svc.dual_coef_
        if self.kernel == "linear":
            return [np.atleast_2d(row) for row in np.atleast_2d(svc.coef_)]
        gamma = float(svc._gamma)
        start = np.concatenate([[0], np.cumsum(svc.n_support_)])
        n, grads = len(self.classes_), []
        for i in range(n):
            for j in range(i + 1, n):
                rows = np.r_[start[i] : start[i + 1], start[j] : start[j + 1]]
                alpha = np.r_[dual[j - 1, start[i] : start[i + 1]], dual[i, start[j] : start[j + 1]]]
                S = sv[rows]
                sq = (S**2).sum(axis=1)
                Ka = np.exp(-gamma * np.maximum(sq[:, None] + sq[None, :] - 2 * S @ S.T, 0.0)) * alpha[None, :]
                grads.append(-2 * gamma * (Ka.sum(axis=1)[:, None] * S - Ka @ S))
        return grads
