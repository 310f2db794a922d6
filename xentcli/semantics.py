"""Loss semantics: the true loss of the stored numbers, and what each framework would report.

Everything here works on one chunk's per-sample statistics (from `kernels`) and returns per-row
values plus additive sums, so every reduction of every framework is a ratio of float64 sums
that merge across chunks. The rules below were checked against numbers recorded from
TensorFlow 2.21, Keras 3.15, PyTorch 2.13 and optax 0.2.8 (tests/conformance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcli.config import COMPARED, FRAMEWORKS, KERAS_EPSILON, LossOptions
from xentcli.kernels import SampleStats, naive_logsumexp_loss, sample_stats


FRAMEWORK_NAMES = {
    "torch": "PyTorch F.cross_entropy",
    "keras": "Keras 3 (TensorFlow backend)",
    "keras-jax": "Keras 3 (JAX backend)",
    "keras-torch": "Keras 3 (PyTorch backend)",
    "tf": "tf.nn.*softmax_cross_entropy_with_logits",
    "optax": "optax softmax_cross_entropy*",
}
SHORT_NAMES = {
    "torch": "PyTorch",
    "keras": "Keras (TF)",
    "keras-jax": "Keras (JAX)",
    "keras-torch": "Keras (torch)",
    "tf": "tf.nn",
    "optax": "optax",
}
# The reduction each framework applies by default (what its training loop prints).
DEFAULT_REDUCTION = {
    "torch": "mean",
    "keras": "sum_over_batch_size",
    "keras-jax": "sum_over_batch_size",
    "keras-torch": "sum_over_batch_size",
    "tf": "mean",
    "optax": "mean",
}


@dataclass
class ChunkContext:
    """What the loss rules need to know about one chunk besides the kernel's statistics."""

    scores: npt.NDArray
    kind: str
    labels: npt.NDArray | None
    targets: npt.NDArray | None
    sample_weights: npt.NDArray | None
    options: LossOptions

    @property
    def num_classes(self) -> int:
        return self.scores.shape[1]

    def class_weights(self) -> npt.NDArray[np.float64] | None:
        w = self.options.class_weights
        return None if w is None else np.asarray(w, dtype=np.float64)

    def class_vectors(self) -> npt.NDArray[np.float64] | None:
        """V = [1, w]: Σ_c log p_c for smoothing and Σ_c w_c log p_c for weights."""
        w = self.class_weights()
        needed = self.options.label_smoothing > 0 or w is not None
        if not needed:
            return None
        ones = np.ones(self.num_classes)
        return np.stack([ones, ones if w is None else w], axis=1)


