"""Binary (sigmoid) heads: binary cross-entropy against independent references — exact decimal
arithmetic, hand-derived values, scikit-learn's log_loss (recorded once, source next to it) —
the identity with a two-class softmax over [0, z], and every layout that holds one score a row."""

from __future__ import annotations

import json
import math
from decimal import Decimal, getcontext
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner
from native_paths import require_c_extension

from xentcli.cli import app

runner = CliRunner()


def score(*args) -> dict:
    result = runner.invoke(app, ["score", *map(str, args), "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def per_sample(tmp_path: Path, *args):
    out = tmp_path / "out.parquet"
    result = runner.invoke(app, ["score", *map(str, args), "-o", str(out), "--force", "--quiet", "--json"])
    assert result.exit_code == 0, result.stderr
    return pq.read_table(out).to_pandas()


def _npy(tmp_path: Path, scores, labels, name: str = "z") -> list:
    np.save(tmp_path / f"{name}.npy", np.asarray(scores))
    np.save(tmp_path / "y.npy", np.asarray(labels))
    return [tmp_path / f"{name}.npy", "--labels", tmp_path / "y.npy"]


def bce_decimal(z: float, t: float) -> float:
    """−[t·log σ(z) + (1 − t)·log(1 − σ(z))] in 60-digit decimal arithmetic: t·ln(1 + e^−z) + (1 − t)·ln(1 + e^z)."""
    getcontext().prec = 60
    zd, td = Decimal(z), Decimal(t)
    return float(td * (1 + (-zd).exp()).ln() + (1 - td) * (1 + zd.exp()).ln())


Z = [0.0, 1e-8, -1e-8, 0.5, -3.0, 23.0, 30.0, -30.0, 40.0, 700.0, -700.0, 1e4, -1e4, 3e38, -3e38]


@pytest.mark.parametrize("target", [0.0, 1.0])
def test_stable_formula_against_exact_arithmetic(tmp_path, target):
    """float64 logits up to |z| = 3e38, losses down to 1e-300: 1e-12 relative to 60-digit arithmetic."""
    rows = per_sample(tmp_path, *_npy(tmp_path, np.array(Z), np.full(len(Z), int(target))))
    for z, got in zip(Z, rows["loss"]):
        if abs(z) > 1e3:  # Decimal's exp would be huge; the exact value is |z| on the wrong side, e^-|z| on the right one
            want = abs(z) if (z > 0) != (target == 1) else math.exp(-abs(z))
        else:
            want = bce_decimal(z, target)
        assert got == pytest.approx(want, rel=1e-12, abs=0 if want else 1e-300), z


def test_soft_targets_against_exact_arithmetic(tmp_path):
    z = np.array([0.3, -2.0, 5.0, 0.0, 12.0])
    t = np.array([0.25, 0.9, 0.5, 0.1, 0.999])
    rows = per_sample(tmp_path, *_npy(tmp_path, z, t))
    for zi, ti, got in zip(z, t, rows["loss"]):
        assert got == pytest.approx(bce_decimal(zi, ti), rel=1e-12)
    assert rows["label"].tolist() == [0, 1, 1, 0, 1]  # a soft target counts as positive when t ≥ 0.5
    np.testing.assert_allclose(rows["target"], t)


def test_probabilities_against_sklearn_log_loss(tmp_path):
    # scikit-learn 1.9.1: log_loss([1, 0, 1, 1, 0, 0], [0.9, 0.2, 0.6, 0.99, 0.45, 1e-9]) = 0.24120283805785814
    # (its clipping at the float64 epsilon changes none of these)
    p = [0.9, 0.2, 0.6, 0.99, 0.45, 1e-9]
    y = [1, 0, 1, 1, 0, 0]
    doc = score(*_npy(tmp_path, p, y, "prob"))  # an array named prob: probabilities, by its name
    assert doc["input"]["input_kind"] == "probs" and doc["input"]["head"] == "binary"
    assert doc["summary"]["loss_mean"] == pytest.approx(0.24120283805785814, rel=1e-12)
    # the same model as logits and as log-probabilities
    z = np.log(p) - np.log1p(-np.array(p))
    assert score(*_npy(tmp_path, z, y))["summary"]["loss_mean"] == pytest.approx(0.24120283805785814, rel=1e-12)
    lp = score(*_npy(tmp_path, np.log(p), y, "lp"), "--input", "log-probs")
    assert lp["summary"]["loss_mean"] == pytest.approx(0.24120283805785814, rel=1e-12)


def test_tiny_probabilities_keep_their_precision(tmp_path):
    """−log(1 − p) for p = 1e-10 is log1p(−p) = 1.00000000005e-10, not −log of a rounded 1 − p."""
    rows = per_sample(tmp_path, *_npy(tmp_path, np.array([1e-10, 1 - 1e-10, 0.0]), np.array([0, 1, 0]), "probs"))
    assert rows["loss"][0] == pytest.approx(1.00000000005e-10, rel=1e-12)
    getcontext().prec = 50  # 1 − 1e-10 is stored as 0.99999999989999999172…: its −ln, exactly
    assert rows["loss"][1] == pytest.approx(float(-Decimal(1 - 1e-10).ln()), rel=1e-12)
    assert rows["loss"][2] == 0.0


def test_binary_equals_two_class_softmax_over_zero_and_z(tmp_path):
    rng = np.random.default_rng(5)
    z = rng.normal(size=2000) * 3
    y = (rng.random(2000) < 0.4).astype(np.int64)
    binary = score(*_npy(tmp_path, z, y))
    two = score(*_npy(tmp_path, np.stack([np.zeros_like(z), z], axis=1), y, "two"))
    for key in ("loss_mean", "loss_p50", "loss_p90", "loss_max", "accuracy", "perplexity"):
        assert binary["summary"][key] == pytest.approx(two["summary"][key], rel=1e-12), key
    assert two["input"]["head"] == "softmax"  # two columns stay a softmax


def test_accuracy_threshold_and_rates(tmp_path):
    z = np.array([-2.0, -0.5, 0.0, 0.4, 1.0, 3.0])
    y = np.array([0, 1, 1, 0, 1, 1])
    doc = score(*_npy(tmp_path, z, y))["summary"]
    # P(y = 1) ≥ 0.5 ⇔ z ≥ 0: predictions 0 0 1 1 1 1 → right on rows 0, 2, 4, 5
    assert doc["accuracy"] == pytest.approx(4 / 6)
    assert doc["positive_rate"] == pytest.approx(4 / 6) and doc["predicted_positive_rate"] == pytest.approx(4 / 6)
    high = score(*_npy(tmp_path, z, y), "--threshold", "0.7")["summary"]
    # σ(z) ≥ 0.7 ⇔ z ≥ logit(0.7) = 0.847: predictions 0 0 0 0 1 1 → right on rows 0, 3, 4, 5
    assert high["accuracy"] == pytest.approx(4 / 6) and high["predicted_positive_rate"] == pytest.approx(2 / 6)
    assert high["threshold"] == 0.7
    rows = per_sample(tmp_path, *_npy(tmp_path, z, y), "--threshold", "0.7")
    np.testing.assert_allclose(rows["margin"], z - math.log(0.7 / 0.3), rtol=1e-12)
    np.testing.assert_allclose(rows["p"], 1 / (1 + np.exp(-z)), rtol=1e-12)
    assert rows["pred"].tolist() == [0, 0, 0, 0, 1, 1]


def test_ignore_index_with_labels_and_soft_targets(tmp_path):
    z = np.array([1.0, -1.0, 2.0])
    doc = score(*_npy(tmp_path, z, np.array([1, -100, 0])))["summary"]
    assert (doc["counted"], doc["ignored"]) == (2, 1)
    assert doc["loss_mean"] == pytest.approx((bce_decimal(1.0, 1) + bce_decimal(2.0, 0)) / 2, rel=1e-12)
    doc = score(*_npy(tmp_path, z, np.array([0.7, -100.0, 0.2])))["summary"]
    assert (doc["counted"], doc["ignored"]) == (2, 1)
    assert doc["loss_mean"] == pytest.approx((bce_decimal(1.0, 0.7) + bce_decimal(2.0, 0.2)) / 2, rel=1e-12)


def test_label_smoothing_is_keras_rule(tmp_path):
    """t' = t·(1 − ε) + ε/2 (Keras' BinaryCrossentropy): the two-class smoothing with C = 2."""
    z = np.array([2.0, -1.0])
    y = np.array([1, 0])
    doc = score(*_npy(tmp_path, z, y), "--label-smoothing", "0.2")["summary"]
    assert doc["loss_mean"] == pytest.approx((bce_decimal(2.0, 0.9) + bce_decimal(-1.0, 0.1)) / 2, rel=1e-12)


@pytest.mark.parametrize("layout", ["npy-n1", "npz", "parquet-logit", "parquet-prob", "parquet-list1", "csv-score", "arrow-col"])
def test_every_layout_of_one_score_per_row(tmp_path, layout):
    rng = np.random.default_rng(9)
    z = rng.normal(size=50)
    y = (rng.random(50) < 0.5).astype(np.int64)
    reference = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
    p = 1 / (1 + np.exp(-z))
    if layout == "npy-n1":
        args = _npy(tmp_path, z[:, None], y)
    elif layout == "npz":
        np.savez(tmp_path / "d.npz", logits=z, labels=y)
        args = [tmp_path / "d.npz"]
    elif layout == "parquet-logit":
        pq.write_table(pa.table({"logit": z, "label": y}), tmp_path / "d.parquet")
        args = [tmp_path / "d.parquet"]
    elif layout == "parquet-prob":
        pq.write_table(pa.table({"prob": p, "label": y}), tmp_path / "d.parquet")
        args = [tmp_path / "d.parquet"]
    elif layout == "parquet-list1":
        pq.write_table(pa.table({"logits": [[v] for v in z], "label": y}), tmp_path / "d.parquet")
        args = [tmp_path / "d.parquet"]
    elif layout == "csv-score":
        (tmp_path / "d.csv").write_text("score,label\n" + "".join(f"{float(v)!r},{t}\n" for v, t in zip(z, y)))
        args = [tmp_path / "d.csv"]
    else:
        import pyarrow.feather as feather

        feather.write_feather(pa.table({"margin_score": z, "y": y}), tmp_path / "d.arrow")
        args = [tmp_path / "d.arrow", "--score-col", "margin_score", "--label-col", "y"]
    doc = score(*args)
    assert doc["input"]["head"] == "binary"
    assert doc["summary"]["loss_mean"] == pytest.approx(reference, rel=1e-9)


def test_head_options(tmp_path):
    z = np.array([0.5, -0.5, 1.5])
    args = _npy(tmp_path, z, np.array([1, 0, 1]))
    assert score(*args, "--head", "sigmoid")["input"]["head_from"] == "--head sigmoid"
    assert score(*args)["input"]["head_from"] == "one score per row"
    # a softmax over one class: loss 0 whatever the model, and XE112 fails check
    result = runner.invoke(app, ["check", *map(str, _npy(tmp_path, z[:, None], np.ones(3))), "--head", "softmax"])
    assert result.exit_code == 1 and "XE112" in result.stdout
    for option in (["--class-weights", "1,2"],):
        result = runner.invoke(app, ["score", *map(str, args), *option])
        assert result.exit_code == 2 and "binary" in result.stderr, option


@pytest.mark.parametrize("labels, code", [([1, -1, 1, -1], "XE201"), ([1, 2, 2, 1], "XE202"), ([0.5, 1.5, 0.2, -0.3], "XE207")])
def test_targets_outside_zero_one_fail_check(tmp_path, labels, code):
    result = runner.invoke(app, ["check", *map(str, _npy(tmp_path, np.array([0.1, 2.0, -1.0, 0.3]), np.array(labels))), "--json"])
    doc = json.loads(result.stdout)
    found = {d["code"]: d for d in doc["diagnostics"]}
    assert result.exit_code == 1 and code in found
    if code != "XE207":
        assert "0/1" in found[code]["hint"]


# ---- multi-label heads (--head sigmoid on K ≥ 2 scores) and weighted binary heads -----------------

def _multilabel(tmp_path: Path, n: int = 300, k: int = 4, seed: int = 2):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 2
    t = (rng.random((n, k)) < 1 / (1 + np.exp(-z))).astype(np.float64)
    return z, t, _npy(tmp_path, z, t, "ml") + ["--head", "sigmoid"]


def _bce(z, t, w=1.0):
    """W·t·softplus(−z) + (1 − t)·softplus(z), the float64 formula (0·∞ never arises here)."""
    softplus = lambda x: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))  # noqa: E731
    return w * t * softplus(-z) + (1 - t) * softplus(z)


