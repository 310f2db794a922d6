"""Calibration against the numbers the issue and the libraries give: torchmetrics' docstring case,
the boundary case where torchmetrics' phantom bin differs, the multiclass Brier score by hand, the
Brier decomposition identity, the binning convention at exact edges, and invariances."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from xentcli.calibration import CELLS, Calibration, cells_of
from xentcli.cli import app

runner = CliRunner()


def calibration(tmp_path, probs, labels, *args):
    np.save(tmp_path / "p.npy", np.asarray(probs, dtype=np.float64))
    np.save(tmp_path / "y.npy", np.asarray(labels))
    result = runner.invoke(app, ["score", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy"), "--input", "probs",
                                 "--calibration", "--json", *args])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["calibration"]


def test_torchmetrics_docstring_case(tmp_path):
    # torchmetrics CalibrationError docstring: preds, target [0, 1, 2, 0], n_bins=3 → l1 0.2000, l2 0.2082, max 0.2333
    preds = [[0.25, 0.2, 0.55], [0.55, 0.05, 0.4], [0.1, 0.3, 0.6], [0.9, 0.05, 0.05]]
    c = calibration(tmp_path, preds, [0, 1, 2, 0], "--bins", "3")
    # by hand: bin (1/3, 2/3] holds 0.55, 0.55, 0.6 (one right): gap |1/3 − 17/30| = 7/30; bin (2/3, 1] holds 0.9 (right):
    # gap 0.1. ECE = 3/4·7/30 + 1/4·0.1 = 0.2; RMSCE = √(3/4·(7/30)² + 1/4·0.01) = √(13/300); MCE = 7/30
    assert c["ece"] == pytest.approx(0.2, rel=1e-12)
    assert c["rmsce"] == pytest.approx(math.sqrt(13 / 300), rel=1e-12)
    assert c["mce"] == pytest.approx(7 / 30, rel=1e-12)
    assert [(row["count"], row["accuracy"]) for row in c["table"]] == [(3, pytest.approx(1 / 3)), (1, 1.0)]
    assert c["binning"] == "equal-width, (lo, hi], first bin closed" and c["bins"] == 3


def test_confidence_one_sits_in_the_last_bin(tmp_path):
    # top-label confidences [0.95, 1.0], the first right, the second wrong, 15 bins: both in (14/15, 1]:
    # ECE = |0.5 − 0.975| = 0.475 (torchmetrics reports 0.525: its phantom 16th bin, torchmetrics#3510)
    c = calibration(tmp_path, [[0.05, 0.95], [0.0, 1.0]], [1, 0], "--bins", "15")
    assert c["ece"] == pytest.approx(0.475, rel=1e-12)
    assert len(c["table"]) == 1 and c["table"][0]["hi"] == 1.0


def test_multiclass_brier_by_hand(tmp_path):
    # Σ_c (p_c − 1[y = c])² per row: 0.14, 0.06, 0.24, 0.54 → mean 0.245
    probs = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3]]
    c = calibration(tmp_path, probs, [0, 1, 2, 1])
    assert c["brier"] == pytest.approx(0.245, rel=1e-12)


def test_brier_decomposition_identity(tmp_path):
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((3000, 6)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 6, 3000)
    for bins in ("10", "15", "40"):
        c = calibration(tmp_path, probs, labels, "--bins", bins)
        d = c["brier_decomposition"]
        rebuilt = d["reliability"] - d["resolution"] + d["uncertainty"] + d["within_bin_variance"] - 2 * d["within_bin_covariance"]
        assert rebuilt == pytest.approx(c["brier_top_label"], rel=1e-12, abs=1e-15)
        confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
        assert c["brier_top_label"] == pytest.approx(np.mean((confidence - correct) ** 2), rel=1e-12)


@pytest.mark.parametrize("bins", [3, 10, 15, 20, 25, 30, 40, 60])
def test_edges_go_to_the_lower_bin(bins):
    """A confidence equal to k/M (the float64 number) lies in bin k − 1; just above it, in bin k."""
    edges = np.arange(1, bins) / bins
    state = Calibration()
    state.update(edges, np.ones(edges.size, bool), None)
    state.update(np.nextafter(edges, 2.0), np.zeros(edges.size, bool), None)
    state.update(np.array([0.0, 1.0]), np.array([True, True]), None)
    table = state.report(bins)["table"]
    counts = {round(row["lo"] * bins): row["count"] for row in table}
    assert counts[0] == 2 and counts[bins - 1] == 2  # 1/M and the closed first bin's 0.0; (M−1)/M⁺ and 1.0
    for k in range(1, bins - 1):
        assert counts[k] == 2  # k/M⁺ from below … (k+1)/M from above
    assert cells_of(np.array([0.0]))[0] == 0 and cells_of(np.array([1.0]))[0] == CELLS - 1


def test_same_for_any_chunking_and_threads(tmp_path):
    rng = np.random.default_rng(9)
    logits = rng.standard_normal((2000, 5)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 5, 2000)
    whole = calibration(tmp_path, probs, labels, "--chunk-rows", "100000", "--threads", "1")
    for rows, threads in (("7", "2"), ("333", "2"), ("1", "1")):
        other = calibration(tmp_path, probs, labels, "--chunk-rows", rows, "--threads", threads)
        assert [row["count"] for row in other["table"]] == [row["count"] for row in whole["table"]]
        assert other["ece"] == pytest.approx(whole["ece"], rel=1e-12)
        assert other["brier"] == pytest.approx(whole["brier"], rel=1e-12)


def test_bins_must_divide_the_grid(tmp_path):
    np.save(tmp_path / "p.npy", np.full((3, 2), 0.5))
    np.save(tmp_path / "y.npy", np.zeros(3, np.int64))
    result = runner.invoke(app, ["score", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy"), "--calibration", "--bins", "7"])
    assert result.exit_code == 2 and "--bins must divide 3600" in result.stderr


def _ece_reference(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    """ECE written directly: bins (lo, hi], the first closed, by exact comparison with k/M."""
    index = np.array([next(k for k in range(bins) if c <= (k + 1) / bins) for c in confidence])
    total = 0.0
    for k in range(bins):
        rows = index == k
        if rows.any():
            total += rows.mean() * abs(correct[rows].mean() - confidence[rows].mean())
    return total


@pytest.mark.parametrize("margin,code", [(0.01, 0), (-0.01, 1)])
def test_max_ece_gate(tmp_path, margin, code):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((500, 4)) * 4  # confident and random: over-confident
    labels = rng.integers(0, 4, 500)
    np.save(tmp_path / "z.npy", logits)
    np.save(tmp_path / "y.npy", labels)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    ece = _ece_reference(probs.max(axis=1), probs.argmax(axis=1) == labels, 15)
    result = runner.invoke(app, ["check", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"),
                                 "--max-ece", str(ece + margin), "--fail-on", "never", "--json"])
    doc = json.loads(result.stdout)
    assert doc["calibration"]["ece"] == pytest.approx(ece, rel=1e-6)
    assert result.exit_code == code
    assert "XE601" in {d["code"] for d in doc["diagnostics"]}


def test_adaptive_bins_hold_equal_mass(tmp_path):
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((6000, 4)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 4, 6000)
    c = calibration(tmp_path, probs, labels, "--bins", "adaptive")
    assert c["binning"].startswith("equal-mass") and c["bins"] == 15
    counts = [row["count"] for row in c["table"]]
    assert sum(counts) == 6000 and max(counts) - min(counts) <= 0.05 * 6000 / 15 + 10  # equal mass, to the grid's step
    assert c["table"][0]["lo"] == 0.0 and c["table"][-1]["hi"] == 1.0
    # ECE over these bins, recomputed from the rows with the bins' own edges
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    ece = 0.0
    for row in c["table"]:
        rows = (confidence > row["lo"]) & (confidence <= row["hi"]) if row["lo"] > 0 else confidence <= row["hi"]
        ece += rows.mean() * abs(correct[rows].mean() - confidence[rows].mean())
    assert c["ece"] == pytest.approx(ece, rel=1e-9)


def test_brier_against_soft_targets(tmp_path):
    """Dense targets: Σ_c (p_c − t_c)² against the target distribution, not its argmax's one-hot.
    Row 1: p [0.7, 0.2, 0.1], t [0.6, 0.4, 0] → 0.01 + 0.04 + 0.01 = 0.06; row 2: p [0.1, 0.8, 0.1],
    t [0, 1, 0] → 0.01 + 0.04 + 0.01 = 0.06; row 3: p [0.2, 0.2, 0.6], t [0.1, 0.1, 0.8] → 0.01 + 0.01 + 0.04 = 0.06."""
    np.save(tmp_path / "p.npy", np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]))
    np.save(tmp_path / "t.npy", np.array([[0.6, 0.4, 0.0], [0.0, 1.0, 0.0], [0.1, 0.1, 0.8]]))
    result = runner.invoke(app, ["score", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "t.npy"), "--input", "probs",
                                 "--calibration", "--json"])
    assert result.exit_code == 0, result.stderr
    c = json.loads(result.stdout)["calibration"]
    assert c["brier"] == pytest.approx(0.06, rel=1e-12)


@pytest.mark.parametrize("classes, dtype", [(10, np.float32), (300, np.float32), (10, np.float64)])
def test_brier_of_logits_from_the_kernel_against_float64(tmp_path, classes, dtype):
    """Logits with integer labels: the C kernel sums p² in its own pass (narrow and wide float32 rows,
    float64 rows); the Brier score must equal Σ_c (softmax(z)_c − 1[y = c])² in float64, rows with a NaN
    score left out."""
    from native_paths import require_c_extension

    require_c_extension()
    rng = np.random.default_rng(classes)
    z = (rng.standard_normal((400, classes)) * 3).astype(dtype)
    y = rng.integers(0, classes, 400)
    z[7, 3] = np.nan
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    result = runner.invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--calibration", "--json"])
    c = json.loads(result.stdout)["calibration"]
    z64 = np.delete(z.astype(np.float64), 7, axis=0)
    y64 = np.delete(y, 7)
    p = np.exp(z64 - z64.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    want = np.mean(((p - np.eye(classes)[y64]) ** 2).sum(axis=1))
    assert c["brier"] == pytest.approx(want, rel=1e-6 if dtype == np.float32 else 1e-12)


def test_the_c_grid_equals_its_numpy_twin_bit_for_bit():
    """xent_calibration_cells/_sums against cells_numpy and the three bincounts: the same cells on
    every edge k/M (and its neighbours), the same float sums to the last bit, also when a partial
    that already holds sums is updated again."""
    from xentcli import native
    from xentcli.calibration import CELLS, Calibration, cells_numpy

    assert native.has_calibration()
    rng = np.random.default_rng(23)
    edges = np.array([k / m for m in (5, 10, 15, 20, 25, 30, 40, 60, 3600) for k in range(m + 1)])
    confidence = np.concatenate([rng.random(200_000), rng.random(1000) ** 8, edges, np.nextafter(edges, 2.0), np.nextafter(edges, -1.0),
                                 [0.0, 1.0, 5e-324, 1 - 2**-53]])
    confidence = np.clip(confidence, 0.0, 1.0)
    assert np.array_equal(native.calibration_cells(confidence, CELLS), cells_numpy(confidence))
    right = rng.random(confidence.size) < confidence
    c_side, numpy_side = Calibration(), Calibration()
    for half in (slice(0, 100_000), slice(100_000, None)):  # twice into the same partial
        cells = cells_numpy(confidence[half])
        native.calibration_sums(cells, confidence[half], right[half], c_side.count, c_side.conf, c_side.conf2, c_side.correct,
                                c_side.conf_correct)
        numpy_side._sums_numpy(cells, confidence[half], right[half])
    for name in ("count", "conf", "conf2", "correct", "conf_correct"):
        assert np.array_equal(getattr(c_side, name), getattr(numpy_side, name)), name


def test_the_c_update_equals_its_numpy_twin_with_rows_left_out(monkeypatch):
    """Calibration.update over the rows with a cell (cells_of's −1 for the rows left out), with the
    Brier score from Σp² and p_y and the default certain mistakes: the C pass and numpy's give the
    same grid bit for bit, the same counts, and the Brier sum to rounding (C adds in row order,
    numpy pairwise); the Brier sum is also checked against a float64 formula on the kept rows."""
    from xentcli import native
    from xentcli.calibration import cells_of

    assert native.has_calibration()
    rng = np.random.default_rng(31)
    n = 50_000
    confidence = np.where(rng.random(n) < 0.01, 1.0, rng.random(n))
    right = rng.random(n) < 0.5
    use = rng.random(n) < 0.9
    squares = rng.random(n)
    p_true = rng.random(n)
    squares[:5] = np.inf  # a non-finite Brier value is left out of the sum, not the grid
    c_cells = cells_of(confidence, use)
    c_side = Calibration()
    c_side.update(confidence, right, squares, cells=c_cells, p_true=p_true)
    monkeypatch.setattr(native, "has_calibration", lambda: False)
    numpy_cells = cells_of(confidence, use)
    numpy_side = Calibration()
    numpy_side.update(confidence, right, squares, cells=numpy_cells, p_true=p_true)
    assert np.array_equal(c_cells, numpy_cells) and np.array_equal(c_cells < 0, ~use)
    for name in ("count", "conf", "conf2", "correct", "conf_correct"):
        assert np.array_equal(getattr(c_side, name), getattr(numpy_side, name)), name
    kept = use & np.isfinite(squares)
    assert c_side.brier_rows == numpy_side.brier_rows == int(kept.sum())
    want = float(np.sum(squares[kept] - 2 * p_true[kept] + 1))
    assert c_side.brier_sum == pytest.approx(want, rel=1e-12) and numpy_side.brier_sum == pytest.approx(want, rel=1e-12)
    assert c_side.certain_wrong == numpy_side.certain_wrong == int(np.sum(use & (confidence == 1.0) & ~right)) > 0
    assert c_side.count.sum() == use.sum()


def test_binary_calibration_findings_speak_of_the_predicted_class(tmp_path):
    """Found in review: on a binary head XE602 said "mean confidence 0.539 below accuracy 0.600",
    comparing the mean P(y = 1) with the positive rate — neither a confidence nor an accuracy, and
    the wrong direction. The bins of P(y = 1) are read as the predicted class's: z = [1, −2, 3, 0.5,
    −1] against targets [0.2, 0.5, 1, 0, 0.7] (positive at ≥ 0.5) predict [1, 0, 1, 1, 0], right once
    in five (0.2), with mean probability (σ(1) + σ(2) + σ(3) + σ(0.5) + σ(1))/5 = 0.78359: over-confident."""
    np.save(tmp_path / "z.npy", np.array([1, -2, 3, 0.5, -1] * 40, np.float32))
    np.save(tmp_path / "t.npy", np.array([0.2, 0.5, 1, 0, 0.7] * 40, np.float32))
    result = runner.invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "t.npy"), "--calibration", "--json"])
    found = {d["code"]: d["message"] for d in json.loads(result.stdout)["diagnostics"]}
    sigma = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    mean = (sigma(1) + sigma(2) + sigma(3) + sigma(0.5) + sigma(1)) / 5
    assert "XE602" not in found and f"mean probability {mean:.3f} above how often it is the target, 0.200" in found["XE601"]


def test_brier_counts_the_rows_the_table_counts(tmp_path):
    """Found in review: a row with one +inf logit (its softmax one-hot: confidence 1) is in the
    reliability table, but the Brier score left it out where the +inf was the label's (p_true came
    out NaN from inf − inf). Such a row's Brier term is 0 (+inf on the label) or 2; a row with two
    +inf logits has no confidence and is in neither. Reference: Σ_c (p_c − 1[y = c])² in float64."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(500, 4)).astype(np.float32)
    y = rng.integers(0, 4, 500)
    z[0, (y[0] + 1) % 4] = np.inf  # +inf on another class: term 2
    z[1, y[1]] = np.inf  # +inf on the label: term 0
    z[2, :2] = np.inf  # two: no confidence
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    doc = json.loads(CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--calibration",
                                              "--json"]).stdout)["calibration"]
    terms = [2.0, 0.0]
    for row in range(3, 500):
        p = np.exp(z[row].astype(np.float64) - z[row].max())
        p /= p.sum()
        terms.append(float(((p - np.eye(4)[y[row]]) ** 2).sum()))
    assert sum(r["count"] for r in doc["table"]) == 499
    assert doc["brier"] == pytest.approx(np.mean(terms), rel=1e-7)
