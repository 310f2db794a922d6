"""Framework presets against the numbers recorded from TensorFlow, Keras, PyTorch and optax.

Every call recorded in tests/conformance/cases.json that xent can express (all but Keras' scalar
sample weight) is mapped to a preset and its options, run through the library on the whole
case, and compared per sample and per reduction; where the framework raised, xent must report
an error of the same type.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from reference import sparse_loss64, close_to

from xentcli.kernels import sample_stats
from xentcli.config import LossOptions
from xentcli.frameworks import FrameworkSummary, framework_terms
from xentcli.loss import ChunkContext

HERE = Path(__file__).parent / "conformance"
CASES = json.loads((HERE / "cases.json").read_text())["cases"]
KERAS_BACKENDS = {"tensorflow": "keras", "jax": "keras-jax", "torch": "keras-torch"}


def _numbers(values) -> np.ndarray:
    return np.array([float(v) for v in values], dtype=np.float64)


def _map_call(case, call):
    """(framework, dense targets?, LossOptions, sample weights) for a recorded call; None if not expressible."""
    fw = call["fw"]
    kwargs = call.get("kwargs", {})
    class_weights = None
    sample_weights = None
    ignore = None
    smoothing = 0.0
    if fw == "torch":
        framework = "torch"
        dense = call["target"] == "dense"
        if kwargs.get("weight") == "class_weight":
            class_weights = tuple(case["class_weight"])
        smoothing = kwargs.get("label_smoothing", 0.0)
        ignore = kwargs.get("ignore_index", -100)
    elif fw == "keras":
        framework = KERAS_BACKENDS[call.get("backend") or case_backend(call)]
        dense = call["fn"] == "CategoricalCrossentropy"
        smoothing = kwargs.get("label_smoothing", 0.0)
        ignore = kwargs.get("ignore_class")
        weight = call.get("sample_weight")
        if weight == "sample_weight":
            sample_weights = np.load(HERE / case["files"]["npy"]["sample_weight"]).astype(np.float64)
        elif weight == "class_weight_of_label":
            class_weights = tuple(case["class_weight"])
        elif weight is not None:
            return None  # a scalar sample weight: not a per-row weight
    elif fw == "tf.nn":
        framework = "tf"
        dense = call["fn"] == "softmax_cross_entropy_with_logits"
    else:
        framework = "optax"
        dense = call["fn"] == "softmax_cross_entropy"
        smoothing = call.get("smooth", 0.0)
        ignore = -100 if call.get("where") == "valid" else None
    options = LossOptions(
        ignore_index=ignore if ignore is not None else -100,
        ignore_explicit=ignore is not None,
        class_weights=class_weights,
        label_smoothing=smoothing,
        like=framework,
    )
    return framework, dense, options, sample_weights


def case_backend(call) -> str:
    return call["__key__"].split("[")[1].split("]")[0]


def _calls():
    for case in CASES:
        if len(case["pred_shape"]) != 2:
            continue
        for key, call in case["expected"].items():
            spec = dict(call["call"], __key__=key)
            if _map_call(case, spec) is not None:
                yield pytest.param(case, key, spec, id=f"{case['id']}:{key}")


def _inputs(case, dense: bool):
    files = case["files"]["npy"]
    scores = np.load(HERE / (files.get("logits") or files["probs"]))
    labels = np.load(HERE / files["labels"])
    if scores.dtype == np.float16:
        scores = scores.astype(np.float32)
    if labels.ndim == 2:  # stored one-hot / soft rows
        return scores, (labels if dense else None), (None if dense else labels.argmax(axis=1))
    if dense:
        return scores, np.eye(scores.shape[1], dtype=scores.dtype)[labels], None
    return scores, None, labels


@pytest.mark.parametrize("case,key,call", list(_calls()))
def test_framework_call(case, key, call):
    framework, dense, options, sample_weights = _map_call(case, call)
    scores, targets, labels = _inputs(case, dense)
    kind = case["pred_kind"]
    ctx = ChunkContext(scores, kind, labels, targets, sample_weights, options)
    stats = sample_stats(scores, kind, labels=labels, targets=targets, class_vectors=ctx.class_vectors())
    terms = framework_terms(framework, stats, ctx)
    summary = FrameworkSummary(framework)
    summary.update(terms)
    reductions = summary.reductions()
    tolerance = "float64" if case["stored_dtype"] == "float64" else "float32"
    expected = case["expected"][key]["float64"]
    if framework == "optax" and call["fn"].endswith("integer_labels") and tolerance == "float32":
        # optax's integer path runs in the stored dtype (widened float16: float32), as recorded
        expected = case["expected"][key]["float32"]
    result_dtype = expected.get("result_dtype")
    for reduction, want in expected.items():
        if reduction == "result_dtype":
            continue
        # Keras on the torch backend returns the means of a float64 run in float32
        dtype = result_dtype.get(reduction) if isinstance(result_dtype, dict) else result_dtype
        if dtype == "float32":
            tolerance = "float32"
        if isinstance(want, dict):  # the framework raised
            assert summary.errors, f"{reduction}: expected {want['error']}"
            assert summary.errors[0].split(":")[0] == want["error"].split(":")[0]
            continue
        if reduction == "none":
            got = terms.values
            ok = close_to(got, _numbers(want), tolerance)
            assert ok.all(), f"rows {np.flatnonzero(~ok)}: {got[~ok]} vs {_numbers(want)[~ok]}"
        else:
            got = reductions["sum_over_batch_size" if reduction == "mean" and framework.startswith("keras") else reduction]
            assert close_to([got], [float(want)], tolerance).all(), f"{reduction}: {got} vs {want}"


def test_optax_float32_precision_loss_is_reproduced():
    """large_logits_f32: optax's integer path loses precision in float32 (row 10 is 6% off the true
    loss, recorded from optax 0.2.8); xent reproduces the recorded values, not the true ones."""
    case = next(c for c in CASES if c["id"] == "large_logits_f32")
    call = case["expected"]["optax.softmax_cross_entropy_with_integer_labels()"]
    scores, _, labels = _inputs(case, False)
    options = LossOptions(like="optax")
    ctx = ChunkContext(scores, "logits", labels, None, None, options)
    terms = framework_terms("optax", sample_stats(scores, "logits", labels=labels, class_vectors=ctx.class_vectors()), ctx)
    want = _numbers(call["float32"]["none"])
    np.testing.assert_allclose(terms.values, want, rtol=1e-6, atol=2e-6)
    true = sparse_loss64(scores.astype(np.float64), labels)
    assert abs(terms.values[10] - true[10]) > 0.05 * true[10]  # the 6% loss of precision is there, not the true value


def test_optax_naive_loss_from_the_kernel_equals_its_second_pass():
    """optax's float32 logsumexp − z_y, rebuilt from the kernel's max and logsumexp, equals the
    direct numpy computation to the scale of float32 rounding in it (2 ulps of max|z| + log C: the
    two round log Σ exp differently, which where max and log Σ exp nearly cancel is many ulps of the
    small logsumexp itself), and keeps optax's loss of precision on large logits (ulp of 1e4 ≈ 1e-3)."""
    from xentcli.kernels import naive_logsumexp_from, naive_logsumexp_loss, sample_stats

    rng = np.random.default_rng(19)
    for scale, offset in ((3.0, 0.0), (3.0, 1e4), (50.0, -3e3)):
        z = (rng.standard_normal((4000, 17)) * scale + offset).astype(np.float32)
        y = rng.integers(-1, 18, 4000)  # -1 and 17: outside [0, C), NaN in both
        stats = sample_stats(z, "logits", labels=y, detail=False, extremes=True)
        rebuilt = naive_logsumexp_from(z, y, stats.score_max, stats.log_norm)
        direct = naive_logsumexp_loss(z, y)
        assert np.array_equal(np.isnan(rebuilt), np.isnan(direct)) and np.isnan(direct).sum() == ((y < 0) | (y > 16)).sum()
        ok = ~np.isnan(direct)
        lse = np.abs(z).max(axis=1).astype(np.float64) + np.log(17)
        assert np.all(np.abs(rebuilt[ok] - direct[ok]) <= 2 * np.spacing(lse[ok].astype(np.float32)).astype(np.float64))
        if offset:  # the precision optax loses there is kept: both differ from the float64 loss by ~ulp(1e4)
            assert np.abs(rebuilt[ok] - stats.loss[ok]).max() > 1e-4
    # a NaN or an infinite logit: the full path for that row
    z = np.array([[1.0, np.nan, 0.0], [np.inf, 0.0, 1.0], [1.0, 2.0, 3.0]], np.float32)
    stats = sample_stats(z, "logits", labels=np.array([0, 1, 2]), detail=False, extremes=True)
    rebuilt, direct = naive_logsumexp_from(z, np.array([0, 1, 2]), stats.score_max, stats.log_norm), naive_logsumexp_loss(z, np.array([0, 1, 2]))
    assert np.isnan(rebuilt[:2]).all() and np.isnan(direct[:2]).all()
    assert abs(rebuilt[2] - direct[2]) <= 2 * np.spacing(np.float32(3 + np.log(3)))  # the scale above


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optax_naive_loss_in_c_equals_its_numpy_twin_bit_for_bit(monkeypatch, dtype):
    """native.naive_lse (one C pass) against naive_logsumexp_from's numpy operations, bit for bit,
    on hostile rows: NaN, ±inf, ±max float, labels outside [0, C) both ways, a column-major chunk."""
    from tests.native_paths import require_c_extension
    from xentcli import native
    from xentcli.kernels import naive_logsumexp_from, sample_stats

    require_c_extension()
    rng = np.random.default_rng(26)
    big = np.finfo(dtype).max
    z = (rng.standard_normal((3000, 7)) * 40).astype(dtype)
    z[rng.integers(0, 3000, 40), rng.integers(0, 7, 40)] = np.nan
    z[rng.integers(0, 3000, 40), rng.integers(0, 7, 40)] = np.inf
    z[rng.integers(0, 3000, 40), rng.integers(0, 7, 40)] = -np.inf
    z[rng.integers(0, 3000, 40), rng.integers(0, 7, 40)] = big
    z[rng.integers(0, 3000, 40), rng.integers(0, 7, 40)] = -big
    z[:30] = -np.inf  # whole rows of −inf: a non-finite logsumexp
    y = rng.integers(-9, 9, 3000)
    for scores in (z, np.asfortranarray(z), z[:0]):
        labels = y[: len(scores)]
        stats = sample_stats(np.ascontiguousarray(scores), "logits", labels=labels, detail=False, extremes=True,
                             true_scores=True)  # the C kernel's, with its copy of each label's score
        z_max, log_norm = (stats.score_max, stats.log_norm) if len(scores) else (np.empty(0), np.empty(0))
        z_true = stats.score_true if len(scores) else np.empty(0)
        with np.errstate(all="ignore"):
            in_c = naive_logsumexp_from(scores, labels, z_max, log_norm)
            from_kernel = naive_logsumexp_from(scores, labels, z_max, log_norm, z_true)
            monkeypatch.setattr(native, "naive_lse", lambda *args: None)
            in_numpy = naive_logsumexp_from(scores, labels, z_max, log_norm)
            monkeypatch.undo()
        nan = np.isnan(in_numpy)
        for values in (in_c, from_kernel):
            assert values.dtype == np.float64 and values.shape == (len(scores),)
            assert np.array_equal(np.isnan(values), nan)
            assert np.array_equal(values[~nan].view(np.int64), in_numpy[~nan].view(np.int64))  # the same bits
        if len(scores):  # the kernel's copy is the label's score itself, on every row with a label in range (special rows too)
            ok = (labels >= 0) & (labels < scores.shape[1])
            picked = np.ascontiguousarray(scores)[np.flatnonzero(ok), labels[ok]].astype(np.float64)
            assert np.array_equal(z_true[ok], picked, equal_nan=True)
        if len(scores):  # every kind of row was there: out of range, non-finite logsumexp, inf, finite
            assert nan[(labels < 0) | (labels >= 7)].all() and nan[:30].all()
            assert np.isinf(in_numpy).any() and np.isfinite(in_numpy).sum() > 1000


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_framework_computing_in_float32_overflows_where_it_does(tmp_path, dtype):
    """Logits of ±3.4e38: the loss of rows 1 and 3 is 3.4e38 − (−3.4e38) = 6.8e38, beyond float32.
    PyTorch 2.13 on the float32 tensor: F.cross_entropy(..., reduction='none') = [-0., inf, 3.4e38,
    inf], mean inf (recorded once); on float64 it is finite. Keras computes in float32 either way."""
    z = np.zeros((4, 3), dtype)
    z[:, 0], z[:, 1] = 3.4e38, -3.4e38
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 1]))
    from typer.testing import CliRunner

    from xentcli.cli import app

    result = CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--compare-frameworks",
                                      "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    shown = {f["framework"]: f["per_reduction"] for f in doc["compare"]["frameworks"]}
    big = float(np.float32(3.4e38)) if dtype == np.float32 else 3.4e38
    finite_mean = (0.0 + 2 * big + big + 2 * big) / 4
    assert doc["summary"]["loss_mean"] == pytest.approx(finite_mean, rel=1e-12)  # the true loss: float64, finite
    expected_torch = None if dtype == np.float32 else pytest.approx(finite_mean, rel=1e-12)  # JSON: inf is null
    assert shown["torch"]["mean"] == expected_torch and shown["tf"]["mean"] == expected_torch
    assert shown["keras"]["sum_over_batch_size"] is None  # float32 (floatx) for float64 scores too


