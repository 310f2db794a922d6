"""One pass over a chunk's per-sample results: what the aggregates and the diagnostics count.

The aggregates (accumulate.py) need counts, sums, extremes, per-class sums and the quantile
sketch's keys of the counted rows; the diagnostics need how many rows each per-row rule flags
(the rules' masks are defined once, in diagnostics.RowMasks). With few classes these bookkeeping
passes cost more than the loss itself, so the C tally (_ctally.c, through native.py) makes them in
one pass over the rows; `_tally_numpy` is the reference it is tested against and the fallback
where the extension is not built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from xentcli import native
from xentcli.diagnostics import (
    CONFIDENT, LOG_PROBS_TOLERANCE, PROBS_SUM_TOLERANCE, RULES, ChunkView, RowMasks, not_log_probs_tolerance,
    outlier_threshold, overflow_limit, tallied_codes, top_rows,
)
from xentcli.kernels import SampleStats
from xentcli.sketch import MIN_INDEXABLE, QuantileSketch

# The per-row rules the tally counts, in the order of the C tally's hit counters: the registry's
# order of the rules declared `tallied` (native.py checks it against the C enum at load). XE203
# stands for XE204 too (the same rows: labels that are not class numbers).
RULE_CODES = tallied_codes()
# The rules whose examples are the rows with the largest key (loss, p_max): the tally keeps them.
RANKED_CODES = tuple(code for code in RULE_CODES if RULES[code].ranked)
# The C tally counts the same rules in the same order, or it is not used (a stale build).
C_RULES_MATCH = native.tally_rules() == RULE_CODES
KINDS = {"logits": 0, "probs": 1, "log-probs": 2}
# The tallied rules that never flag a sigmoid head's rows (the C tally knows no heads).
SOFTMAX_ONLY = frozenset(code for code in RULE_CODES if RULES[code].softmax_only)
# The C tally's rules (bit i: RULE_CODES[i]) that a sigmoid head's rows never trip: they judge softmax rows.
SIGMOID_OFF = sum(1 << i for i, code in enumerate(RULE_CODES) if code in SOFTMAX_ONLY)
# Up to this many classes the per-class sums are dense arrays (5 × 8 bytes a class, per chunk and in
# the totals); above it they are kept for the classes seen only, so memory grows with the classes
# that occur, never with a vocabulary of 2^27 (accumulate.PerClass).
DENSE_CLASS_LIMIT = 1 << 20


@dataclass
class ChunkTally:
    """Counts and sums over one chunk. Per-class arrays have one entry per class; `keys` holds
    the sketch keys of the counted positive losses (`zeros` counts the losses too small to
    index); `negatives` > 0 means some counted losses are negative, and the sketch must take the
    values instead."""

    counted: int
    correct: int
    top_k_hits: int
    loss_min: float
    loss_max: float
    support: npt.NDArray[np.int64]
    class_correct: npt.NDArray[np.int64]
    class_loss: npt.NDArray[np.float64]
    class_p_true: npt.NDArray[np.float64]
    predicted: npt.NDArray[np.int64]
    keys: npt.NDArray
    zeros: int
    negatives: int
    hits: dict[str, int]
    max_abs: float  # the largest |score| among the XE103 rows
    int_labels: int  # integer labels not ignored, their range and how many equal C (XE202)
    label_min: int
    label_max: int
    at_num_classes: int
    ranked: dict[str, npt.NDArray[np.int64]]  # per RANKED_CODES: its example rows (diagnostics.top_rows)
    classes: npt.NDArray[np.int64] | None = None  # sparse per-class sums: the classes they belong to


def sparse_class_sums(stats: SampleStats) -> dict[str, npt.NDArray]:
    """The per-class sums of the counted rows for the classes that occur (as label or prediction):
    `classes` ascending and the five sums aligned with it."""
    counted = stats.counted
    label, pred = stats.label[counted], stats.pred[counted]
    classes = np.union1d(label, pred)
    at_label, at_pred = np.searchsorted(classes, label), np.searchsorted(classes, pred)
    k = classes.size
    right = pred == label
    return {
        "classes": classes,
        "support": np.bincount(at_label, minlength=k),
        "class_correct": np.bincount(at_label[right], minlength=k),
        "predicted": np.bincount(at_pred, minlength=k),
        "class_loss": np.bincount(at_label, weights=stats.loss[counted], minlength=k),
        "class_p_true": np.bincount(at_label, weights=stats.p_true[counted], minlength=k),
    }


def tally(view: ChunkView, top_k: int, sketch: QuantileSketch, rules: bool = True) -> ChunkTally:
    """The tally of one chunk (`view.stats.loss`: the true loss, NaN on ignored rows). Without
    `rules` the numpy path leaves the rule counts at 0 (the C path counts them anyway: free)."""
    stats = view.stats
    dense = view.num_classes <= DENSE_CLASS_LIMIT
    if native.has_tally() and C_RULES_MATCH and stats.score_max is not None and stats.loss.size:
        rows = {"loss": stats.loss, "p_true": stats.p_true, "p_max": stats.p_max, "top": stats.score_max,
                "bottom": stats.score_min, "log_norm": stats.log_norm, "label": stats.label, "pred": stats.pred,
                "rank": stats.rank, "label_is_int": stats.label_is_int, "label_ok": stats.label_ok, "ignored": view.ignored}
        fields = native.tally(
            rows, KINDS[view.kind], view.num_classes, top_k, per_class=dense, codes=RULE_CODES, ranked_codes=RANKED_CODES,
            off_rules=SIGMOID_OFF if view.binary is not None else 0,
            **_limits(sketch, view.score_dtype, view.num_classes, view.binary is not None),
        )
        return ChunkTally(**fields) if dense else ChunkTally(**{**fields, **sparse_class_sums(stats)})
    counts = _tally_numpy(view, top_k, sketch, rules, dense)
    return counts if dense else replace(counts, **sparse_class_sums(stats))


def binary_logits_tally(raw: npt.NDArray, labels: npt.NDArray, cut: float, top_k: int, sketch: QuantileSketch, score_dtype: str
                        ) -> tuple[ChunkTally, npt.NDArray[np.float64], npt.NDArray[np.uint8]] | None:
    """A binary head's chunk of float32 logits with 0/1 labels, scored and tallied in one C pass
    (xent_binary_tally_f32): the tally `tally` gives for binary.fast_stats' statistics of the chunk,
    with the loss and the prediction per row. None when the C path cannot take the chunk (a row
    that is not plain, no extension): the general path scores it, and its rules say what they see."""
    if not (native.has_tally() and C_RULES_MATCH and native.has_sigmoid()):
        return None
    got = native.binary_tally(raw, labels, cut, top_k, codes=RULE_CODES, ranked_codes=RANKED_CODES, off_rules=SIGMOID_OFF,
                              **_limits(sketch, score_dtype, 2, True))
    if got is None:
        return None
    fields, loss, pred = got
    return ChunkTally(**fields), loss, pred


def _limits(sketch: QuantileSketch, score_dtype: str, num_classes: int, binary: bool) -> dict[str, float]:
    """The C tally's thresholds for a chunk of these scores."""
    return {"log_gamma": sketch.log_gamma, "min_indexable": MIN_INDEXABLE, "overflow_limit": overflow_limit(score_dtype),
            "probs_tolerance": PROBS_SUM_TOLERANCE, "log_probs_tolerance": LOG_PROBS_TOLERANCE,
            "outlier": outlier_threshold(num_classes, binary), "confident": CONFIDENT,
            "not_log_probs_tolerance": not_log_probs_tolerance(score_dtype)}


