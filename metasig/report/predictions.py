"""Reading out-of-fold prediction tables for the figures: the real control, the task kind, and
labels/scores/probabilities as arrays with unusable rows counted rather than failing."""

import numpy as np
import pandas as pd


def real(predictions):
    """Out-of-fold predictions of the real (not label-permuted) control."""
    if predictions is None:
        return pd.DataFrame()
    if "control" in predictions.columns:
        predictions = predictions[predictions["control"].astype(str) == "real"]
    return predictions


def label_str(values):
    """Class labels as strings; integer-valued floats (read back from TSV) lose their '.0'."""
    s = pd.Series(values)
    if pd.api.types.is_float_dtype(s) and np.all(np.isclose(s.dropna() % 1, 0)):
        s = s.astype("Int64")
    return s.astype(str).to_numpy()


def proba_classes(df):
    return [c[len("proba_") :] for c in df.columns if c.startswith("proba_")]


def infer_kind(df):
    if "score" in df.columns:
        return "binary"
    if proba_classes(df):
        return "multiclass"
    if "risk" in df.columns:
        return "survival"
    return "unknown"


def binary_arrays(df):
    """(y, score, n_dropped) with NaN/inf scores and missing labels removed."""
    missing = pd.Series(np.nan, index=df.index)
    y = pd.to_numeric(df.get("y_true", missing), errors="coerce").to_numpy(dtype=float)
    s = pd.to_numeric(df.get("score", missing), errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(y) & np.isfinite(s)
    return y[ok].astype(int), s[ok], int((~ok).sum())


def multiclass_arrays(df):
    """(y_true strings, proba matrix, classes, n_dropped) for rows with every probability present."""
    classes = proba_classes(df)
    proba = df[[f"proba_{c}" for c in classes]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    y = label_str(df["y_true"]) if "y_true" in df.columns else np.array([], dtype=str)
    ok = np.isfinite(proba).all(axis=1) & (pd.Series(y).replace("nan", np.nan).notna().to_numpy())
    return y[ok], proba[ok], classes, int((~ok).sum())


def dropped_note(n):
    return f"{n} prediction(s) with missing scores left out" if n else ""
