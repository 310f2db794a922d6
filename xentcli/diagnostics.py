"""Diagnostics: why a loss is wrong. A registry of rules with stable codes, mergeable findings.

Each rule is declared once (code, kebab-case name, severity, the text `xent explain` prints) and
found either per chunk (from the chunk and its per-sample statistics, in the same pass as the
loss) or at the end from the merged totals. Findings merge like the aggregates: counts add,
facts take their declared min/max/sum, and up to five example rows are kept (the first rows, or
the most extreme by a declared key, ties to the lower row). Codes are never reused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import numpy.typing as npt

from xentcli import ranking
from xentcli.kernels import SampleStats
from xentcli.plain import id_at

if TYPE_CHECKING:
    from xentcli.tally import ChunkTally

SEVERITIES = ("error", "warning", "info")
MAX_EXAMPLES = 5
# Largest |logit| whose exp() is finite in the dump's dtype: log(finfo.max).
OVERFLOW_LIMIT = {"float16": 11.09, "bfloat16": 88.72, "float32": 88.72, "float64": 709.78}
PROBS_SUM_TOLERANCE = 1e-3
LOG_PROBS_TOLERANCE = 1e-4
# How far from 0 a row's logsumexp may be before scores read as log-probabilities are not (XE110):
# half-precision log-probabilities are stored with steps of up to 2^-7 (float16) or 2^-5 (bfloat16)
# at |log p| ≈ 10, and Σp inherits that relative error.
NOT_LOG_PROBS_TOLERANCE = {"float16": 1e-2, "bfloat16": 1e-1}
CONFIDENT = 0.99
COLLAPSE_SHARE = 0.95
OUTLIER_FACTOR = 3.0  # loss above 3 · log C


@dataclass(frozen=True)
class Rule:
    """A diagnostic as `xent explain` shows it: what it means, why it matters, how to fix it."""

    code: str
    name: str
    severity: str
    summary: str
    why: str
    fix: str
    example: str


RULES: dict[str, Rule] = {}


def _rule(code: str, name: str, severity: str, summary: str, why: str, fix: str, example: str) -> None:
    RULES[code] = Rule(code, name, severity, summary, why, fix, example)


_rule("XE101", "nan-scores", "error", "NaN among the scores.",
      "A NaN score makes that row's loss NaN, and a NaN anywhere makes a framework's mean NaN: the usual first sign of a diverged model or a float16 overflow.",
      "Find where the model produced NaN (look at the listed rows and class positions); check for overflow in a float16 head, divisions by zero, log of negative numbers.",
      "scores [0.3, nan, 1.2] → loss NaN.")
_rule("XE102", "inf-scores", "error", "+inf among the scores, or −inf on the target class (or on every class).",
      "+inf logits make softmax undefined (inf − inf) and the loss NaN; a −inf logit on the target makes the loss +inf. −inf on other classes is a mask and harmless (XE111).",
      "Clamp the logits before dumping; make sure the target class is never masked.",
      "scores [inf, 0, 0] → loss NaN; scores [−inf, 0, 0] with label 0 → loss inf.")
_rule("XE103", "overflow-risk", "warning", "Logits large enough to overflow a naive exp() in the dump's dtype.",
      "xent subtracts the row max, so its loss is right; but a softmax-then-log pipeline (exp of the raw logits) overflows beyond 11.09 in float16, 88.72 in float32 and 709.78 in float64 and gives inf/NaN.",
      "Compute the loss from logits with a fused, stable function (F.cross_entropy, tf.nn.*_with_logits, optax), or scale the logits down.",
      "float32 logits [95.0, 0.0]: exp(95) = inf in float32.")
_rule("XE104", "probs-as-logits", "error", "--input logits, but the rows lie in [0, 1] and sum to 1: the softmax was already applied.",
      "Feeding probabilities to a softmax cross-entropy applies softmax twice: the loss stays near log C and learning stalls.",
      "Score the dump with --input probs, and in training feed the raw logits (before softmax) to the loss.",
      "scores [0.7, 0.2, 0.1] read as logits → loss ≈ 0.77 even for a confident correct prediction.")
_rule("XE105", "logits-as-probs", "error", "--input probs, but values fall outside [0, 1] or rows do not sum to 1.",
      "Probabilities must be non-negative and sum to 1; raw logits read as probabilities give meaningless (even negative or NaN) losses.",
      "Score the dump with --input logits, or apply softmax before dumping probabilities.",
      "scores [2.3, −1.0, 0.4] read as probabilities → log of a negative number.")
_rule("XE106", "log-probs-detected", "info", "--input logits, and every row's logsumexp is 0: these are log-probabilities.",
      "Harmless for the loss (log_softmax of log-probabilities changes nothing), said so that nobody is surprised.",
      "Nothing to fix; --input log-probs reads them as such.",
      "scores log([0.7, 0.2, 0.1]) → logsumexp = 0.")
_rule("XE107", "constant-rows", "warning", "Rows whose scores are all equal.",
      "A constant row predicts the uniform distribution: its loss is exactly log C. Many such rows mean a dead head, an uninitialised model or zero-filled padding.",
      "Check the listed rows: padding that should be masked (use --ignore-index on its labels), or a head that outputs constants.",
      "scores [0, 0, 0, 0] → loss log 4 = 1.386.")
_rule("XE108", "probs-clipped", "warning", "Probabilities of exactly 0 on the target: an infinite loss without clipping, a framework-dependent one with it.",
      "The unclipped loss is +inf; Keras clips at 1e-7 (loss 16.118), other code at other epsilons, so the mean depends on an arbitrary constant.",
      "Dump logits instead of probabilities, or state the clipping (xent --epsilon 1e-7 gives Keras' number on TensorFlow).",
      "p = [1.0, 0.0] with label 1 → inf; Keras → 16.118.")
_rule("XE109", "low-precision-scores", "info", "float16/bfloat16 scores.",
      "Half-precision logits resolve only about three decimal digits: large logits lose the small differences that decide confident predictions.",
      "Dump float32 logits if the differences matter.",
      "float16 logits near 1000 are stored in steps of 0.5.")
_rule("XE110", "not-log-probs", "error", "Scores read as log-probabilities whose rows do not have logsumexp 0.",
      "Log-probabilities are scored as they are (loss = −score of the target), so logits read as log-probabilities give meaningless losses, even negative ones.",
      "Score the dump with --input logits (xent applies log_softmax), or apply log_softmax before dumping.",
      "scores [2.0, −1.0, 0.5] read as log-probabilities → loss −2.0 for label 0.")
_rule("XE111", "masked-scores", "info", "−inf scores on classes other than the target: a mask.",
      "Vocabulary and action masks set excluded classes to −inf; softmax gives them probability 0 and the loss stays finite.",
      "Nothing to fix; XE102 says when a mask falls on the target.",
      "scores [0.5, −inf, 1.2] with label 0 → a finite loss.")
_rule("XE201", "label-out-of-range", "error", "Integer labels below 0 (other than the ignore index) or at least C.",
      "PyTorch and TensorFlow raise on them, JAX-based code silently gives 0 or NaN, and xent leaves those rows out (NaN loss).",
      "Check the label encoding and the number of classes; mark rows to skip with the ignore index (-100).",
      "C = 10 and label 10 → out of range.")
_rule("XE202", "one-based-labels", "error", "No label is 0 and the largest equals C: the labels look 1-based.",
      "Every label points at the next class: the loss is computed against the wrong class for every row, and label C is out of range.",
      "Subtract 1 from the labels.",
      "C = 3 and labels in {1, 2, 3}.")
_rule("XE203", "non-integer-labels", "error", "Float labels with a fractional part, or NaN labels.",
      "A class index must be a whole number; such rows get no loss.",
      "Check how the labels were written (soft targets belong in a list column or wide columns, not in one float column).",
      "label 2.5 or NaN.")
_rule("XE204", "unknown-class", "error", "String labels that match no class name.",
      "Those rows cannot be scored: the names and the class list disagree (spelling, case, a class added later).",
      "Fix the names, or pass the full class list with --classes.",
      "classes cat, dog and label 'Cat'.")
_rule("XE205", "one-hot-targets", "info", "Dense targets that are exactly one-hot.",
      "Sparse integer labels carry the same information at 1/C of the memory.",
      "Store argmax(targets) as an integer label column.",
      "targets [[0, 1, 0], [1, 0, 0]] → labels [1, 0].")
_rule("XE206", "multi-label-targets", "error", "Dense target rows with more than one positive class.",
      "Softmax cross-entropy assumes exactly one true class per row; for multi-label data the right loss is sigmoid binary cross-entropy per class.",
      "Use binary cross-entropy (BCEWithLogitsLoss, sigmoid_cross_entropy_with_logits) for multi-label data.",
      "targets [1, 0, 1] → two positives.")
_rule("XE207", "targets-not-distribution", "error", "Soft targets with negative entries or rows not summing to 1.",
      "Cross-entropy against something that is not a distribution is not a cross-entropy: its value and gradient are meaningless.",
      "Normalise the targets (t / Σt) and clip negatives; check the label-smoothing code.",
      "targets [0.5, 0.3, 0.1] sum to 0.9.")
_rule("XE208", "ignored-rows", "info", "Rows carrying the ignore index, and their share.",
      "They are left out of every mean (padding, void classes); a large share changes what the mean means.",
      "Nothing to fix if intended; --ignore-index none scores them as out-of-range labels.",
      "label -100 on padded tokens.")
_rule("XE209", "absent-classes", "info", "Classes that never occur as a target, or are never predicted.",
      "Per-class metrics for them are undefined; a class never predicted may be unreachable for the model.",
      "Check the class list and the sampling of the eval set.",
      "class 7 has no example in the eval set.")
_rule("XE301", "ragged-scores", "error", "Score lists of varying length.",
      "Every row needs one score per class; a short row means a broken export.",
      "Re-export the dump with fixed-size rows.",
      "row 0 has 10 scores, row 5 has 9.")
_rule("XE302", "row-count-mismatch", "error", "The scores and the targets hold different numbers of rows.",
      "Rows pair up by position; a different count means the files do not belong together or one was cut short.",
      "Check that the labels file was written from the same eval run, in the same order.",
      "logits.npy with 1000 rows, labels.npy with 999.")
_rule("XE303", "class-count-mismatch", "error", "Dense targets with a different width than the scores.",
      "One target entry is needed per class.",
      "Check the number of classes of the model and of the target encoder.",
      "scores [N, 10], targets [N, 11].")
_rule("XE304", "empty-input", "error", "No rows.",
      "There is nothing to score; usually a failed export or a wrong path.",
      "Check the step that wrote the dump.",
      "a Parquet file with 0 rows.")
_rule("XE305", "class-axis-suspect", "warning", "For [N, T, C] arrays, the labels fit another axis better than the class axis used.",
      "PyTorch keeps classes on axis 1 ([N, C, T]); read as [N, T, C], the labels run past C.",
      "Pass --class-axis 1 (or -1) as the labels suggest.",
      "scores [8, 5, 100] with labels up to 99: the classes are on axis 2 … or on axis 1 if labels reach 5.")
_rule("XE401", "nonfinite-loss", "error", "Rows whose loss is NaN or infinite, each traced to its cause.",
      "One such row makes a framework's mean NaN or inf; xent leaves them out and says why they are there.",
      "Follow the cause named for each group of rows (the codes in brackets).",
      "a NaN score → NaN loss; a zero probability on the target → inf.")
_rule("XE402", "loss-outliers", "warning", "Rows with a loss above 3 × log C.",
      "Worse than three times a uniform guess: mislabelled examples, corrupt inputs or a truly hard tail.",
      "Inspect the worst rows listed; look for label errors.",
      "C = 10 and loss 12.3 > 6.9.")
_rule("XE403", "prediction-collapse", "warning", "One class is predicted for over 95% of rows while the targets hold several classes.",
      "The model predicts a constant: a collapsed or untrained model, or scores from the wrong head.",
      "Check the checkpoint and the head the scores came from.",
      "class 0 predicted for 99% of rows, 10 classes in the targets.")
_rule("XE404", "confident-mistakes", "warning", "Rows predicted with probability ≥ 0.99 that disagree with their label.",
      "Very confident mistakes are most often label errors, and sometimes a leaked target.",
      "Review the listed rows and their labels.",
      "p(pred) = 0.999 for 'cat', label 'dog'.")


@dataclass
class Finding:
    """A rule's mergeable partial: rows hit, facts with their merge rule, example rows."""

    code: str
    rows: int = 0
    facts: dict[str, float] = field(default_factory=dict)
    merge_rules: dict[str, str] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    rank_by: str | None = None  # keep the examples with the largest value of this key

    def fact(self, key: str, value: float, rule: str) -> None:
        self.merge_rules[key] = rule
        old = self.facts.get(key)
        if old is None:
            self.facts[key] = value
        elif rule == "sum":
            self.facts[key] = old + value
        elif rule == "max":
            self.facts[key] = max(old, value)
        else:
            self.facts[key] = min(old, value)

    def add_examples(self, examples: list[dict[str, Any]]) -> None:
        merged = self.examples + examples
        if self.rank_by:
            merged.sort(key=lambda item: (-item[self.rank_by], item["row"]))
        else:
            merged.sort(key=lambda item: item["row"])
        self.examples = merged[:MAX_EXAMPLES]

    def merge(self, other: Finding) -> None:
        self.rows += other.rows
        for key, value in other.facts.items():
            self.fact(key, value, other.merge_rules[key])
        self.rank_by = self.rank_by or other.rank_by
        self.add_examples(other.examples)


