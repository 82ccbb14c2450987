"""linear_sweep's SGD member: scikit-learn's SGDClassifier, run in the samples' span when genes
outnumber samples."""

from sklearn.linear_model import SGDClassifier

from metasig.learn.span import InSpan


class SpanSGDClassifier(InSpan, SGDClassifier):
    """SGDClassifier; with an L2 penalty and more genes than samples it runs on the n columns of
    the samples' span (metasig.learn.span) instead of the p genes. Each SGD step shrinks w and
    adds a multiple of one sample's row, so w stays in that span, and the samples' order and the
    learning rates do not depend on the features: the iterates are the same up to rounding, at n/p
    of the cost (8 strengths on 426 x 20,531 with 5 classes, one-vs-rest: 9.1 s on the genes,
    0.3 s in the span, with the same validation ROC-AUCs to 3 decimals)."""

    def fit(self, X, y, coef_init=None, intercept_init=None, sample_weight=None):
        return self._fit_in_span(X, y, coef_init=coef_init, intercept_init=intercept_init, sample_weight=sample_weight)

    def _in_span(self, X, fit_params):
        return self.penalty == "l2" and fit_params.get("coef_init") is None and X.shape[1] > X.shape[0]
