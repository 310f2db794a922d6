"""What each framework would report on the same chunk (PyTorch, Keras on three backends, tf.nn,
optax): per-row values and additive sums per reduction. The rules were checked against numbers
recorded from TensorFlow 2.21, Keras 3.15, PyTorch 2.13 and optax 0.2.8 (tests/conformance)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcli.config import KERAS_BACKENDS, KERAS_EPSILON
from xentcli.kernels import SampleStats, naive_logsumexp_from, naive_logsumexp_loss, sample_stats
from xentcli.loss import FLOAT16_OVERFLOW, FLOAT32_OVERFLOW, ChunkContext, RowTerms, beyond_float32, class_of, ignored_rows, row_sum, weighted_smoothed, smoothed_loss

FRAMEWORK_NAMES = {
    "torch": "PyTorch F.cross_entropy",
    "keras": "Keras 3 (TensorFlow backend)",
    "keras-jax": "Keras 3 (JAX backend)",
    "keras-torch": "Keras 3 (PyTorch backend)",
    "tf": "tf.nn.*softmax_cross_entropy_with_logits",
    "optax": "optax softmax_cross_entropy*",
    "sklearn": "scikit-learn log_loss",
}
SIGMOID_NAMES = {
    "torch": "PyTorch F.binary_cross_entropy(_with_logits)",
    "keras": "Keras 3 BinaryCrossentropy (TensorFlow backend)",
    "keras-jax": "Keras 3 BinaryCrossentropy (JAX backend)",
    "keras-torch": "Keras 3 BinaryCrossentropy (PyTorch backend)",
    "tf": "tf.nn.sigmoid_cross_entropy_with_logits",
    "optax": "optax sigmoid_binary_cross_entropy",
    "sklearn": "scikit-learn log_loss",
}
SHORT_NAMES = {
    "torch": "PyTorch",
    "keras": "Keras (TF)",
    "keras-jax": "Keras (JAX)",
    "keras-torch": "Keras (torch)",
    "tf": "tf.nn",
    "optax": "optax",
    "sklearn": "sklearn",
}
# The reduction each framework applies by default (what its training loop prints).
DEFAULT_REDUCTION = {
    "torch": "mean",
    "keras": "sum_over_batch_size",
    "keras-jax": "sum_over_batch_size",
    "keras-torch": "sum_over_batch_size",
    "tf": "mean",
    "optax": "mean",
    "sklearn": "mean",
}


def _out_of_range(stats: SampleStats, considered: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    return considered & ~stats.label_ok


def _first_label(stats: SampleStats, rows: npt.NDArray[np.bool_]) -> int:
    return int(stats.label[np.flatnonzero(rows)[0]])


def _torch(stats: SampleStats, ctx: ChunkContext) -> RowTerms:
    options = ctx.options
    eps = options.label_smoothing
    values = weighted_smoothed(stats, ctx, eps).copy()
    n = values.size
    terms = RowTerms(values)
    if ctx.sample_weights is not None:
        terms.notes.append("F.cross_entropy takes no per-sample weights: they are not applied")
    if ctx.targets is not None:  # probability targets: the mean divides by the number of rows
        if options.ignore_index is not None and options.ignore_index >= 0:  # F.cross_entropy checks it (PyTorch 2.13)
            terms.errors.append("RuntimeError: ignore_index is not supported for floating point target")
            terms.error_rows = n
            values[:] = np.nan
        terms.num = {"mean": row_sum(values), "sum": row_sum(values)}
        terms.den = {"mean": float(n), "sum": None}
        return terms
    ignored = ignored_rows(stats, ctx, options.ignore_for("torch"))
    bad = _out_of_range(stats, ~ignored)
    if bad.any():
        label = _first_label(stats, bad)
        terms.errors.append(
            f"IndexError: Target {label} is out of bounds." if stats.label_is_int[bad].all()
            else "RuntimeError: class-index targets must be integers"
        )
        terms.error_rows = int(bad.sum())
    if ignored.any():
        values[ignored] = 0.0
    if bad.any():
        values[bad] = np.nan
    valid = stats.label_ok & ~ignored
    w = ctx.class_weights()
    total = row_sum(values, valid)
    terms.num = {"mean": total, "sum": total}
    terms.den = {"mean": float(np.count_nonzero(valid)) if w is None else row_sum(w[class_of(stats)], valid), "sum": None}
    return terms


def _keras(stats: SampleStats, ctx: ChunkContext, backend: str) -> RowTerms:
    """Keras 3 losses with reduction none, sum, sum_over_batch_size and mean_with_sample_weight
    (keras/src/losses/loss.py: a mask from ignore_class becomes part of the sample weight; the
    means use ops.divide_no_nan)."""
    options = ctx.options
    n = stats.loss.size
    notes = []
    if ctx.kind == "logits" and ctx.scores.dtype != np.float32:
        stats = _cast_to_floatx(stats, ctx)
    if ctx.kind == "probs":  # from_logits=False: normalise, clip to [ε, 1 − ε] (ε = --epsilon or 1e-7), log
        # keras/src/backend/tensorflow/nn.py: sparse_categorical_crossentropy clips the stored values
        # and log_softmax renormalises them; categorical_crossentropy (and the other backends)
        # normalises first, then clips. `--epsilon E` applies the same rule to the true loss.
        clip_first = backend == "tensorflow" and ctx.targets is None
        stats = sample_stats(
            ctx.scores, "probs", labels=ctx.labels, targets=ctx.targets, detail=False,
            class_vectors=ctx.class_vectors(), clip=options.epsilon or KERAS_EPSILON, clip_first=clip_first,
        )
    mask = None
    if ctx.targets is not None:  # CategoricalCrossentropy: label smoothing, no ignore_class
        ell = smoothed_loss(stats, options.label_smoothing, ctx.num_classes).copy()
        bad = np.zeros(n, dtype=bool)
    else:  # SparseCategoricalCrossentropy: ignore_class, no label smoothing
        if options.label_smoothing:
            notes.append("SparseCategoricalCrossentropy has no label_smoothing: it is not applied")
        ell = stats.loss.copy()
        ignore = options.ignore_for("keras")
        if ignore is not None:
            mask = ~ignored_rows(stats, ctx, ignore)
        bad = ~stats.label_ok if mask is None else mask & ~stats.label_ok
    terms = RowTerms(ell, notes=notes)
    used = np.ones(n, dtype=bool)
    # jax.nn.one_hot of a label outside [0, C) is all zeros: such rows cost 0; the torch backend calls
    # F.cross_entropy (Keras 3.15.1), whose default ignore_index −100 costs 0. The others raise.
    if backend == "jax":
        zero_rows = bad
    elif backend == "torch":
        zero_rows = bad & stats.label_is_int & (stats.label == -100)
    else:
        zero_rows = np.zeros(n, dtype=bool)
    ell[zero_rows] = 0.0
    bad = bad & ~zero_rows
    if bad.any():
        label = _first_label(stats, bad)
        terms.errors.append(
            f"InvalidArgumentError: Received a label value of {label} which is outside the valid range of [0, {ctx.num_classes})"
            if backend == "tensorflow" else f"IndexError: Target {label} is out of bounds."
        )
        terms.error_rows = int(bad.sum())
        used = ~bad
    weight = np.ones(n) if ctx.sample_weights is None else ctx.sample_weights.astype(np.float64)
    w = ctx.class_weights()
    if w is not None:  # model.fit(class_weight=…) becomes sample_weight = class_weight[y]
        weight = weight * w[class_of(stats)]
    weighted = ctx.sample_weights is not None or w is not None or mask is not None
    if mask is not None:
        ell[~mask] = 0.0
        weight = weight * mask
    with np.errstate(invalid="ignore"):  # 0·inf: a weight of 0 on an infinite loss is NaN there too
        values = ell * weight if weighted else ell
    values[~used] = np.nan
    total = row_sum(values, used)
    terms.values = values
    terms.num = {"sum": total, "sum_over_batch_size": total, "mean_with_sample_weight": total}
    terms.den = {
        "sum": None,
        "sum_over_batch_size": row_sum(mask.astype(np.float64), used) if mask is not None else float(used.sum()),
        "mean_with_sample_weight": row_sum(weight, used) if weighted else float(used.sum()),
    }
    return terms


def _cast_to_floatx(stats: SampleStats, ctx: ChunkContext) -> SampleStats:
    """Keras casts y_pred to its floatx, float32 (keras/src/losses/loss.py, Loss.__call__:
    ops.convert_to_tensor(y_pred, dtype=self.dtype)): a row holding a logit beyond float32's
    range scores as the ±inf it becomes there — a +inf gives NaN (inf − inf in the softmax), a −inf
    a zero probability — not as its float64 value. The other rows differ from float64 by rounding only."""
    over = beyond_float32(ctx.scores)
    if over is None:
        return stats
    rows = np.flatnonzero(over.any(axis=1))
    with np.errstate(over="ignore"):
        scores = ctx.scores[rows].astype(np.float32)
    again = sample_stats(scores, "logits", labels=None if ctx.labels is None else ctx.labels[rows],
                         targets=None if ctx.targets is None else ctx.targets[rows], detail=False, class_vectors=ctx.class_vectors())
    return stats.with_rows(rows, again)


def _tf(stats: SampleStats, ctx: ChunkContext) -> RowTerms:
    options = ctx.options
    values = stats.loss.copy()
    terms = RowTerms(values)
    if options.label_smoothing or options.class_weights or ctx.sample_weights is not None:
        terms.notes.append("tf.nn.*softmax_cross_entropy_with_logits takes no weights or label smoothing: not applied")
    if options.ignore_explicit:
        terms.notes.append(f"tf.nn has no ignore index: label {options.ignore_index} is a class there, or out of range")
    if ctx.targets is None:
        bad = ~stats.label_ok
        if bad.any():
            label = _first_label(stats, bad)
            terms.errors.append(
                f"InvalidArgumentError: Received a label value of {label} which is outside the valid range of [0, {ctx.num_classes})"
            )
            terms.error_rows = int(bad.sum())
            values[bad] = np.nan
        counted = ~bad
    else:
        counted = np.ones(values.size, dtype=bool)
    total = row_sum(values, counted)
    terms.num = {"mean": total, "sum": total}
    terms.den = {"mean": float(counted.sum()), "sum": None}
    return terms


def _optax(stats: SampleStats, ctx: ChunkContext) -> RowTerms:
    options = ctx.options
    n = stats.loss.size
    terms = RowTerms(np.empty(n))
    if options.class_weights or ctx.sample_weights is not None:
        terms.notes.append("optax losses take no weights: they are not applied")
    if ctx.targets is not None or options.label_smoothing:
        # softmax_cross_entropy(logits, smooth_labels(labels, ε)): −Σ t' log_softmax(z); a label out of
        # range one-hots to zeros (jax.nn.one_hot), which smoothing makes ε/C on every class
        values = smoothed_loss(stats, options.label_smoothing, ctx.num_classes).copy()
        if ctx.targets is None:
            zeros = stats.label_is_int & ~stats.label_ok
            if zeros.any():
                assert stats.lp_dot is not None
                values[zeros] = -(options.label_smoothing / ctx.num_classes) * stats.lp_dot[zeros, 0]
    else:
        # softmax_cross_entropy_with_integer_labels: logsumexp(z) − z[y] in the scores' dtype;
        # labels in [−C, 0) wrap to C + label, labels outside [−C, C) give NaN (take_along_axis fill)
        if not stats.label_is_int.all():
            terms.errors.append("TypeError: labels must be integers")
            terms.error_rows = int((~stats.label_is_int).sum())
        label = stats.label if stats.label_is_int.all() else np.where(stats.label_is_int, stats.label, ctx.num_classes)
        negative = label.size and int(label.min()) < 0
        wrapped = np.where((label < 0) & (label >= -ctx.num_classes), label + ctx.num_classes, label) if negative else label
        if ctx.kind != "logits":  # on log p: log Σp − log p_y, the label wrapped
            values = stats.loss.copy()
            turned = np.flatnonzero(wrapped != label) if negative else np.empty(0, np.int64)
            if turned.size and stats.log_norm is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    values[turned] = stats.log_norm[turned] - np.log(ctx.scores[turned, wrapped[turned]].astype(np.float64))
        elif stats.log_norm is not None and stats.score_max is not None:  # from the kernel's pass: no second exp
            # the kernel's score of each label, where the labels are its classes (none wrapped or replaced)
            z_true = stats.score_true if wrapped is stats.label else None
            values = naive_logsumexp_from(ctx.scores, wrapped, stats.score_max, stats.log_norm, z_true)
        else:
            values = naive_logsumexp_loss(ctx.scores, wrapped)
        if ctx.kind != "logits":
            values[~stats.label_ok & (wrapped == label)] = np.nan
        else:
            _jax_logsumexp_of_inf(values, ctx.scores, wrapped)
    # the ignore index as optax's `where` mask, with smoothed or dense targets too (found in review: it was dropped there,
    # 2.136 where optax gives 2.064)
    ignore = options.ignore_for("optax")
    where = None if ignore is None else ~ignored_rows(stats, ctx, ignore)
    if where is not None:
        values[~where] = 0.0
    terms.values = values
    total = row_sum(values)
    terms.num = {"mean": total, "sum": total}
    terms.den = {"mean": float(n), "sum": None}
    if where is not None:
        terms.num["mean_over_valid"] = total
        terms.den["mean_over_valid"] = float(where.sum())
    return terms


def framework_terms(framework: str, stats: SampleStats, ctx: ChunkContext) -> RowTerms:
    """What `framework` computes on this chunk (logits path: log-probabilities are valid logits)."""
    if framework == "sklearn":  # float64 whatever the scores; log-probabilities as exp(lp), not renormalised
        return _sklearn(ctx)
    if ctx.kind == "log-probs":
        stats = sample_stats(ctx.scores, "logits", ctx.labels, ctx.targets, detail=False, class_vectors=ctx.class_vectors())
        ctx = ChunkContext(ctx.scores, "logits", ctx.labels, ctx.targets, ctx.sample_weights, ctx.options, stored_dtype=ctx.stored_dtype)
    elif ctx.kind == "probs" and ctx.options.epsilon and not framework.startswith("keras"):
        # --epsilon clips xent's own loss by Keras' rule; PyTorch, tf.nn and optax clip nothing (found in review: they
        # reported the clipped loss, 4.55 where each gives inf)
        stats = sample_stats(ctx.scores, "probs", ctx.labels, ctx.targets, detail=False, class_vectors=ctx.class_vectors())
    plain = _plain_terms(framework, stats, ctx)
    if plain is not None:
        return plain
    if framework == "torch":
        terms = _torch(stats, ctx)
    elif framework.startswith("keras"):
        terms = _keras(stats, ctx, KERAS_BACKENDS[framework])
    elif framework == "tf":
        terms = _tf(stats, ctx)
    else:
        terms = _optax(stats, ctx)
    _nan_of_infinite_logits(terms, stats, ctx, framework)
    if ctx.stored_dtype == "float16" and not framework.startswith("keras"):  # PyTorch, tf.nn and optax compute in float16
        _overflow_as_float16(terms)
    elif framework.startswith("keras") or ctx.scores.dtype == np.float32:  # Keras computes in its floatx, float32
        _overflow_as_float32(terms, ctx.loss_beyond_float32(stats.loss))
        terms.float32 = True
    return terms


def _plain_terms(framework: str, stats: SampleStats, ctx: ChunkContext) -> RowTerms | None:
    """PyTorch, tf.nn and Keras (its TF and torch backends; float32 scores, Keras' floatx) on a plain
    chunk (ChunkContext.plain_total) whose labels hold no ignore index the framework applies: each
    reports xent's own loss row for row, so its terms are the chunk's loss and its one sum — what
    their rules above compute there (tested term for term), without their passes over the rows.
    None: the rules. optax's loss is its own (logsumexp rounded to the scores' dtype)."""
    keras = framework in ("keras", "keras-torch")
    if not (keras or framework in ("torch", "tf")) or (keras and ctx.scores.dtype != np.float32):
        return None
    options = ctx.options
    if framework == "tf" and options.ignore_explicit:  # its note that tf.nn has no ignore index
        return None
    total = ctx.plain_total(stats)
    if total is None:
        return None
    ignore = options.ignore_for(framework)
    if ignore is not None and 0 <= ignore < ctx.num_classes and bool((stats.label == ignore).any()):
        return None
    n = float(stats.loss.size)
    if keras:
        terms = RowTerms(stats.loss, {"sum": total, "sum_over_batch_size": total, "mean_with_sample_weight": total},
                         {"sum": None, "sum_over_batch_size": n, "mean_with_sample_weight": n})
    else:
        terms = RowTerms(stats.loss, {"mean": total, "sum": total}, {"mean": n, "sum": None})
    terms.float32 = keras or ctx.scores.dtype == np.float32
    return terms


# The frameworks that take cross-entropy as −Σ_c t_c·log_softmax(z)_c, a product per class (not a
# gather of the label's log-probability): a target of 0 on a logit of −inf is 0·(−inf) = NaN there.
# Dense targets everywhere but scikit-learn; sparse labels in Keras' JAX backend, which one-hots them
# first (keras/src/backend/jax/nn.py: sparse_categorical_crossentropy; its torch backend calls F.cross_entropy).
_ONE_HOT_SPARSE = ("keras-jax",)
# Whose label smoothing (t' = (1 − ε)·t + ε/C > 0 on every class) they apply: Keras' to dense targets only.
_SMOOTHS = {"torch": (True, True), "keras": (False, True), "keras-jax": (False, True), "keras-torch": (False, True),
            "tf": (False, False), "optax": (True, True)}  # (sparse, dense)


def _jax_logsumexp_of_inf(values: npt.NDArray[np.float64], scores: npt.NDArray, label: npt.NDArray[np.int64]) -> None:
    """jax.nn.logsumexp of a row holding +inf is +inf (it shifts by the largest logit only where
    that is finite): optax's logsumexp(z) − z[y] is then +inf where z[y] is finite, NaN where it is
    +inf (optax 0.2.8 with jax 0.10.2: [1, 2, inf] with label 0 gives inf), where the shifted
    logsumexp of the kernel's pass gives NaN."""
    if not np.isnan(values.sum()):  # the usual chunk: no NaN, one sum says so
        return
    rows = np.flatnonzero(np.isnan(values))
    if rows.size == 0:
        return
    at = label[rows]
    usable = (at >= 0) & (at < scores.shape[1])
    rows, at = rows[usable], at[usable]
    z = scores[rows]
    plus_inf = (z == np.inf).any(axis=1) & ~np.isnan(z).any(axis=1) & (z[np.arange(rows.size), at] < np.inf)
    values[rows[plus_inf]] = np.inf


