"""Every diagnostic, one record each: texts, how it is found, and what its finding says.

Per-row rules give a mask over RowMasks `m` (None where the rule does not apply); `tallied` ones
are counted by the C tally in this order. Message functions take the merged finding `f` and the
run's totals `t` (diagnostics/run.py: summary, per_class, info).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from xentcli.config import KERAS_EPSILON
from xentcli.diagnostics.registry import (
    COLLAPSE_SHARE, CONFIDENT, LOG_PROBS_TOLERANCE, PROBS_SUM_TOLERANCE, Rule, declare, overflow_limit,
)
from xentcli.diagnostics.view import Finding, RowMasks, _examples, _nan_classes
from xentcli.plain import counted as _count


def _fmt(x: float) -> str:
    return f"{x:.4g}"




def _rows_say(one: str, many: str, rest: str = "") -> Any:
    """A message '<n> <one|many><rest>' over the finding's rows."""
    return lambda f, t: f"{_count(f.rows, one, many)}{rest}"


def _kind(m: RowMasks, *kinds: str) -> bool:
    return m.view.kind in kinds


def _binary_hint(softmax: str, binary: str) -> Any:
    return lambda f, t: binary if t.info.head == "binary" else softmax


# ---- scores ---------------------------------------------------------------------------------
declare(Rule(
    "XE101", "nan-scores", "error", "NaN among the scores.",
    "A NaN score makes that row's loss NaN, and a NaN anywhere makes a framework's mean NaN: the usual first sign of a diverged model or a float16 overflow.",
    "Find where the model produced NaN (look at the listed rows and class positions); check for overflow in a float16 head, divisions by zero, log of negative numbers.",
    "scores [0.3, nan, 1.2] → loss NaN.",
    hint="find where the model produced NaN (the examples' classes, in --json, say in which classes)",
    message=_rows_say("row holds", "rows hold", " NaN scores"),
    mask=lambda m: m.nan_rows, tallied=True,
    columns=lambda m, rows: {"classes": _nan_classes(m.view, rows, np.isnan)},
))
declare(Rule(
    "XE102", "inf-scores", "error", "+inf among the scores, or −inf on a class the loss takes: the target (with label smoothing or soft targets, any class).",
    "+inf logits make softmax undefined (inf − inf) and the loss NaN; a −inf logit on the target — or, with label smoothing or soft targets, on any class the loss weighs — makes the loss +inf. −inf on other classes is a mask and harmless (XE111).",
    "Clamp the logits before dumping; make sure the target class is never masked.",
    "scores [inf, 0, 0] → loss NaN; scores [−inf, 0, 0] with label 0 → loss inf.",
    hint="clamp or mask the logits before dumping, and never mask the target",
    message=_rows_say("row holds", "rows hold", " +inf scores, or −inf on a class the loss takes"),
    mask=lambda m: m.inf_rows & ~m.masked, tallied=True,
    columns=lambda m, rows: {"classes": _nan_classes(m.view, rows, np.isinf), "max": m.top, "min": m.bottom},
))
declare(Rule(
    "XE103", "overflow-risk", "warning", "Logits large enough to overflow a naive exp() in the dump's dtype.",
    "xent subtracts the row max, so its loss is right; but a softmax-then-log pipeline (exp of the raw logits) overflows beyond 11.09 in float16, 88.72 in float32 and 709.78 in float64 and gives inf/NaN.",
    "Compute the loss from logits with a fused, stable function (F.cross_entropy, tf.nn.*_with_logits, optax), or scale the logits down.",
    "float32 logits [95.0, 0.0]: exp(95) = inf in float32.",
    hint="xent's loss is exact; a softmax-then-log pipeline would overflow: use a fused cross-entropy on logits",
    message=lambda f, t: (
        f"{_count(f.rows, 'row has', 'rows have')} logits beyond ±{'/'.join(str(overflow_limit(d)) for d in t.info.score_dtype.split('+'))} "
        f"(max |logit| {_fmt(f.facts['max_abs'])}, {t.info.score_dtype})"),
    mask=lambda m: m.finite & (m.magnitude > m.limit) if not _kind(m, "probs") else None, tallied=True,
    rank_by="max_abs", columns=lambda m, rows: {"max_abs": m.magnitude},
    facts=lambda m, f: f.fact("max_abs", m.tally.max_abs, "max"),
    extra=lambda f, t: {"max_abs": f.facts["max_abs"]},
))


def _probs_as_logits(m: RowMasks) -> Finding | None:
    """XE104: the tally counts rows within [0, 1]; of those, the ones summing to 1."""
    candidates = m.of("XE104")
    sums = np.zeros(m.stats.loss.size)
    sums[candidates] = m.view.scores[candidates].sum(axis=1, dtype=np.float64)
    rows = candidates & (np.abs(sums - 1) <= PROBS_SUM_TOLERANCE)
    return Finding.of("XE104", rows, lambda: _examples(m.view, rows, row_sum=sums))