@dataclass
class ChunkView:
    """What the rules see of one chunk."""

    offset: int
    scores: npt.NDArray
    targets: npt.NDArray | None
    ids: npt.NDArray | None
    stats: SampleStats  # loss: the true loss (NaN on ignored rows)
    ignored: npt.NDArray[np.bool_]
    kind: str
    num_classes: int
    score_dtype: str
    label_names: bool  # labels were class names mapped by --classes


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _examples(view: ChunkView, rows: npt.NDArray[np.bool_], **columns: Any) -> list[dict[str, Any]]:
    """Up to MAX_EXAMPLES example rows (the first ones) with the given per-row values."""
    return _rows(view, np.flatnonzero(rows)[:MAX_EXAMPLES], columns)


def _rows(view: ChunkView, picked: npt.NDArray, columns: dict[str, Any]) -> list[dict[str, Any]]:
    """The example records of the `picked` rows: each column (an array, or LabelAt) at each row."""
    out = []
    for i in picked.tolist():
        item: dict[str, Any] = {"row": view.offset + i}
        if view.ids is not None:
            item["id"] = id_at(view.ids, i)
        for name, values in columns.items():
            item[name] = _plain(values[i])
        out.append(item)
    return out


def top_rows(rows: npt.NDArray[np.bool_], key: npt.NDArray) -> npt.NDArray[np.int64]:
    """The (up to) MAX_EXAMPLES example rows of a ranked rule (ranking.top_rows)."""
    return ranking.top_rows(rows, key, MAX_EXAMPLES)