def test_multilabel_is_the_row_mean_of_its_labels(tmp_path):
    z, t, args = _multilabel(tmp_path)
    doc = score(*args, "--per-class")
    assert doc["input"]["head"] == "multilabel" and doc["summary"]["labels"] == 4
    assert doc["summary"]["loss_mean"] == pytest.approx(_bce(z, t).mean(axis=1).mean(), rel=1e-12)
    pred, positive = z >= 0, t >= 0.5
    assert doc["summary"]["exact_match"] == doc["summary"]["accuracy"] == pytest.approx((pred == positive).all(axis=1).mean())
    assert doc["summary"]["hamming_accuracy"] == pytest.approx((pred == positive).mean())
    assert doc["summary"]["top_k_accuracy"] is None
    for k, row in enumerate(doc["per_class"]):  # each label is a binary problem of its own
        alone = score(*_npy(tmp_path, z[:, k], t[:, k], f"col{k}"))["summary"]
        assert row["loss_mean"] == pytest.approx(alone["loss_mean"], rel=1e-12)
        assert row["accuracy"] == pytest.approx(alone["accuracy"])
        tp = int((pred[:, k] & positive[:, k]).sum())
        assert (row["support"], row["precision"], row["recall"]) == (int(positive[:, k].sum()), pytest.approx(tp / pred[:, k].sum()),
                                                                       pytest.approx(tp / positive[:, k].sum()))


def test_multilabel_masked_and_ignored_elements(tmp_path):
    z = np.array([[1.0, -2.0, 0.5], [0.3, 0.3, 0.3], [2.0, 1.0, -1.0]])
    t = np.array([[1.0, np.nan, 0.0], [-100, -100, -100], [1.0, -100, 0.0]])
    doc = score(*_npy(tmp_path, z, t, "ml"), "--head", "sigmoid")["summary"]
    assert (doc["counted"], doc["ignored"]) == (2, 1)
    row0 = (_bce(1.0, 1.0) + _bce(0.5, 0.0)) / 2
    row2 = (_bce(2.0, 1.0) + _bce(-1.0, 0.0)) / 2
    assert doc["loss_mean"] == pytest.approx((row0 + row2) / 2, rel=1e-12)


def test_multilabel_same_for_any_chunking(tmp_path):
    _, _, args = _multilabel(tmp_path, n=1000)
    whole = score(*args, "--per-class")
    for extra in (["--chunk-rows", "7", "--threads", "1"], ["--chunk-rows", "333", "--threads", "3"]):
        other = score(*args, "--per-class", *extra)
        for key in ("loss_mean", "exact_match", "hamming_accuracy", "loss_p90", "positive_rate"):
            assert other["summary"][key] == pytest.approx(whole["summary"][key], rel=1e-12)
        assert other["per_class"] == whole["per_class"] or all(
            a["loss_mean"] == pytest.approx(b["loss_mean"], rel=1e-12) for a, b in zip(other["per_class"], whole["per_class"]))


@pytest.mark.parametrize("weights", ["3", "0.5,1,2,4"])
def test_pos_weight_as_pytorch(tmp_path, weights):
    """PyTorch's BCEWithLogitsLoss(pos_weight=W) per element: −[W·t·log σ(z) + (1 − t)·log(1 − σ(z))]
    (ATen's (1 − t)·z + (1 + (W − 1)·t)·(log1p(exp(−|z|)) + max(−z, 0)) is the same number), then the mean."""
    z, t, args = _multilabel(tmp_path)
    w = np.array([float(v) for v in weights.split(",")])
    doc = score(*args, "--pos-weight", weights)["summary"]
    aten = (1 - t) * z + (1 + (w - 1) * t) * (np.log1p(np.exp(-np.abs(z))) + np.maximum(-z, 0))
    assert doc["loss_mean"] == pytest.approx(aten.mean(), rel=1e-12)
    assert doc["loss_mean"] == pytest.approx(_bce(z, t, w).mean(), rel=1e-12)


def test_class_weights_per_label(tmp_path):
    z, t, args = _multilabel(tmp_path)
    doc = score(*args, "--class-weights", "1,2,0,0.5")["summary"]
    assert doc["loss_mean"] == pytest.approx((np.array([1, 2, 0, 0.5]) * _bce(z, t)).mean(axis=1).mean(), rel=1e-12)


def test_weighted_binary_head(tmp_path):
    """A binary head with --pos-weight is scored element by element; weight 1 gives the plain binary numbers."""
    rng = np.random.default_rng(8)
    z = rng.normal(size=400) * 3
    t = (rng.random(400) < 0.3).astype(np.int64)
    args = _npy(tmp_path, z, t)
    plain = score(*args)["summary"]
    one = score(*args, "--pos-weight", "1")["summary"]
    for key in ("loss_mean", "accuracy", "loss_p50", "positive_rate", "predicted_positive_rate"):
        assert one[key] == pytest.approx(plain[key], rel=1e-12), key
    assert score(*args, "--pos-weight", "2.5")["summary"]["loss_mean"] == pytest.approx(_bce(z, t, 2.5).mean(), rel=1e-12)
    assert score(*args, "--class-weights", "0.5")["summary"]["loss_mean"] == pytest.approx(0.5 * _bce(z, t).mean(), rel=1e-12)
    rows = per_sample(tmp_path, *args, "--pos-weight", "2.5")
    np.testing.assert_allclose(rows["loss"], _bce(z, t, 2.5), rtol=1e-12)
    np.testing.assert_allclose(rows["margin"], z, rtol=1e-12)


def test_multilabel_per_sample_output(tmp_path):
    z = np.array([[1.0, -2.0], [0.5, 0.5]])
    t = np.array([[1.0, 1.0], [0.0, 1.0]])
    rows = per_sample(tmp_path, *_npy(tmp_path, z, t, "ml"), "--head", "sigmoid")
    assert [list(v) for v in rows["pred"]] == [[1, 0], [1, 1]]
    np.testing.assert_allclose(np.stack(rows["p"]), 1 / (1 + np.exp(-z)), rtol=1e-12)
    assert rows["exact_match"].tolist() == [False, False] and rows["hamming_accuracy"].tolist() == [0.5, 0.5]
    np.testing.assert_allclose(rows["loss"], _bce(z, t).mean(axis=1), rtol=1e-12)


@pytest.mark.parametrize("case, code", [("targets", "XE115"), ("probs", "XE113")])
def test_multilabel_values_out_of_range_fail_check(tmp_path, case, code):
    z = np.array([[1.0, -2.0], [0.5, 0.5], [0.1, 0.2]])
    t = np.array([[1.0, -1.0], [0.0, 1.0], [1.0, 0.0]]) if case == "targets" else np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    extra = ["--input", "probs"] if case == "probs" else []
    scores = z if case == "targets" else np.array([[0.9, 1.3], [0.2, 0.7], [0.5, 0.5]])
    result = runner.invoke(app, ["check", *map(str, _npy(tmp_path, scores, t, "ml")), "--head", "sigmoid", *extra, "--json"])
    doc = json.loads(result.stdout)
    assert result.exit_code == 1 and code in {d["code"] for d in doc["diagnostics"]}
    assert doc["summary"]["nonfinite"] == 1