declare(Rule(
    "XE104", "probs-as-logits", "error", "--input logits, but the rows lie in [0, 1] and sum to 1: the softmax was already applied.",
    "Feeding probabilities to a softmax cross-entropy applies softmax twice: the loss stays near log C and learning stalls.",
    "Score the dump with --input probs, and in training feed the raw logits (before softmax) to the loss.",
    "scores [0.7, 0.2, 0.1] read as logits → loss ≈ 0.77 even for a confident correct prediction.",
    hint="score with --input probs; in training, feed the logits before softmax to the loss",
    message=_rows_say("row lies", "rows lie", " in [0, 1] and sum to 1 although read as logits: they look like probabilities"),
    mask=lambda m: m.finite & (m.bottom >= 0) & (m.top <= 1) if _kind(m, "logits") else None, tallied=True, softmax_only=True,
    chunk=_probs_as_logits, show=lambda f, t: f.rows >= 0.5 * t.rows,
))
declare(Rule(
    "XE105", "logits-as-probs", "error", "--input probs, but values fall outside [0, 1] or rows do not sum to 1.",
    "Probabilities must be non-negative and sum to 1; raw logits read as probabilities give meaningless (even negative or NaN) losses.",
    "Score the dump with --input logits, or apply softmax before dumping.",
    "scores [2.3, −1.0, 0.4] read as probabilities → log of a negative number.",
    hint="score with --input logits, or apply softmax before dumping",
    message=_rows_say("row is outside [0, 1] or does not sum to 1", "rows are outside [0, 1] or do not sum to 1", ", read as probabilities"),
    mask=lambda m: (m.finite & ((m.bottom < 0) | (m.top > 1) | (np.abs(np.exp(m.stats.log_norm) - 1) > PROBS_SUM_TOLERANCE))
                    if _kind(m, "probs") and m.stats.log_norm is not None else None), tallied=True,
    columns=lambda m, rows: {"row_sum": np.exp(m.stats.log_norm), "min": m.bottom, "max": m.top},
))
declare(Rule(
    "XE106", "log-probs-detected", "info", "--input logits, and every row's logsumexp is 0: these are log-probabilities.",
    "Harmless for the loss (log_softmax of log-probabilities changes nothing), said so that nobody is surprised.",
    "Nothing to fix; --input log-probs reads them as such.",
    "scores log([0.7, 0.2, 0.1]) → logsumexp = 0.",
    hint="harmless; --input log-probs reads them as such",
    message=lambda f, t: "every row's logsumexp is 0: the scores are log-probabilities",
    mask=lambda m: (m.finite & (np.abs(m.stats.log_norm) <= LOG_PROBS_TOLERANCE)
                    if _kind(m, "logits") and m.stats.log_norm is not None else None), tallied=True, softmax_only=True,
    with_examples=False, show=lambda f, t: f.rows == t.rows,
))
declare(Rule(
    "XE107", "constant-rows", "warning", "Rows whose scores are all equal.",
    "A constant row predicts the uniform distribution: its loss is exactly log C. Many such rows mean a dead head, an uninitialised model or zero-filled padding.",
    "Check the listed rows: padding that should be masked (use --ignore-index on its labels), or a head that outputs constants.",
    "scores [0, 0, 0, 0] → loss log 4 = 1.386.",
    hint="check for a dead head or unmasked padding",
    message=lambda f, t: f"{_count(f.rows, 'row has', 'rows have')} all scores equal"
                         + ("" if t.info.input_kind == "probs" else f" (loss = log {t.num_classes} = {_fmt(math.log(t.num_classes))})"),
    mask=lambda m: m.finite & (m.top == m.bottom) & (m.view.num_classes > 1), tallied=True, softmax_only=True,
))


def _clipped_mean(f: Finding, t: Any) -> float:
    """XE108: the mean loss were the zero target probabilities clipped at 1e-7: the counted rows'
    sum plus −log(1e-7) for each such row (clipping changes no other row by more than 1e-7), over
    all of them — from the totals, so it is the same however the rows were chunked."""
    rows = t.summary["counted"] + f.rows
    return (t.summary["loss_sum"] - f.rows * math.log(KERAS_EPSILON)) / rows if rows else math.nan


declare(Rule(
    "XE108", "probs-clipped", "warning", "Probabilities of exactly 0 on the target: an infinite loss without clipping, a framework-dependent one with it.",
    "The unclipped loss is +inf; Keras clips at 1e-7 (loss 16.118), other code at other epsilons, so the mean depends on an arbitrary constant.",
    "Dump logits instead of probabilities, or state the clipping (xent --epsilon 1e-7 gives Keras' number on TensorFlow).",
    "p = [1.0, 0.0] with label 1 → inf; Keras → 16.118.",
    hint="dump logits, or state the clipping (--epsilon 1e-7 gives Keras' exact number)",
    message=lambda f, t: (f"{_count(f.rows, 'row gives', 'rows give')} the target probability 0 (loss inf); "
                          f"with probabilities clipped at 1e-7 the mean would be about {_fmt(_clipped_mean(f, t))}"),
    mask=lambda m: (m.stats.label_ok & ~m.view.ignored & (m.stats.p_true == 0)
                    if _kind(m, "probs") and m.stats.log_norm is not None else None), tallied=True,
    columns=lambda m, rows: {"label": m.shown_label},
    extra=lambda f, t: {"clipped_mean": _clipped_mean(f, t)},
))


def _low_precision(m: RowMasks) -> Finding | None:
    """XE109: the rows of finite half-precision scores (whatever chunk holds them) and their largest magnitude."""
    finite = int(np.count_nonzero(m.finite)) if m.view.score_dtype in ("float16", "bfloat16") else 0
    if not finite:
        return None
    finding = Finding("XE109", finite)
    finding.fact("max_abs", float(m.magnitude[m.finite].max()), "max")
    return finding


def _resolution(f: Finding, t: Any) -> float:
    top = f.facts["max_abs"]
    return 2.0 ** (math.floor(math.log2(top)) - (10 if "float16" in t.info.score_dtype else 7)) if top > 0 else 0.0


