"""Per-chunk math: stable softmax cross-entropy and the per-sample statistics. No I/O; logits with
integer labels go through the C kernel (native.py) where it is built, everything else through numpy.

Every function takes one chunk of scores `[n, C]` (float32 or float64; float16 is widened to
float32 by the sources) and returns float64 per-sample values. The O(n·C) passes run in the
scores' own dtype, the O(n) assembly in float64. For float32 scores each loss is within
max(1e-6, 1e-6·|loss|) of the float64 value of the same stored numbers (tests/test_kernels.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields, replace
from functools import cached_property

import numpy as np
import numpy.typing as npt

from xentcli import native
from xentcli.config import InputKind


# Rows per kernel call are chosen so that one block of scores (and its two work buffers) stays
# in the CPU cache: numpy's passes over a cache-resident block run several times faster.
BLOCK_ELEMENTS = 1 << 18

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


@dataclass
class SampleStats:
    """Per-sample results of one chunk; every array has one entry per row.

    `label` is the target class (the argmax of a dense target row), `label_ok` says whether it is
    usable (a whole number in [0, C) for sparse labels, a finite row for dense targets). `loss` is
    NaN where the label is unusable, and NaN/inf where the scores make it so.
    """

    label: I64
    label_is_int: Bool
    label_ok: Bool
    loss: F64
    pred: I64
    p_true: F64
    rank: I64
    p_max: F64
    margin: F64 | None = None  # computed with detail=True only (the per-sample output)
    entropy: F64 | None = None
    lp_dot: F64 | None = None  # [n, k] Σ_c V_ck log p_c, for class_vectors V (smoothing, class weights)
    target_lp_dot: F64 | None = None  # [n, k] Σ_c t_c V_ck log p_c (dense targets)
    score_max: F64 | None = None  # the row's largest score (NaN if the row holds a NaN)
    score_min: F64 | None = None  # its smallest, with extremes=True (for the diagnostics)
    log_norm: F64 | None = None  # logits and log-probabilities: logsumexp(z); probabilities: log Σp
    p_squares: F64 | None = None  # Σ_c p_c² (the C kernel, when asked: the Brier score's term), NaN where not known
    score_true: F64 | None = None  # the score of the row's class (the C kernel, when asked: optax's loss), exact

    # Computed once per chunk (several aggregates ask); replace() builds a new object, so a new
    # loss gets a new mask.
    @cached_property
    def correct(self) -> Bool:
        return self.label_ok & (self.pred == self.label)

    @cached_property
    def counted(self) -> Bool:
        """Rows that enter the means: a usable label and a finite loss."""
        return self.label_ok & np.isfinite(self.loss)

    @cached_property
    def counted_correct(self) -> Bool:
        """Counted rows predicted right (an ignored or NaN row can have pred == label)."""
        return self.correct & self.counted

    @cached_property
    def all_counted(self) -> bool:
        return bool(self.counted.all())

    def with_rows(self, rows: npt.NDArray[np.int64], other: SampleStats) -> SampleStats:
        """These statistics with `rows` taken from `other` (the statistics of those rows alone):
        each array both have, copied and patched."""
        updates = {}
        for name in (f.name for f in fields(self)):
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, np.ndarray) and theirs is not None:
                mine = mine.copy()
                mine[rows] = theirs
                updates[name] = mine
        return replace(self, **updates)

    def counted_values(self, values: npt.NDArray) -> npt.NDArray:
        """`values` on the counted rows (no copy when every row counts)."""
        return values if self.all_counted else values[self.counted]


# Whole labels beyond ±2^62 cannot be classes of any dump: they are kept as whole numbers at this
# magnitude (out of range for every C, never equal to an ignore index a user can mean), not wrapped.
LABEL_LIMIT = 2**62


@dataclass
class BlockResults:
    """What a kernel computes for a block of rows (float64 per row unless said): the fields of
    SampleStats that do not depend on how the labels were checked. None: not computed."""

    loss: F64
    p_true: F64
    p_max: F64
    entropy: F64 | None
    margin: F64 | None
    rank: I64
    pred: I64
    lp_dot: F64 | None = None
    target_lp_dot: F64 | None = None
    score_max: F64 | None = None
    score_min: F64 | None = None
    log_norm: F64 | None = None
    p_squares: F64 | None = None
    score_true: F64 | None = None

    @classmethod
    def concatenate(cls, blocks: list[BlockResults]) -> BlockResults:
        if len(blocks) == 1:
            return blocks[0]
        joined = {}
        for item in fields(cls):
            parts = [getattr(block, item.name) for block in blocks]
            joined[item.name] = None if parts[0] is None else np.concatenate(parts)
        return cls(**joined)

    def stats(self, label: I64, label_is_int: Bool, label_ok: Bool) -> SampleStats:
        return SampleStats(label=label, label_is_int=label_is_int, label_ok=label_ok,
                           **{item.name: getattr(self, item.name) for item in fields(self)})



def ties_before(z: npt.NDArray, y: npt.NDArray, z_true: npt.NDArray) -> npt.NDArray[np.int64]:
    """Per row, the classes before the label scored exactly as it is: a rank counts them ahead of
    it, as the argmax (first index of the maximum) does, so that rank 1 is pred == label and top-1
    accuracy is accuracy (rows of equal scores made every top-k 1.0). `z` is [n, C] (or a view)."""
    with np.errstate(invalid="ignore"):
        equal = z == z_true[:, None]
    out = np.zeros(len(z), np.int64)
    tied = np.flatnonzero(np.count_nonzero(equal, axis=1) > 1)  # the label's own score is one: most rows have no tie
    if tied.size:
        out[tied] = np.count_nonzero(equal[tied] & (np.arange(z.shape[1]) < np.asarray(y)[tied, None]), axis=1)
    return out

def whole_labels(labels: npt.NDArray) -> tuple[I64, Bool]:
    """Integer class of each sparse label, and whether it is a whole number: float labels holding
    whole numbers (2.0) count as integers; NaN (also a null read from Arrow) and fractional
    labels do not (their class is 0). Whole labels beyond ±2^62 (uint64 ≥ 2^63, 1e300) keep their
    sign at ±2^62: out of range, never wrapped onto a class or onto the ignore index."""
    if labels.dtype.kind == "u" and labels.dtype.itemsize == 8:
        return np.minimum(labels, np.uint64(LABEL_LIMIT)).astype(np.int64), np.ones(labels.shape, dtype=bool)
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64, copy=False), np.ones(labels.shape, dtype=bool)
    if labels.dtype.kind == "b":
        return labels.astype(np.int64), np.ones(labels.shape, dtype=bool)
    as_float = labels.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):
        is_int = np.isfinite(as_float) & (np.floor(as_float) == as_float)
        clipped = np.clip(as_float, -float(LABEL_LIMIT), float(LABEL_LIMIT))
    return np.where(is_int, clipped, 0.0).astype(np.int64), is_int


def label_classes(labels: npt.NDArray, num_classes: int) -> tuple[I64, Bool, Bool]:
    """whole_labels, and whether each label is usable: whole and in [0, num_classes) (the C
    kernel, _ckernel.c, checks the same)."""
    label, is_int = whole_labels(labels)
    return label, is_int, is_int & (label >= 0) & (label < num_classes)


def weighted_row_sum(weights: npt.NDArray, values: npt.NDArray, axis: int = 1) -> F64:
    """Σ_j w_ij · v_ij along `axis` in float64, with 0 · (±inf) = 0 (a zero target on a −inf log-prob).

    The fast path is one einsum; only rows where it met 0 · inf are summed again term by term.
    axis=0 serves the transposed [C, n] blocks.
    """
    if axis == 0:
        weights, values = weights.T, values.T
    total = np.einsum("ij,ij->i", weights, values, dtype=np.float64)
    bad = ~np.isfinite(total)
    if bad.any():
        w, v = weights[bad], values[bad]
        with np.errstate(invalid="ignore"):
            total[bad] = np.where(w != 0, w.astype(np.float64) * v, 0.0).sum(axis=1)
    return total


def dot_vectors(values: npt.NDArray, vectors: npt.NDArray) -> F64:
    """values [n, C] @ vectors [C, k] in float64, with 0 · (±inf) = 0 (a zero class weight on a
    masked −inf logit). Summed in float64 in an order that depends on C alone (native.row_dots, or
    one einsum per vector): a BLAS matmul (in the scores' float32, at that) rounds a row differently
    with the number of rows beside it, so a row's smoothed or weighted loss moved with --chunk-rows."""
    total = native.row_dots(values, vectors)
    if total is None:
        with np.errstate(invalid="ignore", over="ignore"):  # the rows it leaves non-finite are redone below
            total = np.stack([np.einsum("ij,j->i", values, vectors[:, k], dtype=np.float64) for k in range(vectors.shape[1])], axis=1)
    bad = ~np.isfinite(total).all(axis=1)
    if bad.any():
        rows = values[bad].astype(np.float64)[:, :, None]
        with np.errstate(invalid="ignore"):
            total[bad] = np.where(vectors != 0, rows * vectors, 0.0).sum(axis=1)
    return total


def _targets_times(targets: npt.NDArray, values: npt.NDArray) -> npt.NDArray:
    """t ⊙ v with 0 where t = 0 (so a −inf log-probability under a zero target adds nothing)."""
    with np.errstate(invalid="ignore", over="ignore"):
        product = targets * values
    product[(targets == 0) & np.isnan(product)] = 0.0
    return product


def _max_excluding(work: npt.NDArray, rows: I64, pred: I64) -> F64:
    """Largest entry of each row other than the one at `pred`; overwrites work[rows, pred] with -inf."""
    work[rows, pred] = -np.inf
    return work.max(axis=1).astype(np.float64)


# Up to this many classes the logits kernel works on the transposed block [C, n]: every
# per-row reduction then becomes C element-wise passes over long vectors, which numpy runs
# several times faster than reductions over short rows.
COLUMN_LAYOUT_MAX_CLASSES = 32
# The transposed layout works on long vectors, which stream well from memory: its blocks can be
# a whole default chunk (16 MiB of scores), which spares concatenating block results.
COLUMN_BLOCK_ELEMENTS = 1 << 22


_thread_scratch = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype: np.dtype) -> npt.NDArray:
    """A work array owned by the calling thread and reused from block to block.

    Fresh block-sized temporaries would each be a new memory mapping, page-faulted in and
    unmapped again: with several threads that kernel time grew as large as the arithmetic.
    """
    size = int(np.prod(shape))
    key = (name, np.dtype(dtype).str)
    pool = _thread_scratch.__dict__.setdefault("arrays", {})
    if key not in pool or pool[key].size < size:
        pool[key] = np.empty(max(size, BLOCK_ELEMENTS), dtype=dtype)
    return pool[key][:size].reshape(shape)