def _nan_classes(scores: npt.NDArray, rows: npt.NDArray[np.bool_], test: Callable[[npt.NDArray], npt.NDArray]) -> npt.NDArray:
    """For each flagged row, the first few class positions where `test` holds (as text)."""
    text = np.empty(len(rows), dtype=object)
    for i in np.flatnonzero(rows)[:MAX_EXAMPLES].tolist():
        where = np.flatnonzero(test(scores[i]))
        text[i] = ", ".join(map(str, where[:5].tolist())) + (" …" if where.size > 5 else "")
    return text


def not_log_probs_tolerance(score_dtype: str) -> float:
    return NOT_LOG_PROBS_TOLERANCE.get(score_dtype, LOG_PROBS_TOLERANCE)


def outlier_threshold(num_classes: int) -> float:
    return OUTLIER_FACTOR * math.log(max(num_classes, 2))


def overflow_limit(score_dtype: str) -> float:
    return OVERFLOW_LIMIT.get(score_dtype, OVERFLOW_LIMIT["float32"])


class LabelAt:
    """The label column of the examples, looked up row by row (five rows need no chunk-sized
    array): the class number, −1 where the label is not a whole number."""

    def __init__(self, stats: SampleStats) -> None:
        self.stats = stats

    def __getitem__(self, row: int) -> int:
        return int(self.stats.label[row]) if self.stats.label_is_int[row] else -1


