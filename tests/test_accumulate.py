"""Aggregates: chunked and shuffled merges equal the one-shot reference (torchmetrics' MetricTester idea)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from native_paths import require_c_extension
from reference import sparse_loss64
from xentcli import native
from xentcli.accumulate import LossSummary
from xentcli.diagnostics import ChunkView
from xentcli.kernels import sample_stats
from xentcli.tally import tally


@pytest.fixture(autouse=True, params=["c", "numpy"])
def tally_path(request, monkeypatch):
    """Every aggregate test runs on the C tally and on the numpy one."""
    if request.param == "numpy":
        monkeypatch.setattr(native, "_TALLY", None)
    else:
        require_c_extension()
    return request.param


def _update(summary, stats, offset):
    """What the engine does for one chunk of logits with integer labels and nothing ignored."""
    ignored = np.zeros(stats.loss.size, dtype=bool)
    view = ChunkView(offset, None, None, None, stats, ignored, "logits", summary.num_classes, "float64", False)
    summary.update(stats, tally(view, summary.top_k, summary.sketch), offset, ignored=ignored)


def _data(rows=2_000, classes=12, seed=5):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, classes)) * 3
    y = rng.integers(0, classes, rows)
    y[::97] = classes  # out of range: NaN loss, non-finite
    return z, y


def _summarise(z, y, bounds, order, worst=5):
    parts = []
    for start, stop in bounds:
        part = LossSummary(z.shape[1], 3, worst)
        _update(part, sample_stats(z[start:stop], "logits", labels=y[start:stop]), start)
        parts.append(part)
    total = LossSummary(z.shape[1], 3, worst)
    for i in order:
        total.merge(parts[i])
    return total


def test_one_shot_matches_reference_formulas():
    z, y = _data()
    total = _summarise(z, y, [(0, len(y))], [0]).summary()
    loss = sparse_loss64(z, y)
    ok = np.isfinite(loss)
    assert total["rows"] == 2_000 and total["nonfinite"] == int((~ok).sum()) == 21
    assert total["loss_mean"] == pytest.approx(loss[ok].mean(), rel=1e-13)
    assert total["loss_max"] == pytest.approx(loss[ok].max(), rel=1e-13)
    assert total["perplexity"] == pytest.approx(math.exp(loss[ok].mean()), rel=1e-12)
    assert total["accuracy"] == pytest.approx((z.argmax(1) == y)[ok].mean(), abs=0)
    ranks = 1 + (z > np.where(ok, z[np.arange(len(y)), np.minimum(y, 11)], 0)[:, None]).sum(1)
    assert total["top_k_accuracy"] == pytest.approx((ranks[ok] <= 3).mean(), abs=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chunked_shuffled_equals_one_shot(seed):
    z, y = _data()
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(y)), size=9, replace=False))
    edges = [0, *cuts.tolist(), len(y)]
    bounds = list(zip(edges[:-1], edges[1:]))
    one = _summarise(z, y, [(0, len(y))], [0])
    many = _summarise(z, y, bounds, rng.permutation(len(bounds)).tolist())
    a, b = one.summary(), many.summary()
    for key in a:
        assert b[key] == (a[key] if isinstance(a[key], str) else pytest.approx(a[key], rel=1e-12)), key
    assert one.worst.details == many.worst.details
    np.testing.assert_array_equal(one.per_class.support, many.per_class.support)
    np.testing.assert_allclose(one.per_class.loss_sum, many.per_class.loss_sum, rtol=1e-12)


def test_worst_rows_break_ties_by_row():
    z = np.zeros((6, 3))
    y = np.zeros(6, dtype=int)
    total = _summarise(z, y, [(0, 2), (2, 6)], [1, 0], worst=3)
    assert [item["row"] for item in total.worst.details] == [0, 1, 2]


def test_per_class_against_bincount():
    z, y = _data(classes=4, rows=400)
    total = _summarise(z, y, [(0, 150), (150, 400)], [0, 1])
    rows = total.per_class_rows()
    loss = sparse_loss64(z, y)
    for c in range(4):
        mask = (y == c) & np.isfinite(loss)
        assert rows[c]["support"] == mask.sum()
        assert rows[c]["loss_mean"] == pytest.approx(loss[mask].mean(), rel=1e-12)
        assert rows[c]["accuracy"] == pytest.approx((z.argmax(1)[mask] == c).mean())
        assert rows[c]["predicted"] == int((z.argmax(1)[np.isfinite(loss)] == c).sum())


def test_no_counted_rows_gives_nan_means():
    z = np.zeros((3, 2))
    total = _summarise(z, np.array([5, 5, 5]), [(0, 3)], [0]).summary()
    assert total["counted"] == 0 and total["nonfinite"] == 3
    assert math.isnan(total["loss_mean"]) and math.isnan(total["accuracy"])


def test_rows_left_out_of_the_means_are_not_counted_correct():
    # an ignored row (NaN loss) whose label is a class and is predicted right, and a NaN-score row
    # predicted as its label, must not enter the accuracy, the top-k hits or the per-class tallies
    z = np.array([[5.0, 0.0, 0.0], [4.0, 1.0, 0.0], [0.0, 3.0, 1.0], [np.nan, 0.0, 0.0]])
    y = np.array([0, 1, 1, 0])
    stats = sample_stats(z, "logits", labels=y)
    loss = stats.loss.copy()
    loss[0] = np.nan  # as truth() leaves an ignored row
    total = LossSummary(3, 1, 0)
    _update(total, replace(stats, loss=loss), 0)
    summary = total.summary()
    assert summary["counted"] == 2 and summary["accuracy"] == 0.5 and summary["top_k_accuracy"] == 0.5
    assert total.per_class.correct.tolist() == [0, 1, 0] and total.per_class.support.tolist() == [0, 2, 0]


def test_perplexity_of_an_undefined_mean_is_undefined():
    import math

    from xentcli.accumulate import perplexity

    assert math.isnan(perplexity(math.nan, 5)) and math.isnan(perplexity(1.0, 0))  # a NaN mean (all weights 0) was shown as inf
    assert perplexity(math.log(3.0), 5) == pytest.approx(3.0, rel=1e-15) and perplexity(710.0, 5) == math.inf


def test_the_c_squared_deviations_equal_numpys_to_the_last_bit(tally_path):
    """A chunk's M2, Σ (x − mean)², by xent_squared_deviations: bit for bit numpy's
    float(np.square(x − mean).sum()) — its pairwise sum (eight accumulators up to 128 values, halves
    split at a multiple of 8 above) — on every length up to 300 and lengths around the block sizes,
    at scales where the order of the additions shows in the last bits."""
    from xentcli.accumulate import squared_deviations

    rng = np.random.default_rng(41)
    for n in [*range(301), 1023, 1024, 1025, 8191, 8193, 65537, 300_001]:
        for scale in (1.0, 1e-9, 1e9):
            x = rng.standard_normal(n) * scale + 3 * scale
            mean = float(x.mean()) if n else 0.0
            want = float(np.square(x - mean).sum())
            assert squared_deviations(x, mean) == want, (n, scale)
