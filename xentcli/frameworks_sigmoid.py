"""What each framework's binary cross-entropy reports on a sigmoid head's chunk (binary: K = 1,
multi-label: K labels), per row and as additive sums per reduction — the sigmoid counterpart of
frameworks.py. Each rule is read from the framework's source and, for PyTorch, checked by running
it (tests/test_binary.py records the numbers):

- torch: `binary_cross_entropy_with_logits` (logits; `pos_weight`, `weight`) = (1 − t)·z +
  (1 + (W − 1)·t)·(log1p(exp(−|z|)) + max(−z, 0)), and `binary_cross_entropy` (probabilities) =
  −w·(t·max(log p, −100) + (1 − t)·max(log1p(−p), −100)), raising on p or t outside [0, 1]; in the
  scores' dtype; mean over all elements, sum. No ignore index: a target of −100 is a number there.
- keras: `BinaryCrossentropy(from_logits=…)` in float32 (Keras' floatx) whatever the dtype:
  probabilities clipped to [1e-7, 1 − 1e-7]; label smoothing t·(1 − ε) + ε/2; the per-sample value
  is the mean over the labels; sum_over_batch_size = Σ value·weight / rows.
- tf: `tf.nn.sigmoid_cross_entropy_with_logits` (elementwise; its plain mean), on logit(p) for
  probabilities. optax: `sigmoid_binary_cross_entropy` (−t·log_sigmoid(z) − (1 − t)·log_sigmoid(−z);
  its plain mean). Both in the scores' dtype.
- sklearn: `log_loss` (scikit-learn 1.9): probabilities (σ(z) in float64 for logits) clipped to
  [eps, 1 − eps], eps the machine epsilon of their dtype, −Σ_k xlogy(t_k, p_k) per row — for a
  binary head the two columns [1 − p, p], for a multi-label one only the positive terms (its
  multilabel-indicator targets are one-hot classes to it) — averaged over rows (sample weights
  applied); it raises on probabilities outside [0, 1] and on targets that are not class labels.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from xentcli.config import KERAS_BACKENDS, KERAS_EPSILON, LossOptions
from xentcli.frameworks import sklearn_probability_error
from xentcli.loss import RowTerms, log1mexp, row_sum


def _softplus(x: npt.NDArray) -> npt.NDArray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _with_logits(z: npt.NDArray, t: npt.NDArray, form: str, pos_weight: npt.NDArray | float = 1) -> npt.NDArray:
    """Binary cross-entropy on logits as each framework writes it (they differ at ±inf: 0·inf):
    tf.nn.sigmoid_cross_entropy_with_logits, max(z, 0) − z·t + log1p(exp(−|z|)); PyTorch's
    binary_cross_entropy_with_logits, (1 − t)·z + (1 + (W − 1)·t)·(log1p(exp(−|z|)) + max(−z, 0));
    optax's (and Keras' JAX backend's) −t·log_sigmoid(z) − (1 − t)·log_sigmoid(−z)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if form == "tf":
            return np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        if form == "torch":
            return (1 - t) * z + (1 + (pos_weight - 1) * t) * (np.log1p(np.exp(-np.abs(z))) + np.maximum(-z, 0))
        return t * _softplus(-z) + (1 - t) * _softplus(z)  # log_sigmoid(z) = −softplus(−z)


def _logits(x: npt.NDArray, kind: str) -> npt.NDArray:
    """The scores as logits (probabilities and log-probabilities: logit(p)), in their dtype."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "logits":
            return x
        if kind == "probs":
            return np.log(x) - np.log1p(-x)
        return x - log1mexp(x)


def _probabilities(x: npt.NDArray, kind: str) -> npt.NDArray:
    with np.errstate(over="ignore", invalid="ignore"):
        if kind == "logits":
            return 1.0 / (1.0 + np.exp(-x))
        return x if kind == "probs" else np.exp(x)


def _elementwise(values: npt.NDArray[np.float64], n: int, k: int, terms: RowTerms) -> RowTerms:
    """A framework that reduces over all elements: its per-row value is the row's mean; the rows
    it would reject (NaN: an error) are left out of its sums, as for a softmax."""
    terms.values = values.mean(axis=1)
    rejected = np.isnan(terms.values) if terms.errors else np.zeros(n, bool)
    total = float(values[~rejected].sum())
    terms.num = {"mean": total, "sum": total}
    terms.den = {"mean": float((n - int(rejected.sum())) * k), "sum": None}
    return terms


def _no_ignore_index(t: npt.NDArray, options: LossOptions, terms: RowTerms) -> None:
    """The frameworks' binary cross-entropy has no ignore index: say so where targets hold it."""
    if options.ignore_index is not None and (t == options.ignore_index).any():
        terms.notes.append(f"binary cross-entropy has no ignore index: targets {options.ignore_index} are scored as numbers")


