"""Slices (`--by COL`): one mergeable accumulator per group of rows — the combinations of the
values of the --by columns — and the per-group report: rows, counted, share, the mean loss with
its t-interval, accuracy with Wilson's, ECE (with --calibration), the gap to the whole dump."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcli import native, stats
from xentcli.plain import group_value

OTHER = "(other)"


@dataclass
class GroupSums:
    """One group's sums as the report reads them."""

    rows: int = 0
    counted: int = 0
    mean: float = 0.0
    m2: float = 0.0
    correct: int = 0
    bins: npt.NDArray[np.float64] | None = None  # [3, M]: count, Σconf, Σcorrect per calibration bin
    extra: dict[str, float] = field(default_factory=dict)
    weighted: dict[str, float] | None = None  # with weights: WEIGHTED's sums

    @property
    def se(self) -> float:
        """The standard error of the group's mean loss, √(M2 / (n·(n − 1))) from its float M2; NaN
        below 2 rows, and where that M2 cannot be trusted: beyond float64 (losses ~1e154 apart) or
        below 2^-900, where squares of deviations may have fallen below the normal floats (losses
        ~1e-160 apart: 3.4e-4 off, found in review, 2026-12-03) — unless it is 0 with a mean of
        2^-456 or more, where no square can have, or of 0 (a diff's group of unchanged rows; deltas
        of ±1e-170 that cancel exactly would pass for it). (The summary's is exact: LossMoments.) A
        group without one has no interval, and a gate that must test it cannot pass."""
        n, m2 = self.counted, self.m2
        if n < 2 or not (stats.M2_FLOOR <= m2 < math.inf or m2 == 0.0 and (self.mean == 0.0 or abs(self.mean) >= 2.0**-456)):
            return math.nan
        return math.sqrt(m2 / (n - 1) / n)


# With sample or class weights, per group (as the summary's ratio estimator, accumulate.WeightedSums):
# Σy and Σx (y = a row's weighted loss, x its weight), Σ (y − m·x)², Σ x·(y − m·x) and Σ x² about the
# group's own m = Σy/Σx, and its counted rows of weight > 0. Chunks merge as Chan's update does:
# Σ_A (y − m·x)² = R_A + 2(m_A − m)·C_A + (m_A − m)²·Q_A.
WEIGHTED = ("y", "x", "r", "c", "q", "weighed")