def test_a_zero_weight_on_a_float32_overflow_is_nan_as_in_pytorch(tmp_path):
    """PyTorch 2.13, float32 logits of ±3.4e38, weight [1, 0, 1]: F.cross_entropy(..., reduction='none')
    = [-0., nan, 3.4e38, nan] (0·inf), mean nan (recorded once); xent said 2.4076. No numpy warning
    reaches stderr."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    z = np.zeros((4, 3), np.float32)
    z[:, 0], z[:, 1] = 3.4e38, -3.4e38
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 1]))
    result = CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--like", "torch",
                                      "--class-weights", "1,0,1", "--json", "-o", str(tmp_path / "rows.parquet")])
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    assert json.loads(result.stdout)["like"]["loss"] is None


def test_a_float32_frameworks_sum_overflows_where_it_does(tmp_path):
    """Rows of 3.3e38 each (finite in float32) sum past float32's range: PyTorch 2.13's
    F.cross_entropy mean and sum are inf on these float32 logits (recorded once); xent said 2.2e38."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    np.save(tmp_path / "z.npy", np.array([[2e38, -1.3e38], [2e38, -1.3e38], [2, 1]], np.float32))
    np.save(tmp_path / "y.npy", np.array([1, 1, 0]))
    result = CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--like", "torch", "--json"])
    assert result.exit_code == 0 and result.stderr == ""
    like = json.loads(result.stdout)["like"]
    assert like["per_reduction"] == {"mean": None, "sum": None}  # JSON: inf is null


