"""Mergeable partial aggregates of per-sample results: counts, float64 sums, sketch, per-class, worst rows.

Every state is declared with its merge rule (as torchmetrics does): counts and sums add, extrema
take min/max, the quantile sketch adds integer bucket counts, the worst rows are re-selected by
(loss descending, row ascending). Means are derived at the end, never stored. The counted losses'
sum and M2 (LossMoments) are the same to the bit whatever the chunking; the other float64 sums
agree across chunkings to ~1e-15 relative (and to the bit across threads: chunks merge in order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcli import native, stats
from xentcli.calibration import Calibration
from xentcli.temperature import TemperatureSample
from xentcli.confusions import Confusions
from xentcli.slices import GroupTotals
from xentcli.kernels import SampleStats
from xentcli.plain import id_at
from xentcli.ranking import top_rows
from xentcli.sketch import QuantileSketch
from xentcli.tally import DENSE_CLASS_LIMIT, ChunkTally


def wilson(successes: int, n: int, confidence: float) -> list[float]:
    """Wilson's score interval for a proportion (Wilson 1927): centre (p̂ + z²/2n)/(1 + z²/n),
    half-width z·√(p̂(1 − p̂)/n + z²/4n²)/(1 + z²/n)."""
    if n == 0:
        return [math.nan, math.nan]
    z = stats.normal_quantile((1 + confidence) / 2)
    p = successes / n
    scale = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    return [centre - half, centre + half]


def perplexity(mean_loss: float, counted: int) -> float:
    """exp(mean loss): inf where it overflows float64, NaN where nothing was counted or the mean is undefined."""
    if not counted or math.isnan(mean_loss):
        return math.nan
    return math.exp(mean_loss) if mean_loss < 709.0 else math.inf


# A worst row's record, in this order: `row` and `loss` from WorstRows' arrays, the rest from its columns.
WORST_RECORD = ("row", "id", "label", "pred", "loss", "p_true", "sample", "position")
WORST_COLUMNS = ("id", "label", "pred", "p_true")  # every dump's; "sample" and "position" besides on sequence dumps


@dataclass
class WorstRows:
    """The `k` counted rows with the highest loss; ties go to the lower row index.

    Kept as columns aligned with `rows` (`columns`: id, label, pred and p_true, and a sequence
    dump's sample and position; ids, samples and positions as object arrays of JSON values), made
    into records only for the report (`details`): --worst 100000 over 4,000,000 rows made a dict
    for each of the ~500,000 rows that entered on the way, and re-listed them at every merge."""

    k: int
    rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    loss: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0, np.float64))
    columns: dict[str, npt.NDArray] = field(default_factory=dict)

    @property
    def details(self) -> list[dict[str, Any]]:
        """The rows' records, worst first, keys in WORST_RECORD's order."""
        values = {"row": self.rows, "loss": self.loss, **self.columns}
        keys = [key for key in WORST_RECORD if key in values]
        return [dict(zip(keys, record)) for record in zip(*(values[key].tolist() for key in keys))]

    def update(self, stats: SampleStats, offset: int, ids: npt.NDArray | None, floor: WorstFloor | None = None,
               sample: npt.NDArray | None = None, position: npt.NDArray | None = None) -> None:
        """`sample`, `position`: each row's sequence and place in it (sequence dumps), which its
        record then names as -o's columns do."""
        if self.k == 0:
            return
        candidates = top_rows(stats.counted, stats.loss, self.k)  # ties to the lower row, as the merge keeps them
        cut = (self.loss[-1], self.rows[-1]) if len(self.rows) == self.k else None if floor is None else floor.cut
        if cut is not None:  # only a row that comes before the k-th can enter: nothing taken for the rest
            loss, rows = stats.loss[candidates], candidates + offset
            candidates = candidates[_before(loss, rows, *cut)]
            if candidates.size == 0:
                return
        picked = candidates.tolist()
        columns = {
            "id": _objects(None if ids is None else [id_at(ids, i) for i in picked], len(picked)),
            "label": stats.label[candidates].astype(np.int64), "pred": stats.pred[candidates].astype(np.int64),
            "p_true": stats.p_true[candidates].astype(np.float64),
        }
        if sample is not None:
            columns["sample"] = _objects([id_at(sample, i) for i in picked], len(picked))
            columns["position"] = _objects(None if position is None else position[candidates].tolist(), len(picked))
        self.merge(WorstRows(self.k, candidates.astype(np.int64) + offset, stats.loss[candidates].astype(np.float64), columns))

    def merge(self, *others: WorstRows) -> None:
        """Keep the k first of all, loss descending and ties to the lower row (NaN last): one sort of
        the k kept and the others' rows — the engine merges the chunks' worst rows in batches of at
        least k rows (Pass), so the work per row stays O(log k), not a sort of k per chunk."""
        parts = [part for part in (self, *others) if len(part.rows)]
        if not parts or (len(parts) == 1 and parts[0] is self):  # kept rows are in order already
            return
        rows = np.concatenate([part.rows for part in parts])
        loss = np.concatenate([part.loss for part in parts])
        order = np.lexsort((rows, -loss))[: self.k]
        names = [key for key in WORST_RECORD if any(key in part.columns for part in parts)]
        self.columns = {key: np.concatenate([part.columns[key] if key in part.columns else _objects(None, len(part.rows))
                                             for part in parts])[order] for key in names}
        self.rows, self.loss = rows[order], loss[order]


def _objects(values: list[Any] | None, n: int) -> npt.NDArray[np.object_]:
    """An object array of `values` (JSON values), or of n nulls."""
    out = np.empty(n, object)
    if values is not None:
        out[:] = values
    return out


@dataclass
class WorstFloor:
    """The k-th worst row of the totals so far, (loss, row), shared with the chunks being scored: the
    k-th only moves forward as rows come, so a row that does not come before it can never be among
    the worst rows, and no details are made for it. `cut` is one tuple, assigned whole: read without
    a lock, a stale value is an earlier k-th, which lets more rows through, never fewer."""

    cut: tuple[float, int] | None = None

    def follow(self, worst: WorstRows) -> None:
        if len(worst.rows) == worst.k and worst.k:
            self.cut = (float(worst.loss[-1]), int(worst.rows[-1]))


class WorstBatches:
    """The chunks' worst rows, merged into `into` k or more rows at a time (one sort per k rows that
    could enter, where a merge per chunk sorted k rows each time: --worst 100000 over 5M rows took
    10 s), and the floor the chunks being scored read. `add` takes a chunk's worst rows out of its
    summary (left empty, so merging that summary costs nothing for them)."""

    def __init__(self, into: WorstRows) -> None:
        self.into = into
        self.floor = WorstFloor()
        self._waiting: list[WorstRows] = []
        self._rows = 0

    def add(self, summary: LossSummary) -> None:
        worst, summary.worst = summary.worst, WorstRows(summary.worst.k)
        self._waiting.append(worst)
        self._rows += len(worst.rows)
        if self._rows >= self.into.k:
            self.flush()

    def flush(self) -> None:
        if self._waiting:
            self.into.merge(*self._waiting)
            self._waiting.clear()
            self._rows = 0
            self.floor.follow(self.into)


def _before(loss: npt.NDArray, rows: npt.NDArray, last_loss: float, last_row: int) -> npt.NDArray[np.bool_]:
    """Which (loss, row) pairs come before (last_loss, last_row) in the worst rows' order."""
    if np.isnan(last_loss):  # NaN comes last: every number comes before it, and a NaN with a lower row
        return ~np.isnan(loss) | (rows < last_row)
    return (loss > last_loss) | ((loss == last_loss) & (rows < last_row))


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


def block_moments(values: npt.NDArray[np.float64], bounds: npt.NDArray[np.int64]) -> tuple[npt.NDArray, npt.NDArray, npt.NDArray]:
    """Per block b (values bounds[b] … bounds[b+1] − 1): its sum by numpy's pairwise sum, and about
    its float mean m_b = sum / n_b its M2 Σ (x − m_b)² and its deviations' sum Σ (x − m_b) (NaN
    where the sum is not finite); through the C extension in one call for all blocks, to the same bit."""
    if native.has_tally():
        return native.block_moments(values, bounds)
    sums, m2s, devs = np.empty(bounds.size - 1), np.full(bounds.size - 1, math.nan), np.full(bounds.size - 1, math.nan)
    with np.errstate(over="ignore", invalid="ignore"):  # ±inf and NaN are the caller's to keep apart
        for b, (lo, hi) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
            sums[b] = float(np.add.reduce(values[lo:hi]))
            if hi > lo and math.isfinite(sums[b]):
                m2s[b], devs[b] = deviation_sums(values[lo:hi], sums[b] / (hi - lo))
    return sums, m2s, devs


def deviation_sums(values: npt.NDArray[np.float64], mean: float) -> tuple[float, float]:
    """Σ (x − mean)² and Σ (x − mean), as numpy sums them."""
    deviations = values - mean
    return float(np.square(deviations).sum()), float(np.add.reduce(deviations))


# The rows fall in blocks of BLOCK_ROWS by their row number (README, "The same to the bit whatever the chunking").
BLOCK_ROWS = 1 << 16
_SCALE = 1074  # every finite float64 is a whole multiple of 2^-1074


def _scaled(x: float) -> int:
    """x·2^1074, exactly, as an integer (x finite)."""
    p, q = x.as_integer_ratio()  # q is a power of two ≤ 2^1074
    return p << (_SCALE + 1 - q.bit_length())


def _moved_back(x: float, shift: int) -> int | None:
    """x·2^(1074 − shift) as an integer (x finite: a float of a block moved by 2^shift, LossMoments),
    None where it is not whole."""
    p, q = x.as_integer_ratio()
    place = _SCALE + 1 - q.bit_length() - shift
    if place >= 0:
        return p << place
    return None if p & ((1 << -place) - 1) else p >> -place


def _exact_deviations(n: int, mean: float, m2: float, dev: float) -> bool:
    """Whether a block's float sum of deviations `dev` = Σ (x − mean) is exact, from its M2 = Σ (x − mean)²
    (LossMoments): every x within mean/2 of the mean, so each x − mean is exact (Sterbenz) and a
    multiple of half an ulp of the mean, and every partial sum within 2^53 such halves."""
    if not abs(mean) >= 2.0**-456:  # below, a deviation's square (half an ulp of the mean, squared) can underflow,
        return False  # and M2 no longer bounds the deviations (found in review: sums of losses ~1e-162 an ulp off)
    if m2 == 0.0:  # every deviation 0: any other has a normal square
        return dev == 0.0
    spread = math.sqrt(m2)  # ≥ the largest |x − mean|
    return math.isfinite(m2) and 2 * spread < abs(mean) and 2 * n * spread <= math.ulp(mean) * 2.0**52


def _quotient(numerator: int, denominator: int) -> float:
    """numerator / denominator correctly rounded (Python's integer division is), ±inf beyond float64."""
    try:
        return numerator / denominator
    except OverflowError:
        return math.inf if (numerator < 0) == (denominator < 0) else -math.inf


@dataclass
class RowBlocks:
    """Per-row values summed the same to the bit whatever the chunking, the threads or the engine.
    The rows fall in blocks of BLOCK_ROWS by their row number; a subclass's `_close` takes a whole
    block's counted values (in row order, numpy's pairwise sums) and adds its figures as exact
    integers (multiples of 2^-1074), so no float sum depends on where a chunk begins. A block a
    partial holds only in part (its first and last) waits in `pending` as row ranges with their
    counted values; `merge` completes it from the neighbouring partial, and the end of the input
    (`closed`) closes what is left."""

    pending: dict[int, list[list[Any]]] = field(default_factory=dict)  # block → [[first row, stop row, values [k, m]], …]
    covered: dict[int, int] = field(default_factory=dict)  # block → the rows its pending pieces span

    def _hold(self, block: int, pieces: list[list[Any]]) -> None:
        self.pending.setdefault(block, []).extend(pieces)
        self.covered[block] = self.covered.get(block, 0) + sum(piece[1] - piece[0] for piece in pieces)

    def _add_rows(self, offset: int, columns: list[npt.NDArray[np.float64]], counted: npt.NDArray[np.bool_], every: bool,
                  origin: int) -> None:
        """Rows offset … offset + n − 1: `columns` hold k values a row, `counted` says which rows
        count (`every`: all). `origin`: the row number of row 0 in the whole input when the rows are
        numbered from elsewhere (a Dask task's), for the blocks' edges; `shift` renumbers."""
        rows = counted.size
        if not rows:
            return
        first = offset + origin
        edges = [edge - origin for edge in range((first // BLOCK_ROWS + 1) * BLOCK_ROWS, first + rows, BLOCK_ROWS)]
        cuts = [offset, *edges, offset + rows]
        if every:  # the counted values, and where each piece begins among them
            values, at = columns, [cut - offset for cut in cuts]
        else:
            positions = np.flatnonzero(counted)
            values, at = [column[positions] for column in columns], np.searchsorted(positions, np.array(cuts) - offset).tolist()
        whole = []  # the bounds of the blocks complete here: one run of pieces (only the first and last may not be)
        for lo, hi, a, b in zip(cuts, cuts[1:], at, at[1:]):
            if (lo + origin) % BLOCK_ROWS == 0 and (hi + origin) % BLOCK_ROWS == 0:
                whole.append(b if whole else [a, b])
            else:
                piece = np.empty((len(values), b - a))  # a copy: the chunk's arrays are not kept
                for i, column in enumerate(values):
                    piece[i] = column[a:b]
                self._hold((lo + origin) // BLOCK_ROWS, [[lo, hi, piece]])
        if whole:
            self._close(values, np.array([*whole[0], *whole[1:]], np.int64))

    def shift(self, rows: int) -> None:
        """Number the pending rows from `rows` on (a Dask task's, a partial file's after the inputs
        before it). A piece that now spans an edge can complete no block: it closes as it is."""
        pieces = [piece for block in self.pending.values() for piece in block]
        self.pending, self.covered = {}, {}
        for lo, hi, values in pieces:
            lo, hi = lo + rows, hi + rows
            if lo // BLOCK_ROWS != (hi - 1) // BLOCK_ROWS:
                self._close(list(values))
            else:
                self._hold(lo // BLOCK_ROWS, [[lo, hi, values]])
        self._complete()

    def _merge_pending(self, other: RowBlocks) -> None:
        for block, pieces in other.pending.items():
            self._hold(block, pieces)
        self._complete(list(other.pending))

    @staticmethod
    def _joined(pieces: list[list[Any]]) -> list[npt.NDArray[np.float64]]:
        """A block's pieces in row order (overlapping ones, of partial files of other inputs, as they come), as k columns."""
        pieces = sorted(pieces, key=lambda piece: (piece[0], piece[1]))
        return list(np.concatenate([piece[2] for piece in pieces], axis=1))

    def _complete(self, blocks: list[int] | None = None) -> None:
        """Close the pending blocks (of `blocks`, else all) whose pieces now cover them, each piece
        once, in row order. A block is looked at once its pieces span as many rows as it has: a
        block cut into k one-row chunks is sorted once, not k times."""
        for block in blocks if blocks is not None else list(self.pending):
            pieces = self.pending.get(block)
            if not pieces or len(pieces) < 2 or self.covered[block] < BLOCK_ROWS:
                continue
            pieces = sorted(pieces, key=lambda piece: (piece[0], piece[1]))
            ends = [block * BLOCK_ROWS] + [piece[1] for piece in pieces]
            if [piece[0] for piece in pieces] == ends[:-1] and ends[-1] == (block + 1) * BLOCK_ROWS:
                del self.pending[block], self.covered[block]
                self._close(self._joined(pieces))

    def closed(self) -> Any:
        """A copy with every pending block closed: the input has ended."""
        done = replace(self, pending={}, covered={})
        for block in sorted(self.pending):
            done._close(self._joined(self.pending[block]))
        return done

    def _close(self, columns: list[npt.NDArray[np.float64]], bounds: npt.NDArray[np.int64] | None = None) -> None:
        raise NotImplementedError


@dataclass
class LossMoments(RowBlocks):
    """n, Σ and M2 of the counted losses, to the same bit whatever the chunking (RowBlocks).

    Each block has its float sum, its float mean m_b, M2_b = Σ (x − m_b)² and D_b = Σ (x − m_b)
    (float sums). A block's total is n_b·m_b + D_b where that is provably its exact sum — every
    deviation exact by Sterbenz's lemma and every partial sum of them representable: max |x − m_b|
    ≤ √M2_b below |m_b|/2, 2·n_b·√M2_b within 2^52 ulps of m_b, and |m_b| ≥ 2^-456, where no
    deviation's square underflows — and its float sum elsewhere, the more accurate of the two
    there. Ten losses of 47.1 so have the mean 47.1, where the float sum gave 47.10000000000001 and
    `check --max-loss 47.1` failed (found in review, 2026-12-03).

    With T the sum of the totals and m = T/n, the spread about m is (Chan et al.'s decomposition
    over the blocks, with the cross term that m_b's rounding leaves)
    Σ_b [M2_b + 2(m_b − m)·D_b + n_b(m_b − m)²] = Σ M2_b + Σ n_b·m_b² + 2·Σ m_b·D_b
    − 2m·Σ (n_b·m_b + D_b) + n·m², every sum exact over the blocks' floats. D_b is exact where it
    matters — losses a few ulps apart, whose M2 the rounding of m_b (an ulp) would otherwise change
    by up to 3e-4 of itself."""

    n: int = 0  # counted losses in the closed blocks
    total: int = 0  # Σ block totals · 2^1074
    m2: int = 0  # Σ block M2 · 2^2148
    means: int = 0  # Σ n_b·m_b · 2^1074
    squares: int = 0  # Σ n_b·m_b² · 2^2148
    deviations: int = 0  # Σ D_b · 2^1074
    cross: int = 0  # Σ m_b·D_b · 2^2148
    special: float = 0.0  # the non-finite block sums added (±inf or NaN); 0.0 when none
    m2_special: float = 0.0  # likewise the non-finite block M2s

    def update(self, offset: int, loss: npt.NDArray[np.float64], counted: npt.NDArray[np.bool_], every: bool = False,
               origin: int = 0) -> None:
        """Add rows offset … offset + len(loss) − 1: `loss` on every row, `counted` which count."""
        self._add_rows(offset, [loss], counted, every, origin)

    def merge(self, other: LossMoments) -> None:
        self.n += other.n
        self.total += other.total
        self.m2 += other.m2
        self.means += other.means
        self.squares += other.squares
        self.deviations += other.deviations
        self.cross += other.cross
        self.special += other.special
        self.m2_special += other.m2_special
        self._merge_pending(other)

    def _close(self, columns: list[npt.NDArray[np.float64]], bounds: npt.NDArray[np.int64] | None = None) -> None:
        """Add the blocks of the losses (bounds[b] … bounds[b+1] − 1; None: all of them, one block)."""
        values = columns[0]
        bounds = np.array([0, values.size], np.int64) if bounds is None else bounds
        sums, m2s, devs = block_moments(values, bounds)
        for lo, hi, total, m2, dev in zip(bounds[:-1].tolist(), bounds[1:].tolist(), sums.tolist(), m2s.tolist(), devs.tolist()):
            if hi > lo:
                self._add_block(values[lo:hi], total, m2, dev)

    def _add_block(self, block: npt.NDArray[np.float64], total: float, m2: float, dev: float) -> None:
        """One block, from its float sum, M2 and deviations' sum: as they are where no square of a
        deviation over- or underflowed; else from those of the block·2^k (exact), its largest loss
        moved to ~2^500; else (losses more than ~2^1000 apart, or below the normal floats) exactly."""
        n = block.size
        self.n += n
        if not math.isfinite(total):
            if not np.isfinite(block).all():  # an infinite or NaN loss: the sum is that
                self.special += total
                self.m2_special += math.nan
            else:  # finite losses whose float sum overflowed
                self._add_exact(block)
            return
        if stats.M2_FLOOR <= m2 < math.inf or m2 == 0.0 and abs(total / n) >= 2.0**-456 and bool((block == total / n).all()):
            self._add_float(n, total, m2, dev, 0)  # (equal losses below 2^-456: moved, where their sum is exact)
            return
        top = float(np.max(np.abs(block)))
        shift = 500 - math.frexp(top)[1]
        moved = np.ldexp(block, shift)
        if np.array_equal(np.ldexp(moved, -shift), block):
            sums, m2s, devs = block_moments(moved, np.array([0, n], np.int64))
            if self._add_float(n, float(sums[0]), float(m2s[0]), float(devs[0]), shift):
                return
        self._add_exact(block)

    def _add_float(self, n: int, total: float, m2: float, dev: float, shift: int) -> bool:
        """Add a block of n losses x from the float sum, M2 and deviations' sum of x·2^shift;
        False (nothing added) where its mean or sums are not whole multiples of 2^-1074 once moved back."""
        mean = total / n
        scaled_mean, scaled_total = _moved_back(mean, shift), _moved_back(total, shift)
        scaled_dev = _moved_back(dev, shift) if math.isfinite(dev) else None
        if scaled_mean is None or scaled_total is None or (scaled_dev is None and math.isfinite(dev)):
            return False
        if scaled_dev is None:  # the deviations' float sum overflowed: the float block sum's difference
            scaled_dev = scaled_total - n * scaled_mean
        self.means += n * scaled_mean
        self.squares += n * scaled_mean * scaled_mean
        self.deviations += scaled_dev
        self.cross += scaled_mean * scaled_dev
        p, q = m2.as_integer_ratio()  # M2·2^(2148 − 2·shift), to the unit below (M2 is correct to a few ulps)
        place = 2 * (_SCALE - shift) + 1 - q.bit_length()
        self.m2 += p << place if place >= 0 else p >> -place
        self.total += n * scaled_mean + scaled_dev if _exact_deviations(n, mean, m2, dev) else scaled_total
        return True

    def _add_exact(self, block: npt.NDArray[np.float64]) -> None:
        """Add a block of finite losses from their exact sum and exact squares of deviations."""
        n = block.size
        values = [_scaled(x) for x in block.tolist()]
        exact = sum(values)
        scaled_mean = _scaled(_quotient(exact, n << _SCALE))
        scaled_dev = exact - n * scaled_mean
        self.means += n * scaled_mean
        self.squares += n * scaled_mean * scaled_mean
        self.deviations += scaled_dev
        self.cross += scaled_mean * scaled_dev
        self.m2 += sum((x - scaled_mean) ** 2 for x in values)
        self.total += exact

    def results(self) -> tuple[int, float, float, float]:
        """(n, Σ, mean, standard error of the mean) of the closed blocks, each correctly rounded from
        the exact figures; the standard error is √(M2 / (n·(n − 1))), finite wherever it is a float64
        even where M2 is not (losses ~1e300 apart) and not 0 where M2 underflows (~1e-170 apart)."""
        n = self.n
        if self.special:
            return n, self.special, self.special / n, math.nan
        total = _quotient(self.total, 1 << _SCALE)
        mean = _quotient(self.total, n << _SCALE) if n else math.nan
        if self.m2_special or n < 2:
            return n, total, mean, math.nan
        spread = (self.m2 * n + (self.squares + 2 * self.cross) * n - 2 * self.total * (self.means + self.deviations)
                  + self.total * self.total)  # n·M2·2^2148
        # below 0 only where a block's float M2 was a few ulps low and the cross terms were not: 0, never −0.0
        return n, total, mean, sqrt_ratio(spread, n * n * (n - 1) << (2 * _SCALE)) if spread > 0 else 0.0


def sqrt_ratio(numerator: int, denominator: int) -> float:
    """√(numerator / denominator) correctly rounded (numerator ≥ 0, denominator > 0), ±inf beyond
    float64: a 64-bit integer square root with a sticky bit for the digits below."""
    if not numerator:
        return 0.0
    shift = 128 - numerator.bit_length() + denominator.bit_length()
    shift += shift & 1  # even: the root's scale is half of it
    quotient, remainder = divmod(numerator << shift, denominator) if shift >= 0 else divmod(numerator, denominator << -shift)
    root = math.isqrt(quotient)
    root = root << 1 | bool(remainder or root * root != quotient)  # ≥ 65 bits, the last one set where the root is inexact
    half = shift // 2 + 1
    return _quotient(root, 1 << half) if half >= 0 else _quotient(root << -half, 1)


@dataclass
class WeightedSums(RowBlocks):
    """The weighted mean's sums over the counted rows, to the same bit whatever the chunking
    (RowBlocks), with y = s·ℓ_w a row's weighted loss and x = s·w its weight: Σy, Σx, and the ratio
    estimator's spread Σ (y − m·x)² for the final m = Σy/Σx through each block's own ratio m_b:
    Σ_b [R_b + 2(m_b − m)·C_b + (m_b − m)²·Q_b] with R_b = Σ (y − m_b·x)², C_b = Σ x·(y − m_b·x),
    Q_b = Σ x² (the ratio's analogue of Chan et al.'s merge: deviations stay small where the losses
    are nearly equal, where Σy² − 2m·Σxy + m²·Σx² loses every digit)."""

    # Σ block Y, X, R, C, Q · 2^1074; Σ m_b·C_b, Σ m_b·Q_b · 2^2148; Σ m_b²·Q_b · 2^3222
    sums: list[int] = field(default_factory=lambda: [0] * 8)
    specials: list[float] = field(default_factory=lambda: [0.0] * 5)  # the non-finite block Y, X, R, C, Q added

    def update(self, offset: int, y: npt.NDArray[np.float64], x: npt.NDArray[np.float64], counted: npt.NDArray[np.bool_],
               origin: int = 0) -> None:
        self._add_rows(offset, [y, x], counted, bool(counted.all()), origin)

    def merge(self, other: WeightedSums) -> None:
        self.sums = [a + b for a, b in zip(self.sums, other.sums)]
        self.specials = [a + b for a, b in zip(self.specials, other.specials)]
        self._merge_pending(other)

    def _close(self, columns: list[npt.NDArray[np.float64]], bounds: npt.NDArray[np.int64] | None = None) -> None:
        y, x = columns
        bounds = np.array([0, y.size], np.int64) if bounds is None else bounds
        sums, specials = list(self.sums), list(self.specials)  # new lists: a closed() copy shares the old
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # ±inf and NaN are kept apart below
            for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
                yb, xb = y[lo:hi], x[lo:hi]
                total_y, total_x = float(np.add.reduce(yb)), float(np.add.reduce(xb))
                ratio = total_y / total_x if total_x and math.isfinite(total_y) and math.isfinite(total_x) else 0.0
                deviation = yb - ratio * xb
                block = (total_y, total_x, float(np.add.reduce(deviation * deviation)), float(np.add.reduce(xb * deviation)),
                         float(np.add.reduce(xb * xb)))
                if not all(math.isfinite(v) for v in block):
                    for i, v in enumerate(block):
                        specials[i] += v if not math.isfinite(v) else 0.0
                    continue
                scaled = [_scaled(v) for v in block]
                m = _scaled(ratio)
                if total_x == hi - lo and bool((xb == 1.0).all()) and _exact_deviations(hi - lo, ratio, block[2], block[3]):
                    scaled[0] = (hi - lo) * m + scaled[3]  # weights of 1: Σy exactly, as LossMoments' total (C_b is then Σ (y − m_b))
                for i in range(5):
                    sums[i] += scaled[i]
                sums[5] += m * scaled[3]
                sums[6] += m * scaled[4]
                sums[7] += m * m * scaled[4]
        self.sums, self.specials = sums, specials

    def results(self) -> tuple[float, float, float, float]:
        """(Σy, Σx, the weighted mean Σy/Σx, Σ (y − m·x)²: the ratio estimator's spread), each
        correctly rounded from the exact sums (NaN where undefined)."""
        sy, sx, r, c, q, mc, mq, mmq = self.sums
        y, x = (_quotient(v, 1 << _SCALE) if not s else s for v, s in zip((sy, sx), self.specials[:2]))
        if any(self.specials[:2]) or not sx:
            return y, x, (y / x if x else math.nan), math.nan
        mean = _quotient(sy, sx)
        if any(self.specials[2:]):
            return y, x, mean, math.nan
        # Σ_b [R_b + 2(m_b − m)C_b + (m_b − m)²Q_b] with m = sy/sx, over X²·2^3222, exactly
        s1, s2 = _SCALE, 2 * _SCALE
        numerator = (r * sx * sx << s2) + (2 * mc * sx * sx << s1) - (2 * sy * sx * c << s2) + mmq * sx * sx \
            - (2 * sy * sx * mq << s1) + (sy * sy * q << s2)
        return y, x, mean, max(_quotient(numerator, sx * sx << (3 * _SCALE)), 0.0)


def _shift_of(counted: npt.NDArray[np.bool_], loss: npt.NDArray[np.float64], weight: npt.NDArray[np.float64] | None) -> float | None:
    """The first counted row's loss (with weights: its y/x): the value the sequences' sums are taken
    about, so that they keep the digits of losses that differ little (Σ S² − 2m·Σ S·n + m²·Σ n²
    of raw sums gave a standard error of 0 for losses of 1000 ± 1e-6; found in review)."""
    usable = counted if weight is None else counted & (weight > 0)
    first = int(usable.argmax())  # the first usable row (argmax of a bool: no index array a chunk long)
    if not usable[first]:
        return None
    value = float(loss[first] if weight is None else loss[first] / weight[first])
    return value if math.isfinite(value) else None


def _about(loss: npt.NDArray[np.float64], weight: npt.NDArray[np.float64] | None, shift: float) -> npt.NDArray[np.float64]:
    """Each row's loss about the shift: ℓ − c, or y − c·x with weights (0·inf stays NaN, as in the sums)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return loss - shift if weight is None else loss - shift * weight


@dataclass
class ClusterRuns:
    """Per-sequence sums for clustered standard errors, in O(1) memory: a sequence's rows come
    together, so a chunk closes every sequence but its first and last, which may continue in the
    neighbouring chunks. Every S is taken about `shift` (the first counted loss: see _shift_of), a
    part's merged into another's after moving it to that one's shift. Closed sequences add Σ S,
    Σ n, Σ S², Σ S·n and Σ n² (S: the summed loss of a sequence's counted rows, n their count);
    Σ_g (S_g − n_g·m)² about their own mean m follows at the end."""

    first: list[Any] | None = None  # [sequence, S, n] of the first run, open to the left
    last: list[Any] | None = None  # and of the last, open to the right (the same list when one run)
    groups: int = 0
    ss: float = 0.0
    sn: float = 0.0
    nn: float = 0.0
    s: float = 0.0
    n: float = 0.0
    shift: float | None = None

    def _close(self, run: list[Any] | None) -> None:
        if run is not None and run[2]:
            self.groups += 1
            self.ss += run[1] * run[1]
            self.sn += run[1] * run[2]
            self.nn += float(run[2]) * run[2]
            self.s += run[1]
            self.n += run[2]

    def update(self, sample: npt.NDArray, counted: npt.NDArray[np.bool_], loss: npt.NDArray[np.float64],
               weight: npt.NDArray[np.float64] | None = None) -> None:
        """Add rows: each counted row's `loss` to its sequence's S and 1 to its n — or, with weights
        (the ratio estimator), its weighted loss y as `loss` and its weight x as `weight`."""
        if sample.size == 0:
            return
        shift = self.shift if self.shift is not None else _shift_of(counted, loss, weight)
        starts = np.flatnonzero(np.r_[True, sample[1:] != sample[:-1]])
        sums = np.add.reduceat(np.where(counted, _about(loss, weight, shift or 0.0), 0.0), starts)
        counts = np.add.reduceat(counted.astype(np.int64) if weight is None else np.where(counted, weight, 0.0), starts)
        runs = [[key, s, n] for key, s, n in zip(sample[starts].tolist(), sums.tolist(), counts.tolist())]
        part = ClusterRuns(runs[0], runs[-1]) if len(runs) == 1 else self._of(runs)
        part.shift = shift
        self.merge(part)

    @staticmethod
    def _of(runs: list[list[Any]]) -> ClusterRuns:
        inner = ClusterRuns(runs[0], runs[-1])
        for run in runs[1:-1]:
            inner._close(run)
        return inner

    def _single(self) -> bool:
        """Whether the part is one run, open on both sides: its first is its last. Told by the
        sequence, not by identity, which a partial file does not keep (two sequences 0 of two files
        had merged into one cluster, and loss_se grew by a sixth; found in review, 2026-12-03):
        a part's runs are distinct sequences, in order."""
        return self.first is not None and self.last is not None and (self.first is self.last or self.first[0] == self.last[0])

    def _moved(self, shift: float | None) -> ClusterRuns:
        """The same sums about `shift`: each S + n·(own shift − shift)."""
        if shift is None or self.shift is None or shift == self.shift:
            return self
        d = self.shift - shift
        moved = lambda run: None if run is None else [run[0], run[1] + run[2] * d, run[2]]  # noqa: E731
        first = moved(self.first)
        last = first if self._single() else moved(self.last)
        return ClusterRuns(first, last, self.groups, self.ss + 2 * d * self.sn + d * d * self.nn, self.sn + d * self.nn, self.nn,
                           self.s + d * self.n, self.n, shift)

    def merge(self, other: ClusterRuns) -> None:
        """Add the runs that follow (in input order). A part of one run has first is last (_single)."""
        if other.first is None:
            return
        if self.shift is None:  # no counted row yet: every S is 0 about any shift
            self.shift = other.shift
        other = other._moved(self.shift)
        if self.first is None or self.last is None:
            self.first, self.last = other.first, other.last
        elif self.last[0] == other.first[0]:  # one sequence split between the two
            merged = [self.last[0], self.last[1] + other.first[1], self.last[2] + other.first[2]]
            self_single, other_single = self._single(), other._single()
            if not self_single and not other_single:
                self._close(merged)
            self.first = merged if self_single else self.first
            self.last = merged if other_single else other.last
        else:
            if not self._single():
                self._close(self.last)
            if not other._single():
                self._close(other.first)
            self.last = other.last
        self.groups += other.groups
        self.ss += other.ss
        self.sn += other.sn
        self.nn += other.nn
        self.s += other.s
        self.n += other.n

    def spread(self) -> tuple[int, float]:
        """(G, Σ_g (S_g − n_g·m)²) over every sequence, the open ones included, about their own mean m."""
        closed = ClusterRuns(groups=self.groups, ss=self.ss, sn=self.sn, nn=self.nn, s=self.s, n=self.n)
        closed._close(self.first)
        if not self._single():
            closed._close(self.last)
        if not closed.n:
            return closed.groups, math.nan
        mean = closed.s / closed.n
        return closed.groups, closed.ss - 2 * mean * closed.sn + mean * mean * closed.nn


@dataclass
class KeyedClusters:
    """Per-sequence sums for clustered standard errors keyed by the sequence, for layouts whose
    rows of one sequence may come apart (--group-col, diff's --cluster): memory grows with the
    sequences. Sums about `shift`, as ClusterRuns's; the same `update`, `merge` and `spread`."""

    sums: dict[Any, list[Any]] = field(default_factory=dict)  # sequence → [S, n]
    shift: float | None = None

    def update(self, sample: npt.NDArray, counted: npt.NDArray[np.bool_], loss: npt.NDArray[np.float64],
               weight: npt.NDArray[np.float64] | None = None) -> None:
        if sample.size == 0:
            return
        if self.shift is None:
            self.shift = _shift_of(counted, loss, weight)
        if sample.dtype.kind in "iu":  # integer sequence ids: their own keys
            unique, inverse = np.unique(sample, return_inverse=True)
            keys = unique.tolist()
        else:  # text, with nulls as a sequence too
            from xentcli.slices import _group_codes

            codes, key_of, _ = _group_codes([sample])
            unique, inverse = np.unique(codes, return_inverse=True)
            keys = [key_of(code) for code in unique.tolist()]
        sums = np.bincount(inverse, weights=np.where(counted, _about(loss, weight, self.shift or 0.0), 0.0), minlength=unique.size)
        counts = np.bincount(inverse, weights=counted if weight is None else np.where(counted, weight, 0.0), minlength=unique.size)
        for key, s, n in zip(keys, sums.tolist(), counts.tolist()):
            entry = self.sums.setdefault(key, [0.0, 0])
            entry[0] += s
            entry[1] += int(n) if weight is None else n

    def merge(self, other: KeyedClusters) -> None:
        if self.shift is None:  # no counted row yet: every S is 0 about any shift
            self.shift = other.shift
        d = 0.0 if other.shift is None or self.shift is None else other.shift - self.shift
        for key, (s, n) in other.sums.items():
            entry = self.sums.setdefault(key, [0.0, 0])
            entry[0] += s + n * d if d else s
            entry[1] += n

    def spread(self) -> tuple[int, float]:
        """(G, Σ_g (S_g − n_g·m)²) over the sequences with a counted row, about their own mean m."""
        used = [(s, n) for s, n in self.sums.values() if n]
        total = sum(n for _, n in used)
        if not total:
            return len(used), math.nan
        mean = math.fsum(s for s, _ in used) / total
        return len(used), sum((s - n * mean) ** 2 for s, n in used)


def clustered_se(clusters: ClusterRuns | KeyedClusters, n: float) -> tuple[float, int]:
    """The cluster-robust standard error of a mean over n rows, √(G/(G−1)·Σ_g (S_g − n_g·m)²)/n, m
    the clusters' own mean (the summary's loss, accuracy or ratio: the same rows), and its degrees
    of freedom G − 1 (with weights: S_g and n_g the sequence's weighted loss and weight, n the total
    weight — the ratio estimator's, clustered)."""
    groups, spread = clusters.spread()
    return (math.sqrt(groups / (groups - 1) * max(spread, 0.0)) / n if groups > 1 and not math.isnan(spread) else math.nan), groups - 1


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
    loss_min: float = math.inf
    loss_max: float = -math.inf
    correct: int = 0
    top_k_hits: int = 0
    sketch: QuantileSketch = field(default_factory=QuantileSketch)
    moments: LossMoments = field(default_factory=LossMoments)  # of the counted (unweighted) losses
    weighted_sums: WeightedSums | None = None  # with weights: the weighted mean's sums
    weighed: int = 0  # with weights: the counted rows of weight > 0 (the ratio estimator's degrees of freedom + 1)
    clusters: ClusterRuns | KeyedClusters | None = None  # sequence dumps: per-sequence sums for clustered errors
    accuracy_clusters: ClusterRuns | KeyedClusters | None = None  # and per-sequence right rows: accuracy's clustered interval
    keyed_clusters: bool = False  # --group-col: a sequence's rows may come apart, so its sums are keyed
    calibration: Calibration | None = None  # with --calibration
    temperature: TemperatureSample | None = None  # with --temperature-scan
    labels: Any = None  # a multi-label head's per-label sums (binary.LabelTotals)
    groups: GroupTotals | None = None  # with --by
    confusions: Confusions | None = None  # with --confusions
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
        weighted: tuple[npt.NDArray, npt.NDArray, npt.NDArray[np.bool_]] | None = None,
        weights: npt.NDArray | None = None,
        sample: npt.NDArray | None = None,
        origin: int = 0,
        worst_floor: WorstFloor | None = None,
        position: npt.NDArray | None = None,
    ) -> None:
        """Add one chunk through its tally: `stats.loss` is NaN on ignored rows; `weighted` =
        (y, x, counted) when weights apply, y = s·ℓ_w each row's weighted loss and x = s·w its
        weight; `weights` the per-row sample weights, if any;
        `sample` each row's sequence (sequence dumps: clustered errors) and `position` its place there."""
        self.rows += int(stats.loss.size)
        self.counted += tally.counted
        self.ignored += 0 if ignored is None else int(np.count_nonzero(ignored))
        if weighted is not None:
            y, x, rows = weighted
            self.weighted = True
            self.weighed += int(np.count_nonzero(rows & (x > 0)))
            if self.weighted_sums is None:
                self.weighted_sums = WeightedSums()
            self.weighted_sums.update(offset, y, x, rows, origin)
        if tally.counted:
            self.moments.update(offset, stats.loss, stats.counted, every=stats.all_counted, origin=origin)
        if sample is not None:
            if self.clusters is None:
                self.clusters = KeyedClusters() if self.keyed_clusters else ClusterRuns()
            if weighted is not None:  # the ratio estimator's sums per sequence: clustered as the unweighted mean is
                self.clusters.update(sample, weighted[2], weighted[0], weighted[1])
            else:
                self.clusters.update(sample, stats.counted, stats.loss)
            if self.accuracy_clusters is None:
                self.accuracy_clusters = KeyedClusters() if self.keyed_clusters else ClusterRuns()
            self.accuracy_clusters.update(sample, stats.counted, stats.counted_correct.astype(np.float64))  # unweighted, as accuracy
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
        self.worst.update(stats, offset, ids, worst_floor, sample, position)

    def merge(self, other: LossSummary) -> None:
        self.rows += other.rows
        self.counted += other.counted
        self.ignored += other.ignored
        self.zero_weight_rows += other.zero_weight_rows
        self.weighted = self.weighted or other.weighted
        self.weighed += other.weighed
        if other.weighted_sums is not None:
            if self.weighted_sums is None:
                self.weighted_sums = WeightedSums()
            self.weighted_sums.merge(other.weighted_sums)
        self.moments.merge(other.moments)
        if other.confusions is not None:
            if self.confusions is None:
                self.confusions = Confusions(self.num_classes)
            self.confusions.merge(other.confusions)
        if other.groups is not None:
            if self.groups is None:
                self.groups = GroupTotals()
            self.groups.merge(other.groups)
        if other.calibration is not None:
            if self.calibration is None:
                self.calibration = Calibration()
            self.calibration.merge(other.calibration)
        if other.labels is not None:
            if self.labels is None:
                self.labels = other.labels
            else:
                self.labels.merge(other.labels)
        if other.temperature is not None:
            if self.temperature is None:
                self.temperature = TemperatureSample(other.temperature.capacity, bound=other.temperature.bound)
            self.temperature.merge(other.temperature)
        for name in ("clusters", "accuracy_clusters"):
            theirs = getattr(other, name)
            if theirs is not None:
                if getattr(self, name) is None:
                    setattr(self, name, type(theirs)())
                getattr(self, name).merge(theirs)
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

    def summary(self, confidence: float = 0.95) -> dict[str, Any]:
        """The aggregates as plain numbers (NaN where undefined, e.g. no counted rows).

        With weights, loss_mean is the weighted mean weighted_loss_sum / weight_sum. The error bars
        (README, "Error bars"): a t-interval on the mean loss with n − 1 degrees of freedom —
        clustered by sequence for sequence dumps (G − 1), the ratio estimator's linearised
        standard error with weights —, Wilson's interval for accuracy, exp of the loss interval
        for perplexity."""
        n = self.counted
        _, loss_sum, mean, se = self.moments.closed().results()
        weights: dict[str, float] = {}
        spread = math.nan
        if self.weighted:
            weighted_loss_sum, weight_sum, mean, spread = (self.weighted_sums or WeightedSums()).closed().results()
            weights = {"weighted_loss_sum": weighted_loss_sum, "weight_sum": weight_sum}
        return {
            "rows": self.rows,
            "counted": n,
            "ignored": self.ignored,
            "nonfinite": self.nonfinite,
            "loss_mean": mean,
            "loss_sum": loss_sum,
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
            **self.error_bars(mean, se, confidence, spread, weights.get("weight_sum", math.nan)),
        }

    def error_bars(self, mean: float, se: float, confidence: float, spread: float = math.nan, weight_sum: float = math.nan
                   ) -> dict[str, Any]:
        """The error bars of `mean`, the mean loss; `se` = √(Σ (ℓ − mean)² / (n·(n − 1))) over the
        counted rows (LossMoments); with weights `spread` = Σ (y − mean·x)² and `weight_sum` = Σx."""
        n = self.counted
        nan = math.nan
        if self.weighted and self.clusters is not None:  # the ratio estimator's, clustered by sequence
            se, df = clustered_se(self.clusters, weight_sum) if weight_sum else (nan, 0)
        elif self.weighted:  # its linearised standard error with the n/(n − 1) of the unweighted one (HC1): weights of 1 change nothing
            k = self.weighed
            se = math.sqrt(spread * k / (k - 1)) / weight_sum if weight_sum and k > 1 else nan
            df = k - 1  # rows of weight 0 add nothing to it
        elif self.clusters is not None:
            se, df = clustered_se(self.clusters, n)
        else:
            df = n - 1
        half = stats.t_quantile((1 + confidence) / 2, df) * se if df > 0 and not math.isnan(se) else nan
        loss_ci = [mean - half, mean + half]
        return {
            "confidence": confidence,
            "loss_se": se,
            "loss_ci": loss_ci,
            "se_clustered": self.clusters is not None,
            "accuracy_ci": self._accuracy_ci(confidence),
            "perplexity_ci": [perplexity(bound, n) for bound in loss_ci],
        }

    def _accuracy_ci(self, confidence: float) -> list[float]:
        """Wilson's interval; on a sequence dump the clustered one of the mean of the rows' 1/0
        correctness (the loss's formula, t with G − 1 degrees of freedom), cut to [0, 1]: Wilson's
        takes the tokens of one sequence for independent, too narrow (7x in variance on 40 sequences)."""
        n = self.counted
        if self.accuracy_clusters is None or not n:
            return wilson(self.correct, n, confidence)
        accuracy = self.correct / n
        se, df = clustered_se(self.accuracy_clusters, n)
        if df < 1 or math.isnan(se):
            return [math.nan, math.nan]
        half = stats.t_quantile((1 + confidence) / 2, df) * se
        return [max(0.0, accuracy - half), min(1.0, accuracy + half)]

    def per_class_rows(self, names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """One row per class, in class order; above DENSE_CLASS_LIMIT classes, the
        SPARSE_PER_CLASS_ROWS classes with the most support (ties to the lower class)."""
        pc = self.per_class
        with np.errstate(invalid="ignore", divide="ignore"):
            loss_mean = pc.loss_sum / pc.support
            accuracy = pc.correct / pc.support  # the recall of the class
            p_true_mean = pc.p_true_sum / pc.support
            precision = pc.correct / pc.predicted
            f1 = stats.f1_score(pc.correct, pc.predicted, pc.support)
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
                "precision": float(precision[i]),
                "recall": float(accuracy[i]),
                "f1": float(f1[i]),
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

    def rows(self, samples: int = 0) -> list[dict[str, Any]]:
        """One row per sequence; with `samples` (positional sequences 0 … samples − 1) the sequences
        no token came from — an empty nested list — too, with no positions (they were left out)."""
        totals: dict[Any, list[float]] = {}
        for ids, positions, tokens, loss_sum in zip(self.ids, self.positions, self.tokens, self.loss_sum):
            for key, p, t, s in zip(ids.tolist(), positions.tolist(), tokens.tolist(), loss_sum.tolist()):
                entry = totals.setdefault(key, [0, 0, 0.0])
                entry[0] += p
                entry[1] += t
                entry[2] += s
        if samples and len(totals) < samples:
            totals = {key: totals.get(key, [0, 0, 0.0]) for key in range(samples)}
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
