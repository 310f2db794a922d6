"""The chunk tally: the C tally (_ctally.c) equals the numpy reference on every field, and both give
the counts a chunk was built to have."""

from __future__ import annotations

import math

import numpy as np
import pytest

from native_paths import require_c_extension
from xentcli import native
from xentcli.diagnostics import ChunkView
from xentcli.kernels import sample_stats
from xentcli.sketch import QuantileSketch
from xentcli.tally import RULE_CODES, tally

C = 6


def _chunk(kind: str, seed: int = 3, n: int = 400):
    """Ordinary rows with a known number of each problem planted among them."""
    rng = np.random.default_rng(seed)
    if kind == "probs":
        z = rng.dirichlet(np.ones(C), n)
    else:
        z = rng.standard_normal((n, C)) * 2
        if kind == "log-probs":
            z = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    y = rng.integers(0, C, n).astype(np.float64)
    planted = {}
    z[0:3, 1] = np.nan
    planted["XE101"] = 3
    if kind != "probs":
        z[3:5, 0] = np.inf
        z[5, 2] = -np.inf  # a masked logit off the target: a finite loss, a mask (XE111)
        y[5] = 0
        z[30, 3] = -np.inf  # a mask on the target: an infinite loss, an error (XE102)
        y[30] = 3
        planted["XE102"] = 3
        planted["XE111"] = 1
        z[6:8, 4] = 120.0  # beyond float32's 88.72
        planted["XE103"] = 2
    z[8:12] = 0.25 if kind != "probs" else 1.0 / C  # constant rows
    planted["XE107"] = 4
    y[12:15] = C  # out of range
    y[15] = -3
    planted["XE201"] = 4
    y[16:18] = 1.5  # not whole numbers
    y[18] = np.nan
    planted["XE203"] = 3
    y[19:24] = -100  # ignored
    planted["XE208"] = 5
    if kind == "logits":
        z[24:26] = [0.5, 0.2, 0.1, 0.1, 0.05, 0.05]  # probabilities read as logits: in [0, 1], sum 1
        planted["XE104"] = 2 + 4  # the four constant rows of 0.25 lie in [0, 1] too
        z[28:30] = np.log([0.5, 0.2, 0.1, 0.1, 0.05, 0.05])  # log-probabilities: logsumexp 0
        planted["XE106"] = 2
    if kind == "log-probs":  # the rows whose logsumexp was moved off 0: masked, large, constant, masked target
        planted["XE110"] = len([5, 6, 7, 8, 9, 10, 11, 30])
    if kind == "probs":
        z[26] = [1.0, 0, 0, 0, 0, 0]
        y[26] = 3  # p_true = 0: infinite loss
        planted["XE108"] = 1
        z[27] = [1.5, -0.5, 0, 0, 0, 0]  # not probabilities
        y[27] = 0
        planted["XE105"] = 1
    stats = sample_stats(z, kind, labels=y, extremes=True, detail=False)
    ignored = y == -100
    loss = stats.loss.copy()
    loss[ignored] = np.nan
    stats.loss = loss
    return ChunkView(0, z, None, None, stats, ignored, kind, C, "float32", False), planted


def _both(view, top_k=2, monkeypatch=None):
    c_path = tally(view, top_k, QuantileSketch())
    monkeypatch.setattr(native, "_TALLY", None)
    numpy_path = tally(view, top_k, QuantileSketch())
    monkeypatch.undo()
    return c_path, numpy_path