declare(Rule(
    "XE109", "low-precision-scores", "info", "float16/bfloat16 scores.",
    "Half-precision logits resolve only about three decimal digits: large logits lose the small differences that decide confident predictions.",
    "Dump float32 logits if the differences matter.",
    "float16 logits near 1000 are stored in steps of 0.5.",
    hint="dump float32 logits if finer differences matter",
    message=lambda f, t: f"{t.info.score_dtype} scores: at |logit| {_fmt(f.facts['max_abs'])} the dtype resolves steps of {_fmt(_resolution(f, t))}",
    chunk=_low_precision, with_examples=False, extra=lambda f, t: {"resolution": _resolution(f, t)},
))
declare(Rule(
    "XE110", "not-log-probs", "error", "Scores read as log-probabilities whose rows do not have logsumexp 0.",
    "Log-probabilities are scored as they are (loss = −score of the target), so logits read as log-probabilities give meaningless losses, even negative ones.",
    "Score the dump with --input logits (xent applies log_softmax), or apply log_softmax before dumping.",
    "scores [2.0, −1.0, 0.5] read as log-probabilities → loss −2.0 for label 0.",
    hint="score with --input logits, or apply log_softmax before dumping",
    message=_rows_say("row is", "rows are", " read as log-probabilities but their logsumexp is not 0: their losses mean nothing"),
    mask=lambda m: (~m.nan_rows & (m.top < np.inf) & ~(np.abs(m.stats.log_norm) <= m.log_probs_tolerance)
                    if _kind(m, "log-probs") and m.stats.log_norm is not None else None), tallied=True, softmax_only=True,
    columns=lambda m, rows: {"logsumexp": m.stats.log_norm, "label": m.shown_label, "loss": m.stats.loss},
))
declare(Rule(
    "XE111", "masked-scores", "info", "−inf scores on classes other than the target: a mask.",
    "Vocabulary and action masks set excluded classes to −inf; softmax gives them probability 0 and the loss stays finite.",
    "Nothing to fix; XE102 says when a mask falls on the target.",
    "scores [0.5, −inf, 1.2] with label 0 → a finite loss.",
    hint="nothing to fix",
    message=_rows_say("row masks", "rows mask", " classes with −inf scores off the target (their losses are finite)"),
    mask=lambda m: m.masked, tallied=True, with_examples=False,
))



def _one_class_softmax(m: RowMasks) -> Finding | None:
    if m.view.num_classes != 1:
        return None
    return Finding.of("XE112", m.counted, lambda: _examples(m.view, m.counted, loss=m.stats.loss))


declare(Rule(
    "XE112", "softmax-one-class", "error", "A softmax over one score per row: every loss is 0, whatever the model.",
    "softmax of a single logit is 1, so its cross-entropy is 0 on every row — the classic mistake of CrossEntropyLoss on a one-output binary head. The number says nothing about the model.",
    "One score per row is a sigmoid head: drop --head softmax (xent reads it as binary), and train with BCEWithLogitsLoss / sigmoid cross-entropy.",
    "logits [[2.3], [−1.0]] read as a softmax → loss 0 and 0.",
    hint="drop --head softmax: one score per row is a sigmoid head, and BCEWithLogitsLoss its loss",
    message=lambda f, t: f"the scores have one column, read as a softmax (--head softmax): the loss of all {f.rows:,} rows is 0 whatever the model",
    chunk=_one_class_softmax,
))


def _binary_outside(m: RowMasks) -> Finding | None:
    b = m.view.binary
    if b is None or b.kind == "logits":
        return None
    rows = b.per_row(b.outside)
    return Finding.of("XE113", rows, lambda: _examples(m.view, rows, low=b.low, high=b.high))


declare(Rule(
    "XE113", "binary-scores-out-of-range", "error", "A binary head read as probabilities (log-probabilities) with values outside [0, 1] (above 0).",
    "A probability outside [0, 1] has no log-likelihood: these rows get no loss. Usually the scores are logits read with --input probs (or a column named prob).",
    "Score the dump with --input logits if these are logits; else find where the probabilities left [0, 1].",
    "--input probs and scores [2.3, −0.4] → no probability.",
    hint="score with --input logits if these are logits",
    message=lambda f, t: (f"{_count(f.rows, 'row holds', 'rows hold')} a "
                          + ("probability outside [0, 1]" if t.info.input_kind == "probs" else "log-probability above 0")
                          + ": no loss for them"),
    chunk=_binary_outside,
))


def _binary_unit_logits(m: RowMasks) -> Finding | None:
    b = m.view.binary
    if b is None or b.kind != "logits":
        return None
    low, high = b.low, b.high
    with np.errstate(invalid="ignore"):
        if np.any(low[:1024] < 0) or np.any(high[:1024] > 1):  # the usual logits: the first rows settle it (NaN compares false)
            return None
        if not (np.nanmin(low, initial=np.inf) >= 0 and np.nanmax(high, initial=-np.inf) <= 1):
            return None  # a score outside [0, 1]: the rule, which needs every row, cannot be shown
    rows = np.isfinite(low) & np.isfinite(high)
    finding = Finding.of("XE114", rows, count=int(np.count_nonzero(rows)))
    if finding is not None:  # their range: all equal scores are no evidence either way
        finding.fact("low", float(low[rows].min()), "min")
        finding.fact("high", float(high[rows].max()), "max")
    return finding


