"""Binary (sigmoid) heads: one score per row, read as two classes.

A logit z is the two-class softmax of logits [0, z] — softmax([0, z])₁ = σ(z) — and a
probability p (or its log lp) the two-class log-probabilities [log1p(−p), log p] (or
[log(−expm1(lp)), lp]). Cross-entropy against the target t then is binary cross-entropy exactly,

    −[t·log σ(z) + (1 − t)·log(1 − σ(z))] = max(z, 0) − z·t + log1p(exp(−|z|)),

which the softmax kernel computes in that stable form (its log1p of the other class's
exp(−|z|)); the probability forms take log p and log1p(−p) as they are, unclipped (a 0 on the
wrong side is an infinite loss, flagged). So every aggregate, diagnostic, slice, calibration and
`diff` of the softmax path holds for binary heads, with three differences made here: a row
predicts the positive class when P(y = 1) ≥ --threshold (not by argmax), soft targets t ∈ (0, 1)
are the dense rows [1 − t, t] counted positive when t ≥ 0.5, and the diagnostics see the scores as
stored (raw), not the two-class view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcli import native
from xentcli.kernels import SampleStats
from xentcli.stats import f1_score
from xentcli.loss import log1mexp
from xentcli.sources import Chunk


@dataclass
class BinaryRows:
    """What the two-class view leaves out: the scores as stored, the targets as numbers, and
    the rows whose stored score is outside its domain (a probability outside [0, 1], a
    log-probability above 0)."""

    raw: npt.NDArray  # [n] (or [n, K] for a multi-label head), the stored dtype
    kind: str  # as stored: logits, probs or log-probs
    targets: npt.NDArray[np.float64]  # shaped like raw
    soft: bool  # the chunk's targets are probabilities (read as dense rows)
    outside: npt.NDArray[np.bool_]  # shaped like raw
    bad_target: npt.NDArray[np.bool_] | None = None  # targets outside [0, 1] (the element path; else XE201/XE202/XE207)
    extremes: tuple[npt.NDArray, npt.NDArray] | None = None  # each row's lowest and highest score, when already known

    def per_row(self, values: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """Any element of the row (a binary head's row is its element)."""
        return values if values.ndim == 1 else values.any(axis=1)

    @cached_property
    def low(self) -> npt.NDArray:
        if self.extremes is not None:
            return self.extremes[0]
        return self.raw if self.raw.ndim == 1 else self.raw.min(axis=1)

    @cached_property
    def high(self) -> npt.NDArray:
        if self.extremes is not None:
            return self.extremes[1]
        return self.raw if self.raw.ndim == 1 else self.raw.max(axis=1)


def two_class(chunk: Chunk, kind: str, ignore: int | None, epsilon: float | None = None
              ) -> tuple[Chunk, str, BinaryRows, npt.NDArray[np.bool_] | None]:
    """The chunk as two classes, the kind the view is scored as, the rows' binary facts, and the
    rows to ignore among soft targets (None: the labels say it, as for any sparse labels)."""
    raw = chunk.scores[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == "logits":
            scores = np.zeros((raw.size, 2), raw.dtype)
            scores[:, 1] = raw
            outside = np.zeros(raw.size, bool)
            view_kind = "logits"
        else:
            if kind == "probs":
                outside = (raw < 0) | (raw > 1)
                p = raw if epsilon is None else np.clip(raw, epsilon, 1 - epsilon)  # --epsilon: Keras' clip
                low, high = np.log1p(-p), np.log(p)
            else:
                low, high = log1mexp(raw), raw.copy()
                outside = raw > 0
            scores = np.stack([low, high], axis=1)
            scores[outside] = np.nan  # no loss for them: XE113 says why
            view_kind = "log-probs"
    labels = chunk.labels
    assert labels is not None
    if labels.dtype == np.bool_:
        labels = labels.astype(np.int64)
    t = labels.astype(np.float64) if labels.dtype.kind in "biuf" else np.full(labels.size, np.nan)
    whole = labels.dtype.kind in "iu" or bool(np.all((t == np.round(t)) | ~np.isfinite(t)))
    ignored = None
    view = replace(chunk, scores=scores)
    if whole or labels.dtype.kind not in "biuf":
        view.labels = labels  # 0/1 (other whole numbers are out of range: XE201, XE202)
    else:  # soft targets: the rows [1 − t, t]; the ignore index marks rows to leave out
        ignored = np.zeros(t.size, bool) if ignore is None else t == ignore
        dense = np.stack([1 - t, t], axis=1)
        dense[ignored] = 0.5
        # a row scores as it would in a chunk of 0/1 labels, whatever its neighbours: a whole target
        # other than 0 and 1 (a label out of range) has no loss, nor has a non-finite score with a
        # fractional target; as labels do, a logit of −inf costs 0 on target 0 and inf on 1, one of
        # +inf inf on target 0 (its two-class row [−inf, 0]) and NaN on 1
        whole_t = t == np.round(t)
        finite = np.isfinite(raw)
        odd = ~ignored & ((whole_t & (t != 0) & (t != 1)) | (~finite & ~whole_t) | ((raw == np.inf) & (t == 1)))
        if kind == "logits" and not finite.all():
            scores[raw == np.inf] = (-np.inf, 0.0)
        dense[odd] = np.nan
        view.labels, view.targets = None, dense
    return view, view_kind, BinaryRows(raw, kind, t, not whole, outside), ignored


def positive_probability(rows: BinaryRows) -> npt.NDArray[np.float64]:
    """P(y = 1) per row: σ(z), p, or exp(lp)."""
    raw = rows.raw.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if rows.kind == "logits":
            return 1.0 / (1.0 + np.exp(-raw))
        return raw if rows.kind == "probs" else np.exp(raw)


def decision_cut(kind: str, threshold: float) -> float:
    """The stored score at which P(y = 1) = threshold: logit(threshold), threshold, or its log."""
    if kind == "logits":
        return -math.inf if threshold == 0 else math.inf if threshold == 1 else math.log(threshold) - math.log1p(-threshold)
    return threshold if kind == "probs" else (math.log(threshold) if threshold > 0 else -math.inf)


def fractional(t: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """The soft targets among a binary head's: finite and not a whole number (a row with a whole
    target, 0, 1 or out of range, or none, scores as labels do, whatever its neighbours)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(t) & (t != np.round(t))


def binary_stats(stats: SampleStats, rows: BinaryRows, threshold: float) -> SampleStats:
    """The two-class statistics made binary: pred = P(y = 1) ≥ threshold, the label of a soft
    target t is 1 when t ≥ 0.5 (with p_true the probability of that label), rank 1 when right,
    and the stored score as the row's extremes (what the score diagnostics judge)."""
    pred = predicts(rows.raw, rows.kind, threshold).astype(np.int64)
    raw = rows.raw.astype(np.float64)
    changes = {"pred": pred, "score_max": raw, "score_min": raw}
    label = stats.label
    if rows.soft:  # its fractional targets' rows (the others score as labels: engine._whole_targets_as_labels)
        soft = fractional(rows.targets)
        label = np.where(soft, rows.targets >= 0.5, stats.label).astype(np.int64)
        p1 = positive_probability(rows)
        changes.update(label=label, p_true=np.where(soft, np.where(label == 1, p1, 1.0 - p1), stats.p_true))
    changes["rank"] = np.where(pred == label, 1, 2).astype(np.int64)
    return replace(stats, **changes)


def fast_stats(rows: BinaryRows, labels: npt.NDArray | None, threshold: float) -> SampleStats | None:
    """binary_stats of the two-class kernel's statistics in one C pass (xent_binary_logits_f32, the
    same numbers) for float32 logits with integer 0/1 labels; None for anything else (a label of
    another value, a non-finite score, soft targets): the general path takes the chunk."""
    if (rows.kind != "logits" or rows.raw.dtype != np.float32 or rows.raw.ndim != 1 or labels is None
            or labels.dtype.kind not in "iu" or not native.has_sigmoid()):
        return None
    label = labels.astype(np.int64, copy=False)
    out = native.binary_logits_f32(rows.raw, label, float(logit_cut32(threshold)))
    if out is None:
        return None
    every = np.ones(label.size, bool)
    return SampleStats(label=label, label_is_int=every, label_ok=every, loss=out["loss"], pred=out["pred"], p_true=out["p_true"],
                       rank=out["rank"], p_max=out["p_max"], score_max=out["score"], score_min=out["score"], log_norm=out["log_norm"])


class RowLookup:
    """One of binary_logits_f32's per-row statistics of a chunk that the fused tally scored
    (tally.binary_logits_tally keeps only the loss and the prediction): computed, by the same C
    function, for the rows asked — the few example rows a finding shows — and computed whole by
    np.asarray for any other use, so that every reader gets the general path's numbers."""

    def __init__(self, raw: npt.NDArray[np.float32], labels: npt.NDArray, cut: np.float32, name: str) -> None:
        self.raw, self.labels, self.cut, self.name = raw, labels, cut, name

    def _of(self, raw: npt.NDArray, labels: npt.NDArray) -> npt.NDArray:
        out = native.binary_logits_f32(np.atleast_1d(raw), np.atleast_1d(labels).astype(np.int64), float(self.cut))
        assert out is not None  # the fused tally took these rows: finite scores, 0/1 labels
        return out[self.name]

    def __getitem__(self, index: Any) -> Any:
        raw = self.raw[index]
        values = self._of(raw, self.labels[index])
        return values[0] if np.ndim(raw) == 0 else values

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray:
        values = self._of(self.raw, self.labels)
        return values if dtype is None else values.astype(dtype)

    def __len__(self) -> int:
        return self.raw.size

    @property
    def size(self) -> int:
        return self.raw.size


def fused_stats(raw: npt.NDArray[np.float32], labels: npt.NDArray, loss: npt.NDArray[np.float64], pred: npt.NDArray,
                threshold: float) -> SampleStats:
    """The statistics of a chunk that tally.binary_logits_tally scored (float32 logits, 0/1 labels,
    every row counted): its loss and prediction, the labels as given, the rest looked up (RowLookup)."""
    cut = logit_cut32(threshold)
    every = np.broadcast_to(True, raw.shape)

    def lookup(name: str) -> Any:
        return RowLookup(raw, labels, cut, name)

    stats = SampleStats(label=labels, label_is_int=every, label_ok=every, loss=loss, pred=pred, p_true=lookup("p_true"),
                        rank=lookup("rank"), p_max=lookup("p_max"), score_max=lookup("score"), score_min=lookup("score"),
                        log_norm=lookup("log_norm"))
    stats.__dict__.update(counted=every, all_counted=True)  # the cached masks, known: the one pass takes a chunk whose rows all count
    return stats


def logit_margin(raw: npt.NDArray, kind: str, threshold: float) -> npt.NDArray[np.float64]:
    """logit(p) − logit(threshold): positive when the row predicts the positive class (NaN for a
    score outside its domain)."""
    x = raw.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if kind == "logits":
            logit = x
        elif kind == "probs":
            logit = np.where((x >= 0) & (x <= 1), np.log(x) - np.log1p(-x), np.nan)
        else:
            logit = np.where(x <= 0, x - log1mexp(x), np.nan)
        return logit - decision_cut("logits", threshold)


def sample_columns(rows: BinaryRows, threshold: float) -> dict[str, npt.NDArray]:
    """The per-sample output's binary columns: p = P(y = 1), the margin in logits, and the target
    as given."""
    raw = rows.raw if rows.raw.ndim == 1 else rows.raw[:, 0]
    targets = rows.targets if rows.targets.ndim == 1 else rows.targets[:, 0]
    p = positive_probability(rows)
    return {"p": p if p.ndim == 1 else p[:, 0], "margin": logit_margin(raw, rows.kind, threshold), "target": targets}


# ---- the element path: multi-label heads, and binary heads with --pos-weight or --class-weights ------

@dataclass
class ElementRows:
    """One chunk's per-element results of a sigmoid head with K labels ([n, K] each)."""

    p: npt.NDArray[np.float64]  # P(y_k = 1)
    pred: npt.NDArray[np.bool_]  # p ≥ threshold
    positive: npt.NDArray[np.bool_]  # the target counts as positive (t ≥ 0.5)
    counted: npt.NDArray[np.bool_]  # not ignored, with a target in [0, 1] and a finite loss
    loss: npt.NDArray[np.float64]  # the (weighted) element loss, NaN where not counted
    scored: npt.NDArray[np.bool_] | None = None  # not ignored, with a target in [0, 1] (a finite score or not)
    totals: Any = None  # the C fast path's per-label sums (LabelTotals), the per-element arrays then left empty


def element_losses(raw: npt.NDArray, kind: str, t: npt.NDArray[np.float64], pos_weight: npt.NDArray | None,
                   class_weights: npt.NDArray | None) -> npt.NDArray[np.float64]:
    """ℓ = w·(W·t·(−log p) + (1 − t)·(−log(1 − p))) per element, with 0·∞ = 0: −log σ(z) = softplus(−z)
    and −log(1 − σ(z)) = softplus(z) for logits; −log p and −log1p(−p) for probabilities;
    −lp and −log(−expm1(lp)) for log-probabilities. W is PyTorch's pos_weight, w its weight.
    Which formula an element gets depends on that element alone (its score's finiteness, its
    target), never on the chunk around it: a row has the same bits in any chunk."""
    # float32 scores in float32 (numpy's exp and log1p are within an ulp: inside the 1e-6 guarantee),
    # everything else in float64
    x = raw if raw.dtype == np.float32 else raw.astype(np.float64)
    t = t.astype(x.dtype, copy=False)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if kind == "logits" and pos_weight is None:
            # the stable form itself, max(z, 0) − z·t + log1p(exp(−|z|)): fewest passes, exact for finite z
            loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
            if x.dtype == np.float32:
                # a soft target: max(z, 0) − z·t cancels (z large, t near 1), so z·t in float64, where a float32 product is exact
                soft = (t != 0) & (t != 1) & ~np.isnan(t)
                if soft.any():
                    xs = x[soft].astype(np.float64)
                    loss = loss.astype(np.float64)
                    loss[soft] = np.maximum(xs, 0) - xs * t[soft].astype(np.float64) + np.log1p(np.exp(-np.abs(x[soft]))).astype(np.float64)
            certain = ~np.isfinite(x)
            if certain.any():  # ±inf: 0·∞ = 0, a certain score costs nothing on its side (softplus below)
                loss = loss.astype(np.float64)
                loss[certain] = _softplus_terms(x[certain].astype(np.float64), t[certain].astype(np.float64), None, kind)
            return loss if class_weights is None else class_weights * loss
        loss = _softplus_terms(x, t, pos_weight, kind)
        return loss if class_weights is None else class_weights * loss


def _softplus_terms(x: npt.NDArray, t: npt.NDArray, pos_weight: npt.NDArray | None, kind: str) -> npt.NDArray:
    """W·t·(−log p) + (1 − t)·(−log(1 − p)) element by element, with 0·∞ = 0 where p is 0 or 1."""
    if kind == "logits":  # softplus(∓z) = max(∓z, 0) + log1p(exp(−|z|)): one exp and one log1p for both
        shared = np.log1p(np.exp(-np.abs(x)))
        neg, pos = np.maximum(-x, 0) + shared, np.maximum(x, 0) + shared
    elif kind == "probs":
        neg, pos = -np.log(x), -np.log1p(-x)
    else:
        neg, pos = -x, -log1mexp(x)
    positive_part = t * neg if pos_weight is None else pos_weight * t * neg
    negative_part = (1 - t) * pos
    # the 0·∞ = 0 rule on the elements where a term is infinite: the same value as the product elsewhere
    positive_part = np.where((t == 0) & np.isinf(neg), 0.0, positive_part)
    negative_part = np.where((t == 1) & np.isinf(pos), 0.0, negative_part)
    return positive_part + negative_part


NUMPY_BLOCK_ELEMENTS = 1 << 17  # elements the numpy path scores at once: ~90 bytes of temporaries each


def element_chunk(scores: npt.NDArray, kind: str, targets: npt.NDArray, ignore: int | None, smoothing: float,
                  pos_weight: npt.NDArray | None, class_weights: npt.NDArray | None, threshold: float, detail: bool = True,
                  epsilon: float | None = None) -> tuple[SampleStats, npt.NDArray[np.bool_], BinaryRows, ElementRows]:
    """A chunk of a sigmoid head scored element by element: the rows' statistics (a row's loss is
    the mean of its counted elements' losses; with K = 1 exactly the binary head's), the rows to
    ignore (every element ignored), the rows as stored (for the diagnostics) and the elements
    (their probabilities only with `detail` or K = 1: the per-sample output needs them). Chunks are
    sized for the C path; the numpy path scores a larger one in blocks of rows (bounded temporaries)."""
    raw = scores
    n, k = raw.shape
    # the C path takes float32 targets only: it and the numpy path agree to the 1e-6 guarantee, not to the bit, so a
    # target type both could take would make the numbers depend on which chunks hold an element the C path refuses
    if (not detail and k > 1 and kind == "logits" and raw.dtype == np.float32 and targets.dtype == np.float32 and pos_weight is None
            and class_weights is None and not smoothing and ignore not in (0, 1) and native.has_sigmoid()):
        t = targets.reshape(raw.shape)
        fast = _element_chunk_native(raw, t, threshold)
        if fast is not None:
            return fast
        # a row the C path refuses (a non-finite score, a target outside [0, 1]) goes the numpy way, the
        # others still the C way: each row's bits depend on the row alone, not on what its chunk holds
        with np.errstate(invalid="ignore"):
            plain = np.isfinite(raw).all(axis=1) & ((t >= 0) & (t <= 1)).all(axis=1)
        if plain.any():
            c_rows = _element_chunk_native(raw[plain], t[plain], threshold)
            assert c_rows is not None
            rest = element_chunk(raw[~plain], kind, targets[~plain], ignore, smoothing, pos_weight, class_weights, threshold, detail, epsilon)
            return _rows_merged(plain, c_rows, rest, raw)
    rows_at_once = max(1, NUMPY_BLOCK_ELEMENTS // k)
    if n > rows_at_once:
        blocks = [_element_block(raw[start:start + rows_at_once], kind, targets[start:start + rows_at_once], ignore, smoothing,
                                 pos_weight, class_weights, threshold, detail, epsilon) for start in range(0, n, rows_at_once)]
        joined = [_joined([block[part] for block in blocks]) for part in range(4)]
        joined[2].raw = raw  # the chunk's own array, not a copy
        return tuple(joined)  # type: ignore[return-value]
    return _element_block(raw, kind, targets, ignore, smoothing, pos_weight, class_weights, threshold, detail, epsilon)


def _rows_merged(plain: npt.NDArray[np.bool_], c_rows: tuple[Any, ...], rest: tuple[Any, ...], raw: npt.NDArray
                 ) -> tuple[SampleStats, npt.NDArray[np.bool_], BinaryRows, ElementRows]:
    """The C path's results for the `plain` rows and the numpy path's for the others as one chunk's:
    rows back in place, the per-label sums added (the C path keeps no per-element arrays, and neither
    is asked for them here: no per-sample output, calibration or temperature scan)."""
    (c_stats, c_ignored, c_binary, c_elements), (r_stats, r_ignored, r_binary, r_elements) = c_rows, rest

    def placed(mine: Any, theirs: Any) -> Any:
        out = np.empty((plain.size, *mine.shape[1:]), np.result_type(mine, theirs))
        out[plain], out[~plain] = mine, theirs
        return out

    stats = SampleStats(**{f.name: placed(getattr(c_stats, f.name), getattr(r_stats, f.name)) for f in fields(SampleStats)
                           if isinstance(getattr(c_stats, f.name), np.ndarray) and isinstance(getattr(r_stats, f.name), np.ndarray)})
    bad_target = np.zeros(raw.shape, bool)
    if r_binary.bad_target is not None:
        bad_target[~plain] = r_binary.bad_target
    binary = BinaryRows(raw, "logits", placed(c_binary.targets, r_binary.targets), soft=False, outside=np.broadcast_to(False, raw.shape),
                        bad_target=bad_target, extremes=(stats.score_min, stats.score_max))
    totals = LabelTotals.of(c_elements)
    totals.merge(LabelTotals.of(r_elements))
    empty = np.empty((0, raw.shape[1]))
    return stats, placed(c_ignored, r_ignored), binary, ElementRows(empty, empty.astype(bool), empty.astype(bool), empty.astype(bool), empty,
                                                                     None, totals)


def _joined(parts: list[Any]) -> Any:
    """Blocks of rows as one: arrays concatenated, everything else as in the first block."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    values = {}
    for f in fields(parts[0]):
        items = [getattr(part, f.name) for part in parts]
        values[f.name] = np.concatenate(items) if isinstance(items[0], np.ndarray) else items[0]
    return type(parts[0])(**values)


def _element_block(raw: npt.NDArray, kind: str, targets: npt.NDArray, ignore: int | None, smoothing: float,
                   pos_weight: npt.NDArray | None, class_weights: npt.NDArray | None, threshold: float, detail: bool,
                   epsilon: float | None) -> tuple[SampleStats, npt.NDArray[np.bool_], BinaryRows, ElementRows]:
    """element_chunk's numpy path on a block of rows."""
    n, k = raw.shape
    if targets.dtype.kind not in "biuf":
        t = np.full(raw.shape, np.nan)
    else:  # float32 targets stay float32 (0/1 and soft values alike are scored in the scores' precision at most)
        t = np.asarray(targets, np.float32 if targets.dtype == np.float32 else np.float64).reshape(raw.shape)
    with np.errstate(invalid="ignore"):
        if ignore not in (0, 1) and bool(((t == 0) | (t == 1)).all()):  # the usual multi-hot rows: nothing left out
            ignored_el = bad_target = np.zeros(raw.shape, bool)
        else:
            # a masked (null, NaN) element of a multi-label row is left out, as the ignore index is; a
            # binary row's NaN target is no target (XE115)
            ignored_el = (np.isnan(t) if k > 1 else np.zeros(raw.shape, bool)) | ((t == ignore) if ignore is not None else False)
            bad_target = ~ignored_el & ~((t >= 0) & (t <= 1))
        if kind == "probs":
            outside = (raw < 0) | (raw > 1)
        elif kind == "log-probs":
            outside = raw > 0
        else:
            outside = np.zeros(raw.shape, bool)
    left_out = ignored_el | bad_target
    special = bool(left_out.any())  # the usual chunk has no such element: no masking passes
    smoothed = t * (1 - smoothing) + smoothing / 2 if smoothing else t
    clipped = raw if epsilon is None or kind != "probs" else np.clip(raw, epsilon, 1 - epsilon)  # --epsilon: Keras' clip
    loss = element_losses(clipped, kind, np.where(left_out, 0.0, smoothed) if special else smoothed, pos_weight, class_weights)
    if special or outside.any():
        loss[bad_target | outside] = np.nan  # no loss for them: XE113, XE115 say why
    scored = ~ignored_el
    n_scored = scored.sum(axis=1) if special else np.full(n, k)
    ignored = n_scored == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        row_loss = (np.where(scored, loss, 0.0) if special else loss).sum(axis=1, dtype=np.float64) / n_scored
    row_loss[ignored] = np.nan
    positive = t >= 0.5
    rows = _rows_as_stored(raw, kind, t, outside, bad_target)
    pred = predicts(raw, kind, threshold)
    p = positive_probability(rows) if detail or k == 1 else np.empty((0, k))
    counted = scored if loss.dtype.kind == "f" and not special and bool(np.isfinite(row_loss).all()) else scored & np.isfinite(loss)
    every = bool(counted.all())
    elements = ElementRows(p, pred, positive, counted, loss if every else np.where(counted, loss, np.nan), scored & ~bad_target)
    if k == 1:  # a binary head: the row is its one element
        label, pred_row = positive[:, 0].astype(np.int64), pred[:, 0].astype(np.int64)
        p_true = np.where(label == 1, p[:, 0], 1.0 - p[:, 0])
        p_max = np.maximum(p[:, 0], 1.0 - p[:, 0])
    else:  # multi-label: right means an exact match (label 0, pred 0); p_true and p_max have no meaning
        right = pred == positive
        exact = (right | ~scored).all(axis=1) if special else right.all(axis=1)
        label, pred_row = np.zeros(n, np.int64), np.where(exact, 0, 1).astype(np.int64)
        p_true = p_max = np.full(n, np.nan)
    with np.errstate(invalid="ignore"):
        top, bottom = raw.max(axis=1).astype(np.float64), raw.min(axis=1).astype(np.float64)
    stats = SampleStats(
        label=label, label_is_int=np.ones(n, bool), label_ok=~ignored, loss=row_loss, pred=pred_row, p_true=p_true,
        rank=np.where(label == pred_row, 1, 2).astype(np.int64), p_max=p_max, score_max=top, score_min=bottom,
    )
    return stats, ignored, rows, elements


def logit_cut32(threshold: float) -> np.float32:
    """The float32 logit at which a float32 logit predicts the positive class (z ≥ it ⇔ σ(z) ≥ threshold)."""
    return _float32_cut(decision_cut("logits", threshold))


def _float32_cut(cut: float) -> np.float32:
    """The smallest float32 at or above `cut`: z ≥ it ⇔ z ≥ cut for float32 z (numpy would round a
    float cut to the nearest float32, which may lie below it)."""
    cut32 = np.float32(cut)
    return np.nextafter(cut32, np.float32(np.inf)) if float(cut32) < cut else cut32


def predicts(raw: npt.NDArray, kind: str, threshold: float) -> npt.NDArray[np.bool_]:
    """P(y = 1) ≥ threshold, decided on the stored score exactly (float32 scores against the float32
    at or above the cut)."""
    cut = decision_cut(kind, threshold)
    return raw >= (_float32_cut(cut) if raw.dtype == np.float32 else np.float64(cut))


def _element_chunk_native(raw: npt.NDArray[np.float32], t: npt.NDArray[np.float32], threshold: float
                          ) -> tuple[SampleStats, npt.NDArray[np.bool_], BinaryRows, ElementRows] | None:
    """element_chunk's fast path in C (xent_sigmoid_f32): finite logits, targets in [0, 1] (nothing
    ignored or masked), no weights or smoothing, no per-element output. None when the chunk has
    anything else: the numpy path takes it."""
    n, k = raw.shape
    out = native.sigmoid_f32(raw, t, float(logit_cut32(threshold)))  # None: a non-finite score or a target outside [0, 1]
    if out is None:
        return None
    exact = out["row_right"] == k
    label, pred_row = np.zeros(n, np.int64), np.where(exact, 0, 1).astype(np.int64)
    stats = SampleStats(
        label=label, label_is_int=np.ones(n, bool), label_ok=np.ones(n, bool), loss=out["row_loss"] / k, pred=pred_row,
        p_true=np.full(n, np.nan), rank=np.where(exact, 1, 2).astype(np.int64), p_max=np.full(n, np.nan),
        score_max=out["row_max"], score_min=out["row_min"],
    )
    totals = LabelTotals(np.full(k, n, np.int64), out["positives"], out["predicted"], out["correct"], out["true_positives"], out["loss_sum"])
    empty = np.empty((0, k))
    rows = BinaryRows(raw, "logits", t, soft=False, outside=np.broadcast_to(False, raw.shape), extremes=(out["row_min"], out["row_max"]))
    return stats, np.zeros(n, bool), rows, ElementRows(empty, empty.astype(bool), empty.astype(bool), empty.astype(bool), empty, None, totals)


def _rows_as_stored(raw: npt.NDArray, kind: str, t: npt.NDArray, outside: npt.NDArray, bad_target: npt.NDArray) -> BinaryRows:
    return BinaryRows(raw, kind, t, soft=False, outside=outside, bad_target=bad_target)


@dataclass
class LabelTotals:
    """A multi-label head's per-label sums over counted elements (mergeable): elements, positive
    targets, positive predictions, right ones, true positives, and the summed loss."""

    counted: npt.NDArray[np.int64]
    positives: npt.NDArray[np.int64]
    predicted: npt.NDArray[np.int64]
    correct: npt.NDArray[np.int64]
    true_positives: npt.NDArray[np.int64]
    loss_sum: npt.NDArray[np.float64]

    @classmethod
    def of(cls, e: ElementRows) -> LabelTotals:
        if e.totals is not None:
            return e.totals
        c = e.counted
        if c.all():  # the usual chunk: no mask to apply
            n = np.full(c.shape[1], c.shape[0], np.int64)
            return cls(n, e.positive.sum(axis=0), e.pred.sum(axis=0), (e.pred == e.positive).sum(axis=0),
                       (e.pred & e.positive).sum(axis=0), e.loss.sum(axis=0, dtype=np.float64))
        return cls(c.sum(axis=0), (e.positive & c).sum(axis=0), (e.pred & c).sum(axis=0), ((e.pred == e.positive) & c).sum(axis=0),
                   (e.pred & e.positive & c).sum(axis=0), np.where(c, e.loss, 0.0).sum(axis=0, dtype=np.float64))

    def merge(self, other: LabelTotals) -> None:
        for name in ("counted", "positives", "predicted", "correct", "true_positives", "loss_sum"):
            getattr(self, name).__iadd__(getattr(other, name))

    def summary(self) -> dict[str, float]:
        n = int(self.counted.sum())
        nan = math.nan
        return {"hamming_accuracy": int(self.correct.sum()) / n if n else nan,
                "positive_rate": int(self.positives.sum()) / n if n else nan,
                "predicted_positive_rate": int(self.predicted.sum()) / n if n else nan}

    def rows(self, names: tuple[str, ...] | None) -> list[dict[str, Any]]:
        """The per-label table: support = positive targets; precision and recall at the threshold
        (null where undefined, as scikit-learn's zero_division=nan)."""
        out = []
        for k in range(self.counted.size):
            n, tp = int(self.counted[k]), int(self.true_positives[k])
            pos, pred = int(self.positives[k]), int(self.predicted[k])
            precision = tp / pred if pred else math.nan
            recall = tp / pos if pos else math.nan
            out.append({"label": k, **({"name": names[k]} if names else {}), "support": pos, "elements": n,
                        "loss_mean": float(self.loss_sum[k]) / n if n else math.nan,
                        "accuracy": int(self.correct[k]) / n if n else math.nan, "precision": precision, "recall": recall,
                        "f1": f1_score(tp, pred, pos)})
        return out


def element_columns(e: ElementRows, targets: npt.NDArray) -> dict[str, npt.NDArray]:
    """The per-sample output's multi-label columns: per-label p, pred and target lists, the exact
    match and the Hamming accuracy over the row's counted elements."""
    n_counted = e.counted.sum(axis=1)
    right = (e.pred == e.positive) & e.counted
    with np.errstate(invalid="ignore", divide="ignore"):
        hamming = right.sum(axis=1) / n_counted
    exact = np.where(n_counted > 0, (right | ~e.counted).all(axis=1), np.nan)
    return {"p": e.p, "pred": e.pred, "target": np.asarray(targets, np.float64).reshape(e.p.shape), "exact_match": exact,
            "hamming_accuracy": hamming}


def element_view(raw: npt.NDArray, kind: str, t: npt.NDArray, scored: npt.NDArray[np.bool_]
                 ) -> tuple[npt.NDArray[np.int64], npt.NDArray, str, npt.NDArray | None, npt.NDArray | None]:
    """A sigmoid head's scored elements as two-class rows, as two_class reads a binary head (for
    the temperature scan): their positions in the flattened [n·K] elements, the rows, the kind they
    are scored as, and 0/1 labels or, for soft targets, the rows [1 − t, t]."""
    positions = np.flatnonzero(scored.ravel())
    x, target = raw.reshape(-1)[positions], t.reshape(-1)[positions].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == "logits":
            rows = np.stack([np.zeros_like(x), x], axis=1)
        elif kind == "probs":
            rows = np.stack([np.log1p(-x), np.log(x)], axis=1)
        else:
            rows = np.stack([log1mexp(x), x], axis=1)
    whole = bool(np.all((target == 0) | (target == 1)))
    labels = target.astype(np.int64) if whole else None
    targets = None if whole else np.stack([1 - target, target], axis=1)
    return positions, rows, "logits" if kind == "logits" else "log-probs", labels, targets
