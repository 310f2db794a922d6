"""`xent diff`: pair the rows of two dumps and compare their losses with paired statistics.

Both dumps are read as `score` reads them (two engine Passes in lockstep, each with its own
aggregates and diagnostics). Pairs are made by row order (streamed, bounded memory) or by a key
column (the base side's compact per-row state held in memory). Per-pair deltas d = loss_candidate
− loss_base feed mergeable partials: n, mean and M2 of d (Chan et al.'s merge), the loss sums,
the 2×2 correctness counts (McNemar), per-cluster sums (clustered standard errors), the regressed
and improved rows (top-K, ties to the lower row), the quantile sketches of both sides, and a
Poisson bootstrap whose weights come from a counter-based hash of (the pair's key, replicate,
seed): integer histograms per replicate, so its intervals never depend on chunking or threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcli import accumulate, native, stats
from xentcli.config import DiffOptions, RunConfig, replicates_needed
from xentcli.errors import LayoutError, OptionError
from xentcli.plain import binary_key, counted, group_label, id_value
from xentcli.ranking import top_rows
from xentcli.sketch import MIN_INDEXABLE, QuantileSketch
from xentcli.histogram import log_histogram
from xentcli.slices import GroupTotals

F64 = npt.NDArray[np.float64]


@dataclass
class SideRows:
    """One side's compact per-row state for a run of rows: what pairing needs and nothing else."""

    row: npt.NDArray[np.int64]
    label: npt.NDArray[np.int64]
    label_ok: npt.NDArray[np.bool_]
    ignored: npt.NDArray[np.bool_]
    loss: F64  # the true loss, NaN on ignored rows
    correct: npt.NDArray[np.bool_]
    key: npt.NDArray | None = None
    cluster: npt.NDArray | None = None
    group: npt.NDArray[np.int64] | None = None  # --by (base side): each row's group, numbered by a GroupTotals
    target: F64 | None = None  # [n, k] the targets as numbers where a label does not say them all (dense, sigmoid)

    @classmethod
    def of(cls, result: Any, key_from_ids: bool, cluster: bool, groups: GroupTotals | None = None, path: str = "",
           threshold: float | None = None) -> SideRows:
        """`threshold`: a two-class softmax paired with a binary head predicts as the binary head does,
        class 1 when p_1 ≥ threshold — at a tie (p = 1/2) its argmax took class 0 where the sigmoid
        head takes 1, and the same model showed an accuracy change (found in review)."""
        stats_ = result.stats
        n = stats_.loss.size
        correct, label = stats_.correct, stats_.label
        target = None if result.targets is None else np.asarray(result.targets).reshape(n, -1)
        if target is not None and target.dtype.kind != "f":  # floats as stored (XE503's tolerance follows their type)
            target = target.astype(np.float64)
        if threshold is not None:
            with np.errstate(invalid="ignore"):
                p_one = np.where(stats_.label == 1, stats_.p_true, 1.0 - stats_.p_true)
                if target is not None and target.shape[1] == 2:  # target rows [1 − t, t]: positive where t ≥ 1/2, as the
                    label = np.where(stats_.label_ok, target[:, 1] >= 0.5, stats_.label).astype(np.int64)  # binary head counts it
                correct = stats_.label_ok & ((p_one >= threshold) == (label == 1))  # (the argmax of [½, ½] is 0)
        return cls(
            row=np.arange(result.offset, result.offset + n, dtype=np.int64),
            label=label, label_ok=stats_.label_ok, ignored=result.ignored, loss=stats_.loss,
            correct=correct, key=_keys(result.ids, path) if key_from_ids else None,
            cluster=result.sample if cluster else None,
            target=target,
            group=groups.numbered(result.groups) if groups is not None and result.groups is not None else None,
        )

    def __len__(self) -> int:
        return self.row.size

    def take(self, index: npt.NDArray | slice) -> SideRows:
        return SideRows(**{name: None if value is None else value[index] for name, value in self.__dict__.items()})

    @classmethod
    def join(cls, parts: list[SideRows]) -> SideRows:
        if len(parts) == 1:
            return parts[0]
        return cls(**{name: None if getattr(parts[0], name) is None else np.concatenate([getattr(p, name) for p in parts])
                      for name in parts[0].__dict__})


def _keys(ids: Any, path: str) -> npt.NDArray:
    """Key values as numpy: signed integers as int64, anything else as its text (object array),
    decided by the column's type, never by a chunk's values: uint64 as decimal text, floats as their
    shortest text, whole ones as integers' (2.0 as "2", -0.0 as "0"); null and NaN keys refused,
    naming the file."""
    if ids is None:
        raise OptionError("--key needs a key column on both sides")
    if hasattr(ids, "null_count"):  # an Arrow array
        import pyarrow as pa

        if pa.types.is_dictionary(ids.type):  # a categorical: its values, of their type (a null may sit in the dictionary)
            ids = ids.dictionary_decode()
        if ids.null_count:
            raise LayoutError("the key column holds nulls", path=path, hint="every row needs a key to be paired")
        if pa.types.is_integer(ids.type) or pa.types.is_floating(ids.type):
            return _number_keys(ids.to_numpy(zero_copy_only=False), path)
        if pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
            return ids.to_numpy(zero_copy_only=False).astype(object)  # already the text: no Python loop
        if pa.types.is_binary(ids.type) or pa.types.is_large_binary(ids.type) or pa.types.is_fixed_size_binary(ids.type):
            return np.array([binary_key(value) for value in ids.to_pylist()], dtype=object)
        return np.array([str(id_value(value)) for value in ids.to_pylist()], dtype=object)
    values = np.asarray(ids)
    if values.dtype.kind == "S":  # byte strings (an NPZ array): as Arrow's binary keys (astype(str) decodes ASCII: an internal error)
        return np.array([binary_key(value) for value in values.tolist()], dtype=object)
    return _number_keys(values, path) if values.dtype.kind in "iuf" else values.astype(str).astype(object)


def _number_keys(values: npt.NDArray, path: str) -> npt.NDArray:
    if values.dtype.kind == "f":  # as text in every chunk alike (a chunk's kind must not depend on its values)
        if np.isnan(values).any():
            raise LayoutError("the key column holds NaN", path=path, hint="every row needs a key to be paired")
        shortest = values.astype(str)  # the shortest text of each value in its own dtype: float32 0.1 is "0.1", as float64's
        return np.array([str(int(v)) if math.isfinite(v) and v == int(v) else text
                         for v, text in zip(values.astype(np.float64).tolist(), shortest.tolist())], dtype=object)
    if values.dtype == np.uint64:  # as text in every chunk alike: a chunk's values beyond int64 must not change its kind
        return values.astype(str).astype(object)
    return values.astype(np.int64)


# ---- the Poisson bootstrap ------------------------------------------------------------------------
#
# In a Poisson bootstrap every pair gets an independent Poisson(1) weight in every replicate. The
# quantiles of a side depend only on how much weight falls in each bucket of the quantile sketch,
# so the pairs are kept as a joint histogram of (base bucket, candidate bucket) cells — integer
# counts, merged exactly — and a cell of m pairs draws its replicate weight from Poisson(m), the
# sum of m Poisson(1) weights. The draw comes from a counter-based hash of (cell, replicate, seed),
# so the intervals never depend on chunking, threads or machines; the cost is cells × replicates,
# not pairs × replicates (a million pairs fill a few ten thousand cells).