def test_beyond_float32_is_exactly_where_the_cast_overflows():
    # loss.beyond_float32 compares with 2^128 − 2^103 instead of casting: the same rows as numpy's cast
    # to float32 (the reference), at the boundary and around it, NaN and ±inf left out.
    from xentcli.loss import FLOAT32_OVERFLOW, beyond_float32

    edge = FLOAT32_OVERFLOW
    values = np.array([edge, np.nextafter(edge, 0), -edge, -np.nextafter(edge, 0), np.finfo(np.float32).max, 1e300, -1e39,
                       np.inf, -np.inf, np.nan, 0.0, 3.4e38])
    with np.errstate(over="ignore"):
        reference = np.isfinite(values) & ~np.isfinite(values.astype(np.float32))
    assert beyond_float32(values).tolist() == reference.tolist() == [True, False, True, False, False, True, True,
                                                                       False, False, False, False, False]
    assert beyond_float32(np.array([1.0, np.nan, np.inf])) is None


INF = math.inf
NAN = math.nan
# float32 logits with ±inf (overflowed activations, masked classes); their rows' values as recorded
# once from the frameworks, reduction none: PyTorch 2.13 F.cross_entropy, optax 0.2.8 on jax 0.10.2,
# Keras 3.15.1 on its JAX backend. The true loss differs: [1, 2, inf] with label 0 is inf (xent),
# NaN where the framework subtracts the row's largest logit; a −inf under a target of 0 is
# 0·(−inf) = NaN where it multiplies by the target.
INFINITE_LOGITS = [[1, 2, INF], [0.5, 0.2, -1], [-INF, 0, 1], [3, INF, 0], [-INF, 0, 1], [2, 1, 0]]
SOFT = [[0.2, 0.3, 0.5], [0, 1, 0], [0, 0.5, 0.5], [1, 0, 0], [1, 0, 0], [0, 0, 1]]


@pytest.mark.parametrize("framework, targets, options, want", [
    ("torch", [0, 1, 1, -100, 0, 2], [], [NAN, 0.9749569892883301, 1.31326162815094, 0.0, INF, 2.4076058864593506]),
    ("torch", [0, 1, 1, -100, 0, 2], ["--label-smoothing", "0.1"], [NAN, 1.0049569606781006, INF, 0.0, INF, 2.3076059818267822]),
    ("torch", [0, 1, 1, -100, 0, 2], ["--class-weights", "1,2,0"], [NAN, 1.9499139785766602, 2.62652325630188, 0.0, INF, 0.0]),
    ("torch", SOFT, [], [NAN, 0.9749569892883301, NAN, NAN, INF, 2.4076058864593506]),
    ("optax", [0, 1, 1, 2, 0, 2], [], [INF, 0.97495705, 1.3132616, INF, INF, 2.407606]),
    ("optax", [0, 1, 1, 2, 0, 2], ["--label-smoothing", "0.1"], [NAN, 1.004957, INF, NAN, INF, 2.307606]),
    ("optax", SOFT, [], [NAN, 0.974957, NAN, NAN, INF, 2.407606]),
    ("keras-jax", [0, 1, 1, -100, 7, 2], [], [NAN, 0.974957, NAN, NAN, NAN, 2.407606]),
    ("keras-jax", SOFT, [], [NAN, 0.974957, NAN, NAN, INF, 2.407606]),
    ("keras-jax", SOFT, ["--label-smoothing", "0.1"], [NAN, 1.004957, INF, NAN, INF, 2.307606]),
])
def test_infinite_logits_give_each_frameworks_nan_or_inf(tmp_path, framework, targets, options, want):
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from xentcli.cli import app

    np.save(tmp_path / "z.npy", np.array(INFINITE_LOGITS, np.float32))
    np.save(tmp_path / "y.npy", np.array(targets, np.float32 if isinstance(targets[0], list) else np.int64))
    result = CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--like", framework,
                                      "--json", "-o", str(tmp_path / "rows.parquet"), *options])
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    got = pq.read_table(tmp_path / "rows.parquet").column("loss").to_numpy(zero_copy_only=False)
    np.testing.assert_allclose(got, want, rtol=1e-6)  # NaN and inf where the framework has them