def _nan_of_infinite_logits(terms: RowTerms, stats: SampleStats, ctx: ChunkContext, framework: str) -> None:
    """Where the frameworks' log-softmax is NaN and the true loss is not. It subtracts the row's
    largest logit: a row holding +inf is NaN there (inf − inf) whatever its label and weights —
    except optax's integer labels, logsumexp(z) − z[y], whose jax logsumexp is +inf (NaN only on
    the label: _jax_logsumexp_of_inf) — and a logit whose distance below the largest overflows the
    compute dtype (a −inf, or −3e38 beside 3e38 in float32) has log-probability −inf, which a
    target of 0 turns into 0·(−inf) = NaN in the frameworks that multiply (_ONE_HOT_SPARSE, dense
    targets). Keras computes in float32 (its floatx; it casts float64 scores first). Rows the
    framework leaves out or zeroes (an ignored row, an error) keep their value."""
    values = terms.values
    compute32 = framework.startswith("keras") or ctx.scores.dtype != np.float64
    limit = FLOAT32_OVERFLOW if compute32 else np.inf  # z_max − z at or beyond it is inf there
    if ctx.stored_dtype == "float16" and not framework.startswith("keras"):
        limit = FLOAT16_OVERFLOW
    sparse = ctx.targets is None
    ignored: list[npt.NDArray[np.bool_]] = []

    def kept(rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Those of `rows` the framework scores: not an error (NaN), not ignored (PyTorch's
        ignore_index, Keras' mask, optax's where: 0 there). Asked only of the rare rows in question."""
        keep = ~np.isnan(values[rows])
        if sparse:
            if not ignored:
                ignored.append(ignored_rows(stats, ctx, ctx.options.ignore_for(framework)))
            keep &= ~ignored[0][rows]
        return rows[keep]

    def extremes() -> tuple[npt.NDArray, npt.NDArray]:
        """Each row's largest and smallest score: the kernel's when it kept them."""
        if stats.score_max is not None and stats.score_min is not None:
            return stats.score_max, stats.score_min
        return ctx.scores.max(axis=1), ctx.scores.min(axis=1)

    nan = np.zeros(values.size, dtype=bool)
    smoothed = ctx.options.label_smoothing > 0 and _SMOOTHS[framework][0 if sparse else 1]
    # PyTorch multiplies each class's log-probability by its class weight (dense targets, smoothing): 0·(−inf) too
    w = ctx.class_weights() if framework == "torch" else None
    zero_weight = w is not None and bool((w == 0).any()) and (not sparse or smoothed)
    if ctx.kind == "probs":  # scored on log p (Keras clips them instead): a negative or +inf p is NaN there, a 0 is −inf
        if not framework.startswith("keras"):
            top, bottom = extremes()
            with np.errstate(invalid="ignore"):
                bad = (bottom < 0) | (top == np.inf)
                if not sparse and not smoothed:
                    bad |= ((ctx.scores == 0) & (ctx.targets == 0)).any(axis=1)
                if zero_weight:  # a zero probability on a class of weight 0
                    bad |= ((ctx.scores == 0) & (w == 0)[None, :]).any(axis=1)
            nan[kept(np.flatnonzero(bad))] = True
    elif not (framework == "optax" and sparse and not ctx.options.label_smoothing):
        # the true loss of a row holding +inf is inf or NaN (Keras' of a float64 logit beyond float32 inf); the usual
        # chunk has neither, which one sum each says without a pass of masks
        if not (math.isfinite(float(stats.loss.sum())) and math.isfinite(float(values.sum()))):
            rows = kept(np.flatnonzero(~np.isfinite(stats.loss) | ~np.isfinite(values)))
            nan[rows[(ctx.scores[rows].astype(np.float64) >= limit).any(axis=1)]] = True
    if ctx.kind == "logits" and (not sparse or framework in _ONE_HOT_SPARSE or zero_weight) and (not smoothed or zero_weight):
        top, bottom = extremes()
        with np.errstate(invalid="ignore", over="ignore"):
            spread = (top.astype(np.float64) - bottom) >= limit  # a spread that overflows, ±inf included
            if sparse and framework in _ONE_HOT_SPARSE:  # a NaN logit: 0·NaN is NaN even on a label's all-zero one-hot row
                spread |= np.isnan(top.astype(np.float64))
            rows = kept(np.flatnonzero(spread))
        if rows.size:
            z = ctx.scores[rows].astype(np.float64)
            with np.errstate(invalid="ignore", over="ignore"):
                minus_inf = (z.max(axis=1, keepdims=True) - z) >= limit  # log_softmax −inf (NaN where the largest is +inf)
            if sparse:  # one-hot: every class but a usable label's has target 0 (smoothed: none)
                ok = stats.label_ok[rows]
                zero = np.ones(minus_inf.shape, bool) if not smoothed else np.zeros(minus_inf.shape, bool)
                zero[np.flatnonzero(ok), stats.label[rows][ok]] = smoothed
            else:
                zero = ctx.targets[rows] == 0 if not smoothed else np.zeros(minus_inf.shape, bool)
            if zero_weight:
                zero |= (w == 0)[None, :]
            nan[rows[(minus_inf & zero).any(axis=1) | np.isnan(z).any(axis=1)]] = True
    if nan.any():
        values[nan] = np.nan
        terms.num = {key: math.nan for key in terms.num}  # their sums hold those rows


def _overflow_as_float16(terms: RowTerms) -> None:
    """A framework computing in float16 (PyTorch, tf.nn, optax on float16 scores): a row whose loss is
    at or beyond 65520 is inf there (logits of ±60000 give 120000), and so is any sum holding it or
    reaching that far (FrameworkSummary.float16)."""
    values = terms.values
    with np.errstate(invalid="ignore"):
        over = np.isfinite(values) & (np.abs(values) >= FLOAT16_OVERFLOW)
    if over.any():
        _overflowed(terms, over)
    terms.float16 = True


def _overflow_as_float32(terms: RowTerms, loss_over: npt.NDArray[np.bool_] | None) -> None:
    """A framework computing in float32: a row whose loss is beyond float32's range (`loss_over`)
    is inf there (logits of ±3.4e38 give 6.8e38: inf in PyTorch, whatever float64 makes of it), its
    weighted value ±inf, or NaN where its weight is 0 (0·inf); and so is every sum holding it."""
    values = terms.values
    over = beyond_float32(values)
    if loss_over is not None:
        over = (loss_over & np.isfinite(values)) if over is None else over | (loss_over & np.isfinite(values))
    if over is not None and over.any():
        _overflowed(terms, over)


def _overflowed(terms: RowTerms, over: npt.NDArray[np.bool_]) -> None:
    """The rows `over` overflow the framework's dtype: ±inf there (NaN where a weight of 0 made the
    value 0: 0·inf), and every sum holding them with them."""
    values = terms.values
    values[over] = np.where(values[over] == 0, np.nan, np.copysign(np.inf, values[over]))
    added = float(values[over].sum())
    terms.num = {key: value + added for key, value in terms.num.items()}


def sklearn_probability_error(p: npt.NDArray) -> str:
    """log_loss's error on probabilities outside [0, 1] (scikit-learn 1.9.1's words, recorded once):
    check_array's on NaN and ±inf first, then its own range check, which names the largest (the
    smallest) value: "y_prob contains values greater than 1: 1.5"."""
    if np.isnan(p).any():
        return "ValueError: Input contains NaN."
    if np.isinf(p).any():
        return f"ValueError: Input contains infinity or a value too large for dtype('{p.dtype}')."
    return f"ValueError: y_prob contains values greater than 1: {p.max()}" if (p > 1).any() else \
        f"ValueError: y_prob contains values lower than 0: {p.min()}"


def _sklearn(ctx: ChunkContext) -> RowTerms:
    """sklearn.metrics.log_loss(y, p, labels=range(C)) (scikit-learn 1.9): probabilities (softmax(z)
    in float64 for logits, as stored for probabilities) clipped to [eps, 1 − eps], eps the machine
    epsilon of their dtype, not renormalised; −Σ_c xlogy(t_c, p_c) per row, averaged (sample
    weights applied). It raises on probabilities outside [0, 1], on labels outside range(C), the
    ignore index included, and on dense targets (it takes class labels)."""
    options = ctx.options
    terms = RowTerms(np.empty(ctx.scores.shape[0]))
    if options.label_smoothing or options.class_weights:
        terms.notes.append("log_loss takes no label smoothing or class weights: not applied")
    if ctx.kind == "probs":  # as stored: float16 ones (read widened) clipped at float16's epsilon
        p = ctx.scores.astype(np.float16) if ctx.stored_dtype == "float16" else ctx.scores
    else:
        z = ctx.scores.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            shifted = z - z.max(axis=1, keepdims=True)
            p = np.exp(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))) if ctx.kind == "logits" else np.exp(z)
    eps = np.finfo(p.dtype).eps
    n, c = p.shape
    with np.errstate(invalid="ignore"):
        bad_p = ~((p >= 0) & (p <= 1)).all(axis=1)
    if ctx.targets is not None:  # it takes class labels: a 2-D y of 0/1 is a multilabel indicator to it, other rows unhashable
        t = ctx.targets.astype(np.float64)
        bad_t = np.ones(n, bool)
        if bad_p.any():  # its checks of the probabilities come first (the merge keeps the first of the checks)
            terms.errors.append(sklearn_probability_error(p))
        terms.errors.append("ValueError: The object was not fitted with multilabel input." if np.isin(t, (0.0, 1.0)).all()
                            else "TypeError: unhashable type: 'numpy.ndarray'")
    else:
        labels = np.asarray(ctx.labels)
        whole = labels.astype(np.float64) if labels.dtype.kind in "biuf" else np.full(n, np.nan)
        bad_t = ~((whole >= 0) & (whole < c) & (whole == np.round(whole)))
        t = np.zeros((n, c))
        t[np.flatnonzero(~bad_t), whole[~bad_t].astype(np.int64)] = 1.0
    if ctx.targets is None and bad_p.any():
        terms.errors.append(sklearn_probability_error(p))
    elif ctx.targets is None and bad_t.any():
        terms.errors.append("ValueError: y_true contains labels not in labels")
    bad = bad_p | bad_t
    terms.error_rows = int(bad.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        values = -np.where(t > 0, t * np.log(np.clip(p, eps, 1 - eps)), 0.0).sum(axis=1).astype(np.float64)
    values[bad] = np.nan
    weight = np.ones(n) if ctx.sample_weights is None else ctx.sample_weights.astype(np.float64)
    terms.values = values
    terms.num = {"mean": row_sum(values * weight, ~bad), "sum": row_sum(values * weight, ~bad)}
    terms.den = {"mean": row_sum(weight, ~bad), "sum": None}
    return terms


# log_loss raises one error, the first of its checks that fails on the whole dump: NaN and ±inf in
# the probabilities (check_array), their range (above 1 before below 0), then the targets — dense
# rows unhashable unless every row of every chunk is 0/1 (then not a fitted multilabel input) —,
# soft binary targets, multi-label ones, labels outside range(C). The chunks' errors merge to the
# first in this order, whatever the chunking (found in review, 2026-12-03: the first chunk's won).
_SKLEARN_ORDER = ("ValueError: Input contains NaN", "ValueError: Input contains infinity", "ValueError: y_prob contains values greater",
                  "ValueError: y_prob contains values lower", "TypeError: unhashable type",
                  "ValueError: The object was not fitted with multilabel input", "ValueError: Unknown label type",
                  "ValueError: Multioutput target data", "ValueError: y_true contains labels not in labels")


def _sklearn_rank(message: str) -> int:
    """The place of log_loss's check that raises `message` (len(_SKLEARN_ORDER): not one of them)."""
    return next((rank for rank, start in enumerate(_SKLEARN_ORDER) if message.startswith(start)), len(_SKLEARN_ORDER))