declare(Rule(
    "XE114", "binary-probs-as-logits", "error", "A binary head read as logits whose every score lies in [0, 1]: they look like probabilities.",
    "Logits of a trained model spread over the real line; scores confined to [0, 1] are sigmoid outputs. Read as logits, σ is applied twice: every prediction is positive (σ(z) ≥ 0.5) and the loss is wrong.",
    "Score the dump with --input probs; in training, feed the logits before the sigmoid to BCEWithLogitsLoss.",
    "scores [0.9, 0.1, 0.7] read as logits → P(y = 1) = 0.71, 0.52, 0.67.",
    hint="score with --input probs",
    message=lambda f, t: f"all {f.rows:,} scores lie in [0, 1] although read as logits: they look like probabilities",
    chunk=_binary_unit_logits, with_examples=False,
    show=lambda f, t: f.rows == t.rows and f.rows >= 20 and f.facts["high"] > f.facts["low"],
))


def _sigmoid_targets(m: RowMasks) -> Finding | None:
    b = m.view.binary
    if b is None or b.bad_target is None:
        return None
    rows = b.per_row(b.bad_target)
    return Finding.of("XE115", rows, lambda: _examples(m.view, rows))


declare(Rule(
    "XE115", "sigmoid-targets-out-of-range", "error", "A sigmoid head's targets outside [0, 1] (other than the ignore index).",
    "Binary cross-entropy compares a probability with a target in [0, 1]; −1/+1 labels (an SVM's) or class numbers 1/2 give meaningless, even negative, losses. Those rows get none.",
    "Map the targets to 0/1 (−1 → 0; 1/2 → 0/1), or to probabilities in [0, 1]; mark elements to skip with the ignore index (-100).",
    "targets [1, −1, 0] → −1 is no target.",
    hint="map the targets to 0/1 (−1 → 0, 1/2 → 0/1); mark elements to skip with -100",
    message=_rows_say("row has", "rows have", " targets outside [0, 1]: no loss for them"),
    chunk=_sigmoid_targets,
))


def _two_class_sigmoid(m: RowMasks) -> Finding | None:
    if m.view.binary is not None or m.view.num_classes != 2 or m.view.kind != "logits":
        return None
    z = m.view.scores
    rows = np.isfinite(z).all(axis=1) & ((z[:, 0] == 0) | (z[:, 0] == -z[:, 1]))
    return Finding.of("XE116", rows, count=int(np.count_nonzero(rows)))


declare(Rule(
    "XE116", "two-class-sigmoid", "info", "Two-class logits [0, z] or [−z/2, z/2] in every row: a sigmoid head written as a softmax.",
    "softmax([0, z]) = [1 − σ(z), σ(z)]: the loss is the binary cross-entropy of the logit z (of z for [−z/2, z/2]), and xent's numbers are that head's.",
    "Nothing to fix; dumping the one logit z per row halves the file, and xent reads it as a binary head.",
    "logits [[0, 2.3], [0, −1.1]] → a sigmoid head with logits 2.3 and −1.1.",
    hint="harmless: one logit per row (z) halves the dump; xent reads it as a binary head",
    message=lambda f, t: "every row's two logits are [0, z] or [−z/2, z/2]: a sigmoid head written as a two-class softmax",
    chunk=_two_class_sigmoid, with_examples=False, show=lambda f, t: f.rows == t.rows,
))

# ---- targets --------------------------------------------------------------------------------
declare(Rule(
    "XE201", "label-out-of-range", "error", "Integer labels below 0 (other than the ignore index) or at least C.",
    "PyTorch and TensorFlow raise on them, JAX-based code silently gives 0 or NaN, and xent leaves those rows out (NaN loss).",
    "Check the label encoding and the number of classes; mark rows to skip with the ignore index (-100).",
    "C = 10 and label 10 → out of range.",
    hint=_binary_hint("check the label encoding; mark rows to skip with the ignore index",
                      "a binary head's targets are 0/1 (or probabilities in [0, 1]): map −1/+1 or 1/2 labels to 0/1"),
    message=lambda f, t: f"{_count(f.rows, 'row has', 'rows have')} a label outside [0, {t.num_classes})"
                         + (" (a binary head's targets are 0 or 1)" if t.info.head == "binary" else ""),
    mask=lambda m: m.on_labels(lambda: m.stats.label_is_int & ~m.stats.label_ok & ~m.view.ignored), tallied=True,
    columns=lambda m, rows: {"label": m.shown_label},
))


def _label_range(m: RowMasks) -> Finding | None:
    """XE202's facts: the range of the integer labels and how many equal C (from the tally)."""
    tally = m.tally
    if m.sparse:  # every row's label: the tally has the range
        low, high, at_c = (tally.label_min, tally.label_max, tally.at_num_classes) if tally.int_labels else (0, 0, None)
        labelled = tally.int_labels
    elif m.label_rows is not None:  # a binary head's whole targets beside soft ones
        labels = m.label[m.sparse_labels]
        low, high, at_c = (labels.min(), labels.max(), np.count_nonzero(labels == m.view.num_classes)) if labels.size else (0, 0, None)
        labelled = labels.size
    else:
        return None
    if at_c is None:
        return None
    shift = Finding("XE202", 0)
    shift.fact("min_label", float(low), "min")
    shift.fact("max_label", float(high), "max")
    shift.fact("at_num_classes", float(at_c), "sum")
    shift.fact("labelled", float(labelled), "sum")  # every one of them points at the next class
    if at_c:
        shift.add_examples(_examples(m.view, m.sparse_labels & (m.label == m.view.num_classes), label=m.shown_label))
    return shift


