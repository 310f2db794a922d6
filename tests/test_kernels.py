"""The per-chunk math against hand-derived numbers and float64 textbook formulas."""

from __future__ import annotations

import math
import platform
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from native_paths import require_c_extension
from reference import dense_loss64, log_softmax64, sparse_loss64, within_float32_tolerance
from xentcli import kernels, native
from xentcli.kernels import label_classes, sample_stats


@pytest.fixture(autouse=True, params=["c", "rows", "columns"])
def layout(request, monkeypatch):
    """Run every test with each logits kernel: the fused C kernel (for integer labels, where it was
    built), and the numpy kernels' two layouts, [n, C] rows and transposed [C, n]."""
    if request.param == "c":
        require_c_extension()
    else:
        monkeypatch.setattr(native, "_FUNCTIONS", None)
    monkeypatch.setattr(kernels, "COLUMN_LAYOUT_MAX_CLASSES", 0 if request.param == "rows" else 10**9)
    return request.param


def test_hand_derived_example():
    # exp: 12.182494, 0.367879, 2.225541, 60.340288, 0.740818; sum 75.857020; ln 4.3288503; − 4.1
    stats = sample_stats(np.array([[2.5, -1.0, 0.8, 4.1, -0.3]], np.float32), "logits", labels=np.array([3]))
    assert stats.loss[0] == pytest.approx(0.2288503, abs=5e-8)
    assert stats.pred[0] == 3 and stats.rank[0] == 1 and stats.correct[0]
    assert stats.p_true[0] == pytest.approx(60.340288 / 75.857020, rel=1e-6)
    assert stats.margin[0] == pytest.approx(4.1 - 2.5, rel=1e-6)


def test_tiny_loss_survives_float32():
    # scipy's logsumexp bug report: logits [20, 0, 0] in float32; a naive 1 + 2e^-20 rounds to 1 → loss 0.
    stats = sample_stats(np.array([[20.0, 0.0, 0.0]], np.float32), "logits", labels=np.array([0]))
    assert stats.loss[0] == pytest.approx(math.log1p(2 * math.exp(-20)), rel=1e-6)
    assert stats.loss[0] == pytest.approx(4.1223072e-9, rel=1e-7)


