"""A mergeable quantile sketch with a guaranteed relative error (DDSketch, Masson et al. 2019).

Each value x > 0 falls in the bucket i = ceil(log_γ x), γ = (1 + α) / (1 − α); the bucket's
representative 2γ^i / (γ + 1) lies within relative error α of every value in it. Buckets hold
integer counts, so merging two sketches is exact and independent of order and chunking.
Negative values use a mirrored store; values with |x| below `MIN_INDEXABLE` count as zero.
Memory grows with log(max / min) / α, never with the number of values.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

RELATIVE_ACCURACY = 0.005
MIN_INDEXABLE = 1e-300


class QuantileSketch:
    """Quantiles of a stream of finite floats within `relative_accuracy` (0.5% by default)."""

    def __init__(self, relative_accuracy: float = RELATIVE_ACCURACY) -> None:
        self.relative_accuracy = relative_accuracy
        self.gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._log_gamma = math.log(self.gamma)
        self.positive: dict[int, int] = {}
        self.negative: dict[int, int] = {}
        self.zeros = 0
        self.count = 0
        self.min = math.inf
        self.max = -math.inf

    def _add_store(self, store: dict[int, int], magnitudes: npt.NDArray[np.float64]) -> None:
        if magnitudes.size == 0:
            return
        keys = np.ceil(np.log(magnitudes) / self._log_gamma).astype(np.int64)
        low = int(keys.min())
        counts = np.bincount(keys - low)  # O(n): the keys span a few thousand buckets at most
        for offset in np.flatnonzero(counts).tolist():
            store[low + offset] = store.get(low + offset, 0) + int(counts[offset])

    def update(self, values: npt.NDArray[np.float64]) -> None:
        """Add finite values (the caller filters NaN and inf)."""
        if values.size == 0:
            return
        values = np.asarray(values, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        if low > MIN_INDEXABLE:  # every value positive (most losses): no masks needed
            self._add_store(self.positive, values)
        else:
            big = np.abs(values) > MIN_INDEXABLE
            self._add_store(self.positive, values[big & (values > 0)])
            self._add_store(self.negative, -values[big & (values < 0)])
            self.zeros += int(values.size - np.count_nonzero(big))
        self.count += int(values.size)
        self.min = min(self.min, low)
        self.max = max(self.max, high)

    def merge(self, other: QuantileSketch) -> None:
        """Add another sketch's counts: exact, order-free."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError("cannot merge sketches of different accuracy")
        for mine, theirs in ((self.positive, other.positive), (self.negative, other.negative)):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        self.zeros += other.zeros
        self.count += other.count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def _value(self, key: int) -> float:
        return 2.0 * math.exp(key * self._log_gamma) / (self.gamma + 1.0)

    def quantile(self, q: float) -> float:
        """The value of rank q·(count − 1) (lower), within the relative accuracy; NaN when empty."""
        if self.count == 0:
            return math.nan
        rank = q * (self.count - 1)
        seen = 0
        for key in sorted(self.negative, reverse=True):
            seen += self.negative[key]
            if seen > rank:
                return max(self.min, -self._value(key))
        seen += self.zeros
        if seen > rank:
            return 0.0
        for key in sorted(self.positive):
            seen += self.positive[key]
            if seen > rank:
                return min(self.max, self._value(key))
        return self.max