class GroupTotals:
    """Every group's partial in arrays indexed by group (keys: tuples of plain values): rows,
    counted, the loss's mean and M2 (Chan's merge, vectorised over the groups of a chunk), correct
    predictions, with calibration [3, G, M] per-bin sums, and any further per-row sums a caller
    names (`extra`: diff's per-side sums and flips). Memory grows with the groups.

    One integer column (an `--by-file` array, an integer column without nulls) takes a path with
    no Python per group and chunk: its values map to group numbers by a binary search over the
    values seen (`_sorted`, `_sorted_ids`), and a chunk's partial holds its values (`int_values`)
    instead of key tuples, which are made once per new value."""

    def __init__(self) -> None:
        self.keys: list[tuple[Any, ...]] = []
        self.index: dict[tuple[Any, ...], int] = {}
        self.int_values: npt.NDArray[np.int64] | None = None  # a chunk's partial: its groups' values, by number
        self._sorted = np.zeros(0, np.int64)  # the integer values seen, sorted, and their numbers; None once
        self._sorted_ids: npt.NDArray[np.int64] | None = np.zeros(0, np.int64)  # a group is no single integer
        self.rows = np.zeros(0, np.int64)
        self.counted = np.zeros(0, np.int64)
        self.mean = np.zeros(0)
        self.m2 = np.zeros(0)
        self.correct = np.zeros(0, np.int64)
        self.bins: npt.NDArray[np.float64] | None = None
        self.extra: dict[str, npt.NDArray[np.float64]] = {}
        self.wsums: dict[str, npt.NDArray[np.float64]] | None = None  # with weights: WEIGHTED's sums per group

    def _sums(self, i: int) -> GroupSums:
        return GroupSums(int(self.rows[i]), int(self.counted[i]), float(self.mean[i]), float(self.m2[i]), int(self.correct[i]),
                         None if self.bins is None else self.bins[:, i, :], {k: float(v[i]) for k, v in self.extra.items()},
                         None if self.wsums is None else {k: float(v[i]) for k, v in self.wsums.items()})

    def _pooled(self, ids: npt.NDArray[np.int64]) -> GroupSums:
        """The groups `ids` as one (Chan's merge over all of them at once)."""
        n = self.counted[ids]
        total = int(n.sum())
        mean = float(n @ self.mean[ids]) / total if total else 0.0
        m2 = float(self.m2[ids].sum() + n @ (self.mean[ids] - mean) ** 2)
        weighted = None
        if self.wsums is not None:
            w = {k: v[ids] for k, v in self.wsums.items()}
            sum_x = float(w["x"].sum())
            mean_w = float(w["y"].sum()) / sum_x if sum_x else 0.0
            part = np.divide(w["y"], w["x"], out=np.full(ids.size, mean_w), where=w["x"] > 0) - mean_w  # each group's m_g − m
            weighted = {"y": float(w["y"].sum()), "x": float(w["x"].sum()), "q": float(w["q"].sum()), "weighed": float(w["weighed"].sum()),
                        "r": float((w["r"] + 2 * part * w["c"] + part * part * w["q"]).sum()), "c": float((w["c"] + part * w["q"]).sum())}
        return GroupSums(int(self.rows[ids].sum()), total, mean, m2, int(self.correct[ids].sum()),
                         None if self.bins is None else self.bins[:, ids, :].sum(axis=1),
                         {k: float(v[ids].sum()) for k, v in self.extra.items()}, weighted)

    def _ids(self, keys: list[tuple[Any, ...]]) -> npt.NDArray[np.int64]:
        ids = []
        for key in keys:
            if key not in self.index:
                self.index[key] = len(self.keys)
                self.keys.append(key)
                self._sorted_ids = None  # a key from the general path: no integer index any more
            ids.append(self.index[key])
        self._grow()
        return np.array(ids, np.int64)

    def _int_ids(self, values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The numbers of the groups of these distinct integer values (new ones added)."""
        if self._sorted_ids is None:  # other keys seen: the general path
            return self._ids([(v,) for v in values.tolist()])
        if values.size == self._sorted.size and np.array_equal(values, self._sorted):  # every group seen so far: no search
            return self._sorted_ids
        at = np.minimum(np.searchsorted(self._sorted, values), max(self._sorted.size - 1, 0))
        known = (self._sorted.size > 0) & (self._sorted[at] == values) if self._sorted.size else np.zeros(values.size, bool)
        ids = np.empty(values.size, np.int64)
        ids[known] = self._sorted_ids[at[known]]
        new = values[~known]
        if new.size:
            first = len(self.keys)
            for value in new.tolist():
                self.index[(value,)] = len(self.keys)
                self.keys.append((value,))
            ids[~known] = np.arange(first, first + new.size)
            merged = np.concatenate([self._sorted, new])
            order = np.argsort(merged, kind="stable")
            self._sorted, self._sorted_ids = merged[order], np.concatenate([self._sorted_ids, ids[~known]])[order]
            self._grow()
        return ids

    def _grow(self) -> None:
        grow = len(self.keys) - self.rows.size
        if grow:
            self.rows, self.counted, self.correct = (np.r_[a, np.zeros(grow, np.int64)] for a in (self.rows, self.counted, self.correct))
            self.mean, self.m2 = (np.r_[a, np.zeros(grow)] for a in (self.mean, self.m2))
            self.extra = {k: np.r_[v, np.zeros(grow)] for k, v in self.extra.items()}
            if self.wsums is not None:
                self.wsums = {k: np.r_[v, np.zeros(grow)] for k, v in self.wsums.items()}
            if self.bins is not None:
                self.bins = np.concatenate([self.bins, np.zeros((3, grow, self.bins.shape[2]))], axis=1)

    def add(self, keys: list[tuple[Any, ...]], rows: npt.NDArray, counted: npt.NDArray, mean: npt.NDArray, m2: npt.NDArray,
            correct: npt.NDArray, bins: npt.NDArray | None, extra: dict[str, npt.NDArray] | None = None,
            wsums: dict[str, npt.NDArray] | None = None) -> None:
        """Merge the partials of `keys` (each key once)."""
        self._add_ids(self._ids(keys), rows, counted, mean, m2, correct, bins, extra, wsums)

    def _add_ids(self, ids: npt.NDArray[np.int64], rows: npt.NDArray, counted: npt.NDArray, mean: npt.NDArray, m2: npt.NDArray,
                 correct: npt.NDArray, bins: npt.NDArray | None, extra: dict[str, npt.NDArray] | None = None,
                 wsums: dict[str, npt.NDArray] | None = None) -> None:
        for name, values in (extra or {}).items():
            self.extra.setdefault(name, np.zeros(len(self.keys)))[ids] += values
        if wsums is not None:
            if self.wsums is None:
                self.wsums = {k: np.zeros(len(self.keys)) for k in WEIGHTED}
            merged = _merged_weighted({k: v[ids] for k, v in self.wsums.items()}, wsums)
            for k in WEIGHTED:
                self.wsums[k][ids] = merged[k]
        elif self.wsums is not None and ids.size:
            raise ValueError("weighted and unweighted group sums")
        if bins is not None and self.bins is None:
            self.bins = np.zeros((3, len(self.keys), bins.shape[2]))
        if native.has_tally() and (bins is None) == (self.bins is None):  # one C loop, the same operations as below
            native.group_merge(ids, (rows, counted, mean, m2, correct, bins), (self.rows, self.counted, self.mean, self.m2, self.correct, self.bins))
            return
        n_a, n_b = self.counted[ids], counted
        total = n_a + n_b
        safe = np.maximum(total, 1)
        step = mean - self.mean[ids]
        self.mean[ids] += np.where(total > 0, step * n_b / safe, 0.0)
        self.m2[ids] += m2 + np.where(total > 0, step * step * n_a * n_b / safe, 0.0)
        self.counted[ids] = total
        self.rows[ids] += rows
        self.correct[ids] += correct
        if bins is not None and self.bins is not None:
            self.bins[:, ids, :] += bins

    @classmethod
    def of_chunk(cls, columns: list[Any], loss: npt.NDArray[np.float64], counted: npt.NDArray[np.bool_],
                 correct: npt.NDArray[np.bool_], calibration: tuple[npt.NDArray[np.int64], int, npt.NDArray, npt.NDArray, int] | None,
                 extra: dict[str, npt.NDArray] | None = None,
                 weighted: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None) -> GroupTotals:
        """One chunk's groups. `calibration` = (calibration cell of each row, −1 where none; cells per
        bin; confidence; correctness; the number of bins); `extra`: per-row values summed per group as
        they are; `weighted` = (y, x) per row with weights (WEIGHTED)."""
        out = cls()
        ints = _integer_column(columns, dense=not extra and native.has_tally())
        if ints is not None:  # the values themselves name the groups: no key tuples per chunk
            values, inverse = ints
            out.int_values = values
            out._sorted_ids = None
            if isinstance(inverse, tuple):  # a narrow range: the C sums indexed by value − low, then the empty values dropped
                low, span = inverse
                *sums, present = native.group_sums(values, span, loss, counted, correct, calibration, offset=low, compact=True)
                out.int_values = present + low
                out.rows, out.counted, out.mean, out.m2, out.correct, out.bins = sums
                if weighted is not None:
                    out.wsums = {k: v[present] for k, v in _weighted_sums_by(values - low, span, *weighted, counted).items()}
                return out
            out.rows, out.counted, out.mean, out.m2, out.correct, out.bins, out.extra = _sums_by(
                inverse, values.size, loss, counted, correct, calibration, extra)
            if weighted is not None:
                out.wsums = _weighted_sums_by(inverse, values.size, *weighted, counted)
            return out
        found, inverse = _chunk_keys(columns)
        wsums = None if weighted is None else _weighted_sums_by(inverse, len(found), *weighted, counted)
        out.add(found, *_sums_by(inverse, len(found), loss, counted, correct, calibration, extra), wsums)
        return out

    def numbered(self, columns: list[Any]) -> npt.NDArray[np.int64]:
        """Each row's group as this object's number for it (new groups are added, empty)."""
        ints = _integer_column(columns)
        if ints is not None:
            values, inverse = ints
            return self._int_ids(values)[inverse]
        found, inverse = _chunk_keys(columns)
        return self._ids(found)[inverse]

    def add_numbered(self, group: npt.NDArray[np.int64], loss: npt.NDArray[np.float64], counted: npt.NDArray[np.bool_],
                     correct: npt.NDArray[np.bool_], extra: dict[str, npt.NDArray] | None = None) -> None:
        """Add rows whose groups `numbered` gave."""
        unique, inverse = _unique(group, len(self.keys))
        self._add_ids(unique, *_sums_by(inverse, unique.size, loss, counted, correct, None, extra))

    def merge(self, other: GroupTotals) -> None:
        if other.int_values is not None:
            ids = self._int_ids(other.int_values)
            self._add_ids(ids, other.rows, other.counted, other.mean, other.m2, other.correct, other.bins, other.extra, other.wsums)
        elif other.keys:
            self.add(other.keys, other.rows, other.counted, other.mean, other.m2, other.correct, other.bins, other.extra, other.wsums)

    def report(self, names: tuple[str, ...], overall: float, total_counted: int, confidence: float, min_group: int,
               max_groups: int) -> tuple[list[dict[str, Any]], int]:
        """The groups as JSON records (the --max-groups with the most counted rows, the rest merged
        into "(other)"), sorted by mean loss (descending), small groups after; and how many groups
        were merged into "(other)"."""
        from xentcli.accumulate import wilson

        kept, merged = self.kept(len(names), max_groups)
        eces = None if self.bins is None else expected_calibration_errors(np.stack([sums.bins for _, sums in kept], axis=1))
        records = []
        two_sided = (1 + confidence) / 2
        for index, (key, sums) in enumerate(kept):
            n = sums.counted
            mean = sums.mean if n else math.nan
            se, df = sums.se, n - 1
            if sums.weighted is not None:  # the ratio estimator Σy/Σx and its linearised standard error, as the summary's
                w = sums.weighted
                mean = w["y"] / w["x"] if n and w["x"] else math.nan
                df = int(w["weighed"]) - 1  # HC1, as the summary's: weights of 1 give the unweighted interval
                se = math.sqrt(max(w["r"], 0.0) * (df + 1) / df) / w["x"] if df > 0 and w["x"] else math.nan
            half = stats.t_quantile(two_sided, df) * se if df > 0 and not math.isnan(se) else math.nan
            ece = math.nan if sums.bins is None else float(eces[index])
            records.append({
                "by": dict(zip(names, key)), "rows": sums.rows, "counted": n, "share": n / total_counted if total_counted else math.nan,
                "loss_mean": mean, "loss_ci": [mean - half, mean + half], "accuracy": sums.correct / n if n else math.nan,
                "accuracy_ci": wilson(sums.correct, n, confidence), "ece": ece, "delta_loss": mean - overall,
                "small": n < min_group, "se": se, "df": df, "merged_groups": merged if merged and index == len(kept) - 1 else 0,
            })
        records.sort(key=lambda r: (r["small"], -(r["loss_mean"] if not math.isnan(r["loss_mean"]) else -math.inf), str(r["by"])))
        return records, merged

    def kept(self, width: int, max_groups: int) -> tuple[list[tuple[tuple[Any, ...], GroupSums]], int]:
        """The `max_groups` groups with the most counted rows (ties by their values as text), then the
        rest pooled as one "(other)" group (last); and how many groups that pooled."""
        order = sorted(range(len(self.keys)), key=lambda i: (-int(self.counted[i]), value_order(self.keys[i])))
        rest = np.array(order[max_groups:], np.int64)
        kept = [(self.keys[i], self._sums(i)) for i in order[:max_groups]]
        if rest.size:
            kept.append(((OTHER,) * width, self._pooled(rest)))
        return kept, int(rest.size)


def value_order(key: tuple[Any, ...]) -> tuple[tuple[Any, ...], ...]:
    """A group's values as a sort key: numbers by value (user 17 before 1072, which their text put
    after it), text, bytes and times by value, then NaN, then null (a column holds one type)."""
    def one(v: Any) -> tuple[Any, ...]:
        if v is None:
            return (2,)
        if isinstance(v, float) and math.isnan(v):
            return (1,)
        kind = 0 if isinstance(v, (bool, int, float)) else 1 if isinstance(v, str) else 2 if isinstance(v, bytes) else 3
        return (0, kind, v) if kind < 3 else (0, kind, str(type(v)), v)
    return tuple(one(v) for v in key)


def _weighted_sums_by(inverse: npt.NDArray[np.int64], k: int, y: npt.NDArray[np.float64], x: npt.NDArray[np.float64],
                      counted: npt.NDArray[np.bool_]) -> dict[str, npt.NDArray[np.float64]]:
    """WEIGHTED's sums of the counted rows per group (rows numbered 0…k−1 by `inverse`), about each group's own mean."""
    yy, xx = np.where(counted, y, 0.0), np.where(counted, x, 0.0)
    sum_y, sum_x = np.bincount(inverse, weights=yy, minlength=k), np.bincount(inverse, weights=xx, minlength=k)
    mean = np.divide(sum_y, sum_x, out=np.zeros(k), where=sum_x > 0)
    residual = yy - mean[inverse] * xx
    return {"y": sum_y, "x": sum_x, "r": np.bincount(inverse, weights=residual * residual, minlength=k),
            "c": np.bincount(inverse, weights=xx * residual, minlength=k), "q": np.bincount(inverse, weights=xx * xx, minlength=k),
            "weighed": np.bincount(inverse, weights=counted & (x > 0), minlength=k)}


def _merged_weighted(a: dict[str, npt.NDArray[np.float64]], b: dict[str, npt.NDArray[np.float64]]) -> dict[str, npt.NDArray[np.float64]]:
    """WEIGHTED's sums of two parts of the same groups, about the merged means."""
    sum_x, sum_y = a["x"] + b["x"], a["y"] + b["y"]
    mean = np.divide(sum_y, sum_x, out=np.zeros(sum_x.shape), where=sum_x > 0)
    out = {"y": sum_y, "x": sum_x, "q": a["q"] + b["q"], "weighed": a["weighed"] + b["weighed"], "r": np.zeros(sum_x.shape),
           "c": np.zeros(sum_x.shape)}
    for part in (a, b):
        d = np.divide(part["y"], part["x"], out=mean.copy(), where=part["x"] > 0) - mean
        out["r"] = out["r"] + part["r"] + 2 * d * part["c"] + d * d * part["q"]
        out["c"] = out["c"] + part["c"] + d * part["q"]
    return out