@pytest.mark.parametrize("option", [["--confusions", "3"], ["--calibration", "--by-file", "y.npy"]])
def test_multilabel_refuses_what_it_cannot_compute(tmp_path, option):
    _, _, args = _multilabel(tmp_path, n=10)
    np.save(tmp_path / "y.npy", np.arange(10))
    option = [str(tmp_path / o) if o.endswith(".npy") else o for o in option]
    result = runner.invoke(app, ["score", *map(str, args), *option])
    assert result.exit_code == 2 and "multi-label" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_multilabel_needs_rows_of_targets(tmp_path):
    result = runner.invoke(app, ["score", *map(str, _npy(tmp_path, np.zeros((4, 3)), np.array([0, 1, 2, 1]), "ml")), "--head", "sigmoid"])
    assert result.exit_code == 2 and "one target per label" in result.stderr


# ---- what each framework reports on a sigmoid head (--like, --compare-frameworks) -------------------

Z4 = np.array([[2.5, -1.0, 0.3], [-4.0, 0.0, 7.5], [0.8, 3.3, -2.2], [12.0, -9.0, 0.1]], np.float32)
T4 = np.array([[1, 0, 1], [0, 1, 1], [0.25, 1, 0], [1, 0, 0.6]], np.float32)


def like(*args) -> dict:
    return score(*args)["like"]


@pytest.mark.parametrize("option, want", [
    # PyTorch 2.13.0 (CPU, float32): F.binary_cross_entropy_with_logits(Z4, T4) and with its options, recorded once
    ([], 0.28794047236442566),
    (["--pos-weight", "2,0.5,3"], 0.42878052592277527),
    (["--class-weights", "1,2,0.5"], 0.3188202679157257),
])
def test_torch_multilabel(tmp_path, option, want):
    doc = like(*_npy(tmp_path, Z4, T4, "ml"), "--head", "sigmoid", "--like", "torch", *option)
    assert doc["loss"] == pytest.approx(want, rel=1e-6)
    assert doc["name"] == "PyTorch F.binary_cross_entropy(_with_logits)" and doc["reduction"] == "mean"


def test_torch_and_optax_and_sklearn_binary(tmp_path):
    args = _npy(tmp_path, Z4[:, 0], np.array([1, 0, 0, 1]))
    # PyTorch 2.13.0: F.binary_cross_entropy_with_logits(Z4[:, 0], [1, 0, 0, 1]) = 0.31703659892082214 (float32)
    assert like(*args, "--like", "torch")["loss"] == pytest.approx(0.31703659892082214, rel=1e-6)
    # scikit-learn 1.9.1: log_loss([1, 0, 0, 1], σ(Z4[:, 0]) in float64) = 0.3170366201441879
    assert like(*args, "--like", "sklearn")["loss"] == pytest.approx(0.3170366201441879, rel=1e-12)
    # optax 0.2.8 (JAX 0.10.2, CPU): jnp.mean(optax.sigmoid_binary_cross_entropy(Z4, T4)) = 0.28794050216674805
    assert like(*_npy(tmp_path, Z4, T4, "ml"), "--head", "sigmoid", "--like", "optax")["loss"] == pytest.approx(0.28794050216674805, rel=1e-6)


def test_torch_probabilities_clamp_the_logs_at_minus_100(tmp_path):
    # PyTorch 2.13.0: F.binary_cross_entropy([[0.9, 0, 1], [1e-8, 0.5, 0.999]] (float64), [[1, 1, 0], [0, 1, 1]]) = 33.4665847010919
    p = np.array([[0.9, 0.0, 1.0], [1e-8, 0.5, 0.999]])
    t = np.array([[1, 1, 0], [0, 1, 1]], np.float64)
    args = _npy(tmp_path, p, t, "probs") + ["--head", "sigmoid"]
    assert like(*args, "--like", "torch")["loss"] == pytest.approx(33.4665847010919, rel=1e-12)
    # scikit-learn 1.9.1: log_loss(t, p) = 18.421580792834256 — multilabel-indicator targets: −Σ t·log clip(p), the
    # negative labels cost nothing there
    assert like(*args, "--like", "sklearn")["loss"] == pytest.approx(18.421580792834256, rel=1e-12)
    assert score(*args)["summary"]["nonfinite"] == 1  # the true loss: log 0 on the wrong side is infinite


def test_keras_binary_crossentropy_rules(tmp_path):
    """keras/src/losses/losses.py binary_crossentropy: t·(1 − ε) + ε/2, then the mean over the last axis of
    ops.binary_crossentropy — on the TensorFlow backend (keras/src/backend/tensorflow/nn.py)
    tf.nn.sigmoid_cross_entropy_with_logits for logits, clip(p, 1e-7, 1 − 1e-7) then −(t·log p + (1 − t)·log(1 − p))
    for probabilities — in float32; sum_over_batch_size divides Σ value·weight by the rows."""
    p = np.array([[0.9, 0.0], [1.0, 0.5]])
    t = np.array([[1, 1], [0, 1]], np.float64)
    args = _npy(tmp_path, p, t, "probs") + ["--head", "sigmoid"]
    p32 = np.clip(p.astype(np.float32), np.float32(1e-7), np.float32(1 - 1e-7))
    t32 = t.astype(np.float32) * np.float32(0.9) + np.float32(0.05)
    per = (-(t32 * np.log(p32) + (1 - t32) * np.log(1 - p32))).mean(axis=1, dtype=np.float32)
    doc = like(*args, "--like", "keras", "--label-smoothing", "0.1")
    assert doc["loss"] == pytest.approx(float(per.mean()), rel=1e-6) and doc["reduction"] == "sum_over_batch_size"
    # the same clip makes p = 0 on a positive target cost about −0.95·log(1e-7) = 15.3, not infinity
    assert doc["per_reduction"]["sum"] == pytest.approx(float(per.sum()), rel=1e-6) and per[0] > 7


def test_tf_sigmoid_cross_entropy_with_logits(tmp_path):
    """tf.nn.sigmoid_cross_entropy_with_logits: max(x, 0) − x·z + log(1 + exp(−|x|)) (its documented stable form)."""
    doc = like(*_npy(tmp_path, Z4, T4, "ml"), "--head", "sigmoid", "--like", "tf")
    assert doc["loss"] == pytest.approx(float(_bce(Z4.astype(np.float64), T4.astype(np.float64)).mean()), rel=1e-6)


def test_sklearn_for_softmax_heads(tmp_path):
    # scikit-learn 1.9.1: log_loss([0, 0, 1], softmax([[2, 1, −1], [0, 0, 30], [5, −5, 0]]), labels=[0, 1, 2]) = 13.451924220105164
    z = np.array([[2.0, 1.0, -1.0], [0.0, 0.0, 30.0], [5.0, -5.0, 0.0]])
    assert like(*_npy(tmp_path, z, np.array([0, 0, 1]), "s"), "--like", "sklearn")["loss"] == pytest.approx(13.451924220105164, rel=1e-12)
    # the case: log_loss([1, 0], [[1, 0], [1, 0]] as the columns [1 − p, p] with p = 0) = 18.021826694558577
    probs = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert like(*_npy(tmp_path, probs, np.array([1, 0]), "probs"), "--like", "sklearn")["loss"] == pytest.approx(18.021826694558577, rel=1e-12)


def test_compare_frameworks_on_a_sigmoid_head(tmp_path):
    args = _npy(tmp_path, Z4, np.where(np.arange(12).reshape(4, 3) == 5, -100, (T4 >= 0.5)), "ml") + ["--head", "sigmoid"]
    doc = score(*args, "--compare-frameworks")
    names = [f["framework"] for f in doc["compare"]["frameworks"]]
    assert names == ["torch", "keras", "tf", "optax"]
    assert any("has an ignore index" in line for line in doc["compare"]["explanations"])


def test_float32_multilabel_keeps_the_accuracy_guarantee(tmp_path):
    """float32 scores are scored in float32: each row's loss within max(1e-6, 1e-6·|loss|) of float64."""
    rng = np.random.default_rng(12)
    z = (rng.normal(size=(500, 7)) * 20).astype(np.float32)
    z[0] = [1e4, -1e4, 3e38, -3e38, 0.0, 1e-8, 88.0]
    t = (rng.random((500, 7)) < 0.5).astype(np.float32)
    rows = per_sample(tmp_path, *_npy(tmp_path, z, t, "ml"), "--head", "sigmoid")
    want = _bce(z.astype(np.float64), t.astype(np.float64)).mean(axis=1)
    assert np.all(np.abs(rows["loss"] - want) <= np.maximum(1e-6, 1e-6 * np.abs(want)))


def test_binary_calibration_is_scikit_learns_reliability_of_the_positive_class(tmp_path):
    """P(y = 1) binned against the positive rate. scikit-learn 1.9.1 on sample_data/spam_val.parquet (p = σ(z) in
    float64): calibration_curve(y, p, n_bins=10, strategy='uniform') → prob_true [0.0738, 0.1429, 0.2903, 0.3934,
    0.4915, 0.5455, 0.6429, 0.7121, 0.7927, 0.9321], prob_pred [0.0359, 0.1435, 0.2455, 0.3406, 0.4555, 0.5453,
    0.6531, 0.7585, 0.8549, 0.9553] (4 decimals); brier_score_loss(y, p) = 0.14163950223757452."""
    root = Path(__file__).resolve().parents[1]
    c = score(root / "sample_data" / "spam_val.parquet", "--calibration", "--bins", "10")["calibration"]
    assert [round(row["accuracy"], 4) for row in c["table"]] == [0.0738, 0.1429, 0.2903, 0.3934, 0.4915, 0.5455, 0.6429, 0.7121, 0.7927, 0.9321]
    assert [round(row["confidence"], 4) for row in c["table"]] == [0.0359, 0.1435, 0.2455, 0.3406, 0.4555, 0.5453, 0.6531, 0.7585, 0.8549, 0.9553]
    assert c["brier"] == pytest.approx(0.14163950223757452, rel=1e-6)  # float32 logits: σ in float64 of the stored values


