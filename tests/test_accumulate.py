"""Aggregates: chunked and shuffled merges equal the one-shot reference (torchmetrics' MetricTester idea)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from native_paths import require_c_extension
from reference import sparse_loss64
from xentcli import native
from xentcli.accumulate import BLOCK_ROWS, LossMoments, LossSummary
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


# ---- LossMoments: Σ and M2 of the counted losses, the same to the bit whatever the chunking ----

def _moments_of(loss, counted, bounds, order=None, origin_shift=False):
    """Update one LossMoments per (start, stop) range and merge them in `order`; with
    `origin_shift`, each part is numbered from 0 and shifted afterwards, as a Dask task's is."""
    parts = []
    for start, stop in bounds:
        part = LossMoments()
        if origin_shift:  # rows numbered from the part's first, the blocks' edges where the input has them
            part.update(0, loss[start:stop], counted[start:stop], every=bool(counted[start:stop].all()), origin=start)
            if start:
                part.shift(start)
        else:
            part.update(start, loss[start:stop], counted[start:stop], every=bool(counted[start:stop].all()))
        parts.append(part)
    total = LossMoments()
    for i in order if order is not None else range(len(parts)):
        total.merge(parts[i])
    return total.closed().results()


def _exact_mean_m2(values):
    """The mean and M2 of float64 values as exact fractions (the reference: no rounding at all)."""
    from fractions import Fraction

    exact = [Fraction(v) for v in values.tolist()]
    mean = sum(exact) / len(exact)
    return mean, sum((v - mean) ** 2 for v in exact)


def _exact_se(values):
    """√(M2 / (n·(n − 1))) of float64 values from exact fractions, the root to 80 decimal digits
    (decimal), then rounded to float64: the correctly rounded standard error, beyond float64's
    range on the way wherever M2 is."""
    from decimal import Decimal, localcontext

    _, m2 = _exact_mean_m2(values)
    n = values.size
    ratio = m2 / (n * (n - 1))
    with localcontext() as context:
        context.prec = 80
        return float((Decimal(ratio.numerator) / Decimal(ratio.denominator)).sqrt())


def _losses(rows, seed, spread=2.0, base=0.0):
    rng = np.random.default_rng(seed)
    loss = base + rng.exponential(spread, rows)
    counted = rng.random(rows) > 0.1
    loss[~counted] = np.nan  # the engine's stats.loss is NaN where a row does not count
    return loss, counted


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_loss_moments_are_the_same_to_the_bit_for_any_chunking_and_merge_order(seed):
    rows = 3 * BLOCK_ROWS + 12_345
    loss, counted = _losses(rows, seed)
    rng = np.random.default_rng(100 + seed)
    one = _moments_of(loss, counted, [(0, rows)])
    for cut_count in (1, 7, 40, 300):  # chunks smaller and larger than a block, edges anywhere
        cuts = np.sort(rng.choice(np.arange(1, rows), size=cut_count, replace=False)).tolist()
        bounds = list(zip([0, *cuts], [*cuts, rows]))
        assert _moments_of(loss, counted, bounds) == one
        assert _moments_of(loss, counted, bounds, rng.permutation(len(bounds)).tolist()) == one
        assert _moments_of(loss, counted, bounds, origin_shift=True) == one
    aligned = [(i, min(i + BLOCK_ROWS, rows)) for i in range(0, rows, BLOCK_ROWS)]  # on the edges: blocks close at once
    assert _moments_of(loss, counted, aligned) == one


def test_loss_moments_against_exact_fractions():
    loss, counted = _losses(2 * BLOCK_ROWS + 999, seed=7)
    n, total, mean, se = _moments_of(loss, counted, [(0, 50_000), (50_000, loss.size)])
    values = loss[counted]
    exact_mean, _ = _exact_mean_m2(values)
    assert n == values.size
    assert mean == pytest.approx(float(exact_mean), rel=1e-15)  # pairwise sums within blocks: ~1e-16 each
    assert total == pytest.approx(float(exact_mean * n), rel=1e-15)
    assert se == pytest.approx(_exact_se(values), rel=1e-14)