def expected_calibration_errors(bins: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """ECE = Σ_m (n_m/n)·|acc_m − conf_m| of each group's bins [3 (count, Σconf, Σhit), groups, M];
    NaN for a group without calibrated rows."""
    count, conf, hit = bins
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(count > 0, count / count.sum(axis=1, keepdims=True) * np.abs(hit / count - conf / count), 0.0)
        return np.where(count.sum(axis=1) > 0, terms.sum(axis=1), np.nan)


def _integer_column(columns: list[Any], dense: bool = False) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64] | tuple[int, int]] | None:
    """One column of integers that fit int64, without nulls: its distinct values (ascending) and
    each row's index among them; None for anything else (the general path). `dense`: when the
    values span a narrow range, the values themselves (int64) and (their minimum, the span) instead."""
    if len(columns) != 1:
        return None
    column = columns[0]
    if not isinstance(column, np.ndarray):
        import pyarrow as pa

        from xentcli.sources.columns import to_numpy

        if not isinstance(column, (pa.Array, pa.ChunkedArray)) or column.null_count or not pa.types.is_integer(column.type) \
                or pa.types.is_uint64(column.type):
            return None
        column = to_numpy(column) if isinstance(column, pa.Array) else np.concatenate([to_numpy(c) for c in column.chunks])
    if column.dtype.kind not in "iu" or column.dtype == np.uint64:
        return None
    values = column.astype(np.int64, copy=False)
    if not values.size:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    low = int(values.min())
    span = int(values.max()) - low + 1
    if span > 4 * values.size:  # a wide range (values − low could even overflow): a sort
        unique, inverse = np.unique(values, return_inverse=True)
        return unique, inverse.astype(np.int64)
    if dense:
        return values, (low, span)
    unique, inverse = _unique(values - low, span)
    return unique + low, inverse