_ZERO_KEY = -(2**20)  # the cell of losses of 0 (sketch keys of losses lie within ±75,000: 5e-324 … 1.8e308)
_CELL = 1 << 21  # a cell is (base key − _ZERO_KEY) · _CELL + (candidate key − _ZERO_KEY)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SMALL_MEAN = 64  # Poisson(m) drawn by exact inversion up to this m, by a Cornish–Fisher expansion above


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser (Steele et al. 2014): a counter-based hash of 64-bit words."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _poisson_cdf(mean: int) -> F64:
    k = np.arange(int(mean + 12 * math.sqrt(mean) + 30))
    log_pmf = k * math.log(mean) - mean - np.array([math.lgamma(v + 1) for v in k])
    return np.cumsum(np.exp(log_pmf))


_CDF = {m: _poisson_cdf(m) for m in range(1, _SMALL_MEAN + 1)}


def poisson_draws(means: npt.NDArray[np.int64], uniforms: F64) -> npt.NDArray[np.int64]:
    """Poisson(m) for each row's m, one draw per column's uniform: exact inversion for m ≤ 64;
    above, the normal quantile with the first Cornish–Fisher term for the skew, k ≈ m + √m·z +
    (z² − 1)/6, rounded (its error is far below the bootstrap's own)."""
    out = np.empty(uniforms.shape, np.int64)
    small = means <= _SMALL_MEAN
    for mean in np.unique(means[small]).tolist():
        rows = means == mean
        out[rows] = np.searchsorted(CDF_TABLE[mean - 1], uniforms[rows], side="right")
    if (~small).any():
        m = means[~small].astype(np.float64)[:, None]
        z = normal_quantiles(np.clip(uniforms[~small], 1e-15, 1 - 1e-15))
        out[~small] = np.maximum(0, np.rint(m + np.sqrt(m) * z + (z * z - 1) / 6)).astype(np.int64)
    return out


# Acklam's rational approximation of the normal quantile (relative error < 1.2e-9), vectorised.
_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01, -1.328068155288572e01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)


def normal_quantiles(p: F64) -> F64:
    """Φ⁻¹(p) elementwise (P. J. Acklam's algorithm; the bootstrap's draws need no more)."""
    def poly(coefficients: tuple[float, ...], x: F64) -> F64:
        total = np.zeros_like(x)
        for c in coefficients:
            total = total * x + c
        return total

    out = np.empty_like(p)
    low, high = p < 0.02425, p > 1 - 0.02425
    middle = ~low & ~high
    q = p[middle] - 0.5
    r = q * q
    out[middle] = poly(_A, r) * q / (poly(_B, r) * r + 1)
    for rows, sign, tail in ((low, 1.0, p[low]), (high, -1.0, 1 - p[high])):
        t = np.sqrt(-2 * np.log(tail))
        out[rows] = sign * poly(_C, t) / (poly(_D, t) * t + 1)
    return out