def test_diff_pairs_sigmoid_heads_and_compares_every_target(tmp_path):
    """diff of two multi-label dumps: the row losses pair; targets that differ anywhere in a row are XE503."""
    z, t, args = _multilabel(tmp_path)
    np.save(tmp_path / "cand.npy", z * 0.8)
    other = t.copy()
    other[4, 2] = 1 - other[4, 2]  # one label of one row differs
    np.save(tmp_path / "t2.npy", other)
    result = runner.invoke(app, ["diff", str(tmp_path / "ml.npy"), str(tmp_path / "cand.npy"), "--labels", str(tmp_path / "y.npy"),
                                 "--head", "sigmoid", "--json"])
    doc = json.loads(result.stdout)
    want = (_bce(0.8 * z, t).mean(axis=1) - _bce(z, t).mean(axis=1)).mean()
    assert result.exit_code == 0 and doc["metrics"]["loss_mean"]["delta"] == pytest.approx(want, rel=1e-9)
    # the same scores against targets that differ in one label: refused
    np.save(tmp_path / "b.npy", z)
    base = runner.invoke(app, ["diff", str(tmp_path / "b.npy"), str(tmp_path / "cand.npy"), "--labels", str(tmp_path / "t2.npy"),
                               "--head", "sigmoid"])
    assert base.exit_code == 0  # the same labels file for both: the same targets
    pq.write_table(pa.table({"logits": list(z), "targets": list(t)}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"logits": list(z), "targets": list(other)}), tmp_path / "c.parquet")
    refused = runner.invoke(app, ["diff", str(tmp_path / "a.parquet"), str(tmp_path / "c.parquet"), "--head", "sigmoid"])
    assert refused.exit_code == 2 and "[XE503]" in refused.stderr and "4/4" in refused.stderr


def test_diff_compares_soft_targets_of_a_softmax_too(tmp_path):
    t1 = np.array([[0.7, 0.3], [0.2, 0.8]])
    t2 = np.array([[0.6, 0.4], [0.2, 0.8]])  # the same argmax, another distribution
    z = np.array([[1.0, 0.0], [0.0, 2.0]])
    pq.write_table(pa.table({"logits": list(z), "targets": list(t1)}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"logits": list(z), "targets": list(t2)}), tmp_path / "b.parquet")
    refused = runner.invoke(app, ["diff", str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")])
    assert refused.exit_code == 2 and "[XE503]" in refused.stderr and "0/0" in refused.stderr


def test_multilabel_calibration_and_temperature_pool_the_labels(tmp_path):
    """Every label a binary problem: P(y_k = 1) of every element binned against the positive rate; the
    temperature minimises the mean BCE of z/T over all elements. scikit-learn 1.9.1 on sample_data/tags_val.parquet
    (σ(z) of the stored float32 logits in float64, flattened): calibration_curve(t, p, n_bins=10) → prob_true
    [0.0632, 0.1424, 0.215, 0.3827, 0.4341, 0.5649, 0.6912, 0.76, 0.814, 0.9502], prob_pred [0.0347, 0.1467, 0.2474,
    0.3506, 0.4508, 0.5516, 0.6501, 0.7472, 0.8553, 0.9562]; brier_score_loss = 0.13258956990502738; scipy 1.17.1
    minimize_scalar(mean BCE(z/T, t), bounds=(0.05, 20), method='bounded') → T 1.1420939176082747, loss 0.42005254219171284."""
    root = Path(__file__).resolve().parents[1]
    c = score(root / "sample_data" / "tags_val.parquet", "--head", "sigmoid", "--calibration", "--temperature-scan", "--bins", "10")["calibration"]
    assert [round(r["accuracy"], 4) for r in c["table"]] == [0.0632, 0.1424, 0.215, 0.3827, 0.4341, 0.5649, 0.6912, 0.76, 0.814, 0.9502]
    assert [round(r["confidence"], 4) for r in c["table"]] == [0.0347, 0.1467, 0.2474, 0.3506, 0.4508, 0.5516, 0.6501, 0.7472, 0.8553, 0.9562]
    assert c["brier"] == pytest.approx(0.13258956990502738, rel=1e-12)
    assert c["temperature"]["temperature"] == pytest.approx(1.1420939176082747, rel=1e-7)
    assert c["temperature"]["loss_at_temperature"] == pytest.approx(0.42005254219171284, rel=1e-12)
    assert c["temperature"]["rows"] == 2400  # 400 rows × 6 labels


@pytest.mark.parametrize("head", [[], ["--pos-weight", "1"]])  # the two-class path and the element path
def test_epsilon_clips_probabilities_as_keras(tmp_path, head):
    """--epsilon E: p clipped to [E, 1 − E] before the logs (Keras' rule): a 0 on the positive side costs −log E."""
    p = np.array([0.0, 1.0, 0.5])
    args = _npy(tmp_path, p, np.array([1, 0, 1]), "probs")
    doc = score(*args, "--epsilon", "1e-7", *head)["summary"]
    assert doc["loss_mean"] == pytest.approx((-math.log(1e-7) - math.log1p(-(1 - 1e-7)) + math.log(2)) / 3, rel=1e-9)
    assert score(*args, *head)["summary"]["nonfinite"] == 2  # unclipped: infinite


def test_multilabel_c_path_equals_numpy_path(tmp_path, monkeypatch):
    """float32 logits with targets in [0, 1] go through xent_sigmoid_f32; the numpy path is the reference:
    the same numbers (to float32's 1e-6), the same per-label counts, a NaN chunk handed back to numpy."""
    from native_paths import require_c_extension

    from xentcli import native

    require_c_extension()
    rng = np.random.default_rng(31)
    z = (rng.normal(size=(700, 9)) * 4).astype(np.float32)
    t = (rng.random((700, 9)) < 0.4).astype(np.float32)
    t[::7, 2] = 0.3  # soft targets too
    z[5, 4] = np.float32(math.log(0.7 / 0.3))  # on the threshold's cut
    z2 = z.copy()
    z2[600, 1] = np.nan  # the last chunk has a NaN: the numpy path takes it
    for scores in (z, z2):
        np.save(tmp_path / "ml.npy", scores)
        np.save(tmp_path / "y.npy", t)
        args = [tmp_path / "ml.npy", "--labels", tmp_path / "y.npy", "--head", "sigmoid", "--per-class", "--threshold", "0.7",
                "--chunk-rows", "200"]
        with_c = score(*args)
        monkeypatch.setattr(native, "has_sigmoid", lambda: False)
        with_numpy = score(*args)
        monkeypatch.undo()
        for key in ("loss_mean", "exact_match", "hamming_accuracy", "positive_rate", "predicted_positive_rate", "nonfinite", "loss_p90"):
            assert with_c["summary"][key] == pytest.approx(with_numpy["summary"][key], rel=1e-6), key
        for a, b in zip(with_c["per_class"], with_numpy["per_class"]):
            assert (a["support"], a["elements"], a["accuracy"], a["precision"], a["recall"]) == (
                b["support"], b["elements"], b["accuracy"], b["precision"], b["recall"])  # the C path derives the right ones
            assert a["loss_mean"] == pytest.approx(b["loss_mean"], rel=1e-6)
        assert [d["code"] for d in with_c["diagnostics"]] == [d["code"] for d in with_numpy["diagnostics"]]
    want = _bce(z.astype(np.float64), t.astype(np.float64)).mean(axis=1).mean()
    np.save(tmp_path / "ml.npy", z)
    assert score(tmp_path / "ml.npy", "--labels", tmp_path / "y.npy", "--head", "sigmoid")["summary"]["loss_mean"] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("shape", [(1000, 9), (3, 5000), (50, 1), (4097, 1)])
def test_multilabel_c_kernel_rows_across_its_blocks(shape):
    """xent_sigmoid_f32 computes log1p(exp(−|z|)) for blocks of ~4,096 elements (whole rows; one row
    when a row is longer) before the rows' sums: every row's loss and extremes, and every label's
    sums, against the float64 formula, for shapes whose rows cross those blocks."""
    from native_paths import require_c_extension

    from xentcli import native

    require_c_extension()
    rng = np.random.default_rng(sum(shape))
    z = (rng.normal(size=shape) * 5).astype(np.float32)
    t = (rng.random(shape) < 0.3).astype(np.float32)
    got = native.sigmoid_f32(z, t, 0.0)
    elements = _bce(z.astype(np.float64), t.astype(np.float64))
    np.testing.assert_allclose(got["row_loss"], elements.sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(got["loss_sum"], elements.sum(axis=0), rtol=1e-6)
    assert np.array_equal(got["row_max"], z.max(axis=1)) and np.array_equal(got["row_min"], z.min(axis=1))
    assert np.array_equal(got["row_right"], ((z >= 0) == (t >= 0.5)).sum(axis=1))


def test_multilabel_c_kernel_extremes_and_refusals():
    """xent_sigmoid_f32 on the elements where float32 arithmetic goes wrong first: max(z, 0) − z·t
    cancelling (z = 1e4 with t a float32 ulp below 1), losses of ~1e-13 (z = 30, t = 1: log1p(e^−30)),
    scores near the float32 maximum; every row within 1e-6 of the float64 formula. A NaN score or a
    target outside [0, 1] in the last of several blocks of ~4,096 elements hands the chunk back (None)."""
    from native_paths import require_c_extension

    from xentcli import native

    require_c_extension()
    z_t = [(30.0, 1.0), (1e4, float(np.float32(1 - 2**-24))), (-3e38, 1.0), (3e38, 0.5), (1e-3, 0.3), (-17.0, 0.0), (-1e4, 0.0)]
    k = 7
    z = np.array([[zz] * k for zz, _ in z_t] * 190, np.float32)  # 1,330 rows: 585 a block at k = 7
    t = np.array([[tt] * k for _, tt in z_t] * 190, np.float32)
    got = native.sigmoid_f32(z, t, 0.0)
    want = _bce(z.astype(np.float64), t.astype(np.float64)).sum(axis=1)
    # float64 references, by hand: log1p(exp(-30)) = e^-30 − e^-60/2 + … = 9.357622968840175e-14 − 4.38e-27
    # = 9.357622968839737e-14 (the digits of e^-30 alone were written here, 4.7e-14 off, and passed under
    # pytest.approx's default absolute tolerance of 1e-12); 1e4 * 2**-24 = 5.9604644775390625e-4
    assert want[0] == pytest.approx(7 * 9.357622968839737e-14, rel=1e-15) and want[1] == pytest.approx(7 * 1e4 * 2**-24, rel=1e-12)
    np.testing.assert_allclose(got["row_loss"], want, rtol=1e-6)
    assert got["row_loss"][6] == 0.0 and got["row_loss"][5] > 0  # −1e4 with t = 0: exp(−1e4) is 0; −17: 4.14e-8 each
    for bad in ((np.nan, None), (None, 1.0000001), (None, -1e-30), (np.inf, None)):
        z2, t2 = z.copy(), t.copy()
        if bad[0] is not None:
            z2[-1, 3] = bad[0]
        if bad[1] is not None:
            t2[-1, 3] = bad[1]
        assert native.sigmoid_f32(z2, t2, 0.0) is None, bad


def test_multilabel_worst_rows_are_rows_and_losses(tmp_path):
    z, t, args = _multilabel(tmp_path)
    worst = score(*args, "--worst", "3")["worst"]
    losses = _bce(z, t).mean(axis=1)
    assert [set(w) for w in worst] == [{"row", "id", "loss"}] * 3
    assert [w["row"] for w in worst] == np.argsort(-losses, kind="stable")[:3].tolist()


# ---- found in review: each a class of inputs ----------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--calibration"], ["--pos-weight", "1"], ["--threads", "1", "--chunk-rows", "1"]])
def test_ignore_index_zero_or_one_on_every_path(tmp_path, extra):
    """--ignore-index 1 leaves the elements whose target is 1 out, on the C path and the numpy paths alike."""
    z = np.array([[-1, 2], [0.5, -0.3]], np.float32)
    t = np.array([[1, 0], [0, 1]], np.float32)
    doc = score(*_npy(tmp_path, z, t, "ml"), "--head", "sigmoid", "--ignore-index", "1", *extra)["summary"]
    assert doc["loss_mean"] == pytest.approx((_bce(2.0, 0.0) + _bce(0.5, 0.0)) / 2, rel=1e-6)


@pytest.mark.parametrize("extra", [[], ["--calibration"], ["--class-weights", "1,1,1,1"], ["--pos-weight", "1"]])
def test_soft_targets_keep_the_float32_guarantee_for_large_logits(tmp_path, extra):
    """max(z, 0) − z·t cancels for z large and t near 1: every path stays within max(1e-6, 1e-6·|loss|)."""
    z = np.array([[22659.363, 961.9537, 16712.855, 4155.8022]], np.float32)
    t = np.array([[0.9999835, 0.9999715, 0.9999833, 0.9999778]], np.float32)
    want = float(_bce(z.astype(np.float64), t.astype(np.float64)).mean())
    got = score(*_npy(tmp_path, z, t, "ml"), "--head", "sigmoid", *extra)["summary"]["loss_mean"]
    assert abs(got - want) <= max(1e-6, 1e-6 * want)
    binary = score(*_npy(tmp_path, z[0], t[0], "b"), "--class-weights", "1")["summary"]["loss_mean"]
    assert abs(binary - want) <= max(1e-6, 1e-6 * want)


def test_multilabel_per_sample_csv_is_refused(tmp_path):
    _, _, args = _multilabel(tmp_path, n=5)
    result = runner.invoke(app, ["score", *map(str, args), "-o", str(tmp_path / "out.csv")])
    assert result.exit_code == 2 and ".parquet" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()


def test_float32_multilabel_targets_of_any_type_keep_the_guarantee_and_the_chunking(tmp_path):
    """Multi-hot targets stored as bool, uint8, int64 or float64 score alike (the numpy path) and
    within the 1e-6 guarantee of a float64 formula, as float32 targets do (the C path); and a chunk
    the C path refuses (a NaN logit) does not make the numbers depend on the chunk size."""
    rng = np.random.default_rng(21)
    z = (rng.normal(size=(3000, 9)) * 4).astype(np.float32)
    hot = rng.random((3000, 9)) < 0.3
    want = _bce(z.astype(np.float64), hot.astype(np.float64)).mean(axis=1).mean()
    np.save(tmp_path / "z.npy", z)
    docs = {}
    for dtype in (np.float32, np.bool_, np.uint8, np.int64, np.float64):
        np.save(tmp_path / "t.npy", hot.astype(dtype))
        docs[dtype] = score(tmp_path / "z.npy", "--labels", tmp_path / "t.npy", "--head", "sigmoid", "--chunk-rows", "700")
        assert docs[dtype]["summary"]["loss_mean"] == pytest.approx(want, rel=1e-6)
    assert len({doc["summary"]["loss_mean"] for dtype, doc in docs.items() if dtype != np.float32}) == 1
    z[1234, 5] = np.nan  # the chunk holding it takes the numpy path, the others (float32 targets) the C path
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "t.npy", hot.astype(np.uint8))  # the numpy path for every chunk: sums agree to their rounding
    whole = runner.invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "t.npy"), "--head", "sigmoid", "--json"])
    small = runner.invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "t.npy"), "--head", "sigmoid", "--json",
                                "--chunk-rows", "100"])
    a, b = json.loads(whole.stdout)["summary"], json.loads(small.stdout)["summary"]
    for key in ("loss_mean", "loss_min", "loss_max", "loss_p50", "loss_p99", "exact_match"):
        assert a[key] == pytest.approx(b[key], rel=1e-13), key
    soft = np.where(hot, 0.9, 0.1)  # 0.1 and 0.9 are no float32 numbers
    np.save(tmp_path / "t.npy", soft)
    z[1234, 5] = 0.0
    np.save(tmp_path / "z.npy", z)
    rows = per_sample(tmp_path, tmp_path / "z.npy", "--labels", tmp_path / "t.npy", "--head", "sigmoid")
    exact = _bce(z.astype(np.float64), soft).mean(axis=1)
    assert np.all(np.abs(rows["loss"] - exact) <= np.maximum(1e-6, 1e-6 * np.abs(exact)))