def _chunk_keys(columns: list[Any]) -> tuple[list[tuple[Any, ...]], npt.NDArray[np.int64]]:
    """The distinct groups of a chunk (as tuples of plain values) and each row's index among them."""
    codes, keys, size = _group_codes(columns)
    unique, inverse = _unique(codes, size)
    found = [keys(code) for code in unique.tolist()]
    distinct = dict.fromkeys(found)  # values equal as plain values (NaN and null, 0.0 and -0.0) are one group
    if len(distinct) < len(found):
        position = {key: i for i, key in enumerate(distinct)}
        inverse = np.array([position[key] for key in found], np.int64)[inverse]
        found = list(distinct)
    return found, inverse


def _unique(codes: npt.NDArray[np.int64], size: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """np.unique(codes, return_inverse=True) for codes in [0, size): O(n) when size is small."""
    if size <= 4 * max(codes.size, 1):
        present = np.bincount(codes, minlength=size) > 0
        return np.flatnonzero(present), (np.cumsum(present) - 1)[codes]
    return np.unique(codes, return_inverse=True)


def _sums_by(inverse: npt.NDArray[np.int64], k: int, loss: npt.NDArray[np.float64], counted: npt.NDArray[np.bool_],
             correct: npt.NDArray[np.bool_], calibration: tuple[npt.NDArray[np.int64], int, npt.NDArray, npt.NDArray, int] | None,
             extra: dict[str, npt.NDArray] | None) -> tuple[Any, ...]:
    """Per group (rows numbered 0…k−1 by `inverse`): rows, counted, mean and M2 of the counted
    losses, correct counted rows, calibration bins, and the `extra` sums — GroupTotals.add's arguments.
    The C loop (native.group_sums) makes the first five and the bins in two passes over the rows;
    these numpy passes are its reference and the fallback."""
    sums_of = {name: np.bincount(inverse, weights=values, minlength=k) for name, values in (extra or {}).items()}
    if native.has_tally():
        rows_c, n_c, means_c, m2_c, right_c, bins_c = native.group_sums(inverse, k, loss, counted, correct, calibration)
        return rows_c, n_c, means_c, m2_c, right_c, bins_c, sums_of
    rows = np.bincount(inverse, minlength=k)
    n = np.bincount(inverse, weights=counted, minlength=k)
    x = np.where(counted, loss, 0.0)
    sums = np.bincount(inverse, weights=x, minlength=k)
    means = np.divide(sums, n, out=np.zeros(k), where=n > 0)
    m2 = np.bincount(inverse, weights=np.where(counted, (loss - means[inverse]) ** 2, 0.0), minlength=k)
    right = np.bincount(inverse, weights=counted & correct, minlength=k)
    bins = None
    if calibration is not None:
        cells, per, confidence, hit, m = calibration
        use = cells >= 0
        flat = inverse[use] * m + cells[use] // per
        bins = np.stack([np.bincount(flat, minlength=k * m), np.bincount(flat, weights=confidence[use], minlength=k * m),
                         np.bincount(flat, weights=hit[use], minlength=k * m)]).reshape(3, k, m)
    return rows, n.astype(np.int64), means, m2, right.astype(np.int64), bins, sums_of


def _group_codes(columns: list[Any]) -> tuple[npt.NDArray[np.int64], Any, int]:
    """An int64 code per row for the combination of the group columns' values, a function from a
    code to the combination as plain values (each column dictionary-encoded per chunk), and the
    number of possible codes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from xentcli.sources.columns import from_numpy, to_numpy

    codes = np.zeros(len(columns[0]), np.int64)
    dictionaries: list[list[Any]] = []
    stride = 1
    strides: list[tuple[int, int]] = []
    prefix: list[tuple[Any, ...]] = [()]  # the combinations of the columns before, once renumbered

    def keys(code: int) -> tuple[Any, ...]:
        return prefix[code % len(prefix)] + tuple(group_value(dictionary[(code // s) % size]) for dictionary, (s, size) in zip(dictionaries, strides))

    for column in columns:
        width = len(column) + 1  # a bound on this column's distinct values (+ null) in the chunk
        if stride * width >= 1 << 62:  # the combined codes would overflow: number the combinations seen so far
            unique, codes = np.unique(codes, return_inverse=True)
            prefix = [keys(code) for code in unique.tolist()]
            codes, dictionaries, strides, stride = codes.astype(np.int64), [], [], len(prefix)
        if isinstance(column, np.ndarray) and column.dtype.kind in "biu":  # numbers: no Arrow round trip
            wide = column.dtype == np.uint64  # beyond int64: sorted as it is
            column = column if wide else column.astype(np.int64, copy=False)  # int8 − low would wrap
            low = int(column.min()) if column.size else 0
            span = int(column.max()) - low + 1 if column.size else 1
            if span <= 4 * max(column.size, 1) and not wide:  # a small range: O(n) instead of a sort
                present = np.bincount(column - low, minlength=span) > 0
                values, indices = np.flatnonzero(present) + low, (np.cumsum(present) - 1)[column - low]
            else:
                values, indices = np.unique(column, return_inverse=True)
            codes += indices.astype(np.int64) * stride
            strides.append((stride, values.size))
            dictionaries.append(values.tolist())
            stride *= values.size
            continue
        array = column if isinstance(column, (pa.Array, pa.ChunkedArray)) else from_numpy(np.asarray(column))
        encoded = pc.dictionary_encode(array)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        indices = encoded.indices
        if indices.null_count:  # null: the last code, in int64 (int8 indices of 128 values cannot hold 128); the fill
            # value made from a buffer: pa.scalar imports pandas
            indices = pc.fill_null(pc.cast(indices, pa.int64()), from_numpy(np.array([len(encoded.dictionary)], np.int64))[0])
        indices = to_numpy(indices).astype(np.int64)
        size = len(encoded.dictionary) + 1  # + 1: null
        codes += indices * stride
        strides.append((stride, size))
        dictionaries.append(encoded.dictionary.to_pylist() + [None])
        stride *= size

    return codes, keys, stride


def holm_failures(groups: list[dict[str, Any]], gap: float, confidence: float
                  ) -> tuple[list[dict[str, Any]], float, list[dict[str, Any]]]:
    """The groups whose mean loss exceeds the overall mean by more than `gap` (each group's
    `delta_loss`), shown at the one-sided level α = (1 − confidence)/2 after Holm's step-down
    correction across the m tested groups (Holm 1979): sorted by p-value, the i-th (0-based) is
    rejected while p ≤ α/(m − i); each with its Holm-adjusted p. Tested: every group of at least
    --min-group rows but "(other)"; a group of equal losses (SE 0) exceeds the gap or not, with
    certainty. Also the figure the gate shows: the largest gap's lower bound at Holm's first level
    α/m, which exceeds `gap` exactly when some group is rejected — NaN when no group can be tested,
    or when a group that must be tested has no standard error (one row, an infinite spread): the gate
    cannot pass; and those untestable groups."""
    alpha = (1 - confidence) / 2
    tested, pvalues, untestable, bound = [], [], [], math.nan
    for group in groups:
        if group["small"] or group["merged_groups"]:
            continue
        if math.isnan(group["se"]) or math.isnan(group["delta_loss"]):
            untestable.append(group)
            continue
        excess = group["delta_loss"] - gap
        if group["se"] == 0:
            pvalues.append(0.0 if excess > 0 else 1.0)
        else:
            pvalues.append(stats.t_upper_p(excess / group["se"], group["df"]))
        tested.append(group)
    m = len(tested) + len(untestable)
    for group in tested:
        low = group["delta_loss"] - (stats.t_quantile(1 - alpha / m, group["df"]) * group["se"] if group["se"] else 0.0)
        bound = low if math.isnan(bound) else max(bound, low)
    return [{**tested[i], "p_value": p} for i, p in stats.holm(pvalues, alpha)], math.nan if untestable else bound, untestable