@dataclass
class _LogitPasses:
    """What the O(n·C) passes over a block of logits leave behind: O(n) values per row.

    z_max, z_true and rest are in the scores' dtype; the others are float64. rest = Σ_{j≠argmax} exp(z_j − max z); e_dot_s = Σ_j exp(s_j) s_j (entropy); second = the
    largest s_j other than the max (margin); t_sum, t_dot_s = Σ_j t_j and Σ_j t_j s_j (dense).
    """

    pred: I64
    rank: I64
    z_max: npt.NDArray
    z_true: npt.NDArray
    rest: npt.NDArray
    second: F64 | None = None
    e_dot_s: F64 | None = None
    t_sum: F64 | None = None
    t_dot_s: F64 | None = None
    z_min: npt.NDArray | None = None
    s_dot_v: F64 | None = None  # [n, k] Σ_j s_j V_jk
    ts_dot_v: F64 | None = None  # [n, k] Σ_j t_j s_j V_jk
    t_dot_v: F64 | None = None  # [n, k] Σ_j t_j V_jk


def _passes_by_rows(
    z: npt.NDArray, y: I64, targets: npt.NDArray | None, detail: bool, vectors: npt.NDArray | None, extremes: bool
) -> _LogitPasses:
    """The passes over a [n, C] block, for many classes (reductions along contiguous rows)."""
    n, num_classes = z.shape
    rows = np.arange(n)
    pred = z.argmax(axis=1)
    z_max = z[rows, pred]
    z_true = z[rows, y]
    s = _scratch("s", z.shape, z.dtype)
    with np.errstate(invalid="ignore"):
        # count the classes scored above the target: 0/1 floats summed by BLAS are exact below 2^24
        np.greater(z, z_true[:, None], out=s)
        rank = 1 + (s @ np.ones(num_classes, z.dtype)).astype(np.int64) + ties_before(z, y, z_true)
        np.subtract(z, z_max[:, None], out=s)
    second = _max_excluding(s, rows, pred) if detail else None
    s[rows, pred] = -np.inf  # exp() then gives 0 there: the max term (exactly 1) is split off
    e = np.exp(s, out=_scratch("e", z.shape, z.dtype))
    s[rows, pred] = 0.0
    rest = e.sum(axis=1)  # numpy sums contiguous rows pairwise: error O(log C)
    parts = _LogitPasses(pred, rank, z_max, z_true, rest, second)
    _finish_passes(parts, z, e, s, targets, 1, detail, vectors, extremes)
    return parts


