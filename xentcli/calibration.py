"""Top-label calibration as a mergeable partial: a fixed grid of 3600 confidence cells, each with
count, Σconf, Σconf², Σcorrect, Σconf·correct, so that every bin count dividing 3600 (10, 15, 20,
25, 30, 40, 60 …) is an exact coarsening and partials merge exactly; the reports are derived at
the end (README, "Calibration").

Binning: equal-width bins (lo, hi], the first bin [0, hi] closed (Guo et al. 2017, scikit-learn's
calibration_curve(strategy="uniform")). A cell j covers (j/3600, (j+1)/3600]; a confidence is
placed by comparing it with the float64 edges j/3600, which are the correctly rounded values of
the same rationals as the coarse edges k/M: a confidence equal to an edge lands in the lower bin
exactly, never by float cell arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

CELLS = 3600
EDGES = np.arange(CELLS + 1) / CELLS  # correctly rounded j/3600
LOW_COUNT = 30  # a bin with fewer rows is marked in the table
BINNING = "equal-width, (lo, hi], first bin closed"
ADAPTIVE_BINNING = "equal-mass on a grid of 1/3600, (lo, hi], first bin closed"


def cells_of(confidence: npt.NDArray[np.float64], use: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.int64]:
    """The cell of each confidence in [0, 1]: the j with EDGES[j] < c ≤ EDGES[j+1] (0 for c = 0);
    −1 for the rows `use` leaves out. floor(c·3600) is within one cell of it; one comparison with
    each neighbouring edge settles it exactly (a searchsorted over the edges, at a fraction of the
    cost)."""
    from xentcli import native

    if native.has_calibration():
        return native.calibration_cells(confidence, CELLS, use)
    if use is None:
        return cells_numpy(confidence)
    return np.where(use, cells_numpy(np.where(use, confidence, 0.0)), -1)


def cells_numpy(confidence: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """cells_of without the C library (and the C function's reference in the tests)."""
    cell = np.clip(np.ceil(confidence * CELLS).astype(np.int64) - 1, 0, CELLS - 1)
    cell -= (confidence <= EDGES[cell]) & (cell > 0)
    cell += (confidence > EDGES[cell + 1]) & (cell < CELLS - 1)
    return cell


@dataclass
class Calibration:
    """The grid's sums, the multiclass Brier sum, and the confident mistakes (confidence exactly 1)."""

    count: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(CELLS, np.int64))
    conf: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(CELLS))
    conf2: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(CELLS))
    correct: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(CELLS, np.int64))
    conf_correct: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(CELLS))
    brier_sum: float = 0.0
    brier_rows: int = 0
    certain_wrong: int = 0

    def update(self, confidence: npt.NDArray[np.float64], right: npt.NDArray[np.bool_], brier: npt.NDArray[np.float64] | None,
               certain_wrong: npt.NDArray[np.bool_] | None = None, cells: npt.NDArray[np.int64] | None = None,
               p_true: npt.NDArray[np.float64] | None = None) -> None:
        """The rows with a cell ≥ 0 (every row without `cells`: rows with a usable label and a finite
        confidence); `brier` = Σ_c (p_c − 1[y = c])² per row — or, with `p_true`, Σ_c p_c² per row,
        the Brier score then Σp² − 2·p_y + 1 —; `certain_wrong` the rows certain and wrong (default:
        confidence 1.0 and not right)."""
        from xentcli import native

        cells = cells_of(confidence) if cells is None else cells
        if native.has_calibration():  # the sums in one C pass, the grid's as the bincounts below add them
            brier_sum, brier_rows, certain = native.calibration_sums(
                cells, confidence, right, self.count, self.conf, self.conf2, self.correct, self.conf_correct,
                None if brier is None else (brier, p_true), certain_wrong)
            self.brier_sum += brier_sum
            self.brier_rows += brier_rows
            self.certain_wrong += certain
            return
        use = cells >= 0
        every = bool(use.all())

        def pick(values: npt.NDArray) -> npt.NDArray:
            return values if every else values[use]

        self._sums_numpy(pick(cells), pick(confidence), pick(right))
        self.certain_wrong += int(np.count_nonzero((pick(confidence) == 1.0) & ~pick(right) if certain_wrong is None else pick(certain_wrong)))
        if brier is not None:
            values = pick(brier) if p_true is None else pick(brier) - 2 * pick(p_true) + 1
            finite = np.isfinite(values)
            self.brier_sum += float(values[finite].sum())
            self.brier_rows += int(np.count_nonzero(finite))

    def _sums_numpy(self, cells: npt.NDArray[np.int64], confidence: npt.NDArray[np.float64], right: npt.NDArray[np.bool_]) -> None:
        """Three bincounts for the five sums: each cell split by right/wrong (slot 2·cell + right)."""
        slot = cells * 2 + right
        counts = np.bincount(slot, minlength=2 * CELLS).reshape(CELLS, 2)
        conf = np.bincount(slot, weights=confidence, minlength=2 * CELLS).reshape(CELLS, 2)
        self.count += counts.sum(axis=1)
        self.correct += counts[:, 1]
        self.conf += conf.sum(axis=1)
        self.conf_correct += conf[:, 1]
        self.conf2 += np.bincount(slot >> 1, weights=confidence * confidence, minlength=CELLS)

    def merge(self, other: Calibration) -> None:
        for name in ("count", "conf", "conf2", "correct", "conf_correct"):
            getattr(self, name).__iadd__(getattr(other, name))
        self.brier_sum += other.brier_sum
        self.brier_rows += other.brier_rows
        self.certain_wrong += other.certain_wrong

    def boundaries(self, bins: int, adaptive: bool) -> npt.NDArray[np.int64]:
        """The first cell of each bin, and CELLS: equal-width (bins divides CELLS), or equal-mass on the
        grid — each edge at the first cell where the cumulative count reaches k·n/M (repeated edges
        collapse, so heavy cells can leave fewer bins)."""
        if not adaptive:
            return np.arange(0, CELLS + 1, CELLS // bins)
        cumulative = np.cumsum(self.count)
        n = cumulative[-1]
        if n == 0:
            return np.array([0, CELLS])
        cuts = np.searchsorted(cumulative, np.arange(1, bins) * n / bins, side="left") + 1
        return np.unique(np.r_[0, np.clip(cuts, 1, CELLS - 1), CELLS])

    def report(self, bins: int, confidence_level: float = 0.95, adaptive: bool = False) -> dict[str, Any]:
        """The `calibration` object of the JSON for `bins` bins: equal-width (bins divides 3600), or
        equal-mass on the grid with `adaptive`."""
        from xentcli.accumulate import wilson

        edges = self.boundaries(bins, adaptive)
        bins = edges.size - 1

        def coarse(values: npt.NDArray) -> npt.NDArray:
            return np.add.reduceat(values, edges[:-1])

        count, conf, conf2 = coarse(self.count), coarse(self.conf), coarse(self.conf2)
        correct, conf_correct = coarse(self.correct), coarse(self.conf_correct)
        n = int(count.sum())
        nan = math.nan
        out: dict[str, Any] = {"bins": bins, "binning": ADAPTIVE_BINNING if adaptive else BINNING}
        if n == 0:
            out.update(ece=nan, mce=nan, rmsce=nan, brier=nan, brier_top_label=nan,
                       brier_decomposition=dict.fromkeys(("reliability", "resolution", "uncertainty", "within_bin_variance", "within_bin_covariance"), nan),
                       table=[], temperature=None)
            return out
        used = count > 0
        weight = count[used] / n
        conf_m = conf[used] / count[used]
        acc_m = correct[used] / count[used]
        gap = acc_m - conf_m
        accuracy = correct.sum() / n
        out["ece"] = float((weight * np.abs(gap)).sum())
        out["mce"] = float(np.abs(gap).max())
        out["rmsce"] = float(math.sqrt((weight * gap * gap).sum()))
        out["brier"] = self.brier_sum / self.brier_rows if self.brier_rows else nan
        out["brier_top_label"] = float((conf2.sum() - 2 * conf_correct.sum() + correct.sum()) / n)
        out["brier_decomposition"] = {
            "reliability": float((weight * gap * gap).sum()),
            "resolution": float((weight * (acc_m - accuracy) ** 2).sum()),
            "uncertainty": float(accuracy * (1 - accuracy)),
            "within_bin_variance": float((conf2[used] - count[used] * conf_m * conf_m).sum() / n),
            "within_bin_covariance": float((conf_correct[used] - count[used] * conf_m * acc_m).sum() / n),
        }
        table = []
        for index in np.flatnonzero(used).tolist():
            k = int(count[index])
            table.append({
                "lo": float(EDGES[edges[index]]), "hi": float(EDGES[edges[index + 1]]), "count": k, "confidence": float(conf[index] / k),
                "accuracy": float(correct[index] / k), "gap": float(correct[index] / k - conf[index] / k),
                "accuracy_ci": wilson(int(correct[index]), k, confidence_level),
            })
        out["table"] = table
        out["temperature"] = None
        return out