def _torch(x: npt.NDArray, kind: str, t: npt.NDArray, options: LossOptions, weights: npt.NDArray | None) -> RowTerms:
    n, k = x.shape
    terms = RowTerms(np.empty(n))
    if options.label_smoothing:
        terms.notes.append("BCEWithLogitsLoss has no label smoothing: it is not applied")
    if weights is not None:
        terms.notes.append("BCEWithLogitsLoss takes no per-sample weights here: they are not applied")
    _no_ignore_index(t, options, terms)
    target = t.astype(x.dtype)
    w = None if options.class_weights is None else np.asarray(options.class_weights, x.dtype)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if kind == "probs":  # F.binary_cross_entropy: the logs clamped at −100
            if options.pos_weight is not None:
                terms.notes.append("BCELoss (probabilities) has no pos_weight: it is not applied")
            outside = _torch_bce_refuses(x, target, terms)
            values = -(target * np.maximum(np.log(x), -100) + (1 - target) * np.maximum(np.log1p(-x), -100))
            values[outside] = np.nan
        else:  # F.binary_cross_entropy_with_logits (log-probabilities as their logits)
            z = _logits(x, kind)
            pw = 1 if options.pos_weight is None else np.asarray(options.pos_weight, x.dtype)
            values = _with_logits(z, target, "torch", pw)
        if w is not None:
            values = values * w
    return _elementwise(values.astype(np.float64), n, k, terms)


def _torch_bce_refuses(p: npt.NDArray, target: npt.NDArray, terms: RowTerms) -> npt.NDArray[np.bool_]:
    """F.binary_cross_entropy's checks: the elements whose probability or target is outside [0, 1]
    (NaN included), and its error — its element loop raises at the first of them, checking the
    input before the target (PyTorch 2.13) — in `terms`."""
    with np.errstate(invalid="ignore"):
        bad_input = ~((p >= 0) & (p <= 1))
        outside = bad_input | ~((target >= 0) & (target <= 1))
    if outside.any():
        first = np.flatnonzero(outside.ravel())[0]
        terms.errors.append(f"RuntimeError: all elements of {'input' if bad_input.ravel()[first] else 'target'} should be between 0 and 1")
        terms.error_rows = int(outside.any(axis=1).sum())
    return outside


def _keras(x: npt.NDArray, kind: str, t: npt.NDArray, options: LossOptions, weights: npt.NDArray | None, backend: str) -> RowTerms:
    n, k = x.shape
    terms = RowTerms(np.empty(n))
    if options.pos_weight is not None or options.class_weights is not None:
        terms.notes.append("BinaryCrossentropy takes no pos_weight or per-label weights: they are not applied")
    _no_ignore_index(t, options, terms)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a float64 beyond float32's range is ±inf there
        x32, target = x.astype(np.float32), t.astype(np.float32)
        eps = options.label_smoothing
        if eps:
            target = target * np.float32(1 - eps) + np.float32(0.5 * eps)
        if kind == "logits":  # keras/src/backend/<backend>/nn.py: binary_crossentropy(from_logits=True), in float32
            values = _with_logits(x32, target, {"tensorflow": "tf", "jax": "optax", "torch": "torch"}[backend])
        else:
            eps = options.epsilon or KERAS_EPSILON
            p = np.clip(x32 if kind == "probs" else np.exp(x32), np.float32(eps), np.float32(1 - eps))
            values = -(target * np.log(p) + (1 - target) * np.log(1 - p))
            if backend == "torch":  # its torch backend: F.binary_cross_entropy of the clipped p, which checks p and t
                values[_torch_bce_refuses(p, target, terms)] = np.nan
    per_sample = values.mean(axis=1, dtype=np.float32).astype(np.float64)
    weight = np.ones(n) if weights is None else weights.astype(np.float64)
    weighted = per_sample * weight if weights is not None else per_sample
    terms.values = weighted
    used = ~np.isnan(weighted) if terms.errors else None  # the rows it would refuse are left out, as for a softmax
    total = row_sum(weighted, used)
    terms.num = {"sum": total, "sum_over_batch_size": total, "mean_with_sample_weight": total}
    terms.den = {"sum": None, "sum_over_batch_size": float(n if used is None else used.sum()), "mean_with_sample_weight": row_sum(weight, used)}
    return terms