@pytest.mark.parametrize("kind", ["logits", "probs", "log-probs"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_c_tally_equals_numpy_tally(kind, seed, monkeypatch):
    require_c_extension()
    view, _ = _chunk(kind, seed)
    c_path, numpy_path = _both(view, monkeypatch=monkeypatch)
    for name, value in vars(numpy_path).items():
        other = getattr(c_path, name)
        if isinstance(value, np.ndarray):
            if value.dtype.kind == "f":
                np.testing.assert_allclose(other, value, rtol=1e-13, err_msg=name)
            else:
                np.testing.assert_array_equal(other, value, err_msg=name)
        elif isinstance(value, float):
            assert other == pytest.approx(value, rel=1e-13, abs=0), name
        elif name == "ranked":  # the same example rows, in any order
            assert {code: sorted(rows.tolist()) for code, rows in other.items()} == {
                code: sorted(rows.tolist()) for code, rows in value.items()}
        else:
            assert other == value, name


@pytest.mark.parametrize("kind", ["logits", "probs", "log-probs"])
@pytest.mark.parametrize("path", ["c", "numpy"])
def test_planted_rows_are_counted(kind, path, monkeypatch):
    if path == "c":
        require_c_extension()
    else:
        monkeypatch.setattr(native, "_TALLY", None)
    view, planted = _chunk(kind)
    counts = tally(view, 2, QuantileSketch())
    for code in RULE_CODES:
        assert counts.hits[code] == planted.get(code, counts.hits[code] if code in ("XE401", "XE402", "XE404") else 0), code
    if kind != "probs":
        assert counts.max_abs == 120.0
    # integer labels not ignored: everything but the 3 fractional/NaN and the 5 ignored rows
    assert counts.int_labels == 400 - 3 - 5
    assert (counts.label_min, counts.label_max, counts.at_num_classes) == (-3, C, 3)


def test_counted_sums_against_a_float64_reference(monkeypatch):
    require_c_extension()
    view, _ = _chunk("logits", 7)
    stats = view.stats
    counted = stats.label_ok & np.isfinite(stats.loss)
    loss = stats.loss[counted]
    label = stats.label[counted].astype(int)
    for path in ("c", "numpy"):
        if path == "numpy":
            monkeypatch.setattr(native, "_TALLY", None)
        t = tally(view, 2, QuantileSketch())
        assert t.counted == counted.sum()
        assert (t.loss_min, t.loss_max) == (loss.min(), loss.max())
        assert t.correct == np.count_nonzero(stats.pred[counted] == label)
        assert t.top_k_hits == np.count_nonzero(stats.rank[counted] <= 2)
        for c in range(C):
            assert t.support[c] == np.count_nonzero(label == c)
            assert t.class_loss[c] == pytest.approx(math.fsum(loss[label == c].tolist()), rel=1e-14)
        gamma = QuantileSketch().gamma
        np.testing.assert_array_equal(np.sort(t.keys), np.sort(np.ceil(np.log(loss) / np.log(gamma))).astype(int))


def test_negative_losses_are_flagged_for_the_value_sketch(monkeypatch):
    require_c_extension()
    view, _ = _chunk("logits", 4)
    view.stats.loss = np.where(np.isfinite(view.stats.loss), view.stats.loss, np.nan)
    view.stats.loss[30:33] = [-1.0, 0.0, 1e-320]
    c_path, numpy_path = _both(view, monkeypatch=monkeypatch)
    for t in (c_path, numpy_path):  # a subnormal loss is a value of its own, not a zero (since 2026-12-03)
        assert (t.negatives, t.zeros) == (1, 1)
        assert math.ceil(math.log(1e-320) / QuantileSketch().log_gamma) in np.asarray(t.keys).tolist()
    assert sorted(np.asarray(c_path.keys).tolist()) == sorted(np.asarray(numpy_path.keys).tolist())


@pytest.mark.parametrize("path", ["c", "numpy"])
def test_ranked_rules_keep_the_largest_keys_ties_to_the_lower_row(path, monkeypatch):
    if path == "c":
        require_c_extension()
    else:
        monkeypatch.setattr(native, "_TALLY", None)
    view, _ = _chunk("logits", 5)
    stats = view.stats
    stats.loss = np.minimum(stats.loss, 1.0)  # NaN rows stay NaN; no outlier left (3 log 6 = 5.38)
    stats.loss[100:112] = [9, 7, 9, 8, 9, 6, 9, 9, 7, 9, 5.5, 10]
    stats.p_max = np.full(400, 0.5)
    stats.p_max[200:210] = [0.995, 0.999, 0.999, 0.991, 0.999, 0.999, 0.999, 1.0, 0.98, 0.999]
    stats.pred = stats.label.copy()
    stats.pred[200:210] = (stats.label[200:210] + 1) % C  # mistakes
    t = tally(view, 2, QuantileSketch())
    assert (t.hits["XE402"], t.hits["XE404"]) == (12, 9)
    assert sorted(t.ranked["XE402"].tolist()) == [100, 102, 104, 106, 111]  # 10, then the first four 9s
    assert sorted(t.ranked["XE404"].tolist()) == [201, 202, 204, 205, 207]  # 1.0, then the first four 0.999s


def test_ranked_examples_hold_as_many_rows_as_diagnostics_show():
    from xentcli.diagnostics import MAX_EXAMPLES

    assert native.EXAMPLES == MAX_EXAMPLES


@pytest.mark.parametrize("kind", ["logits", "probs", "log-probs"])
def test_c_tally_equals_numpy_tally_on_a_binary_head(kind, monkeypatch):
    """A binary head's two-class view: the C tally, which knows no heads, drops the softmax-only rules."""
    from dataclasses import replace

    from xentcli.binary import binary_stats, two_class
    from xentcli.sources import Chunk

    require_c_extension()
    rng = np.random.default_rng(4)
    z = rng.normal(size=500) * 6
    z[:3] = [np.nan, 200.0, -200.0]
    z[3:40] = 0.5  # constant values: no XE107 for a binary head
    with np.errstate(invalid="ignore"):
        raw = {"logits": z, "probs": 1 / (1 + np.exp(-z)), "log-probs": -np.logaddexp(0, -z)}[kind]
    if kind == "probs":
        raw[5:8] = [1.5, -0.2, 0.0]
    labels = rng.integers(0, 2, 500).astype(np.float64)
    labels[8:10] = [-100, 3]
    chunk, view_kind, rows, _ = two_class(Chunk(0, raw[:, None], labels, None, None), kind, -100)
    stats = sample_stats(chunk.scores, view_kind, labels=chunk.labels, extremes=True, detail=False)
    ignored = chunk.labels == -100
    stats = binary_stats(replace(stats, loss=np.where(ignored, np.nan, stats.loss)), rows, 0.5)
    view = ChunkView(0, chunk.scores, None, None, stats, ignored, view_kind, 2, "float64", False, rows)
    c_path, numpy_path = _both(view, monkeypatch=monkeypatch)
    assert c_path.hits == numpy_path.hits and c_path.hits["XE107"] == 0
    assert (c_path.counted, c_path.correct) == (numpy_path.counted, numpy_path.correct)
    np.testing.assert_allclose(c_path.class_loss, numpy_path.class_loss, rtol=1e-13)
    np.testing.assert_array_equal(c_path.support, numpy_path.support)
    np.testing.assert_array_equal(c_path.predicted, numpy_path.predicted)


@pytest.mark.parametrize("num_classes", [2, 6])
def test_counted_sums_over_many_blocks_against_float64_references(num_classes, monkeypatch):
    """Over many blocks of rows (the C tally takes 256 at a time, two classes' sums in eight lanes): every sum within rounding of math.fsum, every count exact, the C and
    numpy paths alike. Hand-made losses spanning 1e-12 … 1e6 make a naive sum lose digits."""
    require_c_extension()
    rng = np.random.default_rng(11)
    n = 256 * 7 + 77  # whole blocks and a ragged last one (the lanes' tail)
    z = rng.standard_normal((n, num_classes)) * 3
    y = rng.integers(0, num_classes, n).astype(np.float64)
    stats = sample_stats(z, "logits", labels=y, extremes=True, detail=False)
    stats.loss = 10.0 ** rng.uniform(-12, 6, n)
    view = ChunkView(0, z, None, None, stats, np.zeros(n, bool), "logits", num_classes, "float64", False)
    label, pred = y.astype(int), stats.pred
    for path in ("c", "numpy"):
        if path == "numpy":
            monkeypatch.setattr(native, "_TALLY", None)
        t = tally(view, 2, QuantileSketch())
        assert t.counted == n
        for c in range(num_classes):
            rows = label == c
            assert t.support[c] == np.count_nonzero(rows)
            assert t.class_correct[c] == np.count_nonzero(rows & (pred == c))
            assert t.predicted[c] == np.count_nonzero(pred == c)
            assert t.class_loss[c] == pytest.approx(math.fsum(stats.loss[rows].tolist()), rel=1e-13, abs=0), path
            assert t.class_p_true[c] == pytest.approx(math.fsum(stats.p_true[rows].tolist()), rel=1e-13, abs=0), path


def test_ranked_rows_across_blocks_keep_the_largest_keys_ties_to_the_lower_row(monkeypatch):
    """Candidates in many blocks, ties among them in different blocks: the C tally, which looks at a
    block's rows only when one can enter the examples kept, keeps what the numpy path keeps."""
    require_c_extension()
    n = 256 * 6
    view, _ = _chunk("logits", 8, n)
    stats = view.stats
    stats.loss = np.minimum(stats.loss, 1.0)
    at = [10, 300, 301, 700, 1000, 1200, 1500, 40, 520]
    stats.loss[at] = [9, 9, 12, 9, 12, 9, 12, 8, 9]
    stats.p_max = np.full(n, 0.5)
    stats.pred = stats.label.copy()
    wrong = [50, 280, 600, 601, 1100, 1400, 1530]
    stats.p_max[wrong] = [0.995, 0.999, 0.999, 0.999, 1.0, 0.999, 0.999]
    stats.pred[wrong] = (stats.label[wrong] + 1) % C
    c_path, numpy_path = _both(view, monkeypatch=monkeypatch)
    assert sorted(c_path.ranked["XE402"].tolist()) == sorted(numpy_path.ranked["XE402"].tolist()) == [10, 300, 301, 1000, 1500]
    assert sorted(c_path.ranked["XE404"].tolist()) == sorted(numpy_path.ranked["XE404"].tolist()) == [280, 600, 601, 1100, 1400]
    assert (c_path.hits["XE402"], c_path.hits["XE404"]) == (9, 7)