@dataclass
class RowTerms:
    """One chunk's per-row results under one set of rules.

    `values` is the per-sample output (NaN where the rules give no value); `num` and `den`
    hold, per reduction, the additive numerator and denominator (den None: a plain sum).
    `errors` are the messages the framework would raise, with `error_rows` the rows left out.
    """

    values: npt.NDArray[np.float64]
    num: dict[str, float] = field(default_factory=dict)
    den: dict[str, float | None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    error_rows: int = 0
    notes: list[str] = field(default_factory=list)


def _class_of(stats: SampleStats) -> npt.NDArray[np.int64]:
    return np.where(stats.label_ok, stats.label, 0)


def _ignored(stats: SampleStats, ctx: ChunkContext, ignore: int | None) -> npt.NDArray[np.bool_]:
    if ignore is None or ctx.targets is not None:
        return np.zeros(stats.loss.size, dtype=bool)
    return stats.label_is_int & (stats.label == ignore)


def smoothed_loss(stats: SampleStats, epsilon: float, num_classes: int) -> npt.NDArray[np.float64]:
    """−Σ_c t'_c log p_c with t' = (1 − ε) t + ε / C (t one-hot for sparse labels)."""
    if epsilon == 0:
        return stats.loss
    assert stats.lp_dot is not None
    return (1 - epsilon) * stats.loss - (epsilon / num_classes) * stats.lp_dot[:, 0]


def _weighted_smoothed(stats: SampleStats, ctx: ChunkContext, epsilon: float) -> npt.NDArray[np.float64]:
    """PyTorch's weighted loss: −Σ_c w_c t'_c log p_c (ATen LossNLL.cpp, cross_entropy_loss_*)."""
    w = ctx.class_weights()
    if w is None:
        return smoothed_loss(stats, epsilon, ctx.num_classes)
    assert stats.lp_dot is not None
    if ctx.targets is None:
        target_part = w[_class_of(stats)] * stats.loss
    else:
        assert stats.target_lp_dot is not None
        target_part = -stats.target_lp_dot[:, 1]
    return (1 - epsilon) * target_part - (epsilon / ctx.num_classes) * stats.lp_dot[:, 1]


def _sum(values: npt.NDArray, rows: npt.NDArray[np.bool_] | None = None) -> float:
    return float(values.sum() if rows is None else values[rows].sum())


def truth(stats: SampleStats, ctx: ChunkContext) -> tuple[npt.NDArray[np.float64], RowTerms]:
    """The true loss: per row −Σ t' log p (no clipping unless --epsilon), ignored rows left out.
    With class or sample weights, `num`/`den` hold the sums of the weighted mean
    Σ s·ℓ_w / Σ s·w[y] over counted rows (ℓ_w weighted as PyTorch does); without, they are empty."""
    options = ctx.options
    ignored = _ignored(stats, ctx, options.ignore_for(None))
    loss = smoothed_loss(stats, options.label_smoothing, ctx.num_classes)
    if ignored.any():  # a new array: `stats.loss` stays the frameworks' (which may score ignored rows)
        loss = loss.copy()
        loss[ignored] = np.nan
    w = ctx.class_weights()
    if w is None and ctx.sample_weights is None:
        return ignored, RowTerms(loss)
    counted = stats.label_ok & ~ignored & np.isfinite(loss)
    weighted = _weighted_smoothed(stats, ctx, options.label_smoothing)
    if w is None:
        weight = np.ones(loss.size)
    elif ctx.targets is None:
        weight = w[_class_of(stats)]
    else:
        weight = ctx.targets @ w
    if ctx.sample_weights is not None:
        weighted = weighted * ctx.sample_weights
        weight = weight * ctx.sample_weights
    terms = RowTerms(loss, {"mean": _sum(weighted, counted)}, {"mean": _sum(weight, counted)})
    return ignored, terms


# ---- the frameworks -------------------------------------------------------------------------


def _out_of_range(stats: SampleStats, considered: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    return considered & ~stats.label_ok


def _first_label(stats: SampleStats, rows: npt.NDArray[np.bool_]) -> int:
    return int(stats.label[np.flatnonzero(rows)[0]])


def _torch(stats: SampleStats, ctx: ChunkContext) -> RowTerms:
    options = ctx.options
    eps = options.label_smoothing
    values = _weighted_smoothed(stats, ctx, eps).copy()
    n = values.size
    terms = RowTerms(values)
    if ctx.sample_weights is not None:
        terms.notes.append("F.cross_entropy takes no per-sample weights: they are not applied")
    if ctx.targets is not None:  # probability targets: the mean divides by the number of rows
        terms.num = {"mean": _sum(values), "sum": _sum(values)}
        terms.den = {"mean": float(n), "sum": None}
        return terms
    ignored = _ignored(stats, ctx, options.ignore_for("torch"))
    bad = _out_of_range(stats, ~ignored)
    if bad.any():
        label = _first_label(stats, bad)
        terms.errors.append(
            f"IndexError: Target {label} is out of bounds." if stats.label_is_int[bad].all()
            else "RuntimeError: class-index targets must be integers"
        )
        terms.error_rows = int(bad.sum())
    values[ignored] = 0.0
    values[bad] = np.nan
    valid = stats.label_ok & ~ignored
    w = ctx.class_weights()
    weight = np.ones(n) if w is None else w[_class_of(stats)]
    terms.num = {"mean": _sum(values, valid), "sum": _sum(values, valid)}
    terms.den = {"mean": _sum(weight, valid), "sum": None}
    return terms


def _keras(stats: SampleStats, ctx: ChunkContext, backend: str) -> RowTerms:
    """Keras 3 losses with reduction none, sum, sum_over_batch_size and mean_with_sample_weight
    (keras/src/losses/loss.py: a mask from ignore_class becomes part of the sample weight; the
    means use ops.divide_no_nan)."""
    options = ctx.options
    n = stats.loss.size
    notes = []
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
            mask = ~_ignored(stats, ctx, ignore)
        bad = ~stats.label_ok if mask is None else mask & ~stats.label_ok
    terms = RowTerms(ell, notes=notes)
    used = np.ones(n, dtype=bool)
    # jax.nn.one_hot of a label outside [0, C) is all zeros, and the torch backend's one_hot
    # zeroes negative labels: such rows cost 0. The others raise.
    if backend == "jax":
        zero_rows = bad
    elif backend == "torch":
        zero_rows = bad & stats.label_is_int & (stats.label < 0)
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
        weight = weight * w[_class_of(stats)]
    weighted = ctx.sample_weights is not None or w is not None or mask is not None
    if mask is not None:
        ell[~mask] = 0.0
        weight = weight * mask
    values = ell * weight if weighted else ell
    values[~used] = np.nan
    total = _sum(values, used)
    terms.values = values
    terms.num = {"sum": total, "sum_over_batch_size": total, "mean_with_sample_weight": total}
    terms.den = {
        "sum": None,
        "sum_over_batch_size": _sum(mask.astype(np.float64), used) if mask is not None else float(used.sum()),
        "mean_with_sample_weight": _sum(weight, used) if weighted else float(used.sum()),
    }
    return terms


def _tf(stats: SampleStats, ctx: ChunkContext) -> RowTerms:
    options = ctx.options
    values = stats.loss.copy()
    terms = RowTerms(values)
    if options.label_smoothing or options.class_weights or ctx.sample_weights is not None:
        terms.notes.append("tf.nn.*softmax_cross_entropy_with_logits takes no weights or label smoothing: not applied")
    if options.ignore_explicit:
        terms.notes.append("tf.nn has no ignore index: the ignored labels are out of range there")
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
    terms.num = {"mean": _sum(values, counted), "sum": _sum(values, counted)}
    terms.den = {"mean": float(counted.sum()), "sum": None}
    return terms


def _optax(stats: SampleStats, ctx: ChunkContext) -> RowTerms:
    options = ctx.options
    n = stats.loss.size
    terms = RowTerms(np.empty(n))
    if options.class_weights or ctx.sample_weights is not None:
        terms.notes.append("optax losses take no weights: they are not applied")
    if ctx.targets is not None or options.label_smoothing:
        # softmax_cross_entropy(logits, smooth_labels(labels, ε)): −Σ t' log_softmax(z)
        values = smoothed_loss(stats, options.label_smoothing, ctx.num_classes).copy()
        where = None
    else:
        # softmax_cross_entropy_with_integer_labels: logsumexp(z) − z[y] in the scores' dtype;
        # labels in [−C, 0) wrap to C + label, labels outside [−C, C) give NaN (take_along_axis fill)
        if not stats.label_is_int.all():
            terms.errors.append("TypeError: labels must be integers")
            terms.error_rows = int((~stats.label_is_int).sum())
        label = np.where(stats.label_is_int, stats.label, ctx.num_classes)
        wrapped = np.where((label < 0) & (label >= -ctx.num_classes), label + ctx.num_classes, label)
        values = naive_logsumexp_loss(ctx.scores, wrapped) if ctx.kind == "logits" else stats.loss.copy()
        if ctx.kind != "logits":
            values[~stats.label_ok] = np.nan
        ignore = options.ignore_for("optax")
        where = None if ignore is None else ~_ignored(stats, ctx, ignore)
        if where is not None:
            values[~where] = 0.0
    terms.values = values
    total = _sum(values)
    terms.num = {"mean": total, "sum": total}
    terms.den = {"mean": float(n), "sum": None}
    if where is not None:
        terms.num["mean_over_valid"] = total
        terms.den["mean_over_valid"] = float(where.sum())
    return terms


def framework_terms(framework: str, stats: SampleStats, ctx: ChunkContext) -> RowTerms:
    """What `framework` computes on this chunk (logits path: log-probabilities are valid logits)."""
    if ctx.kind == "log-probs":
        stats = sample_stats(ctx.scores, "logits", ctx.labels, ctx.targets, detail=False, class_vectors=ctx.class_vectors())
        ctx = ChunkContext(ctx.scores, "logits", ctx.labels, ctx.targets, ctx.sample_weights, ctx.options)
    if framework == "torch":
        return _torch(stats, ctx)
    if framework.startswith("keras"):
        return _keras(stats, ctx, {"keras": "tensorflow", "keras-jax": "jax", "keras-torch": "torch"}[framework])
    if framework == "tf":
        return _tf(stats, ctx)
    return _optax(stats, ctx)


@dataclass
class FrameworkSummary:
    """Mergeable sums of one framework's reductions over all chunks."""

    framework: str
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
        for message in terms.errors:
            if not any(message.split(":")[0] == known.split(":")[0] for known in self.errors):
                self.errors.append(message)
        self.notes.extend(note for note in terms.notes if note not in self.notes)

    def merge(self, other: FrameworkSummary) -> None:
        self.update(RowTerms(np.empty(0), other.num, other.den, other.errors, other.error_rows, other.notes))

    def reductions(self) -> dict[str, float]:
        out = {}
        for key, total in self.num.items():
            den = self.den[key]
            if den is None:
                out[key] = total
            elif self.framework.startswith("keras"):
                out[key] = total / den if den else 0.0  # ops.divide_no_nan
            else:
                out[key] = total / den if den else math.nan
        return out

    def document(self) -> dict[str, Any]:
        reductions = self.reductions()
        default = DEFAULT_REDUCTION[self.framework]
        return {
            "framework": self.framework,
            "name": FRAMEWORK_NAMES[self.framework],
            "short_name": SHORT_NAMES[self.framework],
            "reduction": default,
            "loss": reductions.get(default, math.nan),
            "sum": reductions.get("sum", math.nan),
            "per_reduction": reductions,
            "errors": self.errors,
            "error_rows": self.error_rows,
            "notes": self.notes,
        }


def _differs(a: float | None, b: float | None) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
        return not (a is b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)))
    return abs(a - b) > 1e-6 * max(1.0, abs(b))