def _finish_passes(
    parts: _LogitPasses,
    z: npt.NDArray,
    e: npt.NDArray,
    s: npt.NDArray,
    targets: npt.NDArray | None,
    axis: int,
    detail: bool,
    vectors: npt.NDArray | None,
    extremes: bool,
) -> None:
    """The optional passes, on blocks laid out as rows (axis 1) or transposed (axis 0):
    the row minimum, Σ e·s (entropy), the dense-target sums and the class-vector products."""
    if extremes:
        parts.z_min = z.min(axis=axis)
    if detail:
        parts.e_dot_s = weighted_row_sum(e, s, axis)
    if targets is not None:
        parts.t_sum = targets.sum(axis=1, dtype=np.float64)
        parts.t_dot_s = weighted_row_sum(targets.T if axis == 0 else targets, s, axis)
    _vector_passes(parts, s if axis == 1 else s.T, targets, vectors)


def _vector_passes(parts: _LogitPasses, s: npt.NDArray, targets: npt.NDArray | None, vectors: npt.NDArray | None) -> None:
    """The products with the class vectors, on s as [n, C] (a transposed view is fine for BLAS)."""
    if vectors is None:
        return
    parts.s_dot_v = dot_vectors(s, vectors)
    if targets is not None:
        parts.ts_dot_v = dot_vectors(_targets_times(targets, s), vectors)
        parts.t_dot_v = dot_vectors(targets, vectors)