declare(Rule(
    "XE202", "one-based-labels", "error", "No label is 0 and the largest equals C: the labels look 1-based.",
    "Every label points at the next class: the loss is computed against the wrong class for every row, and label C is out of range.",
    "Subtract 1 from the labels.",
    "C = 3 and labels in {1, 2, 3}.",
    hint=_binary_hint("subtract 1 from the labels", "a binary head's targets are 0/1: map the labels 1/2 to 0/1"),
    message=lambda f, t: (f"no label is 0 and the largest is {t.num_classes} = C: the labels look 1-based, every one shifted by one "
                          f"({int(f.facts['at_num_classes']):,} of label C out of range)" if t.info.head != "binary"
                          else "no target is 0 and the largest is 2: the binary targets look like 1/2, not 0/1"),
    # the rows: every labelled row, each scored against the wrong class (it counted label C's only: 11% for 100%)
    chunk=_label_range, count=lambda f, t: int(f.facts["labelled"]),
    show=lambda f, t: f.facts["min_label"] >= 1 and f.facts["max_label"] == t.num_classes,
))
declare(Rule(
    "XE203", "non-integer-labels", "error", "Float labels with a fractional part, or NaN labels.",
    "A class index must be a whole number; such rows get no loss.",
    "Check how the labels were written (soft targets belong in a list column or wide columns, not in one float column).",
    "label 2.5 or NaN.",
    hint="class indices must be whole numbers; soft targets belong in a list column",
    message=_rows_say("row has", "rows have", " a fractional or NaN label"),
    # the tally's slot counts XE204's rows too (class names that are no class): the same rows
    mask=lambda m: m.on_labels(lambda: ~m.stats.label_is_int), tallied=True, applies=lambda m: not m.view.label_names,
))
declare(Rule(
    "XE204", "unknown-class", "error", "String labels that match no class name.",
    "Those rows cannot be scored: the names and the class list disagree (spelling, case, a class added later).",
    "Fix the names, or pass the full class list with --classes.",
    "classes cat, dog and label 'Cat'.",
    hint="fix the names or pass the full class list with --classes",
    message=_rows_say("row has", "rows have", " a label that is no class name"),
    mask=lambda m: m.on_labels(lambda: ~m.stats.label_is_int), trigger="XE203", applies=lambda m: m.view.label_names,
))
declare(Rule(
    "XE205", "one-hot-targets", "info", "Dense targets that are exactly one-hot.",
    "Sparse integer labels carry the same information at 1/C of the memory.",
    "Store argmax(targets) as an integer label column.",
    "targets [[0, 1, 0], [1, 0, 0]] → labels [1, 0].",
    hint=lambda f, t: f"store integer labels instead: 1/{t.num_classes} of the memory",
    message=lambda f, t: "every dense target row is one-hot",
    mask=lambda m: ((np.count_nonzero(m.view.targets == 1, axis=1) == 1) & (m.target_positives == 1)) if not m.sparse and m.view.num_classes > 1 else None,
    softmax_only=True,
    with_examples=False, show=lambda f, t: f.rows == t.rows, count=lambda f, t: t.rows,
))
declare(Rule(
    "XE206", "multi-label-targets", "error", "Dense target rows with more than one positive class.",
    "Softmax cross-entropy assumes exactly one true class per row; for multi-label data the right loss is sigmoid binary cross-entropy per class.",
    "Use binary cross-entropy (BCEWithLogitsLoss, sigmoid_cross_entropy_with_logits) for multi-label data: rerun xent with --head sigmoid.",
    "targets [1, 0, 1] → two positives.",
    hint="rerun with --head sigmoid: multi-label targets score as independent labels (binary cross-entropy per label)",
    message=_rows_say("target row has", "target rows have", " more than one positive class"),
    mask=lambda m: m.multi_label if not m.sparse else None,
    columns=lambda m, rows: {"positives": m.target_positives, "row_sum": m.target_sums},
))
declare(Rule(
    "XE207", "targets-not-distribution", "error", "Soft targets with negative entries or rows not summing to 1.",
    "Cross-entropy against something that is not a distribution is not a cross-entropy: its value and gradient are meaningless.",
    "Normalise the targets (t / Σt) and clip negatives; check the label-smoothing code.",
    "targets [0.5, 0.3, 0.1] sum to 0.9.",
    hint="normalise the targets and clip negatives",
    message=_rows_say("soft-target row is not a distribution", "soft-target rows are not distributions",
                      " (negative, NaN or ±inf, or not summing to 1)"),
    mask=lambda m: (~m.multi_label & ((m.view.targets < 0).any(axis=1) | (np.abs(m.target_sums - 1) > PROBS_SUM_TOLERANCE)
                                      # a NaN or ±inf entry (a binary head's rows as two classes hold NaN where its score is)
                                      | (~np.isfinite(m.view.targets).all(axis=1) if m.view.binary is None else False))
                    if not m.sparse else None),
    columns=lambda m, rows: {"row_sum": m.target_sums},
))
declare(Rule(
    "XE208", "ignored-rows", "info", "Rows carrying the ignore index, and their share.",
    "They are left out of every mean (padding, void classes); a large share changes what the mean means.",
    "Nothing to fix if intended; --ignore-index none scores them as out-of-range labels.",
    "label -100 on padded tokens.",
    hint="nothing to fix if intended",
    message=_rows_say("row carries the ignore index and is", "rows carry the ignore index and are", " left out"),
    mask=lambda m: m.on_labels(lambda: m.view.ignored), tallied=True, with_examples=False,
))