@pytest.mark.parametrize("num_classes", [2, 10, 1000, 32000])
@pytest.mark.parametrize("offset,scale", [(0.0, 1.0), (0.0, 10.0), (50.0, 30.0), (1e4, 2.0), (-1e4, 100.0)])
def test_float32_within_guarantee_of_float64(num_classes, offset, scale):
    rng = np.random.default_rng(num_classes)
    rows = max(4, 200_000 // num_classes)
    z = (offset + scale * rng.standard_normal((rows, num_classes))).astype(np.float32)
    y = rng.integers(0, num_classes, rows)
    got = sample_stats(z, "logits", labels=y).loss
    assert within_float32_tolerance(got, sparse_loss64(z, y)).all()


def test_float64_matches_reference_to_1e12():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((500, 37)) * 20
    y = rng.integers(0, 37, 500)
    np.testing.assert_allclose(sample_stats(z, "logits", labels=y).loss, sparse_loss64(z, y), rtol=1e-12, atol=1e-14)


def test_blocks_do_not_change_results(monkeypatch, layout):
    """Many small blocks (both numpy layouts) give the float64 reference; the C kernel has no blocks."""
    rng = np.random.default_rng(2)
    z = rng.standard_normal((103, 7))
    y = rng.integers(0, 7, 103)
    whole = sample_stats(z, "logits", labels=y)
    monkeypatch.setattr(kernels, "BLOCK_ELEMENTS", 20)
    monkeypatch.setattr(kernels, "COLUMN_BLOCK_ELEMENTS", 20)
    calls = []
    real = kernels._logits_block
    monkeypatch.setattr(kernels, "_logits_block", lambda *args: calls.append(1) or real(*args))
    blocked = sample_stats(z, "logits", labels=y)
    assert len(calls) == (0 if layout == "c" else 103 // (20 // 7) + 1)  # 52 blocks of 2 rows (the last of 1)
    np.testing.assert_allclose(blocked.loss, sparse_loss64(z, y), rtol=1e-12, atol=1e-14)
    for name in ("loss", "p_true", "p_max", "entropy", "margin", "rank", "pred"):
        np.testing.assert_allclose(getattr(whole, name), getattr(blocked, name), rtol=1e-12, atol=0)


def test_per_sample_statistics_match_definitions():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((300, 6)) * 3
    y = rng.integers(0, 6, 300)
    stats = sample_stats(z, "logits", labels=y)
    p = np.exp(log_softmax64(z))
    rows = np.arange(300)
    others = np.where(np.eye(6, dtype=bool)[y], -np.inf, z).max(axis=1)
    np.testing.assert_array_equal(stats.pred, z.argmax(axis=1))
    np.testing.assert_allclose(stats.p_true, p[rows, y], rtol=1e-12)
    np.testing.assert_allclose(stats.p_max, p.max(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.entropy, -(p * np.log(p)).sum(axis=1), rtol=1e-10)
    np.testing.assert_allclose(stats.margin, z[rows, y] - others, rtol=1e-12)
    np.testing.assert_array_equal(stats.rank, 1 + (z > z[rows, y][:, None]).sum(axis=1))
    np.testing.assert_array_equal(stats.correct, z.argmax(axis=1) == y)


def test_float16_scores_widen_exactly():
    z16 = np.array([[1.0, 2.0, 65504.0], [-3.0, 0.5, 0.25]], np.float16)
    got = sample_stats(z16.astype(np.float32), "logits", labels=np.array([0, 1])).loss
    want = sparse_loss64(z16.astype(np.float64), np.array([0, 1]))
    assert within_float32_tolerance(got, want).all()
    assert got[0] == pytest.approx(65503.0, rel=1e-7)


def test_unusable_labels_give_nan_and_whole_floats_are_accepted():
    z = np.tile(np.array([[1.0, 2.0, 3.0]]), (7, 1))
    labels = np.array([0.0, 2.0, 2.5, np.nan, -1.0, 3.0, 1.0])
    stats = sample_stats(z, "logits", labels=labels)
    assert np.isnan(stats.loss[[2, 3, 4, 5]]).all()
    np.testing.assert_allclose(stats.loss[[0, 1, 6]], sparse_loss64(z[[0, 1, 6]], np.array([0, 2, 1])), rtol=1e-14)
    label, is_int, ok = label_classes(labels, 3)
    assert is_int.tolist() == [True, True, False, False, True, True, True]
    assert ok.tolist() == [True, True, False, False, False, False, True]
    assert label[[4, 5]].tolist() == [-1, 3]


def test_nonfinite_scores_poison_only_their_row():
    z = np.array([[1.0, np.nan, 0.0], [np.inf, 0.0, 0.0], [1.0, 2.0, 3.0], [-np.inf, 0.0, 1.0]])
    stats = sample_stats(z, "logits", labels=np.array([0, 0, 2, 0]))
    assert np.isnan(stats.loss[0])
    assert np.isnan(stats.loss[1])  # inf − inf: undefined
    assert stats.loss[2] == pytest.approx(sparse_loss64(z[2:3], [2])[0], rel=1e-14)
    assert stats.loss[3] == math.inf  # the target's logit is −inf: probability 0
    assert np.isfinite(stats.entropy[3])


@pytest.mark.parametrize("num_classes", [3, 10, 32, 33, 500])
def test_special_rows_among_ordinary_ones_float32(num_classes):
    # 13 rows (fewer than the C kernel's 64 lanes): NaN, +inf, an all −inf row and masked
    # (−inf) logits among finite rows; each row's statistics must be its own.
    rng = np.random.default_rng(num_classes)
    z = (rng.standard_normal((13, num_classes)) * 4).astype(np.float32)
    y = rng.integers(0, num_classes, 13)
    z[2, 1], z[5, 0], z[7] = np.nan, np.inf, -np.inf
    z[9, :-1] = -np.inf  # only the last class is open
    z[11, ::2] = -np.inf
    y[5], y[11] = 0, 1  # a +inf logit on the target: inf − inf, undefined
    stats = sample_stats(z, "logits", labels=y)
    ordinary = [0, 1, 3, 4, 6, 8, 10, 11, 12]
    assert within_float32_tolerance(stats.loss[ordinary], sparse_loss64(z[ordinary], y[ordinary])).all()
    assert np.isnan(stats.loss[[2, 5, 7]]).all()
    assert stats.loss[9] == (0.0 if y[9] == num_classes - 1 else math.inf)
    p = np.exp(log_softmax64(z[ordinary].astype(np.float64)))
    np.testing.assert_array_equal(stats.pred[ordinary], z[ordinary].argmax(axis=1))
    np.testing.assert_allclose(stats.p_max[ordinary], p.max(axis=1), rtol=1e-6)
    entropy = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0).sum(axis=1)
    np.testing.assert_allclose(stats.entropy[ordinary], entropy, rtol=1e-5, atol=1e-6)
    assert (stats.rank[ordinary] == 1 + (z[ordinary] > z[ordinary, y[ordinary]][:, None]).sum(axis=1)).all()


def test_masked_logits_with_zero_targets_cost_nothing():
    # A −inf logit (masked vocabulary) under a 0 target: 0 · log 0 = 0, not NaN.
    z = np.array([[-np.inf, 1.0, 2.0]], np.float32)
    t = np.array([[0.0, 0.3, 0.7]], np.float32)
    got = sample_stats(z, "logits", targets=t).loss
    want = -(0.3 * (1 - math.log(math.e + math.e**2)) + 0.7 * (2 - math.log(math.e + math.e**2)))
    assert within_float32_tolerance(got, np.array([want])).all()


def test_probabilities_are_normalised_unclipped():
    p = np.array([[0.2, 0.5, 0.3], [0.6, 0.4, 0.0], [1.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    stats = sample_stats(p, "probs", labels=np.array([1, 2, 0, 1]))
    assert stats.loss[0] == pytest.approx(-math.log(0.5), rel=1e-14)
    assert stats.loss[1] == math.inf
    assert stats.loss[2] == pytest.approx(-math.log(0.75), rel=1e-14)
    assert stats.loss[3] == 0.0
    assert stats.entropy[3] == 0.0 and stats.p_true[2] == pytest.approx(0.75)


def test_dense_probabilities_zero_times_log_zero():
    p = np.array([[0.0, 0.25, 0.75]])
    t = np.array([[0.0, 0.5, 0.5]])
    got = sample_stats(p, "probs", targets=t).loss
    assert got[0] == pytest.approx(-(0.5 * math.log(0.25) + 0.5 * math.log(0.75)), rel=1e-14)


def test_log_probabilities_are_taken_as_stored():
    lp = np.log(np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]]))
    stats = sample_stats(lp, "log-probs", labels=np.array([2, 1]))
    np.testing.assert_allclose(stats.loss, [-math.log(0.7), -math.log(0.25)], rtol=1e-14)
    np.testing.assert_allclose(stats.p_true, [0.7, 0.25], rtol=1e-14)
    np.testing.assert_allclose(stats.entropy[1], -(0.5 * math.log(0.5) + 0.5 * math.log(0.25)), rtol=1e-12)


def test_soft_targets_match_reference():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((64, 9)).astype(np.float32) * 4
    t = rng.dirichlet(np.ones(9), 64).astype(np.float32)
    got = sample_stats(z, "logits", targets=t)
    assert within_float32_tolerance(got.loss, dense_loss64(z, t)).all()
    np.testing.assert_array_equal(got.label, t.argmax(axis=1))


rows_of_logits = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 12), st.integers(2, 9)),
    elements=st.floats(-60, 60, allow_nan=False, allow_subnormal=False),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows_of_logits, st.floats(-1e3, 1e3), st.randoms(use_true_random=False))
