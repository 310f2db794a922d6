"""Independent float64 references for the tests: plain textbook formulas, no code shared with xentcli."""

from __future__ import annotations

import numpy as np


def log_softmax64(scores: np.ndarray) -> np.ndarray:
    z = np.asarray(scores, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def sparse_loss64(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """−log_softmax(z)[y] in float64; NaN where the label is not a class."""
    lp = log_softmax64(scores)
    labels = np.asarray(labels)
    ok = (labels >= 0) & (labels < lp.shape[1])
    out = np.full(len(labels), np.nan)
    rows = np.flatnonzero(ok)
    out[rows] = -lp[rows, labels[rows].astype(int)]
    return out


def dense_loss64(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """−Σ t · log_softmax(z) in float64, with 0 · log 0 = 0."""
    lp = log_softmax64(scores)
    t = np.asarray(targets, dtype=np.float64)
    return -np.where(t != 0, t * lp, 0.0).sum(axis=1)


def within_float32_tolerance(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """The guarantee for float32/float16 inputs: |got − want| ≤ max(1e-6, 1e-6·|want|)."""
    return np.abs(got - want) <= np.maximum(1e-6, 1e-6 * np.abs(want))


def close_to(got, want, tolerance: str) -> np.ndarray:
    """The conformance README's tolerances: float64 1e-9 relative (1e-12 floor), float32
    max(1e-6, 1e-6·|x|); NaN matches only NaN, ±inf only the same inf."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    same = (np.isnan(got) & np.isnan(want)) | (np.isinf(want) & (got == want))
    with np.errstate(invalid="ignore"):
        if tolerance == "float64":
            near = np.abs(got - want) <= np.maximum(1e-12, 1e-9 * np.abs(want))
        else:
            near = np.abs(got - want) <= np.maximum(1e-6, 1e-6 * np.abs(want))
    return same | near