def _passes_by_columns(
    z: npt.NDArray, y: I64, targets: npt.NDArray | None, detail: bool, vectors: npt.NDArray | None, extremes: bool
) -> _LogitPasses:
    """The same passes on the transposed block [C, n], for few classes."""
    n, num_classes = z.shape
    zt = _scratch("zt", (num_classes, n), z.dtype)
    np.copyto(zt, z.T)
    flat_index = np.arange(n)
    z_max = zt.max(axis=0)
    # first index of the max (numpy's argmax rule), as a max over reversed class weights
    weights = np.arange(num_classes, 0, -1, dtype=np.min_scalar_type(num_classes))[:, None]
    pred = num_classes - ((zt == z_max) * weights).max(axis=0).astype(np.int64)
    pred[np.isnan(z_max)] = 0
    z_true = zt.ravel()[y * n + flat_index]
    at_max = pred * n + flat_index
    with np.errstate(invalid="ignore", over="ignore"):  # ±3.4e38 − ∓3.4e38 overflows float32: an infinite loss, flagged
        rank = 1 + np.add.reduce(zt > z_true, axis=0, dtype=weights.dtype).astype(np.int64) + ties_before(zt.T, y, z_true)
        s = np.subtract(zt, z_max, out=_scratch("s", zt.shape, z.dtype))
    s.ravel()[at_max] = -np.inf
    second = s.max(axis=0).astype(np.float64) if detail else None
    e = np.exp(s, out=_scratch("e", zt.shape, z.dtype))
    s.ravel()[at_max] = 0.0
    rest = e.sum(axis=0, dtype=np.float64).astype(z.dtype)  # float64 accumulation: error O(1 ulp)
    parts = _LogitPasses(pred, rank, z_max, z_true, rest, second)
    _finish_passes(parts, zt, e, s, targets, 0, detail, vectors, extremes)
    return parts