def test_properties_shift_permutation_onehot(layout, z, shift, random):
    n, c = z.shape
    y = np.array([random.randrange(c) for _ in range(n)])
    base = sample_stats(z, "logits", labels=y).loss
    # adding a constant to a row changes nothing (up to the rounding of z + shift)
    shifted = sample_stats(z + shift, "logits", labels=y).loss
    np.testing.assert_allclose(shifted, base, rtol=1e-9, atol=1e-9)
    # permuting the classes together with the labels changes nothing
    perm = np.array(random.sample(range(c), c))
    inverse = np.argsort(perm)
    permuted = sample_stats(z[:, perm], "logits", labels=inverse[y]).loss
    np.testing.assert_allclose(permuted, base, rtol=1e-12, atol=1e-15)
    # sparse labels and their one-hot rows give the same losses
    onehot = sample_stats(z, "logits", targets=np.eye(c)[y]).loss
    np.testing.assert_allclose(onehot, base, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(base, sparse_loss64(z, y), rtol=1e-12, atol=1e-13)


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"), reason="glibc only")
def test_freed_chunk_memory_is_kept_on_glibc():
    # mallopt refuses an out-of-range threshold (over 32 MiB) or an unknown parameter with 0
    assert native.keep_freed_memory() is True


@pytest.mark.parametrize("num_classes", [2, 10, 32])
def test_blocks_of_lanes_with_and_without_detail(num_classes):
    # 3 full blocks of the C kernel's 64 lanes and a partial one, NaN and +inf rows in the second;
    # without detail (no entropy or margin) every other value is the same as with it.
    rng = np.random.default_rng(7)
    z = (rng.standard_normal((200, num_classes)) * 5).astype(np.float32)
    y = rng.integers(0, num_classes, 200)
    z[70, 0] = np.nan
    z[71, 1] = np.inf  # scored as class 0 its loss would be inf: an unusable label makes it NaN
    y[[5, 6, 70, 71]] = [num_classes, -1, num_classes + 3, -1]  # out of range, two on special rows
    full = sample_stats(z, "logits", labels=y, detail=True)
    lean = sample_stats(z, "logits", labels=y, detail=False)
    assert np.flatnonzero(~full.label_ok).tolist() == [5, 6, 70, 71] and np.isnan(full.loss[[5, 6, 70, 71]]).all()
    ordinary = ~np.isin(np.arange(200), [5, 6, 70, 71])
    assert within_float32_tolerance(full.loss[ordinary], sparse_loss64(z[ordinary], y[ordinary])).all()
    for name in ("loss", "p_true", "p_max", "pred", "rank", "score_max", "log_norm"):
        np.testing.assert_array_equal(getattr(lean, name), getattr(full, name), err_msg=name)
    assert lean.entropy is None and lean.margin is None
    p = np.exp(log_softmax64(z[ordinary].astype(np.float64)))
    top2 = np.sort(p, axis=1)[:, -2:]
    right = p.argmax(axis=1) == y[ordinary]
    margin = np.where(right, np.log(top2[:, 1] / top2[:, 0]), np.log(p[np.arange(196), y[ordinary]] / top2[:, 1]))
    np.testing.assert_allclose(full.margin[ordinary], margin, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wide_rows_argmax_is_the_first_maximum_and_rank_counts_above(dtype):
    # The wide kernel finds the argmax in blocks of 64 compared in vector lanes, then scalar within the
    # block: ties of the maximum on either side of the block edges must give the first index (numpy's
    # argmax), and the rank 1 + #{z > z_y} must count across pieces, as numpy counts them.
    rng = np.random.default_rng(11)
    num_classes = 1000
    z = rng.standard_normal((12, num_classes)).astype(dtype)
    for row, places in enumerate([(0,), (63,), (64,), (65,), (127, 128), (63, 64), (0, 999), (999,), (500, 700, 900),
                                  (128, 129, 130), (62, 191, 192), (998, 999)]):
        z[row, list(places)] = 9.0
    y = rng.integers(0, num_classes, 12)
    stats = sample_stats(z, "logits", labels=y)
    assert stats.pred.tolist() == z.argmax(axis=1).tolist()
    assert stats.rank.tolist() == (1 + (z > z[np.arange(12), y][:, None]).sum(axis=1)).tolist()
    assert within_float32_tolerance(stats.loss, sparse_loss64(z, y)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wide_rows_give_the_same_loss_whatever_else_is_asked(dtype, layout):
    # The C kernel compiles one loop per set of sums asked (the loss alone; with entropy and margin;
    # with Σp²; with both): the loss, p_true and p_max must be the same bits in all four (so with the
    # numpy kernels), and entropy and Σp² (the C kernel's only) right against float64.
    rng = np.random.default_rng(12)
    z = (rng.standard_normal((300, 777)) * rng.choice([0.1, 3.0, 30.0], (300, 1))).astype(dtype)
    y = rng.integers(0, 777, 300)
    runs = [sample_stats(z, "logits", labels=y, detail=detail, squares=squares) for detail in (False, True) for squares in (False, True)]
    for name in ("loss", "p_true", "p_max", "pred", "rank", "log_norm"):
        for other in runs[1:]:
            np.testing.assert_array_equal(getattr(other, name), getattr(runs[0], name), err_msg=name)
    p = np.exp(log_softmax64(z.astype(np.float64)))
    entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
    for run in (runs[2], runs[3]):
        np.testing.assert_allclose(run.entropy, entropy, rtol=1e-5, atol=1e-6)
    if layout == "c":
        for run in (runs[1], runs[3]):
            np.testing.assert_allclose(run.p_squares, (p * p).sum(axis=1), rtol=1e-5, atol=1e-7)