class RowMasks:
    """The rows each per-row rule flags in one chunk, each mask computed on first use.

    The one definition of those rules: the numpy tally (tally.py) counts them, the C tally
    (_ctally.c) mirrors them, and diagnose_chunk takes its example rows from them. `of(code)`
    gives a rule's rows (all False where the rule does not apply to this kind of input); XE104
    counts its candidates, rows within [0, 1], whose sums diagnose_chunk then checks.
    """

    def __init__(self, view: ChunkView) -> None:
        self.view = view
        stats = view.stats
        self.top = stats.score_max if stats.score_max is not None else np.full(stats.loss.size, np.nan)
        self.bottom = stats.score_min if stats.score_min is not None else self.top
        self.threshold = outlier_threshold(view.num_classes)
        self.limit = overflow_limit(view.score_dtype)
        self.log_probs_tolerance = not_log_probs_tolerance(view.score_dtype)

    def of(self, code: str) -> npt.NDArray[np.bool_]:
        view, stats = self.view, self.view.stats
        sparse = view.targets is None
        with np.errstate(invalid="ignore", over="ignore"):
            if code == "XE101":
                return self.nan_rows
            if code == "XE102":
                return self.inf_rows & ~self.masked
            if code == "XE111":
                return self.masked
            if code == "XE110" and view.kind == "log-probs" and stats.log_norm is not None:
                return ~self.nan_rows & (self.top < np.inf) & ~(np.abs(stats.log_norm) <= self.log_probs_tolerance)
            if code == "XE103" and view.kind != "probs":
                return self.finite & (self.magnitude > self.limit)
            if code == "XE104" and view.kind == "logits":
                return self.finite & (self.bottom >= 0) & (self.top <= 1)
            if code == "XE105" and view.kind == "probs" and stats.log_norm is not None:
                sums = np.exp(stats.log_norm)
                return self.finite & ((self.bottom < 0) | (self.top > 1) | (np.abs(sums - 1) > PROBS_SUM_TOLERANCE))
            if code == "XE106" and view.kind == "logits" and stats.log_norm is not None:
                return self.finite & (np.abs(stats.log_norm) <= LOG_PROBS_TOLERANCE)
            if code == "XE107":
                return self.finite & (self.top == self.bottom) & (view.num_classes > 1)
            if code == "XE108" and view.kind == "probs" and stats.log_norm is not None:
                return stats.label_ok & ~view.ignored & (stats.p_true == 0)
            if code == "XE201" and sparse:
                return stats.label_is_int & ~stats.label_ok & ~view.ignored
            if code == "XE203" and sparse:
                return ~stats.label_is_int
            if code == "XE208" and sparse:
                return view.ignored
            if code == "XE401":
                return ~view.ignored & ~np.isfinite(stats.loss)
            if code == "XE402":
                return self.counted & (stats.loss > self.threshold)
            if code == "XE404":
                return self.counted & (stats.p_max >= CONFIDENT) & (stats.pred != stats.label)
        return np.zeros(stats.loss.size, dtype=bool)

    @cached_property
    def label(self) -> npt.NDArray[np.int64]:
        """The labels, −1 where a label is not a whole number (as LabelAt shows them)."""
        return np.where(self.view.stats.label_is_int, self.view.stats.label, -1)

    @cached_property
    def nan_rows(self) -> npt.NDArray[np.bool_]:
        return np.isnan(self.top) | np.isnan(self.bottom)

    @cached_property
    def inf_rows(self) -> npt.NDArray[np.bool_]:
        return ~self.nan_rows & (np.isinf(self.top) | np.isinf(self.bottom))

    @cached_property
    def masked(self) -> npt.NDArray[np.bool_]:
        """Rows whose infinite scores are −inf masks off the target: no +inf, and a finite loss
        where the row is scored (an ignored row or an unusable label has no loss to judge by)."""
        stats, view = self.view.stats, self.view
        scored = stats.label_ok & ~view.ignored
        return self.inf_rows & (self.top < np.inf) & ~(scored & ~np.isfinite(stats.loss))

    @cached_property
    def finite(self) -> npt.NDArray[np.bool_]:
        return ~self.nan_rows & ~self.inf_rows

    @cached_property
    def magnitude(self) -> npt.NDArray:
        return np.maximum(np.abs(self.top), np.abs(self.bottom))

    @cached_property
    def counted(self) -> npt.NDArray[np.bool_]:
        return self.view.stats.counted & ~self.view.ignored

    @cached_property
    def sparse_labels(self) -> npt.NDArray[np.bool_]:
        """Integer labels that are not ignored (XE202 looks at their range)."""
        return self.view.stats.label_is_int & ~self.view.ignored