def _log1p(x: npt.NDArray) -> npt.NDArray:
    """log(1 + x) to a few ulp through the vectorised log (Goldberg 1991, "What every computer
    scientist should know about floating-point arithmetic", Theorem 4); numpy's own log1p is
    not vectorised and costs more per row than all the passes of a 10-class row together."""
    u = 1 + x
    d = u - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d == 0, x, np.log(u) * (x / d))


def _logits_block(
    z: npt.NDArray, y: I64, targets: npt.NDArray | None, detail: bool, vectors: npt.NDArray | None, extremes: bool
) -> BlockResults:
    """The block's results for logits (the numpy path).

    With s = z − max(z) and rest = Σ_{j≠argmax} exp(s_j), logsumexp(z) − max(z) = log1p(rest):
    splitting off the max term (exactly 1) keeps losses as small as 4e-9 that 1 + rest would round
    away in float32 (scipy.special.logsumexp does the same). Sparse: loss = log1p(rest) − s_y.
    Dense: loss = Σ_j t_j · log1p(rest) − Σ_j t_j s_j. With class vectors V, log p = s − lse, so
    Σ_j V_jk log p_j = Σ_j V_jk s_j − lse · Σ_j V_jk.
    """
    if z.shape[1] <= COLUMN_LAYOUT_MAX_CLASSES:
        parts = _passes_by_columns(z, y, targets, detail, vectors, extremes)
    else:
        parts = _passes_by_rows(z, y, targets, detail, vectors, extremes)
    # log1p and exp of O(n) values run in the scores' dtype (float32: ≤ 1 ulp, well inside the
    # 1e-6 guarantee, and several times faster per row than float64); the sums are float64.
    rest = parts.rest.astype(np.float64)
    lse = _log1p(parts.rest).astype(np.float64)
    with np.errstate(invalid="ignore"):
        s_true = parts.z_true.astype(np.float64) - parts.z_max.astype(np.float64)
        if parts.t_sum is None:
            loss = lse - s_true
        else:
            loss = parts.t_sum * lse - parts.t_dot_s
        entropy = None if parts.e_dot_s is None else lse - parts.e_dot_s / (1.0 + rest)
        margin = None if parts.second is None else np.where(parts.pred == y, -parts.second, s_true)
        with np.errstate(over="ignore"):  # a difference beyond float32: p_true 0 (or NaN), its loss flagged
            p_true = np.exp((s_true - lse).astype(parts.rest.dtype)).astype(np.float64)
        lp_dot = target_lp_dot = None
        if vectors is not None:
            lp_dot = parts.s_dot_v - lse[:, None] * vectors.sum(axis=0)
            if parts.ts_dot_v is not None:
                target_lp_dot = parts.ts_dot_v - lse[:, None] * parts.t_dot_v
    z_max = parts.z_max.astype(np.float64)
    z_min = None if parts.z_min is None else parts.z_min.astype(np.float64)
    with np.errstate(invalid="ignore"):
        log_norm = z_max + lse
    return BlockResults(loss, p_true, 1.0 / (1.0 + rest), entropy, margin, parts.rank, parts.pred, lp_dot, target_lp_dot,
                        z_max, z_min, log_norm)