def test_keras_casts_float64_logits_to_float32(tmp_path):
    """Keras 3.15.1 (JAX backend), SparseCategoricalCrossentropy(from_logits=True, reduction=None) on
    float64 logits: it casts them to float32, where ±1e39 is ±inf: [nan, 0.974957, inf, nan, nan]
    (recorded once); xent scored the float64 values (0, …, 1e39, …)."""
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from xentcli.cli import app

    np.save(tmp_path / "z.npy", np.array([[1e39, 0, 1], [0.5, 0.2, -1], [-1e39, 0, 1], [-1e39, 0, 1], [1, 2, 1e39]]))
    np.save(tmp_path / "y.npy", np.array([0, 1, 0, 1, 0]))
    result = CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--like", "keras-jax",
                                      "--json", "-o", str(tmp_path / "rows.parquet")])
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    got = pq.read_table(tmp_path / "rows.parquet").column("loss").to_numpy(zero_copy_only=False)
    np.testing.assert_allclose(got, [NAN, 0.974957, INF, NAN, NAN], rtol=1e-6)
    assert json.loads(result.stdout)["like"]["loss"] is None


@pytest.mark.parametrize("framework, want", [
    # recorded once, reduction none: PyTorch 2.13 F.binary_cross_entropy_with_logits (and Keras 3.15.1's
    # PyTorch backend, which calls it), optax 0.2.8 sigmoid_binary_cross_entropy (and Keras' JAX backend,
    # its log_sigmoid form); tf.nn.sigmoid_cross_entropy_with_logits is max(z, 0) − z·t + log1p(exp(−|z|))
    # by its source: 0·inf at z = +inf, t = 0 is NaN there
    ("torch", [NAN, NAN, INF, NAN, 0.6931471824645996, 0.04858735203742981]),
    ("keras-torch", [NAN, NAN, INF, NAN, 0.6931472, 0.04858735]),
    ("optax", [NAN, INF, INF, NAN, 0.6931472, 0.04858735]),
    ("keras-jax", [NAN, INF, INF, NAN, 0.6931472, 0.04858735]),
    ("tf", [NAN, INF, NAN, NAN, 0.6931471824645996, 0.04858735]),
])
def test_infinite_binary_logits_give_each_frameworks_nan_or_inf(tmp_path, framework, want):
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from xentcli.cli import app

    np.save(tmp_path / "z.npy", np.array([INF, -INF, INF, -INF, 0, 3], np.float32))
    np.save(tmp_path / "y.npy", np.array([1, 1, 0, 0, 0.3, 1], np.float32))
    result = CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--like", framework,
                                      "--json", "-o", str(tmp_path / "rows.parquet")])
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    got = pq.read_table(tmp_path / "rows.parquet").column("loss").to_numpy(zero_copy_only=False)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_keras_torch_backend_ignores_minus_100_and_raises_on_other_negative_labels(tmp_path):
    """Keras 3.15.1's PyTorch backend calls F.cross_entropy (ignore_index −100): labels [−100, 1] give
    [0, 0.974957]; [−1, 1] raise IndexError: Target -1 is out of bounds (recorded once)."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    np.save(tmp_path / "z.npy", np.array([[1, 2, 3], [0.5, 0.2, -1]], np.float32))
    for labels, errors, loss in (([-100, 1], [], 0.974957 / 2), ([-1, 1], ["IndexError: Target -1 is out of bounds."], None)):
        np.save(tmp_path / "y.npy", np.array(labels))
        result = CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--like", "keras-torch",
                                          "--json", "--ignore-index", "none"])
        assert result.exit_code == 0, result.stderr
        like = json.loads(result.stdout)["like"]
        assert like["errors"] == errors
        if loss is not None:
            assert like["loss"] == pytest.approx(loss, rel=1e-6)


@pytest.mark.parametrize("scores, targets, which", [
    # PyTorch 2.13 F.binary_cross_entropy on these (recorded once): its element loop raises at the first
    # bad element, checking the input before the target
    ([0.3, 1.5], [1.0, 0.0], "input"),
    ([0.3, 0.5], [1.5, 0.0], "target"),
    ([1.5, 0.5], [1.5, 0.0], "input"),
    ([-0.5, 0.5], [0.5, -1.0], "input"),
    ([0.3, 0.6, 1.5, 0.2], [1.5, 1.0, 0.0, 0.0], "target"),
])
def test_torch_binary_cross_entropy_names_the_first_bad_element_in_any_chunk(tmp_path, scores, targets, which):
    from typer.testing import CliRunner

    from xentcli.cli import app

    np.save(tmp_path / "p.npy", np.array(scores, np.float32))
    np.save(tmp_path / "t.npy", np.array(targets, np.float32))
    for rows in (1, len(scores)):
        result = CliRunner().invoke(app, ["score", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "t.npy"), "--input", "probs",
                                          "--like", "torch", "--chunk-rows", str(rows), "--json"])
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["like"]["errors"] == [f"RuntimeError: all elements of {which} should be between 0 and 1"]


# Hostile rows and what each framework returns on them, reduction none, recorded once (PyTorch 2.13,
# TensorFlow 2.21 with Keras 3.15.1 on its TensorFlow, JAX and PyTorch backends, optax 0.2.8 on jax
# 0.10.2, scikit-learn 1.9.1; probabilities: F.cross_entropy, tf.nn and optax on log p, Keras'
# (Sparse)CategoricalCrossentropy and BinaryCrossentropy on p, log_loss(y, p, labels=range(C))). A
# string is the error the framework raised.
HOSTILE = [
    # a logit spread beyond float32 (or float64): z − max is −inf there, 0·(−inf) under a target of 0 NaN
    ("float32", "logits", [[0.0, 3e38, -3e38]], [[0.0, 1.0, 0.0]], [], {
        "torch": [NAN], "tf": [NAN], "optax": [NAN], "keras": [NAN], "keras-jax": [NAN], "keras-torch": [NAN],
        "sklearn": "ValueError: The object was not fitted with multilabel input."}),
    ("float32", "logits", [[0.0, 3e38, -3e38]], [1], [], {"torch": [0.0], "tf": [0.0], "optax": [0.0], "keras": [0.0],
                                                         "keras-jax": [NAN], "keras-torch": [0.0]}),
    ("float64", "logits", [[0.0, 1e308, -1e308]], [[0.0, 1.0, 0.0]], [], {"torch": [NAN], "tf": [NAN], "optax": [NAN], "keras": [NAN]}),
    # a +inf logit under a class weight of 0, dense targets
    ("float32", "logits", [[0.0, INF]], [[1.0, 0.0]], ["--class-weights", "0,1"], {"torch": [NAN], "keras": [NAN], "optax": [NAN]}),
    ("float32", "logits", [[0.0, INF]], [0], ["--class-weights", "0,1"], {"torch": [NAN], "keras": [NAN], "optax": [INF]}),
    # optax smooths the zero one-hot of a label out of range
    ("float64", "logits", [[0.0, 1.0, 2.0]], [-100], ["--label-smoothing", "0.1"],
     {"optax": [0.140760596444438], "keras-jax": [0.0], "keras-torch": [0.0], "torch": [0.0]}),
    ("float32", "logits", [[0.0, 1.0, 2.0]], [3], ["--label-smoothing", "0.1"], {"optax": [0.140760600566864], "keras-jax": [0.0],
                                                                               "torch": "IndexError: Target 3 is out of bounds."}),
    # a negative probability: Keras divides by the sum, then clips; the others take its log
    ("float32", "probs", [[0.5, -0.1, 0.6]], [1], [], {"keras": [16.21340560913086], "keras-jax": [16.11809539794922],
                                                      "keras-torch": [16.11809539794922], "torch": [NAN], "tf": [NAN], "optax": [NAN]}),
    ("float32", "probs", [[0.5, -0.1, 0.6]], [[0.0, 1.0, 0.0]], [], {"keras": [16.11809539794922], "keras-jax": [16.11809539794922],
                                                                    "torch": [NAN]}),
    ("float32", "probs", [[0.5, -0.1, 0.6]], [2], [], {"keras": [0.606135904788971], "keras-jax": [0.5108255743980408], "optax": [NAN]}),
    # a zero probability under a target of 0: log 0 = −inf, times 0
    ("float32", "probs", [[0.0, 1.0]], [[0.0, 1.0]], [], {"torch": [NAN], "tf": [NAN], "optax": [NAN]}),
    # optax wraps a negative label, on log p too
    ("float32", "probs", [[0.2, 0.3, 0.5]], [-1], ["--ignore-index", "none"], {"optax": [0.6931472]}),
    # scikit-learn takes class labels only
    ("float64", "logits", [[0.0, 1.0]], [[0.3, 0.7]], [], {"sklearn": "TypeError: unhashable type: 'numpy.ndarray'",
                                                        "torch": [0.6132616875182229]}),
    # PyTorch multiplies every class's log-probability by its class weight: 0·(−inf) (a second review's finds)
    ("float32", "logits", [[0.0, -INF]], [[0.5, 0.5]], ["--class-weights", "1,0"], {"torch": [NAN]}),
    ("float32", "logits", [[0.0, -INF]], [0], ["--class-weights", "1,0", "--label-smoothing", "0.1"], {"torch": [NAN]}),
    ("float32", "logits", [[0.0, -INF]], [0], ["--class-weights", "1,0"], {"torch": [0.0]}),
    # Keras/JAX one-hots a label out of range to zeros, and 0·NaN is NaN
    ("float32", "logits", [[0.0, NAN]], [2], [], {"keras-jax": [NAN]}),
    # tf.nn has no ignore index: label 3 is a class, and a row holding +inf is NaN
    ("float32", "logits", [[0.0, INF, 0.0, 0.0]], [3], ["--ignore-index", "3"], {"tf": [NAN]}),
    # Keras' PyTorch backend calls F.binary_cross_entropy on the clipped probabilities, which checks them
    ("float32", "probs", [NAN, 0.5], [1.0, 1.0], [], {"keras-torch": "RuntimeError: all elements of input should be between 0 and 1",
                                                     "keras": [NAN, 0.6931471824645996]}),
    ("float32", "probs", [0.5], [2.0], [], {"keras-torch": "RuntimeError: all elements of target should be between 0 and 1",
                                           "keras-jax": [0.6931471824645996]}),
]


@pytest.mark.parametrize("dtype, kind, scores, targets, options, want", HOSTILE)
def test_hostile_rows_give_what_each_framework_gives(tmp_path, dtype, kind, scores, targets, options, want):
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from xentcli.cli import app

    np.save(tmp_path / "z.npy", np.array(scores, dtype))
    dense = isinstance(targets[0], list) or np.ndim(scores) == 1
    np.save(tmp_path / "y.npy", np.array(targets, np.float32 if dense else np.int64))
    for framework, expected in want.items():
        result = CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--input", kind,
                                          "--like", framework, "--json", "-o", str(tmp_path / "rows.parquet"), "--force", *options])
        assert result.exit_code == 0 and result.stderr == "", (framework, result.stderr)
        like = json.loads(result.stdout)["like"]
        if isinstance(expected, str):
            assert like["errors"] == [expected], framework
        else:
            assert like["errors"] == [], framework
            got = pq.read_table(tmp_path / "rows.parquet").column("loss").to_numpy(zero_copy_only=False)
            np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=framework)


def test_log_loss_on_dense_targets_raises_what_the_whole_dump_makes_it_raise(tmp_path):
    """scikit-learn 1.9.1, log_loss(T, P, labels=[0, 1]) (recorded once): rows of 0/1 raise "ValueError:
    The object was not fitted with multilabel input.", a soft row anywhere "TypeError: unhashable type:
    'numpy.ndarray'" — the same error whichever chunk holds the soft row."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    np.save(tmp_path / "z.npy", np.zeros((4, 2)))
    for targets, want in (([[0, 1], [1, 0], [0.3, 0.7], [1, 0]], "TypeError: unhashable type: 'numpy.ndarray'"),
                          ([[0, 1], [1, 0], [0, 1], [1, 0]], "ValueError: The object was not fitted with multilabel input.")):
        np.save(tmp_path / "t.npy", np.array(targets, np.float32))
        for rows in (1, 2, 4):
            result = CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "t.npy"), "--like", "sklearn",
                                              "--chunk-rows", str(rows), "--json"])
            assert result.exit_code == 0 and json.loads(result.stdout)["like"]["errors"] == [want]