def diagnose_chunk(view: ChunkView, tally: ChunkTally) -> dict[str, Finding]:
    """Every per-chunk rule on one chunk; only rules that found something are returned. The tally
    says which rules flag rows; their masks (and examples) are computed only for those."""
    found: dict[str, Finding] = {}
    stats = view.stats
    masks = RowMasks(view)
    top, bottom = masks.top, masks.bottom
    hits = tally.hits
    shown_label = LabelAt(stats)

    def hit(
        code: str,
        rows: npt.NDArray[np.bool_] | None = None,
        examples: Callable[[], list[dict[str, Any]]] | None = None,
        rank_by: str | None = None,
        count: int | None = None,
    ) -> Finding | None:
        """Record `code` when it flags any row (`rows`, or `count` from the tally); the examples
        are built only then (the first rows of `rows` unless `examples` is given)."""
        if count is None:
            assert rows is not None
            count = int(np.count_nonzero(rows))
        if count == 0:
            return None
        finding = Finding(code, count, rank_by=rank_by)
        finding.add_examples(examples() if examples is not None else _examples(view, rows))  # type: ignore[arg-type]
        found[code] = finding
        return finding

    with np.errstate(invalid="ignore", over="ignore"):
        # scores
        if hits["XE101"]:
            nan_rows = masks.of("XE101")
            hit("XE101", nan_rows, lambda: _examples(view, nan_rows, classes=_nan_classes(view.scores, nan_rows, np.isnan)))
        if hits["XE102"]:
            inf_rows = masks.of("XE102")
            hit("XE102", inf_rows, lambda: _examples(view, inf_rows, classes=_nan_classes(view.scores, inf_rows, np.isinf), max=top, min=bottom))
        if hits["XE111"]:
            hit("XE111", masks.of("XE111"))
        if hits["XE110"]:
            not_log_probs = masks.of("XE110")
            hit("XE110", not_log_probs, lambda: _examples(view, not_log_probs, logsumexp=stats.log_norm, label=shown_label, loss=stats.loss))
        if hits["XE103"]:
            risky, magnitude = masks.of("XE103"), masks.magnitude
            finding = hit("XE103", risky, lambda: _rows(view, top_rows(risky, magnitude), {"max_abs": magnitude}), rank_by="max_abs")
            if finding:
                finding.fact("max_abs", tally.max_abs, "max")
        if hits["XE104"]:
            candidates = masks.of("XE104")
            sums = np.zeros(stats.loss.size)
            sums[candidates] = view.scores[candidates].sum(axis=1, dtype=np.float64)
            probs_like = candidates & (np.abs(sums - 1) <= PROBS_SUM_TOLERANCE)
            hit("XE104", probs_like, lambda: _examples(view, probs_like, row_sum=sums))
        if hits["XE106"]:
            hit("XE106", masks.of("XE106"))
        if hits["XE105"]:
            not_probs = masks.of("XE105")
            hit("XE105", not_probs, lambda: _examples(view, not_probs, row_sum=np.exp(stats.log_norm), min=bottom, max=top))
        if hits["XE108"]:
            zero = masks.of("XE108")
            finding = hit("XE108", zero, lambda: _examples(view, zero, label=shown_label))
            if finding:
                clipped = -np.log(np.clip(stats.p_true, 1e-7, 1 - 1e-7))
                counted = stats.label_ok & ~view.ignored & ~np.isnan(stats.loss)
                finding.fact("clipped_sum", float(clipped[counted].sum()), "sum")
                finding.fact("clipped_rows", float(counted.sum()), "sum")
        if hits["XE107"]:
            hit("XE107", masks.of("XE107"))
        if view.score_dtype in ("float16", "bfloat16") and masks.finite.any():
            finding = Finding("XE109", stats.loss.size)
            finding.fact("max_abs", float(masks.magnitude[masks.finite].max()), "max")
            found["XE109"] = finding

        # targets
        if view.targets is None:
            if hits["XE201"]:
                bad_int = masks.of("XE201")
                hit("XE201", bad_int, lambda: _examples(view, bad_int, label=shown_label))
            if tally.int_labels:
                shift = Finding("XE202", 0)
                shift.fact("min_label", float(tally.label_min), "min")
                shift.fact("max_label", float(tally.label_max), "max")
                shift.fact("at_num_classes", float(tally.at_num_classes), "sum")
                if tally.at_num_classes:
                    shift.add_examples(_examples(view, masks.sparse_labels & (masks.label == view.num_classes), label=shown_label))
                found["XE202"] = shift
            if hits["XE203"]:
                hit("XE204" if view.label_names else "XE203", masks.of("XE203"))
            if hits["XE208"]:
                hit("XE208", view.ignored)
        else:
            t = view.targets
            ones = np.count_nonzero(t == 1, axis=1)
            nonzero = np.count_nonzero(t, axis=1)
            sums = t.sum(axis=1, dtype=np.float64)
            onehot = (ones == 1) & (nonzero == 1)
            if onehot.any():
                hit("XE205", onehot)
            multi = (ones >= 2) | ((sums > 1 + PROBS_SUM_TOLERANCE) & (np.count_nonzero(t >= 0.5, axis=1) >= 2))
            hit("XE206", multi, lambda: _examples(view, multi, positives=nonzero, row_sum=sums))
            not_distribution = ~multi & (((t < 0).any(axis=1)) | (np.abs(sums - 1) > PROBS_SUM_TOLERANCE))
            hit("XE207", not_distribution, lambda: _examples(view, not_distribution, row_sum=sums))

        # loss
        if hits["XE401"]:
            bad_loss = masks.of("XE401")
            nan_rows, inf_rows, finite = masks.nan_rows, masks.inf_rows, masks.finite
            finding = hit("XE401", bad_loss, lambda: _examples(view, bad_loss, loss=stats.loss, label=shown_label))
            assert finding is not None
            causes = {
                "XE101": bad_loss & nan_rows,
                "XE102": bad_loss & inf_rows,
                "XE201": bad_loss & ~nan_rows & ~inf_rows & stats.label_is_int & ~stats.label_ok,
                "XE203": bad_loss & ~stats.label_is_int,
                "zero_probability": bad_loss & finite & stats.label_ok & np.isinf(stats.loss),
            }
            explained = np.zeros(stats.loss.size, dtype=bool)
            for cause, rows in causes.items():
                finding.fact(cause, float(np.count_nonzero(rows & ~explained)), "sum")
                explained |= rows
            finding.fact("other", float(np.count_nonzero(bad_loss & ~explained)), "sum")
        # the ranked rules: their counts and example rows come from the tally, without a mask
        if hits["XE402"]:
            finding = hit("XE402", count=hits["XE402"], rank_by="loss", examples=lambda: _rows(
                view, tally.ranked["XE402"], {"loss": stats.loss, "label": shown_label, "pred": stats.pred}))
            if finding:
                finding.fact("threshold", masks.threshold, "max")
        if hits["XE404"]:
            hit("XE404", count=hits["XE404"], rank_by="p_max", examples=lambda: _rows(
                view, tally.ranked["XE404"], {"p_max": stats.p_max, "pred": stats.pred, "label": shown_label, "loss": stats.loss}))
    return found