def _tf_optax(framework: str, x: npt.NDArray, kind: str, t: npt.NDArray, options: LossOptions, weights: npt.NDArray | None) -> RowTerms:
    n, k = x.shape
    terms = RowTerms(np.empty(n))
    if options.label_smoothing or options.pos_weight is not None or options.class_weights is not None or weights is not None:
        terms.notes.append(f"{'tf.nn.sigmoid_cross_entropy_with_logits' if framework == 'tf' else 'optax.sigmoid_binary_cross_entropy'} "
                           "takes no weights or label smoothing: not applied")
    if kind != "logits":
        terms.notes.append("it takes logits: scored on logit(p)")
    _no_ignore_index(t, options, terms)
    z, target = _logits(x, kind), t.astype(x.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        values = _with_logits(z, target, framework)
    return _elementwise(values.astype(np.float64), n, k, terms)


def _sklearn(x: npt.NDArray, kind: str, t: npt.NDArray, options: LossOptions, weights: npt.NDArray | None) -> RowTerms:
    n, k = x.shape
    terms = RowTerms(np.empty(n))
    p = _probabilities(x.astype(np.float64) if kind != "probs" else x, kind)
    eps = np.finfo(p.dtype).eps
    if options.label_smoothing or options.pos_weight is not None or options.class_weights is not None:
        terms.notes.append("log_loss takes no label smoothing or class weights: not applied")
    bad_p = ~((p >= 0) & (p <= 1))
    bad_t = ~np.isin(t, (0.0, 1.0))
    if bad_p.any():
        terms.errors.append(sklearn_probability_error(p))
    elif bad_t.any():
        # scikit-learn 1.9.1's words (log_loss with soft targets: [0.3, 1] binary, [[1, 0.3], [0, 1]] multi-label)
        terms.errors.append("ValueError: Unknown label type: continuous" if k == 1
                            else "ValueError: Multioutput target data is not supported with label binarization")
    terms.error_rows = int((bad_p | bad_t).any(axis=1).sum())
    clipped = np.clip(p, eps, 1 - eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        if k == 1:  # the columns [1 − p, p]
            values = -(np.where(t == 1, np.log(clipped), 0.0) + np.where(t == 0, np.log(np.clip(1 - p, eps, 1 - eps)), 0.0)).sum(axis=1)
        else:  # multilabel-indicator targets: −Σ_k t_k log p_k, the negative labels cost nothing
            values = -np.where(t == 1, np.log(clipped), 0.0).sum(axis=1)
    values = values.astype(np.float64)
    values[(bad_p | bad_t).any(axis=1)] = np.nan
    used = ~np.isnan(values)
    weight = np.ones(n) if weights is None else weights.astype(np.float64)
    terms.values = values
    terms.num = {"mean": row_sum(values * weight, used), "sum": row_sum(values * weight, used)}
    terms.den = {"mean": row_sum(weight, used), "sum": None}
    return terms


def sigmoid_terms(framework: str, raw: npt.NDArray, kind: str, targets: npt.NDArray, options: LossOptions,
                  weights: npt.NDArray | None, stored_dtype: str | None = None) -> RowTerms:
    """What `framework` reports on a sigmoid head's chunk: scores as stored (`stored_dtype`: float16
    arrives widened) and targets as numbers, [n] or [n, K]."""
    x = raw.reshape(len(raw), -1)
    keras = framework.startswith("keras")
    if stored_dtype == "float16" and not keras and (framework != "sklearn" or kind == "probs"):
        x = x.astype(np.float16)  # PyTorch, tf.nn and optax compute in float16; log_loss clips float16 probabilities at float16's eps
    t = np.asarray(targets, np.float64).reshape(x.shape)
    if framework == "sklearn":  # NumPy in float64 (or the probabilities' dtype): its sums are float64's
        return _sklearn(x, kind, t, options, weights)
    if framework == "torch":
        terms = _torch(x, kind, t, options, weights)
    elif framework.startswith("keras"):
        terms = _keras(x, kind, t, options, weights, KERAS_BACKENDS[framework])
    else:
        terms = _tf_optax(framework, x, kind, t, options, weights)
    # their sums are made in the dtype they compute in: past its range they are inf (FrameworkSummary.reductions)
    terms.float16 = x.dtype == np.float16 and not keras
    terms.float32 = keras or x.dtype == np.float32
    return terms
