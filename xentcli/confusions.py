"""The most frequent (label, pred) errors (`--confusions K`) as a mergeable count of error pairs:
exact sparse counts (sorted pair codes and their counts); beyond MAX_PAIRS distinct pairs the
smallest counts are dropped (Misra–Gries: every count is lowered by the largest dropped one), and
the result says it is approximate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

MAX_PAIRS = 1 << 22  # distinct (label, pred) pairs kept exactly (64 MiB of codes and counts)


@dataclass
class Confusions:
    num_classes: int
    codes: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # label · C + pred
    counts: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    exact: bool = True

    def update(self, label: npt.NDArray[np.int64], pred: npt.NDArray[np.int64]) -> None:
        """Add the counted rows predicted wrong."""
        pairs = label * self.num_classes + pred
        if self.num_classes ** 2 <= max(4 * pairs.size, 1 << 16):  # few possible pairs: a count, no sort
            counts = np.bincount(pairs, minlength=self.num_classes ** 2)
            codes = np.flatnonzero(counts)
            self._add(codes, counts[codes].astype(np.int64))
            return
        codes, counts = np.unique(pairs, return_counts=True)
        self._add(codes, counts.astype(np.int64))

    def update_rows(self, label: npt.NDArray[np.int64], pred: npt.NDArray[np.int64], counted: npt.NDArray[np.bool_]) -> None:
        """Add the counted rows predicted wrong, from every row of a chunk: with few possible pairs
        and every row counted (the usual chunk), one count of all pairs with the right ones (label =
        pred, the diagonal) dropped after — no masks, no copies."""
        c = self.num_classes
        if c * c <= max(4 * label.size, 1 << 16) and bool(counted.all()):
            counts = np.bincount(label * c + pred, minlength=c * c)
            counts[:: c + 1] = 0
            codes = np.flatnonzero(counts)
            self._add(codes, counts[codes].astype(np.int64))
            return
        wrong = counted & (label != pred)
        self.update(label[wrong], pred[wrong])

    def merge(self, other: Confusions) -> None:
        self.exact &= other.exact
        self._add(other.codes, other.counts)

    def _add(self, codes: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]) -> None:
        merged = np.union1d(self.codes, codes)
        total = np.zeros(merged.size, np.int64)
        total[np.searchsorted(merged, self.codes)] += self.counts
        total[np.searchsorted(merged, codes)] += counts
        if merged.size > MAX_PAIRS:
            cut = np.partition(total, merged.size - MAX_PAIRS // 2)[merged.size - MAX_PAIRS // 2 - 1]
            keep = total > cut
            merged, total = merged[keep], total[keep] - cut
            self.exact = False
        self.codes, self.counts = merged, total

    def top(self, k: int) -> list[dict[str, Any]]:
        """The k most frequent pairs, ties to the lower (label, pred)."""
        order = np.lexsort((self.codes, -self.counts))[:k]
        out = []
        for i in order.tolist():
            label, pred = divmod(int(self.codes[i]), self.num_classes)
            out.append({"label": label, "pred": pred, "count": int(self.counts[i])})
        return out