def _sklearn_first(message: str) -> tuple[int, float]:
    """The order of log_loss's errors over the whole dump: its check's place, then for the range
    check the value it names (the largest above 1, the smallest below 0)."""
    rank = _sklearn_rank(message)
    if message.startswith("ValueError: y_prob contains values"):
        value = float(message.rsplit(": ", 1)[1])
        return rank, -value if "greater" in message else value
    return rank, 0.0


@dataclass
class FrameworkSummary:
    """Mergeable sums of one framework's reductions over all chunks."""

    framework: str
    sigmoid: bool = False  # a sigmoid head's binary cross-entropy (frameworks_sigmoid.py)
    float32: bool = False  # it sums in float32: a total beyond float32's range is ±inf there
    float16: bool = False  # in float16 (PyTorch, tf.nn, optax on float16 scores): beyond 65504
    num: dict[str, float] = field(default_factory=dict)
    den: dict[str, float | None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    error_rows: int = 0
    notes: list[str] = field(default_factory=list)

    def update(self, terms: RowTerms) -> None:
        for key, value in terms.num.items():
            self.num[key] = self.num.get(key, 0.0) + value
            den = terms.den[key]
            self.den[key] = None if den is None else (self.den.get(key) or 0.0) + den
        self.error_rows += terms.error_rows
        self.float32 = self.float32 or terms.float32
        self.float16 = self.float16 or terms.float16
        for message in terms.errors:
            if _sklearn_rank(message) < len(_SKLEARN_ORDER):  # log_loss raises one error: the first of its checks that fails
                first = min((known for known in [*self.errors, message] if _sklearn_rank(known) < len(_SKLEARN_ORDER)), key=_sklearn_first)
                self.errors = [known for known in self.errors if _sklearn_rank(known) == len(_SKLEARN_ORDER)] + [first]
            elif not any(message.split(":")[0] == known.split(":")[0] for known in self.errors):
                self.errors.append(message)
        self.notes.extend(note for note in terms.notes if note not in self.notes)

    def merge(self, other: FrameworkSummary) -> None:
        self.update(RowTerms(np.empty(0), other.num, other.den, other.errors, other.error_rows, other.notes, float32=other.float32,
                             float16=other.float16))

    def reductions(self) -> dict[str, float]:
        out = {}
        for key, total in self.num.items():
            den = self.den[key]
            # a sigmoid head's mean of float16 elements (torch.mean, jnp.mean) sums in float32 and rounds the mean to float16,
            # and so does optax's softmax mean (jnp.mean; found in review: 40,000 rows of loss 2.41 gave inf, optax 2.4140625)
            half_mean = self.float16 and (self.sigmoid or self.framework == "optax") and den is not None
            with np.errstate(over="ignore"):
                if (self.float32 or half_mean) and math.isfinite(total) and not np.isfinite(np.float32(total)):
                    total = math.copysign(math.inf, total)  # the float32 sum overflows, as PyTorch's does
                if self.float16 and not half_mean and math.isfinite(total) and abs(total) >= FLOAT16_OVERFLOW:
                    total = math.copysign(math.inf, total)
            if den is None:
                out[key] = total
            elif self.framework.startswith("keras"):
                out[key] = total / den if den else 0.0  # ops.divide_no_nan
            else:
                out[key] = total / den if den else math.nan
            if half_mean and math.isfinite(out[key]) and abs(out[key]) >= FLOAT16_OVERFLOW:
                out[key] = math.copysign(math.inf, out[key])
        return out

    def document(self) -> dict[str, Any]:
        reductions = self.reductions()
        default = DEFAULT_REDUCTION[self.framework]
        return {
            "framework": self.framework,
            "name": (SIGMOID_NAMES if self.sigmoid else FRAMEWORK_NAMES)[self.framework],
            "short_name": SHORT_NAMES[self.framework],
            "reduction": default,
            "loss": reductions.get(default, math.nan),
            "sum": reductions.get("sum", math.nan),
            "per_reduction": reductions,
            "errors": self.errors,
            "error_rows": self.error_rows,
            "notes": self.notes,
        }


