"""Mergeable partial aggregates of per-sample results: counts, float64 sums, sketch, per-class, worst rows.

Every state is declared with its merge rule (as torchmetrics does): counts and sums add, extrema
take min/max, the quantile sketch adds integer bucket counts, the worst rows are re-selected by
(loss descending, row ascending). Means are derived at the end, never stored, so the result does
not depend on how the rows were chunked; float64 sums agree across chunkings to ~1e-15 relative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcli.kernels import SampleStats
from xentcli.plain import id_at
from xentcli.ranking import top_rows
from xentcli.sketch import QuantileSketch
from xentcli.tally import DENSE_CLASS_LIMIT, ChunkTally


def perplexity(mean_loss: float, counted: int) -> float:
    """exp(mean loss): inf where it overflows float64, NaN where nothing was counted."""
    if not counted:
        return math.nan
    return math.exp(mean_loss) if mean_loss < 709.0 else math.inf


@dataclass
class WorstRows:
    """The `k` counted rows with the highest loss; ties go to the lower row index."""

    k: int
    rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    loss: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0, np.float64))
    details: list[dict[str, Any]] = field(default_factory=list)

    def _keep_top(self, rows: npt.NDArray, loss: npt.NDArray, details: list[dict[str, Any]]) -> None:
        order = np.lexsort((rows, -loss))[: self.k]
        self.rows, self.loss = rows[order], loss[order]
        self.details = [details[i] for i in order.tolist()]

    def update(self, stats: SampleStats, offset: int, ids: npt.NDArray | None) -> None:
        if self.k == 0:
            return
        candidates = top_rows(stats.counted, stats.loss, self.k)  # ties to the lower row, as the merge keeps them
        details = [
            {
                "row": offset + int(i),
                "id": None if ids is None else id_at(ids, i),
                "label": int(stats.label[i]),
                "pred": int(stats.pred[i]),
                "loss": float(stats.loss[i]),
                "p_true": float(stats.p_true[i]),
            }
            for i in candidates.tolist()
        ]
        self.merge(WorstRows(self.k, candidates.astype(np.int64) + offset, stats.loss[candidates], details))

    def merge(self, other: WorstRows) -> None:
        self._keep_top(
            np.concatenate([self.rows, other.rows]),
            np.concatenate([self.loss, other.loss]),
            self.details + other.details,
        )


# Above DENSE_CLASS_LIMIT classes, the per-class rows list the classes with the most support only.
SPARSE_PER_CLASS_ROWS = 1000
_SUMS = ("support", "loss_sum", "correct", "p_true_sum", "predicted")


@dataclass
class PerClass:
    """Per target class: support, summed loss, correct predictions, summed p_true (counted rows),
    and how often each class is predicted. Dense arrays up to DENSE_CLASS_LIMIT classes; above it
    sparse: `classes` (ascending) holds the classes seen and the sums are aligned with it, so memory
    grows with the classes that occur, never with the class count. Both merge exactly."""

    num_classes: int
    classes: npt.NDArray[np.int64] | None = field(init=False)  # None: dense, one entry per class
    support: npt.NDArray[np.int64] = field(init=False)
    loss_sum: npt.NDArray[np.float64] = field(init=False)
    correct: npt.NDArray[np.int64] = field(init=False)
    p_true_sum: npt.NDArray[np.float64] = field(init=False)
    predicted: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        dense = self.num_classes <= DENSE_CLASS_LIMIT
        width = self.num_classes if dense else 0
        self.classes = None if dense else np.empty(0, np.int64)
        for name in _SUMS:
            setattr(self, name, np.zeros(width, np.float64 if name.endswith("_sum") else np.int64))

    @property
    def class_ids(self) -> npt.NDArray[np.int64]:
        """The class of each entry of the sums."""
        return np.arange(self.num_classes) if self.classes is None else self.classes

    def update(self, tally: ChunkTally) -> None:
        self._add(tally.classes, tally.support, tally.class_loss, tally.class_correct, tally.class_p_true, tally.predicted)

    def merge(self, other: PerClass) -> None:
        self._add(other.classes, *(getattr(other, name) for name in _SUMS))

    def _add(self, classes: npt.NDArray | None, *sums: npt.NDArray) -> None:
        if self.classes is None:
            for name, values in zip(_SUMS, sums):
                getattr(self, name).__iadd__(values)
            return
        assert classes is not None
        merged = np.union1d(self.classes, classes)
        mine, theirs = np.searchsorted(merged, self.classes), np.searchsorted(merged, classes)
        for name, values in zip(_SUMS, sums):
            total = np.zeros(merged.size, getattr(self, name).dtype)
            total[mine] = getattr(self, name)
            total[theirs] += values  # the classes are unique on each side: no repeated index
            setattr(self, name, total)
        self.classes = merged

    def absent(self, counts: npt.NDArray, limit: int = 100) -> tuple[int, list[int]]:
        """How many classes have a zero count (support, predicted), and the first `limit` of them."""
        present = self.class_ids[counts > 0]
        candidates = np.arange(min(self.num_classes, present.size + limit))
        return self.num_classes - present.size, candidates[~np.isin(candidates, present)][:limit].tolist()


@dataclass
class LossSummary:
    """All aggregates of a run. `update` takes one chunk's results, `merge` another summary."""

    num_classes: int
    top_k: int
    worst_k: int = 0
    rows: int = 0
    counted: int = 0
    ignored: int = 0
    zero_weight_rows: int = 0
    weighted: bool = False
    loss_sum: float = 0.0
    weighted_loss_sum: float = 0.0
    weight_sum: float = 0.0
    loss_min: float = math.inf
    loss_max: float = -math.inf
    correct: int = 0
    top_k_hits: int = 0
    sketch: QuantileSketch = field(default_factory=QuantileSketch)
    per_class: PerClass = field(init=False)
    worst: WorstRows = field(init=False)

    def __post_init__(self) -> None:
        self.per_class = PerClass(self.num_classes)
        self.worst = WorstRows(self.worst_k)

    def update(
        self,
        stats: SampleStats,
        tally: ChunkTally,
        offset: int,
        ids: npt.NDArray | None = None,
        ignored: npt.NDArray[np.bool_] | None = None,
        weighted: tuple[float, float] | None = None,
        weights: npt.NDArray | None = None,
    ) -> None:
        """Add one chunk through its tally: `stats.loss` is NaN on ignored rows; `weighted` =
        (Σ s·ℓ_w, Σ s·w) over counted rows when weights apply; `weights` the per-row sample
        weights, if any."""
        self.rows += int(stats.loss.size)
        self.counted += tally.counted
        self.ignored += 0 if ignored is None else int(np.count_nonzero(ignored))
        self.loss_sum += tally.loss_sum
        if weighted is not None:
            self.weighted = True
            self.weighted_loss_sum += weighted[0]
            self.weight_sum += weighted[1]
        if weights is not None:
            self.zero_weight_rows += int(np.count_nonzero(weights == 0))
        self.loss_min = min(self.loss_min, tally.loss_min)
        self.loss_max = max(self.loss_max, tally.loss_max)
        self.correct += tally.correct
        self.top_k_hits += tally.top_k_hits
        if tally.negatives:
            self.sketch.update(stats.counted_values(stats.loss))
        elif tally.counted:
            self.sketch.update_keys(tally.keys, tally.zeros, tally.loss_min, tally.loss_max)
        self.per_class.update(tally)
        self.worst.update(stats, offset, ids)

    def merge(self, other: LossSummary) -> None:
        self.rows += other.rows
        self.counted += other.counted
        self.ignored += other.ignored
        self.zero_weight_rows += other.zero_weight_rows
        self.weighted = self.weighted or other.weighted
        self.loss_sum += other.loss_sum
        self.weighted_loss_sum += other.weighted_loss_sum
        self.weight_sum += other.weight_sum
        self.loss_min = min(self.loss_min, other.loss_min)
        self.loss_max = max(self.loss_max, other.loss_max)
        self.correct += other.correct
        self.top_k_hits += other.top_k_hits
        self.sketch.merge(other.sketch)
        self.per_class.merge(other.per_class)
        self.worst.merge(other.worst)

    @property
    def nonfinite(self) -> int:
        return self.rows - self.counted - self.ignored

    def summary(self) -> dict[str, Any]:
        """The aggregates as plain numbers (NaN where undefined, e.g. no counted rows).

        With weights, loss_mean is the weighted mean weighted_loss_sum / weight_sum."""
        n = self.counted
        if self.weighted:
            mean = self.weighted_loss_sum / self.weight_sum if self.weight_sum else math.nan
        else:
            mean = self.loss_sum / n if n else math.nan
        weights = {"weighted_loss_sum": self.weighted_loss_sum, "weight_sum": self.weight_sum} if self.weighted else {}
        return {
            "rows": self.rows,
            "counted": n,
            "ignored": self.ignored,
            "nonfinite": self.nonfinite,
            "loss_mean": mean,
            "loss_sum": self.loss_sum,
            **weights,
            "loss_min": self.loss_min if n else math.nan,
            "loss_max": self.loss_max if n else math.nan,
            "loss_p50": self.sketch.quantile(0.50),
            "loss_p90": self.sketch.quantile(0.90),
            "loss_p99": self.sketch.quantile(0.99),
            "perplexity": perplexity(mean, n),
            "accuracy": self.correct / n if n else math.nan,
            "top_k": self.top_k,
            "top_k_accuracy": self.top_k_hits / n if n else math.nan,
            "num_classes": self.num_classes,
        }

    def per_class_rows(self, names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """One row per class, in class order; above DENSE_CLASS_LIMIT classes, the
        SPARSE_PER_CLASS_ROWS classes with the most support (ties to the lower class)."""
        pc = self.per_class
        with np.errstate(invalid="ignore", divide="ignore"):
            loss_mean = pc.loss_sum / pc.support
            accuracy = pc.correct / pc.support
            p_true_mean = pc.p_true_sum / pc.support
        order = np.arange(pc.support.size)
        if pc.classes is not None:
            order = np.lexsort((pc.classes, -pc.support))[:SPARSE_PER_CLASS_ROWS]
        ids = pc.class_ids
        return [
            {
                "class": int(ids[i]),
                **({"name": names[ids[i]]} if names else {}),
                "support": int(pc.support[i]),
                "predicted": int(pc.predicted[i]),
                "loss_mean": float(loss_mean[i]),
                "accuracy": float(accuracy[i]),
                "p_true_mean": float(p_true_mean[i]),
            }
            for i in order.tolist()
        ]


@dataclass
class SequenceTotals:
    """Per sequence: positions, counted tokens and their summed loss (for --per-sequence).

    Rows of one sequence arrive together (a sequence may be split between two chunks); runs
    are kept in input order and runs of the same sequence are added up when reported. Memory
    grows with the number of sequences, which is what the per-sequence report holds anyway.
    """

    ids: list[npt.NDArray] = field(default_factory=list)
    positions: list[npt.NDArray] = field(default_factory=list)
    tokens: list[npt.NDArray] = field(default_factory=list)
    loss_sum: list[npt.NDArray] = field(default_factory=list)

    def update(self, stats: SampleStats, sample: npt.NDArray) -> None:
        if sample.size == 0:
            return
        counted = stats.counted
        starts = np.flatnonzero(np.r_[True, sample[1:] != sample[:-1]])
        self.ids.append(sample[starts])
        self.positions.append(np.diff(np.r_[starts, sample.size]))
        self.tokens.append(np.add.reduceat(counted.astype(np.int64), starts))
        self.loss_sum.append(np.add.reduceat(np.where(counted, stats.loss, 0.0), starts))

    def merge(self, other: SequenceTotals) -> None:
        self.ids += other.ids
        self.positions += other.positions
        self.tokens += other.tokens
        self.loss_sum += other.loss_sum

    def rows(self) -> list[dict[str, Any]]:
        totals: dict[Any, list[float]] = {}
        for ids, positions, tokens, loss_sum in zip(self.ids, self.positions, self.tokens, self.loss_sum):
            for key, p, t, s in zip(ids.tolist(), positions.tolist(), tokens.tolist(), loss_sum.tolist()):
                entry = totals.setdefault(key, [0, 0, 0.0])
                entry[0] += p
                entry[1] += t
                entry[2] += s
        out = []
        for key, (positions, tokens, loss_sum) in totals.items():
            mean = loss_sum / tokens if tokens else math.nan
            out.append(
                {
                    "sequence": key,
                    "positions": positions,
                    "tokens": tokens,
                    "loss_sum": loss_sum,
                    "loss_mean": mean,
                    "perplexity": perplexity(mean, tokens),
                }
            )
        return out