def merge_findings(total: dict[str, Finding], partial: dict[str, Finding]) -> None:
    for code, finding in partial.items():
        if code in total:
            total[code].merge(finding)
        else:
            total[code] = finding


def selected(code: str, select: tuple[str, ...] | None, ignore: tuple[str, ...]) -> bool:
    """ruff-style selection by code prefix: --select XE2 keeps XE201 … XE209."""
    if any(code.startswith(prefix) for prefix in ignore):
        return False
    return select is None or any(code.startswith(prefix) for prefix in select)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _count(n: int, one: str, many: str) -> str:
    """'1 row has' / '2 rows have', with thousands separators."""
    return f"{n:,} {one if n == 1 else many}"


def finalize(
    findings: dict[str, Finding],
    summary: dict[str, Any],
    per_class: Any,
    info: Any,
    select: tuple[str, ...] | None = None,
    ignore: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """The diagnostics of the run, most severe first: rules decided on the merged totals, then
    one record per finding with its message and hint."""
    rows = summary["rows"]
    num_classes = info.num_classes
    out: list[dict[str, Any]] = []

    def emit(code: str, count: int, message: str, hint: str, finding: Finding | None = None, **extra: Any) -> None:
        if not selected(code, select, ignore):
            return
        rule = RULES[code]
        out.append({
            "code": code,
            "name": rule.name,
            "severity": rule.severity,
            "rows": count,
            "fraction": count / rows if rows else 0.0,
            "message": message,
            "hint": hint,
            "examples": [] if finding is None else finding.examples,
            **extra,
        })

    f = findings
    if "XE101" in f:
        emit("XE101", f["XE101"].rows, f"{_count(f['XE101'].rows, 'row holds', 'rows hold')} NaN scores", "find where the model produced NaN; see the class positions in the examples", f["XE101"])
    if "XE102" in f:
        emit("XE102", f["XE102"].rows, f"{_count(f['XE102'].rows, 'row holds', 'rows hold')} +inf scores, or −inf on the target", "clamp or mask the logits before dumping, and never mask the target", f["XE102"])
    if "XE111" in f:
        emit("XE111", f["XE111"].rows, f"{_count(f['XE111'].rows, 'row masks', 'rows mask')} classes with −inf scores off the target (their losses are finite)", "nothing to fix")
    if "XE103" in f:
        m = f["XE103"].facts["max_abs"]
        emit("XE103", f["XE103"].rows, f"{_count(f['XE103'].rows, 'row has', 'rows have')} logits beyond ±{'/'.join(str(overflow_limit(d)) for d in info.score_dtype.split('+'))} (max |logit| {_fmt(m)}, {info.score_dtype})",
             "xent's loss is exact; a softmax-then-log pipeline would overflow: use a fused cross-entropy on logits", f["XE103"], max_abs=m)
    if "XE104" in f and f["XE104"].rows >= 0.5 * rows:
        emit("XE104", f["XE104"].rows, f"{_count(f['XE104'].rows, 'row lies', 'rows lie')} in [0, 1] and sum to 1 although read as logits: they look like probabilities", "score with --input probs; in training, feed the logits before softmax to the loss", f["XE104"])
    if "XE105" in f:
        emit("XE105", f["XE105"].rows, f"{_count(f['XE105'].rows, 'row is outside [0, 1] or does not sum to 1', 'rows are outside [0, 1] or do not sum to 1')}, read as probabilities", "score with --input logits, or apply softmax before dumping", f["XE105"])
    if "XE106" in f and f["XE106"].rows == summary["rows"]:
        emit("XE106", f["XE106"].rows, "every row's logsumexp is 0: the scores are log-probabilities", "harmless; --input log-probs reads them as such")
    if "XE110" in f:
        emit("XE110", f["XE110"].rows, f"{_count(f['XE110'].rows, 'row is', 'rows are')} read as log-probabilities but their logsumexp is not 0: their losses mean nothing", "score with --input logits, or apply log_softmax before dumping", f["XE110"])
    if "XE107" in f:
        emit("XE107", f["XE107"].rows, f"{_count(f['XE107'].rows, 'row has', 'rows have')} all scores equal (loss = log {num_classes} = {_fmt(math.log(num_classes))})", "check for a dead head or unmasked padding", f["XE107"])
    if "XE108" in f:
        finding = f["XE108"]
        clipped_mean = finding.facts["clipped_sum"] / finding.facts["clipped_rows"] if finding.facts.get("clipped_rows") else math.nan
        emit("XE108", finding.rows, f"{_count(finding.rows, 'row gives', 'rows give')} the target probability 0 (loss inf); with probabilities clipped at 1e-7 the mean would be about {_fmt(clipped_mean)}",
             "dump logits, or state the clipping (--epsilon 1e-7 gives Keras' exact number)", finding, clipped_mean=clipped_mean)
    if "XE109" in f:
        m = f["XE109"].facts["max_abs"]
        step = 2.0 ** (math.floor(math.log2(m)) - (10 if "float16" in info.score_dtype else 7)) if m > 0 else 0.0
        emit("XE109", f["XE109"].rows, f"{info.score_dtype} scores: at |logit| {_fmt(m)} the dtype resolves steps of {_fmt(step)}", "dump float32 logits if finer differences matter", resolution=step)
    if "XE201" in f:
        emit("XE201", f["XE201"].rows, f"{_count(f['XE201'].rows, 'row has', 'rows have')} a label outside [0, {num_classes})", "check the label encoding; mark rows to skip with the ignore index", f["XE201"])
    if "XE202" in f:
        shift = f["XE202"]
        if shift.facts["min_label"] >= 1 and shift.facts["max_label"] == num_classes:
            emit("XE202", int(shift.facts["at_num_classes"]), f"no label is 0 and the largest is {num_classes} = C: the labels look 1-based", "subtract 1 from the labels", shift)
    if "XE203" in f:
        emit("XE203", f["XE203"].rows, f"{_count(f['XE203'].rows, 'row has', 'rows have')} a fractional or NaN label", "class indices must be whole numbers; soft targets belong in a list column", f["XE203"])
    if "XE204" in f:
        emit("XE204", f["XE204"].rows, f"{_count(f['XE204'].rows, 'row has', 'rows have')} a label that is no class name", "fix the names or pass the full class list with --classes", f["XE204"])
    if "XE205" in f and f["XE205"].rows == rows:
        emit("XE205", rows, "every dense target row is one-hot", f"store integer labels instead: 1/{num_classes} of the memory")
    if "XE206" in f:
        emit("XE206", f["XE206"].rows, f"{_count(f['XE206'].rows, 'target row has', 'target rows have')} more than one positive class", "use sigmoid binary cross-entropy for multi-label data", f["XE206"])
    if "XE207" in f:
        emit("XE207", f["XE207"].rows, f"{_count(f['XE207'].rows, 'soft-target row is', 'soft-target rows are')} not distributions (negative, or not summing to 1)", "normalise the targets and clip negatives", f["XE207"])
    if "XE208" in f:
        emit("XE208", f["XE208"].rows, f"{_count(f['XE208'].rows, 'row carries the ignore index and is', 'rows carry the ignore index and are')} left out", "nothing to fix if intended")
    if per_class is not None and summary["counted"]:
        never_target, absent_targets = per_class.absent(per_class.support)
        never_pred, never_predicted = per_class.absent(per_class.predicted)
        if never_target or never_pred:
            def some(count: int, ids: list[int]) -> str:
                return ", ".join(map(str, ids[:10])) + (" …" if count > 10 else "")
            parts = []
            if never_target:
                parts.append(f"{_count(never_target, 'class never occurs', 'classes never occur')} as a target ({some(never_target, absent_targets)})")
            if never_pred:
                noun = ("", "") if parts else ("class ", "classes ")
                parts.append(f"{_count(never_pred, noun[0] + 'is never predicted', noun[1] + 'are never predicted')} ({some(never_pred, never_predicted)})")
            emit("XE209", 0, "; ".join(parts), "check the class list and the eval set's sampling",
                 absent_targets=absent_targets, never_predicted=never_predicted)
        predicted = per_class.predicted
        if predicted.sum() and predicted.max() > COLLAPSE_SHARE * predicted.sum() and np.count_nonzero(per_class.support) > 1:
            top_class = int(per_class.class_ids[predicted.argmax()])
            emit("XE403", int(predicted.max()), f"class {top_class} is predicted for {predicted.max() / predicted.sum():.1%} of rows while the targets hold {np.count_nonzero(per_class.support)} classes",
                 "check the checkpoint and the head the scores came from")
    if info.sequence_length is not None and "XE202" in f:
        top_label = f["XE202"].facts["max_label"]
        other = info.sequence_length
        if top_label >= num_classes and top_label < other:
            emit("XE305", 0, f"labels reach {int(top_label)}, past the {num_classes} classes of the class axis used, but fit the other axis ({other})",
                 "try --class-axis 1 (PyTorch's [N, C, T]) or --class-axis -1")
    if "XE401" in f:
        finding = f["XE401"]
        names = {"XE101": "a NaN score", "XE102": "an infinite score", "XE201": "a label out of range", "XE203": "a fractional or NaN label",
                 "zero_probability": "a zero probability (or −inf logit) on the target", "other": "another cause"}
        causes = [f"{int(v):,} from {names[k]}" + (f" [{k}]" if k.startswith("XE") else "") for k, v in finding.facts.items() if v]
        emit("XE401", finding.rows, f"{_count(finding.rows, 'row has', 'rows have')} a NaN or infinite loss: " + "; ".join(causes),
             "they are left out of the means; follow the causes named", finding,
             causes={k: int(v) for k, v in finding.facts.items() if v})
    if "XE402" in f:
        emit("XE402", f["XE402"].rows, f"{_count(f['XE402'].rows, 'row has', 'rows have')} a loss above 3 × log C = {_fmt(f['XE402'].facts['threshold'])}", "inspect the worst rows for label errors", f["XE402"])
    if "XE404" in f:
        emit("XE404", f["XE404"].rows, f"{_count(f['XE404'].rows, 'row is predicted with p ≥ ' + str(CONFIDENT) + ' against its label', 'rows are predicted with p ≥ ' + str(CONFIDENT) + ' against their labels')}", "review them: label errors or a leaked target", f["XE404"])
    order = {severity: i for i, severity in enumerate(SEVERITIES)}
    out.sort(key=lambda d: (order[d["severity"]], d["code"]))
    return out