def test_float16_scores_overflow_and_clip_as_the_frameworks_do_in_float16(tmp_path):
    """PyTorch 2.13, tf.nn and optax compute on float16 scores in float16: logits of ±60000 give a
    loss of 120000, inf there (F.cross_entropy: [inf, 0.8545], mean inf; recorded once); Keras casts
    to float32 (finite). scikit-learn 1.9.1's log_loss clips float16 probabilities at float16's
    epsilon: [[0, 1], [0.25, 0.75]] with labels [1, 1] gives rows [0.00097752, 0.28760], mean 0.144287."""
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from xentcli.cli import app

    def like(framework, *extra):
        result = CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--like", framework,
                                          "--json", "-o", str(tmp_path / "rows.parquet"), "--force", *extra])
        assert result.exit_code == 0 and result.stderr == "", result.stderr
        return json.loads(result.stdout)["like"], pq.read_table(tmp_path / "rows.parquet").column("loss").to_numpy()

    np.save(tmp_path / "z.npy", np.array([[-60000.0, 60000.0], [0.5, 0.2]], np.float16))
    np.save(tmp_path / "y.npy", np.array([0, 1]))
    for framework in ("torch", "tf", "optax"):
        summary, rows = like(framework)
        assert rows[0] == INF and rows[1] == pytest.approx(0.8545, rel=1e-3) and summary["loss"] is None  # JSON: inf is null
    summary, rows = like("keras")
    assert rows[0] == 120000.0 and summary["loss"] == pytest.approx(60000.427, rel=1e-6)
    np.save(tmp_path / "z.npy", np.array([[0.0, 1.0], [0.25, 0.75]], np.float16))
    np.save(tmp_path / "y.npy", np.array([1, 1]))
    summary, rows = like("sklearn", "--input", "probs")
    np.testing.assert_allclose(rows, [0.00097752, 0.28760], rtol=1e-4)
    assert summary["loss"] == pytest.approx(0.144287, rel=1e-5)
    # a binary head of float16 probabilities (found in review: clipped at float32's eps, 8.0604):
    # log_loss([1, 0, 1, 0], float16 [0, 1, 1, 0.3]) = 3.5546875 (scikit-learn 1.9.1, its float16 mean)
    np.save(tmp_path / "z.npy", np.array([0.0, 1.0, 1.0, 0.3], np.float16))
    np.save(tmp_path / "y.npy", np.array([1, 0, 1, 0]))
    summary, rows = like("sklearn", "--input", "probs")
    assert summary["loss"] == pytest.approx(3.5546875, rel=1e-3)  # float16's digits: each term is float16's