def test_the_numpy_element_path_in_blocks_equals_it_whole(monkeypatch):
    """A chunk sized for the C path that the numpy path scores (soft targets, a NaN-masked element,
    per-element detail) is scored in blocks of rows: every array the same as scored whole."""
    from dataclasses import fields

    from xentcli import binary

    rng = np.random.default_rng(2)
    z = rng.normal(size=(1000, 7)).astype(np.float32) * 3
    t = rng.random((1000, 7)).astype(np.float32)
    t[5, 3] = np.nan
    whole = binary.element_chunk(z, "logits", t, -100, 0.0, None, None, 0.5, True)
    monkeypatch.setattr(binary, "NUMPY_BLOCK_ELEMENTS", 50)  # blocks of 7 rows
    blocks = binary.element_chunk(z, "logits", t, -100, 0.0, None, None, 0.5, True)
    assert blocks[2].raw is z
    for got, want in zip(blocks, whole):
        if isinstance(want, np.ndarray):
            assert np.array_equal(got, want, equal_nan=True)
            continue
        for f in fields(want):
            a, b = getattr(got, f.name), getattr(want, f.name)
            assert (np.array_equal(a, b, equal_nan=a.dtype.kind == "f") if isinstance(b, np.ndarray) else a == b), f.name


def test_the_fused_binary_pass_equals_the_two_class_path(tmp_path, monkeypatch):
    """float32 logits with 0/1 labels take one C pass (xent_binary_logits_f32): the JSON of score,
    with calibration and per-class, byte-identical to the two-class kernel and binary_stats; labels
    of other values (2, -1) and non-finite scores fall back to that path, and say so as before."""
    from xentcli import native

    rng = np.random.default_rng(17)
    z = (rng.normal(size=20_000) * 4).astype(np.float32)
    z[:6] = [0.0, 1e-8, -1e-8, 88.0, -88.0, 30.0]
    y = (rng.random(20_000) < 1 / (1 + np.exp(-z))).astype(np.uint8)
    cases = {"plain": (z, y), "label 2": (z, np.where(np.arange(z.size) == 7, 2, y)), "nan": (np.where(np.arange(z.size) == 9, np.nan, z).astype(np.float32), y)}
    for name, (scores, labels) in cases.items():
        args = _npy(tmp_path, scores, labels, name.replace(" ", "_"))
        fused = runner.invoke(app, ["score", *map(str, args), "--json", "--calibration", "--per-class", "--chunk-rows", "3000"])
        with monkeypatch.context() as m:
            m.setattr(native, "binary_logits_f32", lambda *a: None)  # every chunk through the two-class path
            general = runner.invoke(app, ["score", *map(str, args), "--json", "--calibration", "--per-class", "--chunk-rows", "3000"])
        assert fused.exit_code == general.exit_code and fused.stdout == general.stdout, name
    out = native.binary_logits_f32(z, y.astype(np.int64), 0.0)
    assert out is not None and np.array_equal(out["pred"], (z >= 0).astype(np.int64))
    want = np.maximum(z, 0).astype(np.float64) - z.astype(np.float64) * y + np.log1p(np.exp(-np.abs(z.astype(np.float64))))
    assert np.all(np.abs(out["loss"] - want) <= np.maximum(1e-6, 1e-6 * want))  # float32 scores: the 1e-6 guarantee
    assert native.binary_logits_f32(z, np.where(np.arange(z.size) == 3, 2, y).astype(np.int64), 0.0) is None


def test_multilabel_temperature_scan_with_masked_elements(tmp_path):
    """A multi-label head whose targets mask some elements (NaN): the scan samples the scored elements
    only, each by its element number, the same for any chunking (it once indexed past the end)."""
    rng = np.random.default_rng(6)
    z = rng.normal(size=(1500, 8)).astype(np.float32) * 2
    t = (rng.random((1500, 8)) < 0.3).astype(np.float32)
    t[5, 3] = t[700, 0] = np.nan
    args = _npy(tmp_path, z, t, "ml")
    docs = [score(*args, "--head", "sigmoid", "--temperature-scan", *extra)["calibration"]["temperature"]
            for extra in ([], ["--chunk-rows", "97"])]
    assert docs[0]["sample_rows"] == docs[0]["rows"] == 1500 * 8 - 2
    assert docs[0]["temperature"] == pytest.approx(docs[1]["temperature"], rel=1e-12)