def explain_differences(
    summary: dict[str, Any], documents: dict[str, dict[str, Any]], totals: Any, options: LossOptions, info: Any
) -> list[str]:
    """One sentence per rule that makes a framework's default number differ from the true loss."""
    truth_loss = summary["loss_mean"]
    lines = []
    if totals.ignored:
        ignore = options.ignore_index
        optax_fate = (
            f"optax, unless told (where=labels != {ignore}), reads it as class {info.num_classes + ignore} "
            "(negative labels index from the end)"
            if ignore is not None and -info.num_classes <= ignore < 0
            else f"optax, unless told (where=labels != {ignore}), gives those rows NaN"
        )
        lines.append(
            f"{totals.ignored:,} rows carry the label {ignore}: PyTorch leaves them out of its mean "
            f"(ignore_index={ignore}), Keras only when told (ignore_class={ignore}), tf.nn rejects them; "
            f"{optax_fate}."
        )
    for doc in documents.values():
        for error in doc["errors"]:
            lines.append(
                f"{doc['name']} would raise {error.split(' which')[0]}; the {doc['error_rows']:,} rows "
                "it rejects are left out of its numbers here."
            )
    optax = documents.get("optax")
    if optax and isinstance(optax["loss"], float) and math.isnan(optax["loss"]) and summary["nonfinite"]:
        lines.append(
            "optax gives NaN: a label outside [-C, C) indexes past the logits (take_along_axis fills NaN); "
            "labels in [-C, 0) wrap around to C + label."
        )
    if options.class_weights is not None:
        torch = documents.get("torch")
        denominator = f" = {torch['per_reduction'].get('sum', 0) / torch['loss']:.6g}" if torch and torch["loss"] else ""
        lines.append(
            f"Class weights: PyTorch divides the weighted sum by Σ w[y]{denominator} for integer targets "
            "(by the row count for probability targets); Keras, given them as sample weights, divides by "
            "the row count (sum_over_batch_size); tf.nn and optax take no weights."
        )
    if info.weights is not None:
        zero = f" counts the {totals.zero_weight_rows:,} zero-weight rows in its denominator" if totals.zero_weight_rows else " divides by the row count"
        lines.append(
            f"Sample weights: Keras' sum_over_batch_size{zero} (mean_with_sample_weight divides by Σ weights); "
            "PyTorch, tf.nn and optax take no sample weights."
        )
    if options.label_smoothing:
        lines.append(
            f"Label smoothing {options.label_smoothing:g}: PyTorch, optax and Keras' CategoricalCrossentropy "
            "smooth the targets; tf.nn and Keras' SparseCategoricalCrossentropy do not."
        )
    keras = documents.get("keras")
    if info.input_kind == "probs" and keras and _differs(keras["loss"], truth_loss):
        lines.append(
            "Keras clips probabilities to [1e-7, 1 - 1e-7] before the log: a target probability below 1e-7 "
            "costs at most 16.118 there, and SparseCategoricalCrossentropy on TensorFlow clips before normalising."
        )
    if (
        optax and not lines and info.input_kind == "logits" and info.score_dtype != "float64"
        and _differs(optax["loss"], truth_loss)
    ):
        lines.append(
            "optax's integer-label path computes logsumexp(z) - z[y] in the logits' float32: with large logits "
            "the difference keeps only ~1e-7 of their magnitude in absolute precision."
        )
    if not lines and not any(_differs(doc["loss"], truth_loss) for doc in documents.values()):
        lines.append("Every framework's default number equals the true loss (to 1e-6).")
    return lines