def _absent_classes(findings: dict[str, Finding], t: Any) -> dict[str, Any] | None:
    per_class = t.per_class
    if per_class is None or not t.summary["counted"] or t.info.head == "multilabel":  # no classes: labels (per_class of --per-class)
        return None
    never_target, absent_targets = per_class.absent(per_class.support)
    never_pred, never_predicted = per_class.absent(per_class.predicted)
    if not (never_target or never_pred):
        return None

    def some(count: int, ids: list[int]) -> str:  # "(class 0)", not "(0)", which reads as a count
        return ("class " if count == 1 else "classes ") + ", ".join(map(str, ids[:10])) + (" …" if count > 10 else "")

    parts = []
    if never_target:
        parts.append(f"{_count(never_target, 'class never occurs', 'classes never occur')} as a target ({some(never_target, absent_targets)})")
    if never_pred:
        noun = ("", "") if parts else ("class ", "classes ")
        parts.append(f"{_count(never_pred, noun[0] + 'is never predicted', noun[1] + 'are never predicted')} ({some(never_pred, never_predicted)})")
    return {"rows": 0, "message": "; ".join(parts), "absent_targets": absent_targets, "never_predicted": never_predicted}


declare(Rule(
    "XE209", "absent-classes", "info", "Classes that never occur as a target, or are never predicted.",
    "Per-class metrics for them are undefined; a class never predicted may be unreachable for the model.",
    "Check the class list and the eval set's sampling.",
    "class 7 has no example in the eval set.",
    hint="check the class list and the eval set's sampling", check=_absent_classes,
))


# ---- shapes: these end the run (exit 2) with their code in the error line ---------------------
for code, name, summary, why, fix, example in (
    ("XE301", "ragged-scores", "Score lists of varying length.", "Every row needs one score per class; a short row means a broken export.",
     "Re-export the dump with fixed-size rows.", "row 0 has 10 scores, row 5 has 9."),
    ("XE302", "row-count-mismatch", "The scores and the targets hold different numbers of rows.",
     "Rows pair up by position; a different count means the files do not belong together or one was cut short.",
     "Check that the labels file was written from the same eval run, in the same order.", "logits.npy with 1000 rows, labels.npy with 999."),
    ("XE303", "class-count-mismatch", "Dense targets with a different width than the scores.", "One target entry is needed per class.",
     "Check the number of classes of the model and of the target encoder.", "scores [N, 10], targets [N, 11]."),
    ("XE304", "empty-input", "No rows.", "There is nothing to score; usually a failed export or a wrong path.",
     "Check the step that wrote the dump.", "a Parquet file with 0 rows."),
):
    declare(Rule(code, name, "error", summary, why, fix, example))


def _class_axis(findings: dict[str, Finding], t: Any) -> dict[str, Any] | None:
    shift = findings.get("XE202")
    if t.info.sequence_length is None or shift is None:
        return None
    top_label, other = shift.facts["max_label"], t.info.sequence_length
    if not t.num_classes <= top_label < other:
        return None
    return {"rows": 0, "message": f"labels reach {int(top_label)}, past the {t.num_classes} classes of the class axis used, but fit the other axis ({other})",
            "hint": "try --class-axis 1 (PyTorch's [N, C, T]) or --class-axis -1"}


declare(Rule(
    "XE305", "class-axis-suspect", "warning", "For [N, T, C] arrays, the labels fit another axis better than the class axis used.",
    "PyTorch keeps classes on axis 1 ([N, C, T]); read as [N, T, C], the labels run past C.",
    "Pass --class-axis 1 (or -1) as the labels suggest.",
    "scores [8, 5, 100] with labels up to 99: the classes are on axis 2 … or on axis 1 if labels reach 5.",
    check=_class_axis,
))


# ---- the loss -------------------------------------------------------------------------------
_CAUSE_NAMES = {"XE101": "a NaN score", "XE102": "an infinite score", "XE113": "a probability outside [0, 1]",
                "XE105": "a probability outside [0, 1]",
                "XE115": "a target outside [0, 1]", "XE207": "a target row holding NaN or ±inf", "XE201": "a label out of range",
                "XE203": "a fractional or NaN label", "XE204": "a label that is no class name",
                "zero_probability": "a zero probability (or −inf logit) on a class the loss takes", "other": "another cause"}


def _causes(m: RowMasks, f: Finding) -> None:
    """XE401: each non-finite row traced to its first cause, named by the code that reports it."""
    stats, bad_loss = m.stats, m.of("XE401")
    none = np.zeros(stats.loss.size, dtype=bool)
    b = m.view.binary
    targets = m.view.targets
    not_integer = bad_loss & ~stats.label_is_int
    causes = {
        "XE101": bad_loss & m.nan_rows,
        "XE102": bad_loss & m.inf_rows,
        "XE113": bad_loss & b.per_row(b.outside) if b is not None and b.kind != "logits" else none,
        "XE105": bad_loss & m.of("XE105") & ((m.bottom < 0) | (m.top > 1)) if b is None else none,  # logits read as probabilities
        "XE115": bad_loss & b.per_row(b.bad_target) if b is not None and b.bad_target is not None else none,
        "XE207": (bad_loss & ~np.isfinite(targets).all(axis=1)) if b is None and targets is not None and targets.ndim == 2 else none,
        "XE201": bad_loss & ~m.nan_rows & ~m.inf_rows & stats.label_is_int & ~stats.label_ok,
        "XE203": none if m.view.label_names else not_integer,
        "XE204": not_integer if m.view.label_names else none,  # class names that are no class: XE204 reports them
        "zero_probability": bad_loss & m.finite & stats.label_ok & np.isinf(stats.loss),
    }
    explained = np.zeros(stats.loss.size, dtype=bool)
    for cause, rows in causes.items():
        f.fact(cause, float(np.count_nonzero(rows & ~explained)), "sum")
        explained |= rows
    f.fact("other", float(np.count_nonzero(bad_loss & ~explained)), "sum")