def test_the_plain_binary_pass_scores_and_tallies_in_one_c_pass(tmp_path, monkeypatch):
    """The plain pass over float32 logits with 0/1 labels (xent_binary_tally_f32: no per-row arrays
    but the loss and the prediction) prints what the general path prints, byte for byte, for every
    label type, a threshold, the worst rows and their examples; every chunk takes it. A chunk with a
    row it refuses — a label 2 or −1, NaN, ±inf, a score beyond the overflow limit, labels equal to
    --ignore-index — goes the general path, whose rules say what they see."""
    from xentcli import engine

    require_c_extension()
    rng = np.random.default_rng(23)
    n = 9_000
    z = (rng.normal(size=n) * 5).astype(np.float32)
    z[:6] = [0.0, 1e-8, -1e-8, 80.0, -80.0, 30.0]
    y = (rng.random(n) < 1 / (1 + np.exp(-z.astype(np.float64)))).astype(np.uint8)
    y[rng.random(n) < 0.02] ^= 1  # confident mistakes: XE402/XE404 examples in every chunk
    taken = []
    fused = engine._fused_binary

    def counting(chunk, *args):
        got = fused(chunk, *args)
        taken.append((chunk.offset, got is not None))  # chunks run on worker threads: in any order
        return got

    def at(values, row, value):
        values = values.copy()
        values[row] = value
        return values

    # name: scores, labels, options, the row the one pass refuses (its chunk of 2,000 goes the general path)
    cases = {
        **{f"labels {t.__name__}": (z, y.astype(t), [], None) for t in (np.uint8, np.int32, np.int64, np.uint16, np.bool_)},
        "threshold": (z, y, ["--threshold", "0.7", "--worst", "4"], None),
        "label 2": (z, at(y.astype(np.int64), 4321, 2), [], 4321),
        "label -1": (z, at(y.astype(np.int64), 8000, -1), [], 8000),
        "nan": (at(z, 777, np.nan), y, [], 777),
        "inf": (at(z, 5555, np.inf), y, [], 5555),
        "overflow": (at(z, 3000, 1e5), y, [], 3000),
        "ignore 1": (z, y, ["--ignore-index", "1"], "every"),
        **{f"labels {t}": (z, y.astype(t), [], None) for t in ("float32", "float64", ">i2", ">i8")},  # 0.0/1.0; big-endian 0/1
        "labels >i2 of 0/256": (z, (y.astype(np.int64) * 256).astype(">i2"), [], "every"),  # read in native order 256 would pass for 1
        "soft targets": (z, np.where(y == 1, 0.9, 0.1), [], "every"),
    }
    for name, (scores, labels, extra, refused) in cases.items():
        args = [*_npy(tmp_path, scores, labels, "case"), "--json", "--worst", "3", "--chunk-rows", "2000", *extra]
        taken.clear()
        monkeypatch.setattr(engine, "_fused_binary", counting)
        one_pass = runner.invoke(app, ["score", *map(str, args)])
        monkeypatch.setattr(engine, "_fused_binary", lambda *a: None)
        general = runner.invoke(app, ["score", *map(str, args)])
        assert one_pass.exit_code == general.exit_code and one_pass.stdout == general.stdout, name
        assert [took for _, took in sorted(taken)] == [refused is None or (refused != "every" and chunk != refused // 2000)
                                                      for chunk in range(5)], name


def test_row_lookup_gives_the_kernels_values_row_by_row_and_whole():
    """RowLookup (the statistics the one-pass tally keeps no array of) indexed by a row, by rows, by
    a mask, and as an array: the values xent_binary_logits_f32 gives for the chunk."""
    from xentcli import native
    from xentcli.binary import RowLookup, logit_cut32

    require_c_extension()
    rng = np.random.default_rng(5)
    z = (rng.normal(size=300) * 4).astype(np.float32)
    y = rng.integers(0, 2, 300).astype(np.uint8)
    whole = native.binary_logits_f32(z, y.astype(np.int64), float(logit_cut32(0.5)))
    for name in ("p_true", "p_max", "rank", "log_norm", "score"):
        lookup = RowLookup(z, y, logit_cut32(0.5), name)
        assert np.array_equal(np.asarray(lookup), whole[name]) and len(lookup) == lookup.size == 300
        assert lookup[17] == whole[name][17] and np.ndim(lookup[17]) == 0
        rows = np.array([3, 250, 3])
        assert np.array_equal(lookup[rows], whole[name][rows])
        mask = z > 2
        assert np.array_equal(lookup[mask], whole[name][mask])


def test_a_chunk_the_one_pass_refuses_is_scored_in_chunks_of_the_general_size(tmp_path, monkeypatch):
    """A binary head's plain pass reads chunks sized for its one C pass (~5× the general size); a
    chunk it refuses (here a label 2) is scored by the general path in pieces of the general size,
    so memory stays bounded: the same counts and examples as the general path alone, the sums to
    rounding, and no general chunk larger than the general size."""
    from xentcli import binary, engine

    require_c_extension()
    rng = np.random.default_rng(29)
    n = 30_000
    z = (rng.normal(size=n) * 5).astype(np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-z.astype(np.float64)))).astype(np.int64)
    y[rng.random(n) < 0.02] ^= 1
    y[17_000] = 2
    args = [*_npy(tmp_path, z, y, "split"), "--json", "--worst", "3"]
    # general chunks of 1,000 rows (the two-class view's 2 × 4 bytes of scores a row), one-pass chunks of 264,000 // 56 = 4,714
    monkeypatch.setattr(engine, "DEFAULT_CHUNK_BYTES", 1000 * (8 + engine.ROW_STATE_BYTES))
    sizes, fused_sizes = [], []
    two_class, fused = engine.two_class, engine._fused_binary
    monkeypatch.setattr(engine, "two_class", lambda chunk, *a: sizes.append(len(chunk.scores)) or two_class(chunk, *a))
    monkeypatch.setattr(engine, "_fused_binary", lambda chunk, *a: fused_sizes.append(len(chunk.scores)) or fused(chunk, *a))
    split = json.loads(runner.invoke(app, ["score", *map(str, args)]).stdout)
    assert sizes == [1000]  # the one piece holding row 17,000: rows 16,142 … 17,141 of the chunk 14,142 … 18,855
    assert max(fused_sizes) == 4714
    monkeypatch.setattr(engine, "_fused_binary", lambda *a: None)
    general = json.loads(runner.invoke(app, ["score", *map(str, args)]).stdout)
    assert split["diagnostics"] == general["diagnostics"] and split["worst"] == general["worst"]
    for key, value in general["summary"].items():
        assert split["summary"][key] == (pytest.approx(value, rel=1e-12) if isinstance(value, (float, list)) else value), key
    assert binary.RowLookup is not None


