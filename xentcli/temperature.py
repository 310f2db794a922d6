"""`--temperature-scan`: the temperature T* that minimises the mean loss of softmax(z/T), the loss
there, and the share of the loss a temperature would remove ((loss − loss(T*))/loss).

The rows come from a deterministic hash sample kept during the one pass (no second read): every
scored row's number is hashed (splitmix64, seeded), and the `capacity` rows with the smallest
hashes are kept — a bottom-k sample, uniform without replacement, the same whatever the chunking,
threads or shards, and mergeable. Each kept row holds its log-scores z (logits as they are;
probabilities as log p; log-probabilities as they are), the target mass m = Σ_c t_c (1 for a
label) and s = Σ_c t_c·z_c (z_y for a label), so that with β = 1/T

    f(β) = mean_i [ m_i·logsumexp(β·z_i) − β·s_i ],
    f'(β) = mean_i [ m_i·E_{softmax(βz_i)}[z_i] − s_i ],   f''(β) = mean_i [ m_i·Var_{softmax(βz_i)}[z_i] ] ≥ 0.

f is convex in β, so its minimum is found by Newton's method on f' inside a bracket that
bisection keeps (a sign change of f' found by doubling from β = 1). The loss here is the plain
cross-entropy of the model's scores (no weights, no label smoothing): what a temperature can fix.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

SAMPLE_ROWS = 100_000
SAMPLE_VALUES = 1 << 22  # rows × classes kept at most: 32 MiB of float64 log-scores
BLOCK_VALUES = 1 << 18  # scores per block of an evaluation (fixed: the sums never depend on the threads)
BETA_RANGE = (1e-3, 1e3)  # T in [0.001, 1000]
METHOD = "bottom-k hash sample of rows; Newton's method on the convex loss in 1/T"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def capacity(num_classes: int) -> int:
    return max(1, min(SAMPLE_ROWS, SAMPLE_VALUES // max(num_classes, 1)))


def row_hashes(rows: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """splitmix64 of the row numbers (Steele et al. 2014)."""
    x = rows.astype(np.uint64) + _GOLDEN
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass
class _Offer:
    """A chunk's scored rows, not copied: the main thread picks from them when it merges the chunk."""

    rows: npt.NDArray[np.int64]  # global row numbers
    hashes: npt.NDArray[np.uint64]  # theirs, computed where the chunk is scored
    positions: npt.NDArray[np.int64]  # each row's position in `scores` (and the labels or targets)
    scores: npt.NDArray  # [n, C], the chunk's own array
    kind: str
    labels: npt.NDArray[np.int64] | None  # sparse labels, or
    targets: npt.NDArray | None  # dense targets [n, C]


@dataclass
class _Rows:
    """Sampled rows, copied: hashes, row numbers, log-scores [n, C] (float32 scores as they are, else
    float64), target mass and Σt·z."""

    hashes: npt.NDArray[np.uint64]
    rows: npt.NDArray[np.int64]
    z: npt.NDArray[np.float64]
    mass: npt.NDArray[np.float64]
    dot: npt.NDArray[np.float64]

    NAMES = ("hashes", "rows", "z", "mass", "dot")

    def take(self, index: npt.NDArray[np.int64]) -> _Rows:
        return _Rows(self.hashes[index], self.rows[index], self.z[index], self.mass[index], self.dot[index])


@dataclass
class Bound:
    """The total sample's entry threshold, shared with the chunks being scored: a chunk's rows at or
    above it can never enter, so they are not copied. Read without a lock: the value only falls, and
    a value read late is larger, which keeps more rows, never fewer."""

    value: int = 2**64