declare(Rule(
    "XE401", "nonfinite-loss", "error", "Rows whose loss is NaN or infinite, each traced to its cause.",
    "One such row makes a framework's mean NaN or inf; xent leaves them out and says why they are there.",
    "Follow the cause named for each group of rows (the codes in brackets).",
    "a NaN score → NaN loss; a zero probability on the target → inf.",
    hint="they are left out of the means; follow the causes named",
    message=lambda f, t: f"{_count(f.rows, 'row has', 'rows have')} a NaN or infinite loss: " + "; ".join(
        f"{int(v):,} from {_CAUSE_NAMES[k]}" + (f" [{k}]" if k.startswith("XE") else "") for k, v in f.facts.items() if v),
    mask=lambda m: ~m.view.ignored & ~np.isfinite(m.stats.loss), tallied=True,
    columns=lambda m, rows: {"loss": m.stats.loss, "label": m.shown_label}, facts=_causes,
    extra=lambda f, t: {"causes": {k: int(v) for k, v in f.facts.items() if v}},
))
def _undefined_mean(findings: dict[str, Finding], t: Any) -> dict[str, Any] | None:
    s = t.summary
    if not s["rows"]:
        return None
    if not s["counted"]:
        return {"rows": 0, "message": "no row counts (every row is ignored or has a non-finite loss): the mean loss is undefined"}
    if s.get("weight_sum") == 0.0:
        return {"rows": 0, "message": f"every one of the {s['counted']:,} counted rows weighs 0: the weighted mean loss is undefined"}
    if math.isnan(s["loss_mean"]):  # a safety net: no usable input should get here
        return {"rows": 0, "message": f"the mean loss of the {s['counted']:,} counted rows is undefined (NaN)"}
    return None


declare(Rule(
    "XE405", "undefined-mean", "error", "The mean loss is undefined: no row counts, or every counted row weighs 0.",
    "A gate on a number that does not exist cannot pass; a dump that scores nothing is a broken export or a wrong option.",
    "Check the labels (all ignore index?), --ignore-index, and the class or sample weights.",
    "every label is -100; --class-weights 0,0,0.",
    hint="check the labels, --ignore-index and the weights", check=_undefined_mean,
))
declare(Rule(
    "XE402", "loss-outliers", "warning", "Rows with a loss above 3 × log C (binary heads: log 1000).",
    "Worse than three times a uniform guess: mislabelled examples, corrupt inputs or a truly hard tail.",
    "Inspect the worst rows listed; look for label errors.",
    "C = 10 and loss 12.3 > 6.9.",
    hint="inspect the worst rows for label errors",
    message=lambda f, t: f"{_count(f.rows, 'row has', 'rows have')} a loss above "
                         + ("log 1000" if t.info.head == "binary" else "3 × log C") + f" = {_fmt(f.facts['threshold'])}",
    mask=lambda m: m.counted & (m.stats.loss > m.threshold), tallied=True, ranked=True, rank_by="loss",
    columns=lambda m, rows: {"loss": m.stats.loss, "label": m.shown_label, "pred": m.stats.pred},
    facts=lambda m, f: f.fact("threshold", m.threshold, "max"),
))


def _collapse(findings: dict[str, Finding], t: Any) -> dict[str, Any] | None:
    per_class = t.per_class
    if per_class is None or not t.summary["counted"]:
        return None
    predicted = per_class.predicted
    if not (predicted.sum() and predicted.max() > COLLAPSE_SHARE * predicted.sum() and np.count_nonzero(per_class.support) > 1):
        return None
    top_class = int(per_class.class_ids[predicted.argmax()])
    return {"rows": int(predicted.max()),
            "message": f"class {top_class} is predicted for {predicted.max() / predicted.sum():.1%} of rows while the targets hold {np.count_nonzero(per_class.support)} classes"}


declare(Rule(
    "XE403", "prediction-collapse", "warning", "One class is predicted for over 95% of rows while the targets hold several classes.",
    "The model predicts a constant: a collapsed or untrained model, or scores from the wrong head.",
    "Check the checkpoint and the head the scores came from.",
    "class 0 predicted for 99% of rows, 10 classes in the targets.",
    hint="check the checkpoint and the head the scores came from", check=_collapse,
))
declare(Rule(
    "XE404", "confident-mistakes", "warning", "Rows predicted with probability ≥ 0.99 that disagree with their label.",
    "Very confident mistakes are most often label errors, and sometimes a leaked target.",
    "Review the listed rows and their labels.",
    "p(pred) = 0.999 for 'cat', label 'dog'.",
    hint="review them: label errors or a leaked target",
    message=_rows_say(f"row is predicted with p ≥ {CONFIDENT} against its label", f"rows are predicted with p ≥ {CONFIDENT} against their labels"),
    mask=lambda m: m.counted & (m.stats.p_max >= CONFIDENT) & (m.stats.pred != m.stats.label), tallied=True, ranked=True,
    rank_by="p_max",
    columns=lambda m, rows: {"p_max": m.stats.p_max, "pred": m.stats.pred, "label": m.shown_label, "loss": m.stats.loss},
))