def test_loss_moments_keep_the_spread_of_nearly_equal_losses():
    """Losses of 2.302585 ± 1e-9 (a near-uniform model): Σx² − (Σx)²/n in float64 would lose every
    digit of M2 (mean²/variance ~ 5e18); the blocks' decomposition keeps it."""
    rng = np.random.default_rng(3)
    loss = 2.302585 + rng.standard_normal(BLOCK_ROWS + 5_000) * 1e-9
    counted = np.ones(loss.size, bool)
    n, _, mean, se = _moments_of(loss, counted, [(0, 30_000), (30_000, loss.size)])
    exact_mean, exact_m2 = _exact_mean_m2(loss)
    assert mean == pytest.approx(float(exact_mean), rel=1e-15)
    assert se == pytest.approx(_exact_se(loss), rel=1e-6)
    assert abs(float(exact_m2) / n - 1e-18) < 1e-19  # the reference is what the data says


@pytest.mark.parametrize("value", [47.1, 0.1, 2.302585092994046, 1e150 / 3])
def test_loss_moments_of_equal_losses_give_them_back(value):
    """n equal losses: the mean is the loss, the sum the correctly rounded n·loss, the standard
    error 0. The blocks' float sums gave 47.10000000000001 for ten losses of 47.1, and `check --max-loss 47.1` failed
    (found in review, 2026-12-03). Reference: exact fractions."""
    from fractions import Fraction

    for n in (10, 3, BLOCK_ROWS + 17):
        loss = np.full(n, value)
        for bounds in ([(0, n)], [(0, n // 2), (n // 2, n)]):
            count, total, mean, se = _moments_of(loss, np.ones(n, bool), bounds)
            assert (count, mean, se) == (n, value, 0.0), (n, bounds)
            assert total == float(Fraction(value) * n)


def test_block_totals_are_not_vouched_for_where_squares_underflow():
    """Losses ~1e-162: a deviation's square underflows, so M2 = 0 cannot show the deviations' sum
    exact — two losses gave M2 = 0 and D = 0 with n·m_b + D off the exact sum by 1.5e-182 (found in
    review, 2026-12-03). There the block's total is its float sum, as for spread-out losses."""
    from fractions import Fraction

    from xentcli.accumulate import _exact_deviations, block_moments

    values = np.array([1.024127284233095e-162, 9.105705697373487e-164])
    sums, m2s, devs = block_moments(values, np.array([0, 2]))
    mean = sums[0] / 2
    assert m2s[0] == 0.0 and devs[0] == 0.0 and Fraction(mean) * 2 + Fraction(devs[0]) != sum(map(Fraction, values.tolist()))
    assert not _exact_deviations(2, mean, m2s[0], devs[0])
    for losses in (values, np.array([3.745121854835375e-163, 2.0286283846711822e-162, 5.123391578337083e-164])):
        _, total, _, _ = _moments_of(losses, np.ones(losses.size, bool), [(0, losses.size)])
        assert total == float(np.add.reduce(losses))


def test_loss_moments_of_underflowing_spreads_are_zero_not_negative():
    """Equal losses of 1e-200: each square of a deviation from the block's float mean underflows,
    the cross terms do not; the standard error is 0.0, never −0.0 (found in review: `loss_se`
    printed -0.0), and the mean the loss (the block is summed exactly: its float M2 is below
    2^-900)."""
    n, _, mean, se = _moments_of(np.full(10, 1e-200), np.ones(10, bool), [(0, 10)])
    assert mean == 1e-200 and se == 0.0 and math.copysign(1.0, se) == 1.0


@pytest.mark.parametrize(("centre", "spread"), [(3e4, 1e-10), (1000.0, 1e-12), (2.0**40, 2.0**-10), (7.5, 3e-15)])
def test_loss_moments_of_losses_a_few_ulps_apart(centre, spread):
    """Losses that differ by a few units in the last place (a model that is constant to float
    precision): a block's float mean is off its true mean by about one ulp, as much as the
    spread itself, so each block's M2 about it needs the cross term 2·(m_b − m)·Σ(x − m_b)
    with Σ(x − m_b) summed exactly (it is: a sum of few-ulp deviations). Without it M2 was
    1e-6 to 3e-4 off (found in review, 2026-12-03). Reference: exact fractions."""
    rng = np.random.default_rng(11)
    loss = centre + rng.standard_normal(2 * BLOCK_ROWS + 777) * spread
    assert len(np.unique(loss)) < 1000  # a few ulps: the hostile case
    counted = np.ones(loss.size, bool)
    for bounds in ([(0, loss.size)], [(0, 40_000), (40_000, 100_000), (100_000, loss.size)]):
        n, _, mean, se = _moments_of(loss, counted, bounds)
        exact_mean, _ = _exact_mean_m2(loss)
        assert mean == pytest.approx(float(exact_mean), rel=1e-15)
        assert se == pytest.approx(_exact_se(loss), rel=1e-12)


@pytest.mark.parametrize(("values", "expected_sum"), [
    ([1.0, np.inf, 2.0], np.inf), ([1.0, -np.inf], -np.inf), ([np.inf, 1.0, -np.inf], np.nan),
])
def test_loss_moments_of_non_finite_losses(values, expected_sum):
    loss = np.array(values)
    counted = np.ones(loss.size, bool)
    for bounds in ([(0, loss.size)], [(i, i + 1) for i in range(loss.size)]):
        n, total, mean, se = _moments_of(loss, counted, bounds)
        assert n == loss.size and math.isnan(se)
        assert (math.isnan(total) and math.isnan(expected_sum)) or total == expected_sum
        assert (math.isnan(mean) and math.isnan(expected_sum)) or mean == expected_sum


@pytest.mark.parametrize("bounds", [[(0, 3)], [(0, 1), (1, 3)]])
def test_loss_moments_of_finite_losses_whose_float_sum_overflows(bounds):
    """Losses of 1e308 (logits of 1e308): each finite, their float sum +inf; the mean is still their
    mean (exact sum over n, correctly rounded) and the standard error √(M2/6) too, though M2 is
    beyond float64 (it was +inf)."""
    loss = np.array([1e308, 1.5e308, 1.6e308])
    n, total, mean, se = _moments_of(loss, np.ones(3, bool), bounds)
    assert n == 3 and total == math.inf and mean == 1.3666666666666667e308 and se == _exact_se(loss)


def test_loss_moments_standard_error_where_m2_is_beyond_float64():
    """Losses 1e300 … 5e300 (float64 logits of that size): M2 ~ 1e601 overflows, the standard
    error 1.9e299 does not. It was +inf ("3e+300 ± inf" in the table, null in the JSON, and a
    `--gate-on upper` gate failed on an infinite bound); now it is the correctly rounded one,
    for every chunking. Reference: exact fractions, the root by decimal."""
    loss = np.linspace(1e300, 5e300, 40)
    expected = _exact_se(loss)
    assert expected == 1.8958182062238322e299  # computed once by the reference above
    for bounds in ([(0, 40)], [(0, 13), (13, 40)], [(i, i + 1) for i in range(40)]):
        n, _, mean, se = _moments_of(loss, np.ones(40, bool), bounds)
        assert (n, mean, se) == (40, 3e300, expected), bounds


@pytest.mark.parametrize("rows", [1_000, BLOCK_ROWS + 500])
def test_loss_moments_of_losses_below_1e_160(rows):
    """Losses log1p(exp(−z)) for margins z of 368 … 380 (a float64 model sure of every row):
    1.5e-160 … 9e-166, their deviations' squares below the smallest normal float, so the float M2
    underflowed and `loss_se` was 0.0. A block whose float M2 is below 2^-900 is summed again as
    block·2^k (exact), its largest loss moved to ~2^500: mean and standard error as accurate as for
    losses of ordinary size (pairwise float sums). Reference: exact fractions."""
    loss = np.log1p(np.exp(-np.linspace(368.0, 380.0, rows)))
    exact_mean, _ = _exact_mean_m2(loss)
    for bounds in ([(0, rows)], [(0, rows // 3), (rows // 3, rows)]):
        n, _, mean, se = _moments_of(loss, np.ones(rows, bool), bounds)
        assert mean == pytest.approx(float(exact_mean), rel=1e-15), bounds
        assert se == pytest.approx(_exact_se(loss), rel=1e-14) and se > 0, bounds


def test_loss_moments_of_blocks_too_wide_to_move_are_summed_exactly():
    """A block whose losses span more of float64's exponents than one power of two can move
    (1.2345e-170 beside losses of 1e300, whose M2 overflows: moved down by 2^-497 it would fall
    below the normal floats and lose digits): summed exactly, mean and standard error correctly
    rounded. Reference: exact fractions."""
    loss = np.r_[1.2345e-170, np.zeros(5), np.linspace(1e300, 3e300, 50)]
    n, _, mean, se = _moments_of(loss, np.ones(loss.size, bool), [(0, loss.size)])
    assert (mean, se) == (float(_exact_mean_m2(loss)[0]), _exact_se(loss)) and se > 0


@pytest.mark.parametrize(("value", "n"), [(3.775811611036737e-183, 12), (4.71480627447293e-214, 34), (1e-200, BLOCK_ROWS + 3)])
def test_equal_losses_below_2_456_have_no_spread(value, n):
    """n equal losses too small for a block's total n·m_b + D_b to be vouched for (|m_b| < 2^-456):
    12 × 3.8e-183 gave `loss_se` 8.4e-200 where it is 0, and a sum an ulp off (found in review,
    2026-12-03: the block's float sum beside its exact n·x). Reference: exact fractions."""
    from fractions import Fraction

    loss = np.full(n, value)
    count, total, mean, se = _moments_of(loss, np.ones(n, bool), [(0, n)])
    assert (count, mean, se) == (n, value, 0.0) and total == float(Fraction(value) * n)


def test_sqrt_ratio_is_correctly_rounded():
    """accumulate.sqrt_ratio(a, b) = √(a/b) rounded to the nearest float64, against decimal's
    root to 100 digits: random ratios of every size, perfect squares (exact roots), results in the
    subnormal range and beyond the largest float64 (+inf)."""
    from decimal import Decimal, localcontext

    from xentcli.accumulate import sqrt_ratio

    def reference(a, b):
        with localcontext() as context:
            context.prec = 100
            context.Emin, context.Emax = -999_999, 999_999
            root = (Decimal(a) / Decimal(b)).sqrt()
            return math.inf if root > Decimal(1.7976931348623157e308) * 2 else float(root)

    rng = np.random.default_rng(5)
    cases = [(0, 1), (1, 1), (4, 1), (9, 4), (2, 1), (1, 3), (10**40, 7), (1, 10**640), (10**620, 1), (1 << 2200, 3)]
    for _ in range(2_000):
        a = int(rng.integers(1, 2**62)) << int(rng.integers(0, 2200))
        b = int(rng.integers(1, 2**62)) << int(rng.integers(0, 2200))
        cases.append((a, b))
        root = int(rng.integers(1, 2**52))
        cases.append((root * root << 2 * int(rng.integers(0, 500)), 1 << 2 * int(rng.integers(0, 500))))
    for a, b in cases:
        assert sqrt_ratio(a, b) == reference(a, b), (a, b)
    assert sqrt_ratio(1, 1 << 2148) == 2.0**-1074 and sqrt_ratio(1 << 2200, 1) == math.inf


def test_loss_moments_of_no_counted_rows():
    n, total, mean, se = _moments_of(np.full(10, np.nan), np.zeros(10, bool), [(0, 4), (4, 10)])
    assert (n, total) == (0, 0.0) and math.isnan(mean) and math.isnan(se)


def test_loss_moments_sum_beyond_float64_is_infinite():
    """Finite block sums whose exact total passes the largest float64: the sum is +inf, the mean
    still the mean (a float sum would have made it inf too)."""
    loss = np.full(3 * BLOCK_ROWS, 1e303)
    n, total, mean, se = _moments_of(loss, np.ones(loss.size, bool), [(0, loss.size)])
    assert total == math.inf and mean == 1e303 and se == 0.0  # the float M2s overflowed: the blocks summed exactly


def test_the_c_block_moments_equal_numpys_to_the_last_bit(tally_path):
    """Each block's sum, M2 and deviations' sum by xent_block_moments: bit for bit
    float(np.add.reduce(block)), float(np.square(block − m).sum()) and float(np.add.reduce(block − m))
    with m = sum / n — numpy's pairwise sums: eight accumulators up to 128 values, halves split at a
    multiple of 8 above — on blocks of every length up to 300 and around the pairwise split (128,
    1024, 65,536), an empty block, at scales where the order of the additions shows in the last bits,
    and NaN where a sum is not finite."""
    require_c_extension()
    rng = np.random.default_rng(11)
    lengths = [*range(0, 301), 1023, 1024, 1025, 65_535, 65_536]
    bounds = np.cumsum([0, *lengths])
    for scale, centre in ((1e3, 1e8), (1.0, 3.0), (1e-9, 2.302585), (1e9, 0.0)):
        values = rng.standard_normal(sum(lengths)) * scale + centre
        sums, m2s, devs = native.block_moments(values, bounds)
        for b, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            block = values[lo:hi]
            assert sums[b] == float(np.add.reduce(block)), hi - lo
            if hi > lo:
                deviations = block - sums[b] / (hi - lo)
                assert m2s[b] == float(np.square(deviations).sum()), (hi - lo, scale)
                assert devs[b] == float(np.add.reduce(deviations)), (hi - lo, scale)
    sums, m2s, devs = native.block_moments(np.array([1.0, np.inf, 2.0, 3.0]), np.array([0, 2, 4]))
    assert sums.tolist() == [np.inf, 5.0] and math.isnan(m2s[0]) and math.isnan(devs[0]) and m2s[1] == 0.5 and devs[1] == 0.0
    with pytest.raises(ValueError):
        native.block_moments(np.zeros(3), np.array([0, 4]))


@pytest.mark.parametrize("seed", range(6))
def test_worst_rows_equal_one_sort_of_every_row(seed):
    """The worst rows kept chunk by chunk (a threshold, then sorted insertion: linear in k per chunk,
    where it re-sorted k rows per chunk) and merged from parts in any order equal one lexsort of every
    counted row — loss descending, ties to the lower row — with many ties and k beyond the rows."""
    from types import SimpleNamespace

    from xentcli.accumulate import WorstRows

    rng = np.random.default_rng(seed)
    n = 5000
    loss = rng.choice([0.5, 1.0, 2.0, 3.0], n) if seed % 2 else rng.exponential(size=n)
    counted = rng.random(n) > 0.1
    want_order = np.lexsort((np.arange(n), -loss))
    want_order = want_order[counted[want_order]]
    cuts = np.unique(np.concatenate([[0, n], rng.integers(0, n, 12)]))
    for k in (1, 7, 300, 6000):
        parts = []
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            stats = SimpleNamespace(counted=counted[lo:hi], loss=loss[lo:hi], label=np.zeros(hi - lo, int),
                                    pred=np.ones(hi - lo, int), p_true=np.full(hi - lo, 0.25))
            part = WorstRows(k)
            part.update(stats, int(lo), None)
            parts.append(part)
        total = WorstRows(k)
        for i in rng.permutation(len(parts)):
            total.merge(parts[i])
        want = want_order[:k]
        np.testing.assert_array_equal(total.rows, want)
        assert [item["row"] for item in total.details] == want.tolist()
        assert [item["loss"] for item in total.details] == loss[want].tolist()
        np.testing.assert_array_equal(total.loss, loss[want])
        one = WorstRows(k)  # one accumulator fed chunk by chunk, in input order
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            one.update(SimpleNamespace(counted=counted[lo:hi], loss=loss[lo:hi], label=np.zeros(hi - lo, int),
                                       pred=np.ones(hi - lo, int), p_true=np.full(hi - lo, 0.25)), int(lo), None)
        assert one.details == total.details