def test_only_the_binary_one_pass_chunks_are_split(tmp_path, monkeypatch):
    """Chunks sized for another path — a multi-label head's C path (24 bytes a label, smaller than
    its general estimate), a softmax — are scored whole, one result each: splitting them would
    multiply the chunks (it once cut a multi-label run's chunks in four)."""
    from xentcli import engine
    from xentcli.config import RunConfig, SourceConfig
    from xentcli.sources import Source

    rng = np.random.default_rng(31)
    z = rng.normal(size=(3000, 50)).astype(np.float32)
    t = (rng.random((3000, 50)) < 0.2).astype(np.float32)
    monkeypatch.setattr(engine, "DEFAULT_CHUNK_BYTES", 400 * (50 * 24 + engine.ROW_STATE_BYTES))  # multi-label chunks of 400 rows
    sizes = []
    compute = engine._compute
    monkeypatch.setattr(engine, "_compute", lambda chunk, *a, **k: sizes.append(len(chunk.scores)) or compute(chunk, *a, **k))
    for name, labels, extra in (("multilabel", t, ["--head", "sigmoid"]), ("softmax", rng.integers(0, 50, 3000), [])):
        sizes.clear()
        args = _npy(tmp_path, z, labels, name)
        assert runner.invoke(app, ["score", *map(str, args), "--json", *extra]).exit_code == 0
        config = RunConfig(SourceConfig((str(args[0]),), labels_path=str(args[2]), head="sigmoid" if extra else "auto"))
        rows = engine.chunk_rows(config, engine.row_bytes(config, Source(config.source).description))
        assert sorted(sizes, reverse=True) == [rows] * (3000 // rows) + ([3000 % rows] if 3000 % rows else []), name  # any order: threads


def test_the_binary_one_pass_sizes_only_runs_it_can_take(tmp_path):
    """Chunks are sized for the binary head's one C pass only where the run's options let it take
    them: sample weights, --by-file or --like make every chunk go the general path, which must
    then read chunks of the general size (a one-pass chunk cut into pieces held ~50% more memory)."""
    from dataclasses import replace

    from xentcli import engine
    from xentcli.config import LossOptions, RunConfig, SourceConfig
    from xentcli.sources import Source

    rng = np.random.default_rng(37)
    z = rng.normal(size=500).astype(np.float32)
    args = _npy(tmp_path, z, rng.integers(0, 2, 500).astype(np.uint8), "sizing")
    np.save(tmp_path / "w.npy", np.ones(500))
    np.save(tmp_path / "g.npy", rng.integers(0, 3, 500))
    plain = SourceConfig((str(args[0]),), labels_path=str(args[2]))
    info = Source(plain).description
    assert engine.row_bytes(RunConfig(plain), info) == info.bytes_per_row + engine.FUSED_STATE_BYTES
    for config in (RunConfig(replace(plain, sample_weights_path=str(tmp_path / "w.npy"))),
                   RunConfig(replace(plain, by_file=str(tmp_path / "g.npy"))),
                   RunConfig(plain, loss=LossOptions(like="torch"))):
        assert engine.row_bytes(config, Source(config.source).description) == info.bytes_per_row + engine.ROW_STATE_BYTES


def test_after_a_refused_one_pass_chunk_the_chunks_are_cut_before_they_are_scored(tmp_path, monkeypatch):
    """Soft targets are refused by the one pass chunk after chunk: once it has refused one, the run
    cuts every chunk it reads to the general size before scoring it, so no worker holds a one-pass
    chunk's worth of general-path pieces (~50% more memory, measured); the numbers as without it."""
    from xentcli import engine

    rng = np.random.default_rng(41)
    n = 30_000
    z = (rng.normal(size=n) * 3).astype(np.float32)
    soft = 1 / (1 + np.exp(-z.astype(np.float64)))
    args = [*_npy(tmp_path, z, soft, "soft"), "--json", "--threads", "1"]
    monkeypatch.setattr(engine, "DEFAULT_CHUNK_BYTES", 1000 * (8 + engine.ROW_STATE_BYTES))  # general 1,000 rows, one pass 4,714
    general_sizes, tried = [], []
    two_class, fused = engine.two_class, engine._fused_binary
    monkeypatch.setattr(engine, "two_class", lambda chunk, *a: general_sizes.append(len(chunk.scores)) or two_class(chunk, *a))
    monkeypatch.setattr(engine, "_fused_binary", lambda chunk, *a: tried.append(len(chunk.scores)) or fused(chunk, *a))
    cut = json.loads(runner.invoke(app, ["score", *map(str, args)]).stdout)
    assert [size for size in tried if size > 1000] == [4714]  # the first chunk only; the rest were cut when read
    assert max(general_sizes) == 1000 and sum(general_sizes) == n
    monkeypatch.setattr(engine, "DEFAULT_CHUNK_BYTES", 1000 * (8 + engine.ROW_STATE_BYTES) * 100)  # one chunk, general path
    monkeypatch.setattr(engine, "_fused_binary", lambda *a: None)
    whole = json.loads(runner.invoke(app, ["score", *map(str, args)]).stdout)
    assert cut["diagnostics"] == whole["diagnostics"] and cut["summary"]["counted"] == whole["summary"]["counted"] == n
    assert cut["summary"]["loss_mean"] == pytest.approx(whole["summary"]["loss_mean"], rel=1e-12)


@pytest.mark.parametrize(("raw", "targets", "bad_row"), [
    ([2.5, -1, 0.5, 3, -2, 1, -0.5, 2], [2, 0, 1, 1, 0, 0.3, 0, 1], 0),  # a label 2 among soft targets
    ([np.inf, -1, 0.5, 3, -2, 1, -0.5, 2], [1, 0, 1, 1, 0, 0.3, 0, 1], 0),  # an infinite logit
])
def test_a_binary_row_counts_the_same_whatever_its_chunk_holds(tmp_path, raw, targets, bad_row):
    """A chunk with a fractional target is scored as soft targets, one without as 0/1 labels: a
    target of 2 was counted with a negative loss (−2.42) in the first and left out in the second,
    an infinite logit scored 0 or NaN, so the mean depended on --chunk-rows. Each row now counts as
    in a chunk of labels: the same rows counted, the same mean (to the float32 kernels' ~1e-9)."""
    np.save(tmp_path / "z.npy", np.array(raw, np.float32))
    np.save(tmp_path / "t.npy", np.array(targets, np.float32))
    z, t = np.array(raw, np.float64), np.array(targets, np.float64)
    keep = np.arange(len(raw)) != bad_row
    expected = np.mean(np.maximum(z[keep], 0) - z[keep] * t[keep] + np.log1p(np.exp(-np.abs(z[keep]))))
    for chunk in (8, 4, 2, 1):
        result = runner.invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "t.npy"), "--chunk-rows", str(chunk), "--json"])
        summary = json.loads(result.stdout)["summary"]
        assert (summary["counted"], summary["nonfinite"]) == (7, 1), chunk
        assert summary["loss_mean"] == pytest.approx(expected, rel=1e-7), chunk


def test_infinite_logits_score_as_labels_do_in_a_chunk_of_soft_targets(tmp_path):
    """Logits of ±inf: −inf on target 0 costs 0 (counted), −inf on 1 and +inf on 0 cost inf, +inf
    on 1 is NaN, as in a chunk of 0/1 labels (the two-class view [0, z]); in a chunk with a soft
    target they were all NaN (counted 2 rows, not 3), so the mean depended on --chunk-rows."""
    np.save(tmp_path / "z.npy", np.array([0.0, -np.inf, 1.0, np.inf, np.inf, -np.inf], np.float32))
    np.save(tmp_path / "t.npy", np.array([0.3, 0.0, 1.0, 0.0, 1.0, 1.0], np.float32))
    expected_rows = [np.log1p(np.exp(0.0)) - 0.0 * 0.3, 0.0, np.log1p(np.exp(-1.0))]  # max(z,0) − z·t + log1p(e^−|z|)
    for chunk in (6, 3, 1):
        result = runner.invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "t.npy"), "--chunk-rows", str(chunk),
                                     "-o", str(tmp_path / f"rows{chunk}.parquet"), "--json"])
        summary = json.loads(result.stdout)["summary"]
        assert (summary["counted"], summary["nonfinite"]) == (3, 3), chunk
        assert summary["loss_mean"] == pytest.approx(np.mean(expected_rows), rel=1e-7)
        losses = pq.read_table(tmp_path / f"rows{chunk}.parquet").column("loss").to_pylist()
        assert losses[1] == 0.0 and losses[3] == math.inf and losses[4] is None and losses[5] == math.inf, chunk


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_multilabel_rows_have_the_same_bits_in_any_chunk(tmp_path, dtype):
    """A multi-label head whose chunk held a non-finite score (or a soft target, in float32) scored
    all its rows another way (the C path refused the chunk; the numpy path chose its formula per
    chunk): the summary moved ~1e-8 with --chunk-rows. Each row now gets its way from itself alone;
    the mean is the float64 formula's."""
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((40, 3)) * 2).astype(dtype)
    t = rng.integers(0, 2, (40, 3)).astype(np.float32)
    z[5, 1], t[9, 2] = np.inf, 0.3  # an element whose loss is 0 on the positive side; a soft target
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "t.npy", t)
    summaries = []
    for rows in (1, 3, 40):
        result = runner.invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "t.npy"), "--head", "sigmoid",
                                     "--chunk-rows", str(rows), "--json"])
        assert result.exit_code in (0, 1), result.output
        summaries.append(json.loads(result.stdout)["summary"])
    for key in ("loss_mean", "loss_min", "loss_max", "loss_sum"):
        assert summaries[0][key] == summaries[1][key] == summaries[2][key], key
    x, tt = z.astype(np.float64), t.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        element = np.maximum(x, 0) - x * tt + np.log1p(np.exp(-np.abs(x)))  # max(z, 0) − z·t + log1p(exp(−|z|))
    element[5, 1] = 0.0  # z = +inf on a positive target: 0 (0·∞ = 0)
    assert summaries[0]["loss_mean"] == pytest.approx(element.mean(axis=1).mean(), rel=1e-6)


def test_presets_overflow_where_the_framework_sums_in_a_narrower_dtype(tmp_path):
    """Found in review: the sigmoid presets summed in float64 whatever the framework computes in.
    Numbers recorded from PyTorch 2.13 (CPU), F.binary_cross_entropy_with_logits on z with targets
    [0, 1, 1]: float32 z = [3e38, −3e38, 0.5] → mean inf, sum inf; float64 → mean 2e38, sum 6e38;
    float16 z = [60000, −60000, 0.5] → mean 40000.0 (torch.mean of float16 sums in float32), sum inf.
    Keras computes in float32 (its floatx) whatever the dtype: inf for both 3e38 dumps, finite for
    the float16 one (120000 fits float32)."""
    t = np.array([0, 1, 1], np.float32)
    cases = {"float32": ([3e38, -3e38, 0.5], (None, None), None), "float64": ([3e38, -3e38, 0.5], (2e38, 6e38), None),
             "float16": ([60000, -60000, 0.5], (40000.0, None), 120000.0)}
    for dtype, (z, (mean, total), keras_sum) in cases.items():
        doc = score(*_npy(tmp_path, np.array(z, dtype), t), "--compare-frameworks")
        got = {f["framework"]: f for f in doc["compare"]["frameworks"]}
        for name in ("torch", "tf", "optax"):
            if mean is None:
                assert got[name]["loss"] is None and got[name]["sum"] is None, (dtype, name)
            else:  # xent's float64 mean of the framework's elements; PyTorch rounds it to float16 (40000 exactly)
                assert got[name]["loss"] == pytest.approx(mean, rel=1e-5) and got[name]["sum"] == (None if total is None else pytest.approx(total)), (dtype, name)
        if keras_sum is None:
            assert got["keras"]["sum"] is None and got["keras"]["loss"] is None, dtype
        else:
            assert got["keras"]["sum"] == pytest.approx(keras_sum, rel=1e-5), dtype
    assert score(*_npy(tmp_path, np.array([3e38, -3e38, 0.5], np.float32), t), "--like", "torch")["like"]["loss"] is None


@pytest.mark.parametrize("head", ["binary", "multilabel"])
def test_per_sample_like_keeps_the_true_loss(tmp_path, head):
    """Found in review: with --like, a sigmoid head's `loss` column held the framework's value and
    the true loss was nowhere (a softmax's -o has `loss_true`). z = 1e4 with t = 1 scores 0 either way;
    z = −1e4 with t = 1 costs 1e4 (true), and scikit-learn's clipping at float64's epsilon makes it
    −log(2^−52) = 36.04365338911715."""
    z = np.array([1e4, -1e4, 0.0], np.float32)
    t = np.array([1, 1, 1], np.float32)
    if head == "multilabel":
        z, t = np.repeat(z[:, None], 2, axis=1), np.repeat(t[:, None], 2, axis=1)
    args = [*_npy(tmp_path, z, t), *(["--head", "sigmoid"] if head == "multilabel" else [])]
    rows = per_sample(tmp_path, *args, "--like", "sklearn")
    assert rows["loss_true"].tolist() == pytest.approx([0.0, 1e4, math.log(2)], rel=1e-6)  # float32 scores: float32 exp and log1p
    want_sklearn = [2.220446049250313e-16, 36.04365338911715, math.log(2)]
    if head == "multilabel":  # log_loss on indicator rows sums over the positive labels
        want_sklearn = [2 * v for v in want_sklearn]
    assert rows["loss"].tolist() == pytest.approx(want_sklearn, rel=1e-12)
    assert "loss_true" not in per_sample(tmp_path, *args).columns


