import numpy as np
import pandas as pd
import pytest

from metasig.data.normalize import normalize
from metasig.errors import InputError


@pytest.fixture
def counts():
    return pd.DataFrame(
        [[0.0, 10.0, 90.0], [5.0, 5.0, 990.0], [100.0, 0.0, 0.0]],
        index=["s1", "s2", "s3"],
        columns=["A", "B", "C"],
    )


def test_none_and_vst_return_unchanged_copies(counts):
    for method in ("none", "vst"):
        out = normalize(counts, method)
        pd.testing.assert_frame_equal(out, counts)
        assert out is not counts


def test_log2p1(counts):
    out = normalize(counts, "log2p1")
    assert np.allclose(out.to_numpy(), np.log2(counts.to_numpy() + 1))
    assert out.loc["s1", "A"] == 0.0


def test_log2cpm_formula_and_per_sample(counts):
    out = normalize(counts, "log2cpm")
    lib = counts.sum(axis=1).to_numpy()[:, None]
    expected = np.log2((counts.to_numpy() + 0.5) / (lib + 1.0) * 1e6)
    assert np.allclose(out.to_numpy(), expected)
    # per-sample: changing another sample does not change s1's values
    other = counts.copy()
    other.loc["s2"] *= 7
    pd.testing.assert_series_equal(normalize(other, "log2cpm").loc["s1"], out.loc["s1"])
    # a larger library with the same proportions gives the same CPM (up to the prior)
    scaled = normalize(counts * 1000, "log2cpm")
    assert np.allclose(scaled.loc["s2"], np.log2(counts.loc["s2"] / lib[1, 0] * 1e6), atol=1e-3)


@pytest.mark.parametrize("method", ["log2p1", "log2cpm", "vst"])
def test_negative_values_are_named(counts, method):
    counts.loc["s2", "B"] = -1.5
    with pytest.raises(InputError) as err:
        normalize(counts, method, source="results/x/matrix.parquet")
    msg = str(err.value)
    assert "results/x/matrix.parquet" in msg and "'B'" in msg and "s2" in msg and "-1.5" in msg


def test_negative_values_allowed_without_transform(counts):
    counts.loc["s2", "B"] = -1.5
    assert normalize(counts, "none").loc["s2", "B"] == -1.5


def test_empty_library_and_unknown_method(counts):
    counts.loc["s3"] = 0.0
    with pytest.raises(InputError, match="library size 0"):
        normalize(counts, "log2cpm")
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize(counts, "quantile")


def test_missing_values_pass_through(counts):
    counts.loc["s1", "C"] = np.nan
    out = normalize(counts, "log2p1")
    assert np.isnan(out.loc["s1", "C"]) and out.loc["s1", "B"] == np.log2(11)
