"""Per-chunk math: stable softmax cross-entropy and the per-sample statistics. Pure numpy, no I/O.

Every function takes one chunk of scores `[n, C]` (float32 or float64; float16 is widened to
float32 by the sources) and returns float64 per-sample values. The O(n·C) passes run in the
scores' own dtype, the O(n) assembly in float64. For float32 scores each loss is within
max(1e-6, 1e-6·|loss|) of the float64 value of the same stored numbers (tests/test_kernels.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

InputKind = Literal["logits", "probs", "log-probs"]

# Rows per kernel call are chosen so that one block of scores (and its two work buffers) stays
# in the CPU cache: numpy's passes over a cache-resident block run several times faster.
BLOCK_ELEMENTS = 1 << 16

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
    margin: F64
    entropy: F64

    @property
    def correct(self) -> Bool:
        return self.label_ok & (self.pred == self.label)

    @property
    def counted(self) -> Bool:
        """Rows that enter the means: a usable label and a finite loss."""
        return self.label_ok & np.isfinite(self.loss)


def label_classes(labels: npt.NDArray, num_classes: int) -> tuple[I64, Bool, Bool]:
    """Integer class of each sparse label, whether it is a whole number, and whether it is usable.

    Float labels holding whole numbers (2.0) count as integers; NaN (also a null read from Arrow)
    and fractional labels are not whole; a usable label is whole and in [0, num_classes).
    """
    if labels.dtype.kind in "iu":
        label = labels.astype(np.int64, copy=False)
        is_int = np.ones(label.shape, dtype=bool)
    elif labels.dtype.kind == "b":
        label = labels.astype(np.int64)
        is_int = np.ones(label.shape, dtype=bool)
    else:
        as_float = labels.astype(np.float64, copy=False)
        with np.errstate(invalid="ignore"):
            is_int = np.isfinite(as_float) & (np.floor(as_float) == as_float) & (np.abs(as_float) < 2.0**62)
        label = np.where(is_int, as_float, 0.0).astype(np.int64)
    ok = is_int & (label >= 0) & (label < num_classes)
    return label, is_int, ok


def weighted_row_sum(weights: npt.NDArray, values: npt.NDArray) -> F64:
    """Σ_j w_ij · v_ij per row in float64, with 0 · (±inf) = 0 (a zero target on a -inf log-prob).

    The fast path is one einsum; only rows where it met 0 · inf are summed again term by term.
    """
    total = np.einsum("ij,ij->i", weights, values, dtype=np.float64)
    bad = ~np.isfinite(total)
    if bad.any():
        w, v = weights[bad], values[bad]
        with np.errstate(invalid="ignore"):
            total[bad] = np.where(w != 0, w.astype(np.float64) * v, 0.0).sum(axis=1)
    return total


def _max_excluding(work: npt.NDArray, rows: I64, pred: I64) -> F64:
    """Largest entry of each row other than the one at `pred`; overwrites work[rows, pred] with -inf."""
    work[rows, pred] = -np.inf
    return work.max(axis=1).astype(np.float64)


def _logits_block(z: npt.NDArray, y: I64, targets: npt.NDArray | None) -> tuple[F64, ...]:
    """loss, p_true, p_max, entropy, margin, rank, pred for logits z (the fast path).

    With s = z − max(z) and rest = Σ_{j≠argmax} exp(s_j), logsumexp(z) − max(z) = log1p(rest):
    splitting off the max term (exactly 1) keeps losses as small as 4e-9 that 1 + rest would round
    away in float32 (scipy.special.logsumexp does the same). Sparse: loss = log1p(rest) − s_y.
    Dense: loss = Σ_j t_j · log1p(rest) − Σ_j t_j s_j.
    """
    n = z.shape[0]
    rows = np.arange(n)
    pred = z.argmax(axis=1)
    z_max = z[rows, pred]
    z_true = z[rows, y]
    with np.errstate(invalid="ignore"):
        rank = 1 + np.count_nonzero(z > z_true[:, None], axis=1)
        s = z - z_max[:, None]
    second = _max_excluding(s, rows, pred)  # leaves -inf at the max, so exp() gives 0 there
    e = np.exp(s)
    s[rows, pred] = 0.0
    rest = e.sum(axis=1, dtype=z.dtype).astype(np.float64)
    lse = np.log1p(rest)
    with np.errstate(invalid="ignore"):
        s_true = z_true.astype(np.float64) - z_max.astype(np.float64)
        if targets is None:
            loss = lse - s_true
        else:
            loss = targets.sum(axis=1, dtype=np.float64) * lse - weighted_row_sum(targets, s)
        entropy = lse - weighted_row_sum(e, s) / (1.0 + rest)
        margin = np.where(pred == y, -second, s_true)
    return loss, np.exp(s_true - lse), 1.0 / (1.0 + rest), entropy, margin, rank, pred


def _probs_block(
    scores: npt.NDArray, y: I64, targets: npt.NDArray | None, kind: InputKind
) -> tuple[F64, ...]:
    """loss, p_true, p_max, entropy, margin, rank, pred for probabilities or log-probabilities.

    Probabilities are normalised by their row sum, unclipped: loss = log Σp − log p_y (dense:
    −Σ t log(p/Σp), 0·log 0 = 0), so a zero probability on the target costs +inf. Log-probabilities
    are taken as they are, as PyTorch's nll_loss does: loss = −z_y (dense: −Σ t z).
    """
    n = scores.shape[0]
    rows = np.arange(n)
    pred = scores.argmax(axis=1)
    true_score = scores[rows, y]
    with np.errstate(divide="ignore", invalid="ignore"):
        rank = 1 + np.count_nonzero(scores > true_score[:, None], axis=1)
        second = _max_excluding(scores.astype(np.float64), rows, pred)
        margin = true_score.astype(np.float64) - np.where(pred == y, second, scores[rows, pred])
        if kind == "probs":
            log_norm = np.log(scores.sum(axis=1, dtype=np.float64))
            log_p = np.log(scores.astype(np.float64)) - log_norm[:, None]
        else:
            log_p = scores.astype(np.float64)
        p = np.exp(log_p)
        entropy = -weighted_row_sum(p, log_p)
        if targets is None:
            loss = -log_p[rows, y]
        else:
            loss = -weighted_row_sum(targets, log_p)
    return loss, p[rows, y], p[rows, pred], entropy, margin, rank, pred


def sample_stats(
    scores: npt.NDArray,
    kind: InputKind,
    labels: npt.NDArray | None = None,
    targets: npt.NDArray | None = None,
) -> SampleStats:
    """Per-sample loss and statistics of one chunk: sparse `labels` [n] or dense `targets` [n, C].

    Works through the chunk in cache-sized blocks of rows. Rows whose label is unusable get a
    NaN loss (never an error): the caller counts them as non-finite.
    """
    n, num_classes = scores.shape
    if targets is not None:
        label = targets.argmax(axis=1).astype(np.int64) if num_classes else np.zeros(n, np.int64)
        label_is_int = np.ones(n, dtype=bool)
        with np.errstate(invalid="ignore"):
            label_ok = np.isfinite(targets.sum(axis=1, dtype=np.float64))
    else:
        assert labels is not None
        label, label_is_int, label_ok = label_classes(labels, num_classes)
    y = np.where(label_ok, label, 0)
    out = [np.empty(n, np.float64) for _ in range(5)] + [np.empty(n, np.int64) for _ in range(2)]
    step = max(1, BLOCK_ELEMENTS // max(num_classes, 1))
    for start in range(0, n, step):
        block = slice(start, min(n, start + step))
        block_targets = None if targets is None else targets[block]
        if kind == "logits":
            parts = _logits_block(scores[block], y[block], block_targets)
        else:
            parts = _probs_block(scores[block], y[block], block_targets, kind)
        for whole, part in zip(out, parts):
            whole[block] = part
    loss, p_true, p_max, entropy, margin, rank, pred = out
    loss[~label_ok] = np.nan
    return SampleStats(label, label_is_int, label_ok, loss, pred, p_true, rank, p_max, margin, entropy)