def _chunks_for_the_plain_terms():
    """Chunks of every kind the plain-chunk terms must decide on: plain ones (float32, float64), and
    ones each condition makes not plain (a label out of range or equal to an ignore index, a weight,
    smoothing, a loss beyond float32, a NaN, float16 storage, probabilities)."""
    rng = np.random.default_rng(29)
    z = (rng.standard_normal((500, 6)) * 3).astype(np.float32)
    y = rng.integers(0, 6, 500)
    plain = LossOptions(compare=True)
    yield "plain float32", z, y, plain, None, None
    yield "plain float64", z.astype(np.float64), y, plain, None, None
    yield "ignore index 2 present", z, y, LossOptions(compare=True, ignore_index=2, ignore_explicit=True), None, None
    yield "ignore index 7 absent", z, y, LossOptions(compare=True, ignore_index=7, ignore_explicit=True), None, None
    yield "torch's -100 present", z, np.where(np.arange(500) == 9, -100, y), plain, None, None
    yield "label out of range", z, np.where(np.arange(500) == 9, 6, y), plain, None, None
    yield "sample weights", z, y, plain, rng.random(500), None
    yield "class weights", z, y, LossOptions(compare=True, class_weights=(1, 2, 1, 1, 1, 3)), None, None
    yield "smoothing", z, y, LossOptions(compare=True, label_smoothing=0.1), None, None
    big = z.astype(np.float64)
    big[3] = [3e38, -3e38, 0, 0, 0, 0]  # a loss of ~6e38: beyond float32
    yield "loss beyond float32", big, np.where(np.arange(500) == 3, 1, y), plain, None, None
    nan = z.copy()
    nan[4, 2] = np.nan
    yield "a NaN logit", nan, y, plain, None, None
    yield "stored as float16", z.astype(np.float16).astype(np.float32), y, plain, None, "float16"


@pytest.mark.parametrize("framework", ["torch", "tf", "keras", "keras-torch", "keras-jax", "optax"])
def test_plain_chunk_terms_are_the_rules_terms(monkeypatch, framework):
    """frameworks._plain_terms (the chunk's loss and its one sum, without the rules' passes) gives
    every framework's terms exactly as its rules compute them — values bit for bit, sums, counts,
    notes, errors, the float32 flag — on plain chunks, and leaves every other chunk to the rules."""
    from xentcli import frameworks

    for name, scores, labels, options, weights, stored in _chunks_for_the_plain_terms():
        def terms():
            stats = sample_stats(scores, "logits", labels=labels, detail=False,
                                 class_vectors=ChunkContext(scores, "logits", labels, None, weights, options).class_vectors())
            ctx = ChunkContext(scores, "logits", labels, None, weights, options, stored_dtype=stored)
            with np.errstate(all="ignore"):
                return framework_terms(framework, stats, ctx)

        fast = terms()
        monkeypatch.setattr(frameworks, "_plain_terms", lambda *args: None)
        rules = terms()
        monkeypatch.undo()
        assert np.array_equal(fast.values.view(np.int64), rules.values.view(np.int64)), name
        assert repr((fast.num, fast.den, fast.errors, fast.error_rows, fast.notes, fast.float32, fast.float16)) == \
               repr((rules.num, rules.den, rules.errors, rules.error_rows, rules.notes, rules.float32, rules.float16)), name  # repr: NaN == NaN


def test_plain_chunk_terms_are_taken_where_they_apply(monkeypatch):
    """The shortcut is taken where it can be (else the test above compares the rules with themselves)."""
    from xentcli import frameworks

    taken = []
    real = frameworks._plain_terms
    monkeypatch.setattr(frameworks, "_plain_terms", lambda *args: taken.append(real(*args) is not None) or real(*args))
    for name, scores, labels, options, weights, stored in _chunks_for_the_plain_terms():
        taken.clear()
        ctx = ChunkContext(scores, "logits", labels, None, weights, options, stored_dtype=stored)
        stats = sample_stats(scores, "logits", labels=labels, detail=False, class_vectors=ctx.class_vectors())
        with np.errstate(all="ignore"):
            for framework in ("torch", "tf", "keras"):
                framework_terms(framework, stats, ctx)
        expected = {"plain float32": [True] * 3, "plain float64": [True, True, False],
                    "ignore index 2 present": [False, False, False], "ignore index 7 absent": [True, False, True]}
        assert taken == expected.get(name, [False] * 3), name