@dataclass
class TemperatureSample:
    """The rows with the `capacity` smallest hashes. Chunks are offered by reference and picked from
    when merged (only rows whose hash is below the largest kept are copied) into one store of 1.5 ×
    capacity rows, allocated once; when it is full one partial sort keeps the smallest in place — so
    the work per row offered stays constant however large the sample, and no array is allocated again."""

    capacity: int
    seen: int = 0  # rows offered (every scored row)
    store: _Rows | None = None  # its first `filled` rows are the candidates, any order
    filled: int = 0
    offers: list[_Offer] = field(default_factory=list)
    threshold: int = 2**64  # rows with a hash at or above it cannot enter (the largest kept, once full)
    bound: Bound | None = None  # given: offers are picked where the chunk is scored, below the total's threshold
    picked: list[_Rows] = field(default_factory=list)  # those rows, copied

    @property
    def kept(self) -> _Rows | None:
        """The candidates (after _compact: the sample), views into the store."""
        store = self.store
        return None if store is None or not self.filled else _Rows(*(getattr(store, name)[:self.filled] for name in _Rows.NAMES))

    def offer(self, offset: int, positions: npt.NDArray[np.int64], scores: npt.NDArray, kind: str,
              labels: npt.NDArray | None, targets: npt.NDArray | None, numbers: npt.NDArray[np.int64] | None = None) -> None:
        """Offer a chunk's scored rows (`positions` in the chunk starting at row `offset`); `numbers`:
        their positions in the chunk when they differ from their positions in `scores` (a multi-label
        head's scored elements, compacted), so that each keeps its number in the whole input."""
        from xentcli import native

        self.seen += positions.size
        if positions.size:
            at = positions if numbers is None else numbers
            rows = offset + at
            hashes = native.row_hashes(offset, at) if native.has_tally() else row_hashes(rows)
            offer = _Offer(rows, hashes, positions, scores, kind, labels, targets)
            if self.bound is None:
                self.offers.append(offer)
            else:
                picked = self._picked(offer, self.bound.value)
                if picked is not None:
                    self.picked.append(picked)

    def merge(self, other: TemperatureSample) -> None:
        self.seen += other.seen
        self.bound = self.bound or other.bound
        for offer in other.offers:
            picked = self._picked(offer, self.threshold)
            if picked is not None:
                self._add(picked)
        for rows in other.picked + ([other.kept] if other.kept is not None else []):
            self._add(rows.take(np.flatnonzero(rows.hashes < np.uint64(self.threshold))) if self.threshold < 2**64 else rows)

    @staticmethod
    def _picked(offer: _Offer, threshold: int) -> _Rows | None:
        """A copy of the offer's rows below the threshold. splitmix64 is a bijection of 64-bit
        words, so distinct rows never share a hash: no ties to break."""
        hashes = offer.hashes
        enter = np.flatnonzero(hashes < np.uint64(threshold)) if threshold < 2**64 else np.arange(hashes.size)
        if not enter.size:
            return None
        at = offer.positions[enter]
        # float32 logits and log-probabilities are kept as they are (exact, half the copying); the scan reads them in float64
        z = offer.scores[at] if offer.kind != "probs" and offer.scores.dtype == np.float32 else np.asarray(offer.scores[at], np.float64)
        if offer.kind == "probs":
            with np.errstate(divide="ignore"):
                z = np.log(z)
        if offer.targets is not None:
            t = np.asarray(offer.targets[at], np.float64)
            mass, dot = t.sum(axis=1), np.where(t > 0, t * z, 0.0).sum(axis=1)
        else:
            mass, dot = np.ones(enter.size), z[np.arange(enter.size), offer.labels[at]]  # type: ignore[index]
        return _Rows(hashes[enter], offer.rows[enter], z, mass, dot)

    def _add(self, rows: _Rows) -> None:
        """Copy rows into the store, keeping the smallest hashes whenever it is full."""
        n = rows.rows.size
        if not n:
            return
        if self.store is None:
            size = self.capacity + max(1, self.capacity // 2)
            self.store = _Rows(np.zeros(size, np.uint64), np.zeros(size, np.int64), np.zeros((size, rows.z.shape[1]), rows.z.dtype),
                               np.zeros(size), np.zeros(size))
        elif np.result_type(self.store.z, rows.z) != self.store.z.dtype:  # float64 rows after float32 ones (shards of both)
            self.store.z = self.store.z.astype(np.result_type(self.store.z, rows.z))
        size = self.store.rows.size
        start = 0
        while start < n:
            if self.filled == size:
                self._compact()
            take = min(n - start, size - self.filled)
            for name in _Rows.NAMES:
                getattr(self.store, name)[self.filled:self.filled + take] = getattr(rows, name)[start:start + take]
            self.filled += take
            start += take

    def _compact(self) -> None:
        """Keep the `capacity` smallest hashes of the candidates, moved to the front of the store (a
        partial sort of the hashes)."""
        if self.filled <= self.capacity or self.store is None:
            return
        hashes = self.store.hashes[:self.filled]
        # the capacity-th smallest hash: hashes are distinct (splitmix64 is a bijection), so exactly capacity rows lie at or below it
        cut = np.partition(hashes, self.capacity - 1)[self.capacity - 1]
        keep = np.flatnonzero(hashes <= cut)
        for name in _Rows.NAMES:
            array = getattr(self.store, name)
            array[:self.capacity] = array[keep]
        self.filled = self.capacity
        self.threshold = int(cut)
        if self.bound is not None:
            self.bound.value = self.threshold

    def report(self, threads: int = 1) -> dict[str, Any] | None:
        """The JSON's `calibration.temperature`; None when no row was scored."""
        self._compact()
        if self.kept is None:
            return None
        sample = self.kept.take(np.argsort(self.kept.hashes))  # in hash order: the same sums whatever the merges
        loss_1, beta, at_bound, loss_t = minimise(sample.z, sample.mass, sample.dot, threads)
        return {
            "temperature": 1.0 / beta, "loss": loss_1, "loss_at_temperature": loss_t,
            "miscalibration_share": (loss_1 - loss_t) / loss_1 if loss_1 > 0 else 0.0,
            "at_bound": at_bound, "sample_rows": int(sample.rows.size), "rows": self.seen, "method": METHOD,
        }


def _centred(z: npt.NDArray) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Once per scan: each row's largest score m, the scores less it, d = z − m (−inf stays), and d
    with −inf as 0 (what multiplies a weight of 0) — so that each β costs one exp a score."""
    z = np.asarray(z, np.float64)
    top = z.max(axis=1)
    with np.errstate(invalid="ignore"):
        d = z - top[:, None]
    return top, d, np.where(np.isfinite(d), d, 0.0)


def _moments(top: npt.NDArray[np.float64], d: npt.NDArray[np.float64], finite_d: npt.NDArray[np.float64],
             beta: float) -> tuple[npt.NDArray, npt.NDArray, npt.NDArray]:
    """Per row: logsumexp(βz), E[z] and Var[z] under softmax(βz) (−inf scores weigh nothing), from
    the weights w = exp(β·d) ≤ 1 (d ≤ 0): logsumexp = β·m + log Σw, E[z] = m + Σw·d/Σw, Var[z] =
    Σw·d²/Σw − (Σw·d/Σw)² (d is centred on the row's largest score, so the difference keeps its digits)."""
    weights = np.multiply(d, beta)
    with np.errstate(invalid="ignore"):
        np.exp(weights, out=weights)
    total = weights.sum(axis=1)
    first = np.einsum("ij,ij->i", weights, finite_d) / total
    second = np.einsum("ij,ij->i", weights * finite_d, finite_d) / total
    return beta * top + np.log(total), top + first, np.maximum(second - first * first, 0.0)


def minimise(z: npt.NDArray[np.float64], mass: npt.NDArray[np.float64], dot: npt.NDArray[np.float64],
             threads: int = 1) -> tuple[float, float, bool, float]:
    """f(1), then β* = argmin f(β) on BETA_RANGE (see _newton), whether the minimum is not inside
    it, and f(β*), for the rows' log-scores z, target masses and Σt·z."""
    block = max(1, BLOCK_VALUES // z.shape[1])
    blocks = [slice(start, start + block) for start in range(0, z.shape[0], block)]
    centred = [_centred(z[rows]) for rows in blocks]

    def part(index: int, beta: float) -> npt.NDArray[np.float64]:
        rows = blocks[index]
        lse, mean, var = _moments(*centred[index], beta)
        m = mass[rows]
        return np.array([(m * lse - beta * dot[rows]).sum(), (m * mean - dot[rows]).sum(), (m * var).sum()])

    def evaluate(beta: float) -> tuple[float, float, float]:
        """f, f' and f'' at β: blocks of rows (bounded temporaries) on `threads` threads, their sums
        added in block order (the same result for any thread count)."""
        parts = list(pool.map(lambda index: part(index, beta), range(len(blocks))))
        return tuple((np.sum(parts, axis=0) / z.shape[0]).tolist())  # type: ignore[return-value]

    with ThreadPoolExecutor(max(1, min(threads, len(blocks)))) as pool:
        return _newton(evaluate)


def _newton(evaluate: Any) -> tuple[float, float, bool, float]:
    """Given (f, f', f'') at β: f(1), β* to 1e-10 relative, whether the minimum is not inside the
    range (f still falls at its end, or has fallen flat — slope 0 in float64 — on the way: separable
    rows, whose loss falls to 0 as T → 0), and f(β*). f' increases with β: from β = 1 the end of
    the range on the side f' points to is checked first (the minimum may lie there), then Newton's
    method runs inside the bracket, a step leaving it replaced by the bracket's geometric midpoint."""
    lo, hi = BETA_RANGE
    beta = 1.0
    f, g, h = evaluate(beta)
    f_1 = f
    if g != 0:
        end = BETA_RANGE[1] if g < 0 else BETA_RANGE[0]
        f_end, g_end, h_end = evaluate(end)
        if g_end == 0 or (g_end < 0) == (g < 0):
            return f_1, end, True, f_end
        lo, hi = sorted((beta, end))
    for _ in range(100):
        if g == 0:
            return f_1, beta, h < 1e-12, f  # softmax(βz) one-hot in every row: the loss has fallen flat, T* → 0
        if g > 0:
            hi = beta
        else:
            lo = beta
        following = beta - g / h if h > 0 else math.nan
        if abs(following - beta) <= 1e-10 * beta:  # (a step below the ulp too: `following` = β)
            return f_1, beta, False, f
        if not lo < following < hi:
            following = math.sqrt(lo * hi)
        beta = following
        f, g, h = evaluate(beta)
    return f_1, beta, False, f
