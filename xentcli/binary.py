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
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from xentcli.kernels import SampleStats
from xentcli.sources import Chunk


@dataclass
class BinaryRows:
    """What the two-class view leaves out: the scores as stored, the targets as numbers, and
    the rows whose stored score is outside its domain (a probability outside [0, 1], a
    log-probability above 0)."""

    raw: npt.NDArray  # [n], the stored dtype
    kind: str  # as stored: logits, probs or log-probs
    targets: npt.NDArray[np.float64]  # [n]
    soft: bool  # the chunk's targets are probabilities (read as dense rows)
    outside: npt.NDArray[np.bool_]


def two_class(chunk: Chunk, kind: str, ignore: int | None) -> tuple[Chunk, str, BinaryRows, npt.NDArray[np.bool_] | None]:
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
                low, high = np.log1p(-raw), np.log(raw)
                outside = (raw < 0) | (raw > 1)
            else:
                low, high = np.log(-np.expm1(raw)), raw.copy()
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


def binary_stats(stats: SampleStats, rows: BinaryRows, threshold: float) -> SampleStats:
    """The two-class statistics made binary: pred = P(y = 1) ≥ threshold, the label of a soft
    target t is 1 when t ≥ 0.5 (with p_true the probability of that label), rank 1 when right,
    and the stored score as the row's extremes (what the score diagnostics judge)."""
    pred = (rows.raw >= decision_cut(rows.kind, threshold)).astype(np.int64)
    raw = rows.raw.astype(np.float64)
    changes = {"pred": pred, "score_max": raw, "score_min": raw}
    label = stats.label
    if rows.soft:
        label = (rows.targets >= 0.5).astype(np.int64)
        p1 = positive_probability(rows)
        changes.update(label=label, p_true=np.where(label == 1, p1, 1.0 - p1))
    changes["rank"] = np.where(pred == label, 1, 2).astype(np.int64)
    return replace(stats, **changes)


def sample_columns(view: npt.NDArray, rows: BinaryRows, threshold: float) -> dict[str, npt.NDArray]:
    """The per-sample output's binary columns: p = P(y = 1), margin = logit(p) − logit(threshold)
    (positive: predicted positive; from the two-class view, whose difference of columns is the
    logit), and the target as given."""
    with np.errstate(invalid="ignore", over="ignore"):
        logit = view[:, 1].astype(np.float64) - view[:, 0].astype(np.float64)
        margin = logit - decision_cut("logits", threshold)
    margin[rows.outside] = np.nan
    return {"p": positive_probability(rows), "margin": margin, "target": rows.targets}