# ---- diff: pairing two dumps (raised by compare.py; XE501–XE504 end the run with exit 2) ----------
for code, name, severity, summary, why, fix, example in (
    ("XE501", "unpaired-rows", "error", "Rows of one dump without a partner in the other (a key on one side only, or row counts that differ).",
     "A comparison over different rows compares the rows, not the models.", "Compare dumps of the same eval set; pass --allow-unpaired to compare the keys both hold.",
     "base has 1000 rows, candidate 998."),
    ("XE502", "duplicate-keys", "error", "A pairing key that names two rows of one dump.",
     "A key must name one row on each side, or pairs are ambiguous.", "Deduplicate the key column, or pick another with --key.",
     "key 'q17' on rows 3 and 9 of the base."),
    ("XE503", "label-mismatch", "error", "Paired rows whose labels differ between the two dumps.",
     "Two models scored against different targets cannot be compared row by row: the rows are misaligned or the labels changed.",
     "Pair by a key with --key, or check that both dumps use the same labels.", "row 5: label 3 in the base, 7 in the candidate."),
    ("XE504", "classes-differ", "error", "The two dumps score different numbers of classes.",
     "Losses over different class sets are not comparable.", "Compare models with the same output classes.",
     "base [N, 10], candidate [N, 11]."),
    ("XE505", "nonfinite-pairs", "warning", "Pairs where either side's loss is NaN or infinite.",
     "They are left out of the paired statistics, which then describe the other pairs only.",
     "Fix the non-finite losses (each side's XE401 names the cause).", "candidate loss NaN on 3 rows."),
):
    declare(Rule(code, name, severity, summary, why, fix, example))


# ---- calibration (with --calibration; end-of-run rules over the calibration report) ------------
MISCALIBRATION_ECE = 0.05  # an expected calibration error above this is worth a warning


def _calibration(direction: str) -> Any:
    def check(findings: dict[str, Finding], t: Any) -> dict[str, Any] | None:
        report = t.calibration
        if report is None or not report["table"] or not report["ece"] > MISCALIBRATION_ECE:
            return None
        table = report["table"]
        n = sum(row["count"] for row in table)
        sigmoid = getattr(t.info, "head", "softmax") != "softmax"
        if sigmoid:  # bins of P(y = 1) against the positive rate, seen as the predicted class's: a bin below 1/2 predicts 0
            low = [row["hi"] <= 0.5 for row in table]
            confidence = sum((1 - row["confidence"] if below else row["confidence"]) * row["count"] for row, below in zip(table, low)) / n
            accuracy = sum((1 - row["accuracy"] if below else row["accuracy"]) * row["count"] for row, below in zip(table, low)) / n
        else:
            confidence = sum(row["confidence"] * row["count"] for row in table) / n
            accuracy = sum(row["accuracy"] * row["count"] for row in table) / n
        over = confidence > accuracy
        if (direction == "over") != over:
            return None
        what = (f"over {report['bins']} {'bin' if report['bins'] == 1 else 'bins'} of P(y = 1): the predicted class's mean probability {confidence:.3f} "
                f"{'above' if over else 'below'} how often it is the target, {accuracy:.3f}" if sigmoid else
                f"over {report['bins']} {'bin' if report['bins'] == 1 else 'bins'}: mean confidence {confidence:.3f} {'above' if over else 'below'} accuracy {accuracy:.3f}")
        return {"rows": 0, "message": f"ECE {report['ece']:.3f} {what}", "ece": report["ece"]}
    return check


def _certain_mistakes(findings: dict[str, Finding], t: Any) -> dict[str, Any] | None:
    report = t.calibration
    rows = report.get("certain_wrong", 0) if report else 0
    if not rows:
        return None
    return {"rows": rows, "message": f"{_count(rows, 'row is', 'rows are')} predicted with confidence exactly 1.0 and wrong"}


declare(Rule(
    "XE601", "over-confidence", "warning", f"The model is over-confident: ECE above {MISCALIBRATION_ECE} with mean confidence above accuracy.",
    "Its probabilities promise more than it delivers: thresholds, abstention and ensembling built on them misbehave.",
    "Fit a temperature on held-out data (divide the logits by T > 1), or use label smoothing in training.",
    "mean confidence 0.95, accuracy 0.85, ECE 0.10.",
    hint="fit a temperature (T > 1) on held-out data", check=_calibration("over"),
))
declare(Rule(
    "XE602", "under-confidence", "warning", f"The model is under-confident: ECE above {MISCALIBRATION_ECE} with mean confidence below accuracy.",
    "Its probabilities understate how often it is right: too much label smoothing or a temperature above 1.",
    "Fit a temperature on held-out data (T < 1), or reduce label smoothing.",
    "mean confidence 0.70, accuracy 0.85, ECE 0.15.",
    hint="fit a temperature (T < 1) on held-out data; check the label smoothing", check=_calibration("under"),
))
declare(Rule(
    "XE603", "certain-mistakes", "warning", "Rows predicted with confidence exactly 1.0 that are wrong.",
    "A probability of exactly 1 on a wrong class is an infinite loss in waiting: saturated logits, or probabilities rounded in export.",
    "Check for saturated or clipped logits and for probabilities rounded before dumping.",
    "p = [1.0, 0.0, 0.0] with label 1.",
    hint="look for saturated logits or rounded probabilities", check=_certain_mistakes,
))


# ---- slices (--by) ------------------------------------------------------------------------------
def _too_many_groups(findings: dict[str, Finding], t: Any) -> dict[str, Any] | None:
    if not t.groups_merged:
        return None
    return {"rows": 0, "message": f"{t.groups_merged:,} groups beyond --max-groups are merged into one group '(other)'"}


declare(Rule(
    "XE701", "too-many-groups", "info", "More groups than --max-groups: the smallest are merged into '(other)'.",
    "Reports over thousands of slices are unreadable and their intervals meaningless; the groups with the most rows are kept.",
    "Raise --max-groups, or slice by a coarser column.",
    "--by user_id with 50,000 users.",
    hint="raise --max-groups or slice by a coarser column", check=_too_many_groups,
))