def _probs_block(
    scores: npt.NDArray,
    y: I64,
    targets: npt.NDArray | None,
    kind: InputKind,
    vectors: npt.NDArray | None,
    clip: float | None,
    clip_first: bool,
) -> BlockResults:
    """The same results for probabilities or log-probabilities.

    Probabilities are normalised by their row sum: loss = −log(p_y / Σp) (dense: −Σ t log(p/Σp),
    0·log 0 = 0), so without `clip` a zero probability on the target costs +inf. With `clip` = E
    the normalised probabilities are clipped to [E, 1 − E] before the log (Keras); `clip_first`
    clips the stored values and then normalises (Keras' sparse path on TensorFlow). The other
    statistics always use the unclipped normalised probabilities. Log-probabilities are taken as
    they are, as PyTorch's nll_loss does: loss = −z_y (dense: −Σ t z).
    """
    n = scores.shape[0]
    rows = np.arange(n)
    pred = scores.argmax(axis=1)
    true_score = scores[rows, y]
    with np.errstate(divide="ignore", invalid="ignore"):
        rank = 1 + np.count_nonzero(scores > true_score[:, None], axis=1) + ties_before(scores, y, true_score)
        values = scores.astype(np.float64)
        second = _max_excluding(values.copy(), rows, pred)
        margin = values[rows, y] - np.where(pred == y, second, values[rows, pred])
        if kind == "probs":
            log_p = np.log(values) - np.log(values.sum(axis=1))[:, None]
        else:
            log_p = values
        p = np.exp(log_p)
        entropy = -weighted_row_sum(p, log_p)
        if kind == "probs" and clip is not None:
            if clip_first:
                clipped = np.clip(values, clip, 1.0 - clip)
                log_p = np.log(clipped) - np.log(clipped.sum(axis=1))[:, None]
            else:  # Keras divides by the row's sum, then clips: a negative entry becomes clip, not NaN
                log_p = np.log(np.clip(values / values.sum(axis=1)[:, None], clip, 1.0 - clip))
        loss = -log_p[rows, y] if targets is None else -weighted_row_sum(targets, log_p)
        lp_dot = target_lp_dot = None
        if vectors is not None:
            lp_dot = dot_vectors(log_p, vectors)
            if targets is not None:
                target_lp_dot = dot_vectors(_targets_times(targets, log_p), vectors)
        top = values[rows, pred]
        bottom = values.min(axis=1)
        if kind == "probs":
            log_norm = np.log(values.sum(axis=1))
        else:  # logsumexp of the stored log-probabilities: 0 when they are what they claim (XE110)
            shift = np.where(np.isfinite(top), top, 0.0)
            log_norm = shift + np.log(np.exp(values - shift[:, None]).sum(axis=1))
    return BlockResults(loss, p[rows, y], p[rows, pred], entropy, margin, rank, pred, lp_dot, target_lp_dot, top, bottom,
                        log_norm)


def brier_scores(scores: npt.NDArray, kind: InputKind, log_norm: F64, p_true: F64, targets: npt.NDArray | None) -> F64:
    """The multiclass Brier score of each row, Σ_c (p_c − t_c)²: p = exp(z − logsumexp z) for logits
    and log-probabilities, p / Σp for probabilities; t the one-hot label (Σp² − 2·p_y + 1), or the
    dense target row as it is (soft targets: against their distribution). One more pass, only with
    --calibration."""
    # in the scores' dtype: a float32 Σp² is exact to ~1e-7, far inside what a Brier score resolves
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if kind == "probs":
            p = scores / np.exp(log_norm).astype(scores.dtype)[:, None]
        elif kind == "logits":
            p = np.exp(scores - log_norm.astype(scores.dtype)[:, None])
        else:  # log-probabilities are taken as they are, as the loss takes them
            p = np.exp(scores)
        if targets is not None:
            gap = p - targets
            return np.einsum("ij,ij->i", gap, gap, dtype=np.float64)
        return np.einsum("ij,ij->i", p, p, dtype=np.float64) - 2 * p_true + 1


def naive_logsumexp_loss(scores: npt.NDArray, labels: I64) -> F64:
    """logsumexp(z) − z_y the way optax's integer-label path computes it, in the scores' dtype:
    the max-shifted logsumexp is shifted back before z_y is subtracted, so for logits near 1e4 in
    float32 the loss keeps only ~1e-3 of absolute precision. Labels outside [0, C) give NaN."""
    n, num_classes = scores.shape
    ok = (labels >= 0) & (labels < num_classes)
    y = np.where(ok, labels, 0)
    with np.errstate(invalid="ignore", over="ignore"):
        top = scores.max(axis=1)
        lse = top + np.log(np.exp(scores - top[:, None]).sum(axis=1))
        loss = (lse - scores[np.arange(n), y]).astype(np.float64)
    loss[~ok] = np.nan
    return loss