@dataclass
class Bootstrap:
    """The joint histogram of the pairs' (base, candidate) sketch buckets."""

    replicates: int
    seed: int
    cells: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))  # see _CELL
    counts: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    _pending: list[npt.NDArray[np.int64]] = field(default_factory=list, repr=False)  # one cell a pair, not yet counted

    def update(self, keys: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]) -> None:
        """Add pairs given both sides' sketch keys (_ZERO_KEY for zero losses)."""
        self._pending.append((keys[0] - _ZERO_KEY) * _CELL + (keys[1] - _ZERO_KEY))
        if sum(part.size for part in self._pending) > max(1 << 18, 4 * self.cells.size):
            self._compact()

    def _compact(self) -> None:
        """Fold the pending pairs' cells into the totals: one radix sort per 262,144 pairs or more
        (2 MiB of pending cells, or 4 × the cells held)."""
        if self._pending:
            parts, self._pending = self._pending, []
            cells = np.concatenate(parts)
            unique, counts = native.unique_counts(cells) if native.has_bootstrap() else np.unique(cells, return_counts=True)
            self._add(unique, counts.astype(np.int64))

    def _add(self, cells: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]) -> None:
        """Add distinct sorted cells and their counts: those held already by a search, the new ones
        inserted in order (no sort of the union)."""
        if not self.cells.size:
            self.cells, self.counts = cells.copy(), counts.astype(np.int64)
            return
        at = np.searchsorted(self.cells, cells)
        held = np.zeros(cells.size, bool)
        inside = at < self.cells.size
        held[inside] = self.cells[at[inside]] == cells[inside]
        self.counts[at[held]] += counts[held]  # distinct cells: distinct positions
        new = ~held
        if new.any():
            self.cells = np.insert(self.cells, at[new], cells[new])
            self.counts = np.insert(self.counts, at[new], counts[new])

    def merge(self, other: Bootstrap) -> None:
        self._compact()
        other._compact()
        self._add(other.cells, other.counts)

    def weights(self, cells: slice) -> npt.NDArray[np.int64]:
        """[cells, B] replicate weights of a block of cells: one hash per two replicates, its high 32
        bits the uniform of the even replicate, its low 32 bits the odd one's."""
        words = _mix(self.cells[cells].view(np.uint64) ^ _mix(np.uint64(self.seed) + _GOLDEN))
        hashes = (self.replicates + 1) // 2
        with np.errstate(over="ignore"):
            draws = _mix(words[:, None] + np.arange(1, hashes + 1, dtype=np.uint64)[None, :] * _GOLDEN)
        halves = np.stack([draws >> np.uint64(32), draws & np.uint64(0xFFFFFFFF)], axis=2).reshape(draws.shape[0], 2 * hashes)
        return poisson_draws(self.counts[cells], halves[:, : self.replicates].astype(np.float64) * 2.0**-32)

    def _native(self, slots: dict[str, npt.NDArray], span: int, threads: int) -> dict[str, npt.NDArray]:
        """The C loop (GIL released) on `threads` threads, each over every cell for its own columns
        (replicates) of the two histograms: no copies to add up, the same counts for any thread count."""
        from concurrent.futures import ThreadPoolExecutor

        # a replicate's weights add up to at most Σ_c (9·m_c + 150) ≤ 159 × pairs (poisson_draws' largest draws): int32 below 2^31
        dtype = np.int32 if 159 * int(self.counts.sum()) < 2**31 else np.int64
        hist = {side: np.zeros((span, self.replicates), dtype) for side in slots}  # [span, B]: a cell's replicates adjacent
        pairs = (self.replicates + 1) // 2  # replicates 2j and 2j + 1 share a hash: split between pairs
        edges = [2 * (pairs * part // max(1, threads)) for part in range(max(1, threads) + 1)]
        ranges = [(first, min(last, self.replicates)) for first, last in zip(edges, edges[1:]) if first < min(last, self.replicates)]

        def one(columns: tuple[int, int]) -> None:
            native.bootstrap(self.replicates, self.seed, self.cells.view(np.uint64), self.counts, slots["base"], slots["candidate"],
                             CDF_TABLE, _SMALL_MEAN, GUIDE_TABLE, hist["base"], hist["candidate"], *columns)

        with ThreadPoolExecutor(len(ranges) or 1) as pool:
            list(pool.map(one, ranges))
        return hist

    def replicates_of(self, sketch: QuantileSketch, quantiles: tuple[float, ...], threads: int = 1) -> dict[str, F64]:
        """Per replicate: each side's quantiles, interpolated within the sketch's buckets."""
        self._compact()
        base_keys = self.cells // _CELL + _ZERO_KEY
        candidate_keys = self.cells % _CELL + _ZERO_KEY
        sides = {"base": base_keys, "candidate": candidate_keys}
        # slot 0: the zero cell; slots 1… the sketch buckets that occur, in order (a dense range of
        # buckets would follow the losses' range, not the pairs: 1e-261 and 5 span 60,000 buckets)
        occupied = np.unique(np.concatenate([keys[keys != _ZERO_KEY] for keys in sides.values()]))
        buckets, span = np.r_[0, occupied], occupied.size + 1
        slots = {side: np.where(keys == _ZERO_KEY, 0, np.searchsorted(occupied, keys) + 1) for side, keys in sides.items()}
        if native.has_bootstrap():
            hist = self._native(slots, span, threads)
        else:
            hist = {side: np.zeros((span, self.replicates), np.int64) for side in sides}
            block = max(1, (1 << 22) // max(self.replicates, 1))
            for start in range(0, self.cells.size, block):
                part = slice(start, start + block)
                draws = self.weights(part)
                for side in sides:
                    flat = (np.arange(self.replicates)[None, :] * span + slots[side][part][:, None]).ravel()
                    hist[side] += np.bincount(flat, weights=draws.ravel(), minlength=self.replicates * span).astype(
                        np.int64).reshape(self.replicates, span).T
        out = {}
        for side in sides:
            cumulative = np.cumsum(hist[side], axis=0, out=hist[side])  # in place: no second [slots, B] array
            sample = np.cumsum(np.bincount(slots[side], weights=self.counts, minlength=span).astype(np.int64))[:, None]
            for q in quantiles:
                out[f"{side}_{q}"] = interpolated_quantiles(cumulative, buckets, sketch.gamma, q)
                out[f"{side}_{q}_sample"] = interpolated_quantiles(sample, buckets, sketch.gamma, q)  # the pairs themselves, alike
        return out


def interpolated_quantiles(cumulative: npt.NDArray[np.int64], buckets: npt.NDArray[np.int64], gamma: float, q: float) -> F64:
    """The q-quantile (rank q·(W − 1)) of each replicate's (column's) weighted bucket counts, given
    as their cumulative sums down the slots [slots, replicates]: slot 0 holds zeros, slot i ≥ 1 the
    sketch bucket k = buckets[i], i.e. (γ^(k−1), γ^k]; within a bucket the value is interpolated in
    log space by the rank's place among its weight, so that intervals move smoothly instead of by
    whole buckets."""
    total = cumulative[-1]
    rank = q * (total - 1)
    index = np.minimum((cumulative <= rank[None, :]).sum(axis=0), cumulative.shape[0] - 1)
    columns = np.arange(cumulative.shape[1])
    before = np.where(index > 0, cumulative[np.maximum(index - 1, 0), columns], 0)
    count = np.maximum(cumulative[index, columns] - before, 1)
    fraction = np.clip((rank - before + 0.5) / count, 0.0, 1.0)
    key = buckets[index]
    values = np.where(index == 0, 0.0, gamma ** (key - 1 + fraction))
    return np.where(total > 0, values, np.nan)


CDF_TABLE = np.ones((_SMALL_MEAN, max(table.size for table in _CDF.values()) + 1))  # 1.0 past each table's end
for _mean, _table in _CDF.items():
    CDF_TABLE[_mean - 1, : _table.size] = _table
# For the C loop: per m, the first k with cdf[k] > j/1024, a lower bound to start the search from.
GUIDE_TABLE = np.stack([np.searchsorted(row, np.arange(1024) / 1024, side="right") for row in CDF_TABLE]).astype(np.int32)


# ---- the paired partials --------------------------------------------------------------------------

@dataclass
class RankedPairs:
    """The K pairs with the largest key (d for regressed, −d for improved); ties to the lower row."""

    k: int
    rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    keys: F64 = field(default_factory=lambda: np.empty(0))
    details: list[dict[str, Any]] = field(default_factory=list)

    def update(self, rows: npt.NDArray[np.int64], key: F64, details: Any) -> None:
        if self.k == 0 or rows.size == 0:
            return
        # once k pairs are held, only a key at least the k-th largest can enter (equal ones: the row decides, in merge)
        picked = top_rows(np.ones(rows.size, bool) if self.keys.size < self.k else key >= self.keys[-1], key, self.k)
        self.merge(RankedPairs(self.k, rows[picked], key[picked], [details(i) for i in picked.tolist()]))

    def merge(self, other: RankedPairs) -> None:
        rows = np.concatenate([self.rows, other.rows])
        keys = np.concatenate([self.keys, other.keys])
        details = self.details + other.details
        order = np.lexsort((rows, -keys))[: self.k]
        self.rows, self.keys, self.details = rows[order], keys[order], [details[i] for i in order.tolist()]


@dataclass
class PairedTotals:
    """Everything diff reports, mergeable; means are derived at the end."""

    top: int = 10
    bootstrap: Bootstrap | None = None
    clustered: bool = False
    labels: bool = True  # a row has one class label (not a multi-label head's): the regressed rows name it
    pairs: int = 0
    usable: int = 0
    nonfinite: int = 0
    negative: bool = False  # a loss below 0 on a side (flagged inputs, XE110): the bootstrap's cells cannot hold it
    # d, and each side's loss, over usable pairs numbered in pairing order: Σ and M2 to the same bit whatever the chunking
    delta_moments: accumulate.LossMoments = field(default_factory=accumulate.LossMoments)
    base_moments: accumulate.LossMoments = field(default_factory=accumulate.LossMoments)
    candidate_moments: accumulate.LossMoments = field(default_factory=accumulate.LossMoments)
    correct_base: int = 0
    correct_candidate: int = 0
    correct_to_wrong: int = 0  # b: right in base, wrong in candidate
    wrong_to_correct: int = 0  # c
    clusters: accumulate.KeyedClusters = field(default_factory=accumulate.KeyedClusters)  # cluster → [Σ (d − its shift), n]
    # cluster → [Σ e, n], e = 1 if right in the candidate only, −1 if in the base only: the accuracy delta's clustered se
    accuracy_clusters: accumulate.KeyedClusters = field(default_factory=accumulate.KeyedClusters)
    base_sketch: QuantileSketch = field(default_factory=QuantileSketch)
    candidate_sketch: QuantileSketch = field(default_factory=QuantileSketch)
    delta_sketch: QuantileSketch = field(default_factory=QuantileSketch)  # d, signed (the Δloss histogram)
    groups: GroupTotals | None = None  # --by: per group, d's mean and M2 and the sums of the other metrics
    regressed: RankedPairs = field(init=False)
    improved: RankedPairs = field(init=False)

    def __post_init__(self) -> None:
        self.regressed, self.improved = RankedPairs(self.top), RankedPairs(self.top)

    def update(self, base: SideRows, candidate: SideRows) -> F64:
        """Add paired rows; returns d per pair (NaN where the pair is not usable)."""
        offset = self.pairs
        self.pairs += len(base)
        scored = ~base.ignored & ~candidate.ignored  # an unusable label (out of range, NaN) scores NaN: non-finite
        finite = np.isfinite(base.loss) & np.isfinite(candidate.loss)
        usable = scored & finite
        self.nonfinite += int(np.count_nonzero(scored & ~finite))
        with np.errstate(invalid="ignore"):
            delta = np.where(usable, candidate.loss - base.loss, np.nan)
        d = delta[usable]
        n = d.size
        if self.groups is not None and base.group is not None:
            right_base, right_candidate = usable & base.correct, usable & candidate.correct
            self.groups.add_numbered(base.group, delta, usable, right_base, {
                "base": np.where(usable, base.loss, 0.0), "candidate": np.where(usable, candidate.loss, 0.0),
                "correct_candidate": right_candidate, "b": right_base & ~right_candidate, "c": ~right_base & right_candidate,
            })
        if n:
            self.usable += n
            for moments, values in ((self.delta_moments, delta), (self.base_moments, base.loss), (self.candidate_moments, candidate.loss)):
                moments.update(offset, values, usable)
            b_loss, c_loss = base.loss[usable], candidate.loss[usable]
            self.delta_sketch.update(d)
            b_right, c_right = base.correct[usable], candidate.correct[usable]
            self.correct_base += int(np.count_nonzero(b_right))
            self.correct_candidate += int(np.count_nonzero(c_right))
            self.correct_to_wrong += int(np.count_nonzero(b_right & ~c_right))
            self.wrong_to_correct += int(np.count_nonzero(~b_right & c_right))
            self.negative = self.negative or bool((b_loss < -MIN_INDEXABLE).any() or (c_loss < -MIN_INDEXABLE).any())
            buckets = (_sketch_keys(self.base_sketch, b_loss), _sketch_keys(self.candidate_sketch, c_loss))
            if self.clustered and base.cluster is not None:  # the clusters take their sums about a shift of their own
                self.clusters.update(base.cluster[usable], np.ones(d.size, bool), d)
                self.accuracy_clusters.update(base.cluster[usable], np.ones(d.size, bool),
                                              c_right.astype(np.float64) - b_right.astype(np.float64))
            rows, labels = base.row[usable], base.label[usable]
            keys = None if base.key is None else base.key[usable]

            def details(i: int) -> dict[str, Any]:
                item: dict[str, Any] = {"row": int(rows[i])}
                if keys is not None:
                    item["key"] = id_value(keys[i])
                if self.labels:
                    item["label"] = int(labels[i])
                item.update(loss_base=float(b_loss[i]), loss_candidate=float(c_loss[i]), delta=float(d[i]))
                return item

            self.regressed.update(rows, d, details)
            self.improved.update(rows, -d, details)
            if self.bootstrap is not None:
                self.bootstrap.update(buckets)
        return delta


def _sketch_keys(sketch: QuantileSketch, losses: F64) -> npt.NDArray[np.int64]:
    """Add the losses to the side's sketch; their bucket keys (_ZERO_KEY for zeros), computed once
    for the sketch and the bootstrap's cells."""
    zero = losses <= MIN_INDEXABLE
    keys = sketch.keys(np.where(zero, 1.0, losses))
    if (losses < -MIN_INDEXABLE).any():  # negative losses (flagged inputs): the sketch's general path
        sketch.update(losses)
    else:
        sketch.update_keys(keys[~zero], int(np.count_nonzero(zero)), float(losses.min()), float(losses.max()))
    return np.where(zero, _ZERO_KEY, keys)


# ---- pairing ---------------------------------------------------------------------------------------

def _check_labels(base: SideRows, candidate: SideRows) -> None:
    """Paired rows must carry the same target: XE503 names the first rows that do not."""
    with np.errstate(invalid="ignore"):
        same = (base.ignored == candidate.ignored) & (base.label_ok == candidate.label_ok)
        same &= base.label == candidate.label  # unusable ones too: 7 and 9 are different labels
        if (base.target is None) != (candidate.target is None):  # class labels on one side, target rows on the other
            same &= _hard_targets_of(base if candidate.target is None else candidate, candidate if candidate.target is None else base)
        elif base.target is not None and candidate.target is not None:  # soft or multi-hot targets: every entry
            if sorted((base.target.shape[1], candidate.target.shape[1])) == [1, 2]:  # a binary head against a two-class softmax
                same &= _binary_against_two_class(base.target, candidate.target)
            elif base.target.shape[1] != candidate.target.shape[1]:
                same &= False
            else:
                a, b = base.target, candidate.target
                same &= ((a == b) | (np.isnan(a) & np.isnan(b))).all(axis=1)
    if not same.all():
        bad = np.flatnonzero(~same)[:5]
        rows = ", ".join(f"{int(base.row[i])}/{int(candidate.row[i])}" for i in bad)
        kinds = ""
        if (base.target is None) != (candidate.target is None):
            kinds = (f" (the {'candidate' if base.target is None else 'base'} has target rows, the other class labels: they agree where a "
                     "row is the one-hot of its label, or a binary head's 0/1 target is the label)")
        raise LayoutError(
            f"{counted(int(np.count_nonzero(~same)), 'pair has', 'pairs have')} different labels on the two sides (base/candidate rows {rows})"
            + kinds,
            hint="both dumps must score the same rows with the same labels; pair by a key with --key if the order differs",
            code="XE503",
        )


def _binary_against_two_class(a: npt.NDArray, b: npt.NDArray) -> npt.NDArray[np.bool_]:
    """Per pair: a binary head's target t (one column) says the same as the two-class target row
    of the other side when that row is [1 − t, t] — its entries summing to 1 within a few ulps (0.7
    and 0.3 do not, exactly) — the one row the two-class loss equals the binary one on (found in
    review: one-hot rows against 0/1 labels were XE503)."""
    t, row = (a[:, 0], b) if a.shape[1] == 1 else (b[:, 0], a)
    ulps = 8 * np.finfo(row.dtype if row.dtype.kind == "f" else np.float64).eps  # of the type the rows are stored in
    with np.errstate(invalid="ignore"):
        unusable = np.isnan(t) & np.isnan(row).all(axis=1)  # unusable on both sides: a non-finite pair (XE505), not XE503
        return unusable | ((row[:, 1] == t) & (np.abs(row[:, 0] + row[:, 1] - 1) <= ulps))


def _hard_targets_of(targets: SideRows, labels: SideRows) -> npt.NDArray[np.bool_]:
    """Per pair: the target row on one side says the same as the class label on the other — the
    label's one-hot row, or a binary head's target equal to a 0/1 label (a sigmoid head against a
    two-class softmax). Ignored rows agree when both are (checked apart)."""
    t = targets.target
    assert t is not None
    label = labels.label
    if t.shape[1] == 1:
        hard = t[:, 0] == label
    else:
        inside = (label >= 0) & (label < t.shape[1])
        one_hot = np.zeros_like(t)
        one_hot[np.flatnonzero(inside), label[inside]] = 1.0
        hard = inside & (t == one_hot).all(axis=1)
    return hard | (targets.ignored & labels.ignored)


def by_row_order(base: Iterator[SideRows], candidate: Iterator[SideRows], names: tuple[str, str]) -> Iterator[tuple[SideRows, SideRows]]:
    """Pairs by position, streamed: each side's chunks wait only until the other side reaches them."""
    streams = (base, candidate)
    queues: tuple[list[SideRows], list[SideRows]] = ([], [])
    counts = [0, 0]

    def queued(side: int) -> int:
        return sum(map(len, queues[side]))

    def fill(side: int, need: int) -> None:
        while queued(side) < need:
            rows = next(streams[side], None)
            if rows is None:
                return
            queues[side].append(rows)
            counts[side] += len(rows)

    while True:
        fill(0, 1)
        fill(1, max(1, queued(0)))
        fill(0, queued(1))
        have = min(queued(0), queued(1))
        if have == 0:
            if queued(0) or queued(1):
                for side in (0, 1):  # count what is left, to say how many rows each side holds
                    fill(side, 1 << 62)
                raise LayoutError(
                    f"{names[1]} holds {counts[1]:,} rows but {names[0]} holds {counts[0]:,}",
                    hint="rows pair by position: both dumps must hold the same rows; or pair them by a key column with --key",
                    code="XE501",
                )
            return
        out = []
        for side in (0, 1):
            joined = SideRows.join(queues[side])
            out.append(joined.take(slice(0, have)))
            rest = joined.take(slice(have, None))
            queues[side][:] = [rest] if len(rest) else []
        yield out[0], out[1]


@dataclass
class KeyIndex:
    """The base side held in memory, sorted by key, for pairing candidate rows by key."""

    rows: SideRows
    order: npt.NDArray[np.int64]
    sorted_keys: npt.NDArray
    matched: npt.NDArray[np.bool_]
    text: Any = None  # text keys: a hash index over sorted_keys (a binary search over Python strings is ~10x slower)
    missing: list[npt.NDArray] = field(default_factory=list)  # the candidate keys the base lacks, chunk by chunk

    @classmethod
    def build(cls, base: Iterator[SideRows], name: str) -> KeyIndex:
        parts = list(base)
        rows = SideRows.join(parts) if parts else None
        assert rows is not None and rows.key is not None
        order = np.argsort(rows.key, kind="stable")
        sorted_keys = rows.key[order]
        _refuse_repeats(sorted_keys, name)
        if sorted_keys.dtype == object:
            import pandas as pd

            return cls(rows, order, sorted_keys, np.zeros(len(rows), bool), pd.Index(sorted_keys, dtype=object))  # (a binary key may hold lone surrogates: no Arrow strings)
        return cls(rows, order, sorted_keys, np.zeros(len(rows), bool))

    def pair(self, candidate: SideRows, name: str) -> tuple[SideRows, SideRows, npt.NDArray]:
        """The paired (base, candidate) rows of a candidate chunk, and the candidate keys not in base."""
        assert candidate.key is not None
        if (self.sorted_keys.dtype == object) != (candidate.key.dtype == object):
            kinds = {False: "signed integers", True: "text, floats or uint64"}
            raise LayoutError(f"the key column holds {kinds[candidate.key.dtype == object]} in {name} but "
                              f"{kinds[self.sorted_keys.dtype == object]} in the base", hint="store the keys with one type on both sides",
                              code="XE501")
        if self.text is not None:
            import pandas as pd

            where = self.text.get_indexer(pd.Index(candidate.key, dtype=object))  # as objects: Arrow strings hold no lone surrogate
            hit = where >= 0
        else:
            where = np.minimum(np.searchsorted(self.sorted_keys, candidate.key), max(self.sorted_keys.size - 1, 0))
            hit = (self.sorted_keys[where] == candidate.key) if self.sorted_keys.size else np.zeros(len(candidate), bool)
        index = self.order[where[hit]]
        if self.matched[index].any() or np.unique(index).size != index.size:
            twice = candidate.key[hit][self.matched[index] | _repeats(index)]
            raise LayoutError(f"keys appear twice in {name} (e.g. {_examples(twice)})", hint=REPEATED_KEY_HINT, code="XE502")
        self.matched[index] = True
        missing = candidate.key[~hit]
        self.missing.append(missing)
        return self.rows.take(index), candidate.take(np.flatnonzero(hit)), missing

    def check_unpaired(self, name: str) -> None:
        """After the candidate's last rows: a key the base lacks must not repeat either (XE502)."""
        if self.missing:
            _refuse_repeats(np.sort(np.concatenate(self.missing), kind="stable"), name)


REPEATED_KEY_HINT = ("a key must name one row on each side (a sequence dump's ids name whole sequences, which its tokens repeat: "
                     "pair such dumps by row order)")


def _refuse_repeats(sorted_keys: npt.NDArray, name: str) -> None:
    """XE502 when a key appears more than once among sorted keys."""
    repeated = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    if repeated.size:
        keys = np.unique(sorted_keys[repeated])
        what = "1 key appears" if keys.size == 1 else f"{keys.size:,} keys appear"
        raise LayoutError(f"{what} more than once in {name} (e.g. {_examples(keys)})", hint=REPEATED_KEY_HINT, code="XE502")


def _examples(keys: npt.NDArray) -> str:
    """Up to five distinct keys, in their order, as text."""
    shown: list[str] = []
    for key in keys:
        text = str(id_value(key))
        if text not in shown:
            shown.append(text)
        if len(shown) == 5:
            break
    return ", ".join(shown)


def _repeats(index: npt.NDArray) -> npt.NDArray[np.bool_]:
    _, first = np.unique(index, return_index=True)
    repeated = np.ones(index.size, bool)
    repeated[first] = False
    return repeated


# ---- the run ---------------------------------------------------------------------------------------

class PairSink:
    """Receives each block of pairs (for the per-pair output, render/rows.py)."""

    def write(self, base: SideRows, candidate: SideRows, delta: F64, keyed: bool, labels: bool) -> None: ...

    def check_before_move(self, verify: Callable[[], None]) -> None:
        """`verify` runs once the pairs are written, before the file moves into place."""


def run_diff(base_config: Any, candidate_config: Any, options: Any, gates: Any, sink: PairSink | None = None,
             make_pass: Callable[[Any], Any] | None = None) -> Any:
    """Both dumps in one pass each, paired; the DiffReport with its gates decided. `make_pass`:
    engine.Pass, or distributed.DaskPass on a cluster."""
    from xentcli.engine import UNUSED_THRESHOLD, Pass, unused_option
    from xentcli.report import DiffReport

    options.validate()
    gates.validate()
    if make_pass is None and options.key is None:  # row order: the two sides in lockstep, each on half the threads
        def make_pass(config: Any) -> Any:
            return Pass(replace(config, threads=max(1, config.threads // 2)), background=True)
    make_pass = make_pass or Pass
    base, candidate = make_pass(base_config), make_pass(candidate_config)
    if base.info.score_dtype != candidate.info.score_dtype or "+" in base.info.score_dtype or base.info.head != candidate.info.head:
        # both sides in float64 unless both hold one and the same type and head: the same numbers stored as float32 on one side
        # (or in its shards of mixed types, or scored by another head's float32 kernel) gave a "significant" delta of ~2e-9,
        # the float32 kernel's own error (found in review; the true delta is 0)
        base_config, candidate_config = (replace(c, widen_scores=True) for c in (base_config, candidate_config))
        base, candidate = make_pass(base_config), make_pass(candidate_config)

    def verify() -> None:  # both inputs still the files they were: also once the pairs are written (sink)
        for side in (base, candidate):
            side.source.verify()

    if sink is not None:
        sink.check_before_move(verify)
    names = (base.info.path, candidate.info.path)
    if base.info.num_classes != candidate.info.num_classes:
        raise LayoutError(
            f"{names[1]} scores {candidate.info.num_classes:,} classes but {names[0]} scores {base.info.num_classes:,}",
            hint="compare two models of the same classes", code="XE504",
        )
    keyed = options.key is not None
    # the pairs' clusters would be one side's only — unless --cluster names them: the base's values of COL, whatever
    # the candidate holds (found in review: the candidate had to hold COL too)
    by_column = base_config.source.group_col is not None
    if not by_column and (base.info.sequences is None) != (candidate.info.sequences is None):
        flat = names[0] if base.info.sequences is None else names[1]
        raise LayoutError(f"{flat} holds rows and the other side sequences: the pairs' tokens cannot be clustered by sequence",
                          hint="give both sides as sequence dumps ([N, T, C] or nested lists), or name the clusters with --cluster COL")
    clustered = base.info.sequences is not None
    grouped = bool(base_config.source.by or base_config.source.by_file)
    totals = PairedTotals(options.top, Bootstrap(options.bootstrap, options.seed) if options.bootstrap else None, clustered,
                          labels=base.info.head != "multilabel",
                          groups=GroupTotals() if grouped else None)
    heads = (base.info.head, candidate.info.head)  # a binary head against a two-class softmax: one rule for the predictions
    as_binary = [head == "softmax" and "binary" in heads for head in heads]
    threshold = base_config.threshold
    if threshold != RunConfig(base_config.source).threshold and heads == ("softmax", "softmax"):  # (each side's own check
        raise unused_option("--threshold", UNUSED_THRESHOLD)  # leaves it to this)
    defaults = DiffOptions()  # options given a value they would not use here (found in review: accepted and ignored)
    for option, given, why in (("--allow-unpaired", options.allow_unpaired and not keyed, "without --key, rows pair by their order"),
                               ("--min-group", options.min_group != defaults.min_group and not grouped, "it applies with --by"),
                               ("--max-groups", options.max_groups != defaults.max_groups and not grouped, "it applies with --by")):
        if given:
            raise unused_option(option, why)
    base_rows = (SideRows.of(result, keyed, clustered, totals.groups, names[0], threshold if as_binary[0] else None)
                 for result in base.results())
    candidate_rows = (SideRows.of(result, keyed, clustered, path=names[1], threshold=threshold if as_binary[1] else None)
                      for result in candidate.results())
    unpaired: dict[str, Any] = {"candidate": 0, "examples": []}  # candidate keys the base lacks
    if keyed:
        index = KeyIndex.build(base_rows, names[0])

        def keyed_pairs() -> Iterator[tuple[SideRows, SideRows]]:
            for rows in candidate_rows:  # streamed: only the base side is held
                paired_base, paired_candidate, missing = index.pair(rows, names[1])
                unpaired["candidate"] += missing.size
                unpaired["examples"] += [id_value(k) for k in missing[: 5 - len(unpaired["examples"])]]
                yield paired_base, paired_candidate

        pairs: Iterator[tuple[SideRows, SideRows]] = keyed_pairs()
    else:
        pairs = by_row_order(base_rows, candidate_rows, names)
    for paired_base, paired_candidate in pairs:
        _check_labels(paired_base, paired_candidate)
        delta = totals.update(paired_base, paired_candidate)
        if sink is not None:
            sink.write(paired_base, paired_candidate, delta, keyed, totals.labels)
    if keyed:
        index.check_unpaired(names[1])
    verify()  # the base's rows held by key were read again in the candidate's pass
    only_base, only_candidate = 0, unpaired["candidate"]
    if keyed:
        only_base = int(np.count_nonzero(~index.matched))
        examples_base = [id_value(k) for k in index.rows.key[~index.matched][:5]] if only_base else []  # type: ignore[index]
        if (only_base or only_candidate) and not options.allow_unpaired:  # the statistics so far are dropped; -o leaves nothing
            raise LayoutError(
                f"{only_base:,} keys only in {names[0]} (e.g. {', '.join(map(str, examples_base)) or '–'}), "
                f"{only_candidate:,} only in {names[1]} (e.g. {', '.join(map(str, unpaired['examples'])) or '–'})",
                hint="pass --allow-unpaired to compare the keys both sides hold", code="XE501",
            )
    base_report, candidate_report = base.report(), candidate.report()
    groups = group_metrics(totals, base_config.group_names, options.confidence, options.min_group, options.max_groups)
    report = DiffReport(
        base=base_report, candidate=candidate_report,
        pairing={"by": "key" if keyed else "row", "key": options.key, "pairs": totals.pairs, "usable_pairs": totals.usable,
                 "nonfinite_pairs": totals.nonfinite, "only_base": only_base, "only_candidate": only_candidate},
        confidence=options.confidence,
        metrics=metrics(totals, options.confidence, base_config.threads),
        bootstrap={"replicates": options.bootstrap, "seed": options.seed},
        flips={"correct_to_wrong": totals.correct_to_wrong, "wrong_to_correct": totals.wrong_to_correct},
        regressed=totals.regressed.details, improved=totals.improved.details,
        diagnostics=_diagnostics(base_report, candidate_report, totals, groups),
        groups=groups,
        delta_histogram=log_histogram(totals.delta_sketch),
    )
    decide(report, gates)
    return report


def _diagnostics(base: Any, candidate: Any, totals: PairedTotals, groups: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    from xentcli.diagnostics import RULES

    out = [{**item, "side": "base"} for item in base.diagnostics] + [{**item, "side": "candidate"} for item in candidate.diagnostics]
    pooled = sum(g["pooled_groups"] for g in groups or [])
    if pooled:  # as score's --by says it (found in review: diff pooled groups into "(other)" without a word)
        rule = RULES["XE701"]
        out.append({"code": rule.code, "name": rule.name, "severity": rule.severity, "rows": 0, "fraction": 0.0,
                    "message": f"{pooled:,} groups beyond --max-groups are merged into one group '(other)'",
                    "hint": rule.hint, "examples": [], "side": "pairs"})
    if totals.nonfinite:
        rule = RULES["XE505"]
        out.append({"code": rule.code, "name": rule.name, "severity": rule.severity, "rows": totals.nonfinite,
                    "fraction": totals.nonfinite / totals.pairs if totals.pairs else 0.0,
                    "message": f"{counted(totals.nonfinite, 'pair has', 'pairs have')} a NaN or infinite loss on a side: left out of the statistics",
                    "hint": "see each side's XE401 for the cause", "examples": [], "side": "pairs"})
    return out


# ---- the statistics --------------------------------------------------------------------------------

def _interval(center: float, half: float) -> list[float]:
    return [center - half, center + half]


# A percentile interval needs config.TAIL_REPLICATES beyond each of its ends: with fewer its ends
# would be the extreme replicates, and it is not given (null; the table says why) rather than a
# narrow one at a level it lacks.


def _percentiles(values: F64, confidence: float) -> list[float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0 or values.size < replicates_needed(confidence):  # the one threshold the table's caption names
        return None
    return [float(np.quantile(values, (1 - confidence) / 2)), float(np.quantile(values, (1 + confidence) / 2))]


def paired_loss(n: int, mean: float, se: float, base_mean: float, candidate_mean: float, confidence: float,
                se_df: tuple[float, float] | None = None) -> dict[str, Any]:
    """The mean loss of both sides and the paired delta with its se (`se` = std(d, ddof=1)/√n unless
    `se_df` gives a clustered one), t-interval and two-sided p."""
    nan = math.nan
    se, df = se_df or (se, n - 1)
    delta = mean if n else nan
    quantile = stats.t_quantile((1 + confidence) / 2, df) if df > 0 else nan
    if se == 0 or math.isnan(se):
        p_value = (1.0 if delta == 0 else 0.0) if se == 0 else nan
    else:
        p_value = stats.t_two_sided_p(delta / se, df)
    return {"base": base_mean if n else nan, "candidate": candidate_mean if n else nan, "delta": delta, "se": se,
            "ci": _interval(delta, quantile * se), "p_value": p_value, "df": df}


def paired_accuracy(n: int, correct_base: int, correct_candidate: int, b: int, c: int, confidence: float,
                    clusters: accumulate.KeyedClusters | None = None) -> dict[str, Any]:
    """Both accuracies, their delta (c − b)/n with the Wald interval of a paired difference of
    proportions (Agresti, Categorical Data Analysis, 10.1.1), and the exact McNemar p. With
    `clusters` (--cluster, sequence dumps) the interval is the clustered one of the mean of
    e = right in the candidate − right in the base, t with G − 1 degrees of freedom, as the loss delta's."""
    nan = math.nan
    delta = (c - b) / n if n else nan
    out = {
        "base": correct_base / n if n else nan, "candidate": correct_candidate / n if n else nan, "delta": delta,
        "b": b, "c": c, "p_value": stats.mcnemar_exact_p(b, c),
        "ci": _interval(delta, stats.normal_quantile((1 + confidence) / 2) * _accuracy_se(n, b, c)) if n else [nan, nan],
    }
    if clusters is not None and n:
        se, df = accumulate.clustered_se(clusters, n)
        quantile = stats.t_quantile((1 + confidence) / 2, df) if df > 0 else nan
        out.update(ci=_interval(delta, quantile * se), se=se, clusters=df + 1)
    return out


def _accuracy_se(n: int, b: int, c: int) -> float:
    return math.sqrt(max(b + c - (c - b) ** 2 / n, 0.0)) / n if n else math.nan


def metrics(t: PairedTotals, confidence: float, threads: int = 1) -> dict[str, dict[str, Any]]:
    """The paired metrics (README, `xent diff`: the formulas)."""
    n = t.usable
    _, _, mean, se_unclustered = t.delta_moments.closed().results()
    base_mean, candidate_mean = t.base_moments.closed().results()[2], t.candidate_moments.closed().results()[2]  # as score's
    # about the clusters' own mean (mean − shift kept the mean's rounding at the deltas' size: half an ulp of
    # 3e4 against spreads of 1e-10, the se 4.7% high)
    clustered = accumulate.clustered_se(t.clusters, n) if t.clustered and t.clusters.sums else None
    if n and t.delta_sketch.min == t.delta_sketch.max:  # every delta the same: that mean, no spread (a block's float mean
        mean, se_unclustered = t.delta_sketch.min, 0.0 if n > 1 else math.nan  # of 50 × 0.1 is 0.09999999999999998, and a gate at 0.1 passed by 2 ulps)
        clustered = None if clustered is None else (0.0 if clustered[1] > 0 else math.nan, clustered[1])
    loss = paired_loss(n, mean, se_unclustered, base_mean, candidate_mean, confidence, clustered)
    se, df = loss["se"], loss["df"]
    loss["min_detectable_delta"] = (stats.t_quantile((1 + confidence) / 2, df) + stats.t_quantile(0.8, df)) * se if df > 0 else math.nan
    if t.clustered:
        loss.update(clusters=len(t.clusters.sums), se_unclustered=se_unclustered)
    # negative losses (XE110) share the bootstrap's zero cell: their quantiles' intervals are not given (found in review:
    # a p50 delta of 0.29 had the interval [0, 0])
    replicates = (t.bootstrap.replicates_of(t.base_sketch, (0.5, 0.9, 0.99), threads)
                  if t.bootstrap is not None and n and not t.negative else None)
    accuracy = paired_accuracy(n, t.correct_base, t.correct_candidate, t.correct_to_wrong, t.wrong_to_correct, confidence,
                               t.accuracy_clusters if t.clustered and t.accuracy_clusters.sums else None)
    perplexity = {
        "base": accumulate.perplexity(loss["base"], n), "candidate": accumulate.perplexity(loss["candidate"], n),
        "ratio": accumulate.perplexity(loss["delta"], n), "ci": [accumulate.perplexity(v, n) for v in loss["ci"]],
    }
    out = {"loss_mean": loss, "accuracy": accuracy, "perplexity": perplexity}
    for name, q in (("loss_p50", 0.5), ("loss_p90", 0.9), ("loss_p99", 0.99)):
        base_q, candidate_q = t.base_sketch.quantile(q), t.candidate_sketch.quantile(q)  # as score reports them, --bootstrap or not
        entry: dict[str, Any] = {"base": base_q, "candidate": candidate_q, "delta": candidate_q - base_q, "ci": None}
        if replicates is not None:
            # The replicates' quantiles are interpolated within their sketch buckets (intervals that move smoothly), the
            # point is the bucket's representative kept within the exact min and max, as score reports it: the interval is
            # moved by the difference of the two rules on the pairs themselves (found in review: one pair's p50 Δ 0.08836
            # had the interval [0.0901, 0.0901], and 1,000 pairs' p90 Δ -0.4012 the interval [-0.404, -0.404]).
            sides = [np.clip(replicates[f"{side}_{q}{part}"], sketch.min, sketch.max) for part in ("", "_sample")
                     for side, sketch in (("candidate", t.candidate_sketch), ("base", t.base_sketch))]
            interval = _percentiles(sides[0] - sides[1], confidence)
            shift = entry["delta"] - float((sides[2] - sides[3])[0])
            entry["ci"] = None if interval is None else [interval[0] + shift, interval[1] + shift]
        out[name] = entry
    return out


def group_metrics(t: PairedTotals, names: tuple[str, ...], confidence: float, min_group: int, max_groups: int) -> list[dict[str, Any]]:
    """Per --by group: the paired loss and accuracy, as for the whole dump (unclustered). The
    --max-groups with the most usable pairs, the rest pooled as "(other)"; sorted by the loss
    delta, largest first, groups smaller than --min-group and "(other)" last."""
    if t.groups is None:
        return []
    kept, merged = t.groups.kept(len(names), max_groups)
    records = []
    for index, (key, sums) in enumerate(kept):
        n, extra = sums.counted, sums.extra
        b, c = int(extra.get("b", 0)), int(extra.get("c", 0))
        records.append({
            "by": dict(zip(names, key)), "pairs": sums.rows, "usable_pairs": n, "small": n < min_group,
            "pooled_groups": merged if merged and index == len(kept) - 1 else 0,
            "loss_mean": paired_loss(n, sums.mean, sums.se, extra.get("base", 0.0) / n if n else math.nan,
                                     extra.get("candidate", 0.0) / n if n else math.nan, confidence),
            "accuracy": paired_accuracy(n, sums.correct, int(extra.get("correct_candidate", 0)), b, c, confidence),
        })
    records.sort(key=lambda r: (r["small"] or r["pooled_groups"] > 0, _descending(r["loss_mean"]["delta"]), str(r["by"])))
    return records


def _descending(value: float) -> float:
    return math.inf if math.isnan(value) else -value


def decide(report: Any, gates: Any) -> None:
    """The gates on the paired intervals, and the diagnostics of either side at --fail-on."""
    from xentcli.diagnostics import SEVERITIES

    loss, accuracy = report.metrics["loss_mean"], report.metrics["accuracy"]
    checks = []
    if gates.fail_on_regression is not None:
        low = loss["ci"][0]
        checks.append({"gate": "fail-on-regression", "margin": gates.fail_on_regression, "bound": "lower", "value": low,
                       "passed": not (low > gates.fail_on_regression) and not math.isnan(low)})
    if gates.require_noninferior is not None:
        high = loss["ci"][1]
        checks.append({"gate": "require-noninferior", "margin": gates.require_noninferior, "bound": "upper", "value": high,
                       "passed": high < gates.require_noninferior})
    if gates.max_accuracy_drop is not None:
        high = accuracy["ci"][1]
        checks.append({"gate": "max-accuracy-drop", "margin": gates.max_accuracy_drop, "bound": "upper", "value": high,
                       "passed": not (high < -gates.max_accuracy_drop) and not math.isnan(high)})
    group_checks, group_reasons = _group_gates(report.groups, gates, report.confidence) if report.groups else ([], [])
    checks += group_checks
    nonfinite = report.pairing["nonfinite_pairs"]
    if checks and nonfinite:  # the intervals leave these pairs out: no gate may pass on the rest (as check's --max-nonfinite 0)
        checks.append({"gate": "nonfinite-pairs", "margin": 0, "bound": "count", "value": nonfinite, "passed": False})
    reasons = []
    usable = report.pairing["usable_pairs"]
    for check in checks:
        if check["passed"] or "groups_gated" in check:  # the groups' gates give their reasons themselves
            continue
        if check["gate"] != "nonfinite-pairs" and math.isnan(check["value"]):  # no interval to judge by
            why = "no usable pairs" if not usable else f"{counted(usable, 'usable pair', 'usable pairs')}: no interval"
            reasons.append(f"{check['gate']} {check['margin']:g} is undefined ({why}): the gate cannot pass")
        elif check["gate"] == "nonfinite-pairs":
            reasons.append(f"{counted(check['value'], 'pair has', 'pairs have')} a NaN or infinite loss on a side (XE505): the intervals cannot judge "
                           f"{'it' if check['value'] == 1 else 'them'}")
        elif check["gate"] == "fail-on-regression":
            reasons.append(f"the loss got worse by more than {check['margin']:g}: the interval's lower bound is {check['value']:.6g}")
        elif check["gate"] == "require-noninferior":
            reasons.append(f"non-inferiority within {check['margin']:g} not shown: the interval's upper bound is {check['value']:.6g}")
        else:
            reasons.append(f"accuracy dropped by more than {check['margin']:g}: the interval's upper bound is {check['value']:.6g}")
    reasons += group_reasons
    if gates.fail_on != "never":
        worst = SEVERITIES.index(gates.fail_on)
        for item in report.diagnostics:
            if SEVERITIES.index(item["severity"]) <= worst:
                reasons.append(f"{item['side']}: {item['code']} {item['name']} ({item['severity']})")
    report.gates, report.reasons = checks, reasons
    report.gated = bool(checks)  # a gate on the numbers (--fail-on judges the diagnostics, by default the errors)


def _group_gates(groups: list[dict[str, Any]], gates: Any, confidence: float) -> tuple[list[dict[str, Any]], list[str]]:
    """The gates per --by group, each at the one-sided level α = (1 − confidence)/2 of the
    whole-dump gates. Gated: the groups of at least --min-group usable pairs, "(other)" excepted.
    --fail-on-regression and --max-accuracy-drop fail when any group fails: Holm's step-down across
    the gated groups keeps the chance of a false failure at α (Holm 1979). --require-noninferior
    passes only when every gated group shows non-inferiority: an intersection-union test, valid at α
    without correction (Berger 1982). The value shown: the worst group's bound at the level used."""
    from statistics import NormalDist

    alpha = (1 - confidence) / 2
    gated = [g for g in groups if not g["small"] and not g["pooled_groups"]]
    tested = [g for g in gated if not math.isnan(g["loss_mean"]["se"])]
    untestable = [g for g in gated if math.isnan(g["loss_mean"]["se"])]  # one usable pair (--min-group 1): no interval to judge by
    m = len(tested)
    checks, reasons = [], []

    def shown(group: dict[str, Any]) -> str:
        return group_label(group["by"])

    def add(gate: str, margin: float, bound: str, value: float, failed: list[tuple[dict[str, Any], str]]) -> None:
        checks.append({"gate": gate, "margin": margin, "bound": bound, "value": value, "groups_gated": m + len(untestable),
                       "passed": not failed and not math.isnan(value) and not untestable,
                       "failed_groups": [g["by"] for g, _ in failed] + [g["by"] for g in untestable]})
        if untestable:  # a group the gate must judge and cannot: it fails, as check's --max-group-gap does
            g = untestable[0]
            reasons.append(f"{gate}: group {shown(g)} ({counted(g['usable_pairs'], 'usable pair', 'usable pairs')}) has no standard error: the gate cannot judge it"
                           + (f", nor {len(untestable) - 1} more" if len(untestable) > 1 else ""))
        elif math.isnan(value):
            reasons.append(f"{gate}: no group has --min-group usable pairs: the gate cannot judge the groups")
        reasons.extend(f"group {shown(g)}: {why}" for g, why in failed)

    def one_sided_t(excess: float, se: float, df: float) -> float:
        return (0.0 if excess > 0 else 1.0) if se == 0 else stats.t_upper_p(excess / se, df)

    margin = gates.fail_on_regression
    if margin is not None:
        loss = [g["loss_mean"] for g in tested]
        pvalues = [one_sided_t(x["delta"] - margin, x["se"], x["df"]) for x in loss]
        lows = [x["delta"] - (stats.t_quantile(1 - alpha / m, x["df"]) * x["se"] if x["se"] else 0.0) for x in loss]
        failed = [(tested[i], f"the loss got worse by more than {margin:g}: Δ {tested[i]['loss_mean']['delta']:+.6g} "
                   f"(Holm-adjusted p {p:.3g})") for i, p in stats.holm(pvalues, alpha)]
        add("fail-on-regression by group (Holm)", margin, "lower", max(lows, default=math.nan), failed)
    margin = gates.require_noninferior
    if margin is not None:
        highs = [g["loss_mean"]["ci"][1] for g in tested]
        failed = [(g, f"non-inferiority within {margin:g} not shown: the interval's upper bound is {high:.6g}")
                  for g, high in zip(tested, highs) if not high < margin]
        add("require-noninferior by group (every group)", margin, "upper", max(highs, default=math.nan), failed)
    margin = gates.max_accuracy_drop
    if margin is not None:
        normal = NormalDist()
        pvalues, highs = [], []
        for g in tested:
            x = g["accuracy"]
            se = _accuracy_se(g["usable_pairs"], x["b"], x["c"])
            pvalues.append((0.0 if x["delta"] < -margin else 1.0) if se == 0 else normal.cdf((x["delta"] + margin) / se))
            highs.append(x["delta"] + normal.inv_cdf(1 - alpha / m) * se)
        failed = [(tested[i], f"accuracy dropped by more than {margin:g}: Δ {tested[i]['accuracy']['delta']:+.6g} "
                   f"(Holm-adjusted p {p:.3g})") for i, p in stats.holm(pvalues, alpha)]
        add("max-accuracy-drop by group (Holm)", margin, "upper", min(highs, default=math.nan), failed)
    return checks, reasons