@pytest.mark.parametrize("classes", [7, 33, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_copy_of_the_label_score_is_exact(dtype, classes):
    """sample_stats(true_scores=True): the C kernel's score_true is z[i, y] itself (float64 of the
    stored value) on both of its row loops (≤ 32 classes in lanes, wider rows one by one), on rows it
    leaves to numpy (a NaN, ±inf) too; what optax's loss then gives is the gathered one's, bit for bit."""
    from tests.native_paths import require_c_extension
    from xentcli.kernels import naive_logsumexp_from

    require_c_extension()
    rng = np.random.default_rng(30)
    z = (rng.standard_normal((700, classes)) * 30).astype(dtype)
    z[5, 1], z[6, 0], z[7, 2] = np.nan, np.inf, -np.inf
    y = rng.integers(0, classes, 700)
    stats = sample_stats(z, "logits", labels=y, detail=False, true_scores=True)
    assert np.array_equal(stats.score_true, z[np.arange(700), y].astype(np.float64), equal_nan=True)
    with np.errstate(all="ignore"):
        fused = naive_logsumexp_from(z, y, stats.score_max, stats.log_norm, stats.score_true)
        gathered = naive_logsumexp_from(z, y, stats.score_max, stats.log_norm)
    assert np.array_equal(fused, gathered, equal_nan=True)


def test_pytorch_on_probabilities_with_a_zero_weight_and_a_floating_target_ignore_index(tmp_path):
    """Found in review. Recorded from PyTorch 2.13 (CPU, float64):
    F.cross_entropy(log p, y, weight=[1, 1, 0], label_smoothing=0.1, reduction='none') with
    p = [[.5, .5, 0], [.2, .3, .5]], y = [0, 2] is [nan, 0.09378035722533455] (0·log 0 in the
    smoothing term): xent said 0.7638; the same with one-hot targets is NaN too. And
    F.cross_entropy(z, soft targets, ignore_index=2) raises "RuntimeError: ignore_index is not
    supported for floating point target" (a negative ignore_index, the default −100 included, does
    not): xent reported 1.3295."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    np.savez(tmp_path / "sparse.npz", probs=p, labels=np.array([0, 2]))
    np.savez(tmp_path / "dense.npz", probs=p, targets=np.array([[1.0, 0, 0], [0, 0, 1]]))
    for name in ("sparse", "dense"):
        out = tmp_path / f"{name}.parquet"
        result = CliRunner().invoke(app, ["score", str(tmp_path / f"{name}.npz"), "--like", "torch", "--label-smoothing", "0.1",
                                          "--class-weights", "1,1,0", "--json", "-o", str(out)])
        like = json.loads(result.stdout)["like"]
        assert like["loss"] is None and like["sum"] is None, name
        rows = pq.read_table(out).column("loss").to_pylist()
        assert rows[0] is None and rows[1] == pytest.approx(0.09378035722533455, rel=1e-12), (name, rows)
    np.savez(tmp_path / "soft.npz", logits=np.array([[1.0, 2, 3], [0, 1, 0]]), targets=np.array([[0.2, 0.3, 0.5], [1, 0, 0]]))
    run = lambda *extra: json.loads(CliRunner().invoke(app, ["score", str(tmp_path / "soft.npz"), "--like", "torch", "--json",  # noqa: E731
                                                             *extra]).stdout)["like"]
    assert run("--ignore-index", "2")["errors"] == ["RuntimeError: ignore_index is not supported for floating point target"]
    assert run()["errors"] == [] and run("--ignore-index", "-1")["loss"] == pytest.approx(1.3295253391882158, rel=1e-12)


def test_sklearn_preset_names_nan_and_inf_as_log_loss_does(tmp_path):
    """scikit-learn 1.9.1 (recorded once): log_loss([1, 0, 1], float32 [0.5, nan, 0.2]) raises
    "ValueError: Input contains NaN."; with a float32 row [inf, 0.2] "ValueError: Input contains
    infinity or a value too large for dtype('float32')." (found in review: both were reported as
    'y_prob contains values lower than 0')."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    def errors(scores, labels):
        np.save(tmp_path / "p.npy", np.array(scores, np.float32))
        np.save(tmp_path / "y.npy", np.array(labels))
        result = CliRunner().invoke(app, ["score", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy"), "--input", "probs",
                                          "--like", "sklearn", "--json"])
        return json.loads(result.stdout)["like"]["errors"]

    assert errors([0.5, np.nan, 0.2], [1, 0, 1]) == ["ValueError: Input contains NaN."]
    assert errors([[0.5, 0.5], [np.inf, 0.2]], [1, 0]) == ["ValueError: Input contains infinity or a value too large for dtype('float32')."]


@pytest.mark.parametrize("head", ["binary", "softmax"])
def test_sklearn_preset_error_is_the_first_check_whatever_the_chunking(tmp_path, head):
    """log_loss raises the first of its checks that fails on the whole dump: NaN in the
    probabilities before the targets (scikit-learn 1.9.1, recorded once: log_loss([1.5, 0, 1],
    [0.5, nan, 0.2]) raises "ValueError: Input contains NaN."; log_loss([1.5, 0], [0.5, 0.2])
    "ValueError: Unknown label type: continuous"; labels=range(3) with a label 3 "y_true contains
    labels not in labels"). A bad target in the first chunk and a NaN score in a later one gave
    the target's error with the default chunks and the NaN's with --chunk-rows 1 (found in review,
    2026-12-03): every chunking now gives the NaN's."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    rng = np.random.default_rng(3)
    n = 3000
    if head == "binary":
        scores = rng.random(n).astype(np.float32)
        labels = rng.integers(0, 2, n).astype(np.float64)
        labels[5] = 1.5
        scores[2500] = np.nan
    else:
        scores = rng.dirichlet(np.ones(3), n).astype(np.float32)
        labels = rng.integers(0, 3, n)
        labels[5] = 3
        scores[2500] = np.nan
    np.save(tmp_path / "p.npy", scores)
    np.save(tmp_path / "y.npy", labels)
    for chunk in ([], ["--chunk-rows", "1"], ["--chunk-rows", "7"], ["--chunk-rows", "2600"]):
        result = CliRunner().invoke(app, ["score", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy"), "--input", "probs",
                                          "--like", "sklearn", "--json", *chunk])
        assert json.loads(result.stdout)["like"]["errors"] == ["ValueError: Input contains NaN."], (chunk, result.stdout[-400:])


def test_sklearn_preset_checks_the_probabilities_before_dense_targets(tmp_path):
    """scikit-learn 1.9.1 (recorded once): log_loss([[0, 1], [1, 0], [0, 1]], [[.2, .8], [nan, .5],
    [.3, .7]]) raises "ValueError: Input contains NaN.", and with 1.5 for the NaN "ValueError: y_prob
    contains values greater than 1: 1.5" — its checks of the probabilities come before the targets';
    xent said "The object was not fitted with multilabel input." for both (found in review,
    2026-12-03). The range check names the dump's largest value whatever the chunking."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    def errors(bad, *extra):
        probs = np.array([[0.2, 0.8], [bad, 0.5], [0.3, 0.7], [1.25, 0.1]])
        np.savez(tmp_path / "d.npz", probs=probs, targets=np.array([[0, 1], [1, 0], [0, 1], [1, 0]], float))
        result = CliRunner().invoke(app, ["score", str(tmp_path / "d.npz"), "--like", "sklearn", "--json", *extra])
        return json.loads(result.stdout)["like"]["errors"]

    for chunks in ([], ["--chunk-rows", "1"], ["--chunk-rows", "3"]):
        assert errors(np.nan, *chunks) == ["ValueError: Input contains NaN."], chunks
        assert errors(1.5, *chunks) == ["ValueError: y_prob contains values greater than 1: 1.5"], chunks


def test_a_framework_without_a_finite_number_is_explained_as_such(tmp_path):
    """Found in review: float64 logits of ±1e39 give Keras NaN (cast to float32 they are ±inf) while
    the others give the true 0.8807, and the explanation said Keras 'differs in the digits float32
    cannot hold'. It now says the number is not finite, and why."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    np.save(tmp_path / "z.npy", np.array([1e39, -1e39, 0.5, 3.0]))
    np.save(tmp_path / "y.npy", np.array([1, 0, 1, 0]))
    doc = json.loads(CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"),
                                              "--compare-frameworks", "--json"]).stdout)["compare"]
    keras = [f for f in doc["frameworks"] if f["framework"].startswith("keras")]
    assert keras and all(f["loss"] is None for f in keras)
    assert any("no finite number" in line for line in doc["explanations"])
    assert not any("digits float32 cannot hold" in line for line in doc["explanations"])


def test_epsilon_clips_xents_loss_and_keras_not_the_frameworks_that_clip_nothing(tmp_path):
    """Found in review: with --epsilon, --like torch, tf and optax reported the clipped loss (4.554435
    where each gives inf on a zero probability of the label; 1.259 at --epsilon 0.05 where PyTorch
    gives 1.772840). They clip nothing: their number is −mean log p_y (float64 here: PyTorch's
    float32 gave 1.772840142250061); Keras' rule is the one --epsilon applies."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    p = np.array([[.7, .2, .08, .02], [.5, .3, .19, .01], [.1, .1, .1, .7]], np.float32)
    y = np.array([0, 3, 3])
    zero = np.array([[.7, .2, .1, 0], [.5, .3, .2, 0], [.1, .1, .1, .7], [.25] * 4], np.float32)
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "zero.npy", zero)
    np.save(tmp_path / "yz.npy", np.array([0, 3, 3, 1]))
    want = -np.log(p[np.arange(3), y].astype(np.float64)).mean()  # 1.7728400...
    # xent's own loss at --epsilon 0.05, Keras' sparse rule: each entry clipped into [ε, 1 − ε], the row renormalised, −log p_y
    rows = np.clip(p.astype(np.float64), 0.05, 0.95)
    clipped = -np.log(rows[np.arange(3), y] / rows.sum(axis=1)).mean()  # (3.0349 + 0.3862 + 0.3567) / 3 = 1.25929
    runner = CliRunner()
    for framework in ("torch", "tf", "optax"):
        doc = json.loads(runner.invoke(app, ["score", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy"), "--input", "probs",
                                             "--like", framework, "--epsilon", "0.05", "--json"]).stdout)
        assert doc["like"]["loss"] == pytest.approx(want, rel=1e-6) and doc["summary"]["loss_mean"] == pytest.approx(clipped, rel=1e-6)
        result = runner.invoke(app, ["score", str(tmp_path / "zero.npy"), "--labels", str(tmp_path / "yz.npy"), "--input", "probs",
                                     "--like", framework, "--epsilon", "1e-7"])
        assert "inf" in result.stdout.split(framework if framework != "tf" else "tf.nn", 1)[-1], (framework, result.stdout)
    keras = json.loads(runner.invoke(app, ["score", str(tmp_path / "zero.npy"), "--labels", str(tmp_path / "yz.npy"), "--input", "probs",
                                           "--like", "keras", "--epsilon", "1e-7", "--json"]).stdout)["like"]["loss"]
    assert keras == pytest.approx(4.554435033503866, rel=1e-6)  # Keras clips at 1e-7: (2·log(1/0.7) + log(1e7) + log 4) / 4 = 4.5544