def naive_logsumexp_from(scores: npt.NDArray, labels: I64, z_max: F64, log_norm: F64, z_true: F64 | None = None) -> F64:
    """naive_logsumexp_loss from the kernel's row maximum and logsumexp instead of a second exp
    pass: lse = max + log Σ exp(z − max) rounded to the scores' dtype at the same two steps (the
    shift back to the maximum, then the subtraction of z_y) — the rounding that costs optax its
    precision on large logits. The two agree to the scale of that rounding, a float32 ulp of
    max|z| + log C (log Σ exp is rounded from float64 here, from a float32 sum there; where max and
    log Σ exp nearly cancel, that is many ulps of the small logsumexp, ~1 ulp of the loss). Rows
    with a non-finite maximum or logsumexp take the full path. `z_true`: each row's score of its label
    (the kernel's score_true; rows whose label is outside [0, C) do not read it), in C only."""
    done = native.naive_lse(scores, labels, z_max, log_norm, z_true)  # the same in one C pass (its twin: the rest of this function)
    if done is not None:
        loss, bad = done
        if bad.size:
            loss[bad] = naive_logsumexp_loss(scores[bad], labels[bad])
        return loss
    n, num_classes = scores.shape
    every = n == 0 or (int(labels.min()) >= 0 and int(labels.max()) < num_classes)  # the usual chunk: no masks
    ok = None if every else (labels >= 0) & (labels < num_classes)
    y = labels if ok is None else np.where(ok, labels, 0)
    dtype = scores.dtype
    with np.errstate(invalid="ignore", over="ignore"):
        lse = z_max.astype(dtype) + (log_norm - z_max).astype(dtype)
        # z_y by a flat take (half the time of scores[arange, y]); C-ordered: the kernel's input is
        z_y = np.ascontiguousarray(scores).reshape(-1).take(np.arange(n) * num_classes + y)
        loss = (lse - z_y).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(lse))  # a non-finite maximum or logsumexp (or their float32 sum overflowing)
    if bad.size:
        loss[bad] = naive_logsumexp_loss(scores[bad], labels[bad])
    if ok is not None:
        loss[~ok] = np.nan
    return loss


def sample_stats(
    scores: npt.NDArray,
    kind: InputKind,
    labels: npt.NDArray | None = None,
    targets: npt.NDArray | None = None,
    detail: bool = True,
    class_vectors: npt.NDArray | None = None,
    clip: float | None = None,
    clip_first: bool = False,
    extremes: bool = False,
    squares: bool = False,
    true_scores: bool = False,
) -> SampleStats:
    """Per-sample loss and statistics of one chunk: sparse `labels` [n] or dense `targets` [n, C].

    Works through the chunk in cache-sized blocks of rows. Rows whose label is unusable get a
    NaN loss (never an error): the caller counts them as non-finite. Without `detail`, the logits
    path skips `margin` and `entropy` (None), which only the per-sample output shows.
    `class_vectors` [C, k] adds lp_dot = log_softmax @ V (and, for dense targets, (t ⊙ log_softmax)
    @ V): with V = 1 and V = class weights these give label smoothing and weighted losses.
    `clip` and `clip_first` apply to probabilities (see _probs_block). `extremes` adds each row's
    smallest score (one more pass over logits; the diagnostics need it). `true_scores` asks the C
    kernel for each row's score of its class (score_true; optax's loss), where it scores the chunk.
    """
    n, num_classes = scores.shape
    if n == 0:
        empty_f, empty_i, empty_b = np.empty(0), np.empty(0, np.int64), np.empty(0, bool)
        empty_k = None if class_vectors is None else np.empty((0, class_vectors.shape[1]))
        return BlockResults(empty_f, empty_f, empty_f, empty_f, empty_f, empty_i, empty_i, empty_k,
                            None if targets is None else empty_k).stats(empty_i, empty_b, empty_b)
    if kind == "logits" and targets is None and class_vectors is None and native.supports(scores):
        assert labels is not None
        label, label_is_int = whole_labels(labels)
        results, label_ok = _native_logits(scores, label, label_is_int, detail, extremes, squares, true_scores)
    else:
        if targets is not None:
            label = targets.argmax(axis=1).astype(np.int64) if num_classes else np.zeros(n, np.int64)
            label_is_int = np.ones(n, dtype=bool)
            with np.errstate(invalid="ignore"):
                label_ok = np.isfinite(targets.sum(axis=1, dtype=np.float64))
        else:
            assert labels is not None
            label, label_is_int, label_ok = label_classes(labels, num_classes)
        y = np.where(label_ok, label, 0)
        results = _numpy_blocks(scores, y, targets, kind, detail, class_vectors, clip, clip_first, extremes)
        results.loss[~label_ok] = np.nan  # the loss of rows whose label is unusable
    return results.stats(label, label_is_int, label_ok)