def _tally_numpy(view: ChunkView, top_k: int, sketch: QuantileSketch, rules: bool, dense: bool = True) -> ChunkTally:
    stats = view.stats
    c = view.num_classes
    loss = stats.counted_values(stats.loss)
    label = stats.counted_values(stats.label)
    right = stats.counted_correct
    positive = loss[loss > MIN_INDEXABLE]
    masks = RowMasks(view)
    hits = {code: int(np.count_nonzero(masks.of(code))) if rules else 0 for code in RULE_CODES}
    ints = masks.sparse_labels if view.targets is None else np.zeros(stats.loss.size, dtype=bool)
    int_labels = masks.label[ints]
    overflow = masks.of("XE103") if hits["XE103"] else None
    return ChunkTally(
        counted=int(loss.size),
        correct=int(np.count_nonzero(right)),
        top_k_hits=int(np.count_nonzero(stats.counted_values(stats.rank) <= top_k)),
        loss_min=float(loss.min()) if loss.size else math.inf,
        loss_max=float(loss.max()) if loss.size else -math.inf,
        support=np.bincount(label, minlength=c) if dense else None,
        class_correct=np.bincount(stats.label[right], minlength=c) if dense else None,
        class_loss=np.bincount(label, weights=loss, minlength=c) if dense else None,
        class_p_true=np.bincount(label, weights=stats.counted_values(stats.p_true), minlength=c) if dense else None,
        predicted=np.bincount(stats.counted_values(stats.pred), minlength=c) if dense else None,
        keys=sketch.keys(positive),
        zeros=int(np.count_nonzero(np.abs(loss) <= MIN_INDEXABLE)),
        negatives=int(np.count_nonzero(loss < -MIN_INDEXABLE)),
        hits=hits,
        max_abs=float(masks.magnitude[overflow].max()) if overflow is not None else -math.inf,
        int_labels=int(int_labels.size),
        label_min=int(int_labels.min()) if int_labels.size else 0,
        label_max=int(int_labels.max()) if int_labels.size else 0,
        at_num_classes=int(np.count_nonzero(int_labels == c)),
        ranked={
            "XE402": top_rows(masks.of("XE402"), stats.loss) if hits["XE402"] else np.empty(0, np.int64),
            "XE404": top_rows(masks.of("XE404"), stats.p_max) if hits["XE404"] else np.empty(0, np.int64),
        },
    )