def test_presets_say_what_they_do_with_soft_targets_and_the_ignore_index(tmp_path):
    """Found in review: --like sklearn on multi-label soft targets gave a message scikit-learn does
    not (scikit-learn 1.9.1: log_loss([[1, 0.3], [0, 1]], …) raises "Multioutput target data is not
    supported with label binarization"), and Keras, tf.nn and optax scored targets of -100 as numbers
    without the note PyTorch's preset gives."""
    z = np.array([[0.5, -1.0], [2.0, 0.1]], np.float32)
    doc = score(*_npy(tmp_path, z, np.array([[1, 0.3], [0, 1]], np.float32)), "--head", "sigmoid", "--like", "sklearn")
    assert doc["like"]["errors"] == ["ValueError: Multioutput target data is not supported with label binarization"]
    doc = score(*_npy(tmp_path, np.array([0.5, -1.0, 2.0], np.float32), np.array([1, -100, 0])), "--compare-frameworks")
    for framework in doc["compare"]["frameworks"]:
        assert "binary cross-entropy has no ignore index: targets -100 are scored as numbers" in framework["notes"], framework["framework"]


def test_binary_nan_and_inf_examples_name_class_1_at_any_chunk_size(tmp_path):
    """Found in review: a binary head's XE102 example named class 1 (its score z is scored as the
    logits [0, z]) unless a soft target shared its chunk, which kept the stored [z] and named
    class 0. The score is class 1's logit: class 1 at every chunk size, for NaN (XE101) too."""
    table = pa.table({"logit": [0.3, np.inf, -1.0, 2.0, np.nan], "label": [0, 1, 0.5, 1, 0]})
    pq.write_table(table, tmp_path / "b.parquet")
    seen = set()
    for chunk in ("1", "2", "3", "5"):
        doc = score(tmp_path / "b.parquet", "--chunk-rows", chunk)
        examples = {d["code"]: d["examples"] for d in doc["diagnostics"]}
        assert [e["classes"] for e in examples["XE102"]] == ["1"] and [e["classes"] for e in examples["XE101"]] == ["1"]
        seen.add(json.dumps(doc["diagnostics"], sort_keys=True))
    assert len(seen) == 1


def test_multilabel_f1_is_zero_where_nothing_is_right_and_null_only_where_undefined(tmp_path):
    """Found in review: a label never predicted (or never present) had F1 null where scikit-learn's
    precision_recall_fscore_support(zero_division=nan) gives 0.0: F1 = 2tp / (2tp + fp + fn) is 0/2
    there. Labels: 0 perfect (F1 1); 1 present twice, never predicted (precision null, recall 0, F1 0);
    2 predicted once, never present (precision 0, recall null, F1 0); 3 neither (all three null)."""
    z = np.array([[2.0, -30, -1, -5], [-1, -30, 3, -5], [1, -30, -1, -5], [-2, -30, -1, -5]], np.float32)
    t = np.array([[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], np.float32)
    rows = score(*_npy(tmp_path, z, t), "--head", "sigmoid", "--per-class")["per_class"]
    assert [(r["precision"], r["recall"], r["f1"]) for r in rows] == [(1.0, 1.0, 1.0), (None, 0.0, 0.0), (0.0, None, 0.0),
                                                                       (None, None, None)]


def test_multilabel_per_label_means_are_float64_sums_whatever_the_chunks(tmp_path):
    """Found in review: with masked elements the per-label loss sums were float32 (np.where kept the
    losses' dtype), so the per-label means moved with --chunk-rows by up to 5e-7 relative."""
    rng = np.random.default_rng(4)
    z = rng.normal(size=(1500, 3)).astype(np.float32) * 2
    t = (rng.random((1500, 3)) < 0.5).astype(np.float32)
    t[rng.random((1500, 3)) < 0.05] = -100
    means = [[r["loss_mean"] for r in score(*_npy(tmp_path, z, t), "--head", "sigmoid", "--per-class", "--chunk-rows", rows)["per_class"]]
             for rows in (1, 7, 1000)]
    for other in means[1:]:
        assert other == pytest.approx(means[0], rel=1e-13)
    loss = _bce(z.astype(np.float64), np.where(t < 0, 0, t))
    want = [loss[t[:, k] >= 0, k].mean() for k in range(3)]
    assert means[0] == pytest.approx(want, rel=1e-6)  # the float32 kernel's losses


def test_every_class_weight_zero_is_refused_on_a_sigmoid_head(tmp_path):
    """Found in review: --class-weights 0 (binary) or 0,0,0 (multi-label) made every loss 0 — a
    perfect mean loss that passed check whatever the model (PyTorch's mean returns 0 too). Refused:
    one line, exit 2. A single zero among others drops that label only (tested above)."""
    args = _npy(tmp_path, np.array([1.0, -2.0, 0.5, 3.0], np.float32), np.array([1, 0, 1, 0]))
    result = runner.invoke(app, ["check", *map(str, args), "--class-weights", "0", "--max-loss", "0.01"])
    assert result.exit_code == 2 and result.stderr.startswith("xent: error: every --class-weights entry is 0")
    z, t, ml = _multilabel(tmp_path, k=3)
    result = runner.invoke(app, ["check", *map(str, ml), "--class-weights", "0,0,0", "--max-loss", "0.01"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


def test_log_probabilities_keep_the_precision_of_tiny_losses(tmp_path):
    """Found in review: log(1 − p) from a log-probability was log(−expm1(lp)), which rounds 1 − e^lp
    to 1 below lp ≈ −37: the loss of t = 0 at lp = −50 came out 0 (true: 1.93e-22). Now log1p(−e^lp)
    there. References: −log1p(−e^lp) in float64 (exact to the last bits for lp < −log 2); a loss of
    exactly 0 is written 0.0, never −0.0."""
    lp = np.array([-50.0, -36.8, -40.0, -800.0, 0.0, -1e-300])
    t = np.array([0, 0, 0, 0, 1, 1])
    rows = per_sample(tmp_path, *_npy(tmp_path, lp, t), "--input", "log-probs")
    want = np.array([-math.log1p(-math.exp(x)) for x in lp[:4]] + [0.0, 1e-300])
    np.testing.assert_allclose(rows["loss"].to_numpy(), want, rtol=1e-15, atol=0)
    assert not np.signbit(rows["loss"].to_numpy()).any()


@pytest.mark.parametrize("path", ["c", "numpy"])
@pytest.mark.parametrize("head", ["binary", "softmax"])
def test_quantiles_of_losses_below_1e_300(tmp_path, monkeypatch, path, head):
    """float64 logits with margins of 700 … 740: losses log1p(e^-z) from 3e-305 down to subnormal
    ones (4e-322). They counted as zeros in the sketch, so p50, p90 and p99 came out as the smallest
    loss and `check --max-loss-p99 1e-307` passed at a true p99 of 1.7e-313… 9e-305 (found in review,
    2026-12-03). Now each is within the sketch's 0.5% of numpy's quantile (float64 formula), on the
    C tally (its log for subnormal losses) and the numpy one."""
    from xentcli import native

    if path == "numpy":
        monkeypatch.setattr(native, "_TALLY", None)
    else:
        require_c_extension()
    z = np.random.default_rng(28).uniform(700.0, 740.0, 1001)
    if head == "binary":
        np.save(tmp_path / "z.npy", z)
        loss = np.log1p(np.exp(-z))
    else:  # the loss of [z, 0] on class 0 is log1p(e^-z) too
        np.save(tmp_path / "z.npy", np.stack([z, np.zeros_like(z)], axis=1))
        loss = np.log1p(np.exp(-z))
    np.save(tmp_path / "y.npy", np.ones(z.size, np.int64) if head == "binary" else np.zeros(z.size, np.int64))
    summary = score(tmp_path / "z.npy", "--labels", tmp_path / "y.npy")["summary"]
    for q in (0.5, 0.9, 0.99):
        lower, higher = np.quantile(loss, q, method="lower"), np.quantile(loss, q, method="higher")
        assert lower * 0.995 <= summary[f"loss_p{round(q * 100)}"] <= higher * 1.005, (q, summary[f"loss_p{round(q * 100)}"], lower)
    assert summary["loss_p99"] > 1e-307
    gate = runner.invoke(app, ["check", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--max-loss-p99", "1e-307"])
    assert gate.exit_code == 1, gate.stdout


@pytest.mark.parametrize("weight", ["5e-324", "1e-300", "1e308", "1,1e308"])
def test_pos_weights_beyond_2_300_are_refused(tmp_path, weight):
    """--pos-weight takes what --class-weights takes, 0 or [2^-300, 2^300]: 1e308 made the positive
    rows' losses inf (XE401 blamed a zero probability) and 1e-300 their spread underflow (found in
    review, 2026-12-03). One line, exit 2; 2^300 itself is used."""
    np.save(tmp_path / "z.npy", np.array([[0.5, -1.0], [2.0, 0.25], [-0.5, 1.5]]))
    np.save(tmp_path / "t.npy", np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
    args = ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "t.npy"), "--head", "sigmoid", "--json"]
    result = runner.invoke(app, [*args, "--pos-weight", weight])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "--pos-weight" in result.stderr, result.stderr
    used = runner.invoke(app, [*args, "--pos-weight", repr(2.0**300)])
    assert used.exit_code == 0, used.stderr