@pytest.mark.parametrize("ignore", [-100, 0])
def test_optax_label_smoothing_keeps_the_ignore_mask(tmp_path, ignore):
    """Found in review: --like optax with --label-smoothing dropped the ignore index's `where` mask
    (2.136 where optax 0.2.8 gives 2.0638880729675293, mean over valid 3.095831871032715; with
    --ignore-index 0, 2.2545 where it gives 1.2256306409835815). Reference in float64:
    softmax_cross_entropy(z, smooth_labels(one_hot(y), ε), where=y != ignore), as optax computes it."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    rng = np.random.default_rng(0)
    z = (rng.normal(size=(12, 4)) * 2).astype(np.float32)
    y = rng.integers(0, 4, 12)
    y[::3] = -100
    if ignore == 0:
        y = rng.integers(0, 4, 12)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    zz = z.astype(np.float64)
    log_p = zz - zz.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    one_hot = np.zeros((12, 4))
    inside = (y >= 0) & (y < 4)
    one_hot[np.flatnonzero(inside), y[inside]] = 1.0  # jax.nn.one_hot: zeros for a label out of range
    smoothed = one_hot * 0.9 + 0.1 / 4
    where = y != ignore
    values = np.where(where, -(smoothed * log_p).sum(axis=1), 0.0)
    doc = json.loads(CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--ignore-index",
                                              str(ignore), "--like", "optax", "--label-smoothing", "0.1", "--json"]).stdout)["like"]
    assert doc["per_reduction"]["mean"] == pytest.approx(values.mean(), rel=1e-6)
    assert doc["per_reduction"]["mean_over_valid"] == pytest.approx(values.sum() / where.sum(), rel=1e-6)


def test_optax_float16_mean_sums_in_float32(tmp_path):
    """Found in review: --like optax on float16 logits showed the mean as inf once the rows' sum
    passed float16's range (65520); jnp.mean sums float16 in float32 and rounds the mean to float16
    (optax 0.2.8 with JAX 0.10.2 gave 2.4140625 here). The mean is the float64 mean within float16's
    rounding; the sum (jnp.sum, in float16) stays inf."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    rng = np.random.default_rng(7)
    z = (rng.normal(size=(40000, 10)) * 0.5).astype(np.float16)
    y = rng.integers(0, 10, 40000)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    want = sparse_loss64(z.astype(np.float64), y).mean()  # ~2.414: a sum of ~96,560
    doc = json.loads(CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--like", "optax",
                                              "--json"]).stdout)["like"]
    assert doc["per_reduction"]["mean"] == pytest.approx(want, rel=2e-3) and doc["per_reduction"]["sum"] is None  # inf: null
