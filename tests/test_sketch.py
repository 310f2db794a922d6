"""The quantile sketch: stated relative error on many distributions, exact order-free merges."""

from __future__ import annotations

import numpy as np
import pytest

from xentcli.sketch import RELATIVE_ACCURACY, QuantileSketch

QUANTILES = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0]


def distributions():
    rng = np.random.default_rng(7)
    yield "exponential", rng.exponential(1.0, 20_000)
    yield "lognormal-wide", rng.lognormal(0.0, 4.0, 20_000)
    yield "uniform", rng.uniform(0, 20, 5_000)
    yield "with-zeros", np.concatenate([np.zeros(300), rng.exponential(0.01, 3_000)])
    yield "tiny-losses", rng.uniform(1e-9, 1e-7, 2_000)
    yield "negative-and-positive", rng.normal(0.0, 3.0, 10_000)
    yield "below-1e-300", np.exp(-rng.uniform(690.0, 708.0, 3_000))  # float64 margins above 690 (found in review: counted as zeros)
    yield "subnormal", rng.uniform(1e-318, 1e-309, 2_000)  # below 2^-1022, each still ~2e5 units of the last place
    yield "tiny-either-side", np.concatenate([rng.uniform(-1e-305, -1e-310, 500), np.zeros(20), rng.uniform(1e-312, 1e-303, 500)])
    yield "constant", np.full(1_000, 2.302585)
    yield "single", np.array([0.6931])


@pytest.mark.parametrize("name,values", list(distributions()), ids=[n for n, _ in distributions()])
def test_relative_error_bound(name, values):
    sketch = QuantileSketch()
    for part in np.array_split(values, 7):
        sketch.update(part)
    alpha = RELATIVE_ACCURACY
    for q in QUANTILES:
        got = sketch.quantile(q)
        lower = np.quantile(values, q, method="lower")
        higher = np.quantile(values, q, method="higher")
        lo = min(lower * (1 - alpha), lower * (1 + alpha))
        hi = max(higher * (1 - alpha), higher * (1 + alpha))
        assert lo <= got <= hi, (name, q, got, lower, higher)


def test_merge_is_exact_and_order_free():
    rng = np.random.default_rng(8)
    values = rng.lognormal(0, 2, 10_000)
    whole = QuantileSketch()
    whole.update(values)
    parts = []
    for piece in np.array_split(rng.permutation(values), 13):
        sketch = QuantileSketch()
        sketch.update(piece)
        parts.append(sketch)
    merged = QuantileSketch()
    for sketch in reversed(parts):
        merged.merge(sketch)
    assert merged.positive == whole.positive and merged.count == whole.count
    assert [merged.quantile(q) for q in QUANTILES] == [whole.quantile(q) for q in QUANTILES]


def test_empty_sketch_is_nan():
    assert np.isnan(QuantileSketch().quantile(0.5))


def test_memory_is_bounded_by_range_not_count():
    sketch = QuantileSketch()
    rng = np.random.default_rng(9)
    for _ in range(20):
        sketch.update(rng.exponential(2.0, 50_000))
    assert sketch.count == 1_000_000
    assert sketch.positive.counts.size < 3_000  # the dense bucket array is the memory, not its non-empty buckets


def test_the_c_tallys_keys_are_counted_as_bincount_counts_them():
    """The C tally's int32 keys are counted in C (native.key_counts: four partial counts against
    runs of one key); np.bincount from the smallest key is the reference, and Buckets fed either
    way hold the same counts."""
    from native_paths import require_c_extension

    from xentcli import native
    from xentcli.sketch import Buckets

    require_c_extension()
    rng = np.random.default_rng(8)
    cases = [rng.integers(-50, 3000, 100_003), np.full(7, 5), np.array([-3]), np.repeat(np.arange(-10, 10), 1001),
             np.array([-(2**20), 2**20 + 5])]  # beyond the partial counts' span: numpy's count
    for keys in cases:
        keys = keys.astype(np.int32)
        low, counts = native.key_counts(keys)
        assert low == int(keys.min()) and np.array_equal(counts, np.bincount(keys.astype(np.int64) - low))
        by_c, by_numpy = Buckets(), Buckets()
        by_c.add_keys(keys)
        by_numpy.add_keys(keys.astype(np.int64))
        assert by_c == by_numpy


def _edge_values():
    """Values within a few ulps of buckets' edges γ^k, from the subnormals to the largest floats."""
    import math

    log_gamma = QuantileSketch().log_gamma
    values = []
    for k in range(-74_400, 70_900, 13):
        y = math.exp(k * log_gamma)
        if not 0 < y < math.inf:
            continue
        for _ in range(3):
            y = math.nextafter(y, 0)
        for _ in range(7):
            if y > 0:
                values.append(y)
            y = math.nextafter(y, math.inf)
    return np.unique(np.array(values))


def test_keys_are_the_same_on_every_path(monkeypatch):
    """The C tallies' keys, QuantileSketch.keys with the C library and without it (numpy, the C log
    operation for operation), and the numpy tally's: one key for every value, values on buckets'
    edges included. numpy's own log gave 171 of a million such values a key one apart (found in
    review, 2026-12-03)."""
    from native_paths import require_c_extension

    from xentcli import native
    from xentcli.diagnostics import ChunkView
    from xentcli.kernels import sample_stats
    from xentcli.tally import tally

    require_c_extension()
    x = _edge_values()
    assert x.size > 70_000 and x.min() < 1e-320 and x.max() > 1e307

    def tally_keys():
        z = np.stack([-x, np.log(-np.expm1(-x))], axis=1)  # log-probabilities whose losses are exactly x
        stats = sample_stats(z, "log-probs", labels=np.zeros(x.size), extremes=True, detail=False)
        assert np.array_equal(stats.loss, x)
        view = ChunkView(0, z, None, None, stats, np.zeros(x.size, bool), "log-probs", 2, "float64", False)
        return np.sort(np.asarray(tally(view, 2, QuantileSketch()).keys, np.int64))

    c_keys, c_tally = QuantileSketch().keys(x), tally_keys()
    monkeypatch.setattr(native, "_TALLY", None)
    numpy_keys, numpy_tally = QuantileSketch().keys(x), tally_keys()
    assert np.array_equal(c_keys, numpy_keys)
    assert np.array_equal(c_tally, np.sort(c_keys)) and np.array_equal(numpy_tally, np.sort(c_keys))