def _native_logits(
    scores: npt.NDArray, label: I64, label_is_int: Bool, detail: bool, extremes: bool, squares: bool = False,
    true_scores: bool = False,
) -> tuple[BlockResults, Bool]:
    """The C kernel's results (unusable labels checked, their losses NaN) and label_ok; its rows
    with a NaN or an infinite maximum go through the numpy kernel, which owns those corner cases."""
    out = native.sparse_logits(scores, label, label_is_int, detail, squares, true_scores)
    results = BlockResults(
        out["loss"], out["p_true"], out["p_max"], out["entropy"] if detail else None, out["margin"] if detail else None,
        out["rank"], out["pred"], score_max=out["z_max"], score_min=out["z_min"] if extremes else None,
        log_norm=out["log_norm"], p_squares=out["p_squares"], score_true=out["z_true"],
    )
    rows, label_ok = out["special"], out["label_ok"]
    if rows.size:
        redone = _logits_block(scores[rows], out["y"][rows], None, detail, None, extremes)
        redone.loss[~label_ok[rows]] = np.nan
        for item in fields(results):
            values = getattr(results, item.name)
            if values is not None and item.name != "score_true":  # the kernel's copy of z_y holds on any row
                redone_values = getattr(redone, item.name)
                values[rows] = np.nan if redone_values is None else redone_values
        # a row with one +inf score and no NaN: its softmax is one-hot there (the limit), so Σp² is 1 and
        # p_true 1 or 0 (inf − inf made p_true NaN where the +inf is the label's: the Brier score left
        # out a row the reliability table counts); other special rows: unknown
        special = scores[rows]
        with np.errstate(invalid="ignore"):
            one_hot = (np.count_nonzero(special == np.inf, axis=1) == 1) & ~np.isnan(special).any(axis=1)
        at_label = special[np.arange(rows.size), out["y"][rows]] == np.inf
        results.p_true[rows] = np.where(one_hot, at_label.astype(np.float64), results.p_true[rows])
        if results.p_squares is not None:
            results.p_squares[rows] = np.where(one_hot, 1.0, np.nan)
    return results, label_ok


def _numpy_blocks(
    scores: npt.NDArray,
    y: I64,
    targets: npt.NDArray | None,
    kind: InputKind,
    detail: bool,
    class_vectors: npt.NDArray | None,
    clip: float | None,
    clip_first: bool,
    extremes: bool,
) -> BlockResults:
    """The numpy kernels, block by cache-sized block, with the blocks' results concatenated."""
    n, num_classes = scores.shape
    per_block = COLUMN_BLOCK_ELEMENTS if kind == "logits" and num_classes <= COLUMN_LAYOUT_MAX_CLASSES else BLOCK_ELEMENTS
    step = max(1, per_block // max(num_classes, 1))
    blocks = []
    for start in range(0, n, step):
        block = slice(start, min(n, start + step))
        block_targets = None if targets is None else targets[block]
        if kind == "logits":
            blocks.append(_logits_block(scores[block], y[block], block_targets, detail, class_vectors, extremes))
        else:
            blocks.append(_probs_block(scores[block], y[block], block_targets, kind, class_vectors, clip, clip_first))
    return BlockResults.concatenate(blocks)
