"""What the rules see of one chunk and what they leave: the chunk view, the row masks shared by
the rules (each computed on first use), the example rows, and the mergeable Finding."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from xentcli import ranking
from xentcli.diagnostics.registry import (
    MAX_EXAMPLES, PROBS_SUM_TOLERANCE, RULES, not_log_probs_tolerance, outlier_threshold, overflow_limit,
)
from xentcli.kernels import SampleStats
from xentcli.plain import id_at, plain


@dataclass
class Finding:
    """A rule's mergeable partial: rows hit, facts with their merge rule, example rows."""

    code: str
    rows: int = 0
    facts: dict[str, float] = field(default_factory=dict)
    merge_rules: dict[str, str] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    rank_by: str | None = None  # keep the examples with the largest value of this key

    @classmethod
    def of(cls, code: str, rows: npt.NDArray[np.bool_], examples: Callable[[], list[dict[str, Any]]] | None = None,
           rank_by: str | None = None, count: int | None = None) -> Finding | None:
        """The finding of `code` when it flags any row (`rows`, or `count`), with its examples
        (built only then), else None."""
        count = int(np.count_nonzero(rows)) if count is None else count
        if count == 0:
            return None
        finding = cls(code, count, rank_by=rank_by)
        if examples is not None:
            finding.add_examples(examples())
        return finding

    def fact(self, key: str, value: float, rule: str) -> None:
        self.merge_rules[key] = rule
        old = self.facts.get(key)
        if old is None:
            self.facts[key] = value
        elif rule == "sum":
            self.facts[key] = old + value
        elif rule == "max":
            self.facts[key] = max(old, value)
        else:
            self.facts[key] = min(old, value)

    def add_examples(self, examples: list[dict[str, Any]]) -> None:
        merged = self.examples + examples
        if self.rank_by:
            merged.sort(key=lambda item: (-item[self.rank_by], item["row"]))
        else:
            merged.sort(key=lambda item: item["row"])
        self.examples = merged[:MAX_EXAMPLES]

    def merge(self, other: Finding) -> None:
        self.rows += other.rows
        for key, value in other.facts.items():
            self.fact(key, value, other.merge_rules[key])
        self.rank_by = self.rank_by or other.rank_by
        self.add_examples(other.examples)



class ExampleFloors:
    """For each ranked rule, the last of the MAX_EXAMPLES examples the totals keep so far, as (key,
    row), shared with the chunks being scored: a chunk whose best candidate does not come before it
    can add none, and makes no records (a binary dump's 300 chunks spent ~30% of their Python there).
    Each cut is one tuple, assigned whole: read without a lock, a stale one is an earlier last
    example, which lets more chunks through, never fewer."""

    def __init__(self) -> None:
        self.cuts: dict[str, tuple[float, int]] = {}

    def follow(self, findings: dict[str, Finding]) -> None:
        for code, finding in findings.items():
            if finding.rank_by and len(finding.examples) == MAX_EXAMPLES:
                last = finding.examples[-1]
                self.cuts[code] = (last[finding.rank_by], last["row"])

    def admits(self, code: str, key: Any, row: int) -> bool:
        """Whether an example (key, row) would come before the last one kept (Finding.add_examples'
        order: key descending, ties to the lower row)."""
        cut = self.cuts.get(code)
        if cut is None or key is None or cut[0] is None or key != key or cut[0] != cut[0]:  # NaN: let it through
            return True
        return key > cut[0] or (key == cut[0] and row < cut[1])


@dataclass
class ChunkView:
    """What the rules see of one chunk."""

    offset: int
    scores: npt.NDArray
    targets: npt.NDArray | None
    ids: npt.NDArray | None
    stats: SampleStats  # loss: the true loss (NaN on ignored rows)
    ignored: npt.NDArray[np.bool_]
    kind: str
    num_classes: int
    score_dtype: str
    label_names: bool  # labels were class names mapped by --classes
    binary: Any = None  # a binary head's rows as stored (binary.BinaryRows); None for a softmax



def _examples(view: ChunkView, rows: npt.NDArray[np.bool_], **columns: Any) -> list[dict[str, Any]]:
    """Up to MAX_EXAMPLES example rows (the first ones) with the given per-row values."""
    return _rows(view, np.flatnonzero(rows)[:MAX_EXAMPLES], columns)


def _rows(view: ChunkView, picked: npt.NDArray, columns: dict[str, Any]) -> list[dict[str, Any]]:
    """The example records of the `picked` rows: each column (an array, or LabelAt) at each row."""
    from xentcli.binary import RowLookup

    rows = picked.tolist()
    # a column a binary chunk's one pass did not keep (binary.RowLookup) is computed for the rows in one call, not one a row
    at_rows = {name: values[np.asarray(picked, np.int64)] for name, values in columns.items() if isinstance(values, RowLookup)}
    out = []
    for k, i in enumerate(rows):
        item: dict[str, Any] = {"row": view.offset + i}
        if view.ids is not None:
            item["id"] = id_at(view.ids, i)
        for name, values in columns.items():
            item[name] = plain(at_rows[name][k] if name in at_rows else values[i])  # NaN and inf stay floats: JSON writes them as null
        out.append(item)
    return out


def _nan_classes(view: ChunkView, rows: npt.NDArray[np.bool_], test: Callable[[npt.NDArray], npt.NDArray]) -> npt.NDArray:
    """For each flagged row, the first few class positions where `test` holds (as text). A binary
    head's one score is class 1's logit, however the chunk holds it (as [0, z] beside labels, as
    stored beside soft targets): its class is 1."""
    text = np.empty(len(rows), dtype=object)
    binary = view.binary is not None and view.binary.raw.ndim == 1
    for i in np.flatnonzero(rows)[:MAX_EXAMPLES].tolist():
        where = np.flatnonzero(test(np.atleast_1d(view.binary.raw[i]))) + 1 if binary else np.flatnonzero(test(view.scores[i]))
        text[i] = ", ".join(map(str, where[:5].tolist())) + (" …" if where.size > 5 else "")
    return text



def top_rows(rows: npt.NDArray[np.bool_], key: npt.NDArray) -> npt.NDArray[np.int64]:
    """The (up to) MAX_EXAMPLES example rows of a ranked rule (ranking.top_rows)."""
    return ranking.top_rows(rows, key, MAX_EXAMPLES)


class LabelAt:
    """The label column of the examples, looked up row by row (five rows need no chunk-sized
    array): the class number, −1 where the label is not a whole number."""

    def __init__(self, stats: SampleStats) -> None:
        self.stats = stats

    def __getitem__(self, row: int) -> int:
        return int(self.stats.label[row]) if self.stats.label_is_int[row] else -1


class RowMasks:
    """The rows each per-row rule flags in one chunk, each mask computed on first use.

    The rules' masks are declared in their records (rules.py) over the pieces kept here; the numpy
    tally (tally.py) counts them, the C tally (_ctally.c) mirrors them, and diagnose_chunk takes
    its example rows from them. XE104's mask counts its candidates, rows within [0, 1], whose sums
    its per-chunk function then checks.
    """

    def __init__(self, view: ChunkView, tally: Any = None) -> None:
        self.view = view
        self.tally = tally  # the chunk's tally (tally.ChunkTally), when diagnose_chunk looks
        stats = view.stats
        self.top = stats.score_max if stats.score_max is not None else np.full(stats.loss.size, np.nan)
        self.bottom = stats.score_min if stats.score_min is not None else self.top
        self.threshold = outlier_threshold(view.num_classes, view.binary is not None)
        self.limit = overflow_limit(view.score_dtype)
        self.log_probs_tolerance = not_log_probs_tolerance(view.score_dtype)

    def of(self, code: str) -> npt.NDArray[np.bool_]:
        """The rows rule `code` flags in this chunk: its record's mask (all False where the rule does
        not apply to this kind of input)."""
        rule = RULES[code]
        mask = None if rule.softmax_only and self.view.binary is not None else rule.mask
        with np.errstate(invalid="ignore", over="ignore"):
            rows = None if mask is None else mask(self)
        return np.zeros(self.stats.loss.size, dtype=bool) if rows is None else rows

    @property
    def stats(self) -> SampleStats:
        return self.view.stats

    @property
    def sparse(self) -> bool:
        return self.view.targets is None

    @cached_property
    def label_rows(self) -> npt.NDArray[np.bool_] | None:
        """The rows whose target is a class label, which the label rules (XE201–XE204, XE208) judge:
        every row of sparse labels, and in a binary head's chunk of soft targets the rows whose target
        is not fractional (scored as labels: engine._whole_targets_as_labels), so that a row is judged
        as it is scored, whatever its neighbours; None for dense targets."""
        from xentcli.binary import fractional

        binary = self.view.binary
        if self.sparse:
            return np.ones(self.stats.loss.size, dtype=bool)
        if binary is not None and binary.soft and binary.raw.ndim == 1:
            return ~fractional(binary.targets)
        return None

    def on_labels(self, rows: Callable[[], npt.NDArray[np.bool_]]) -> npt.NDArray[np.bool_] | None:
        """A label rule's mask: `rows` among the rows whose target is a label (None: no such rows)."""
        if self.sparse:  # every row's target is a label
            return rows()
        at = self.label_rows
        return None if at is None else rows() & at

    @cached_property
    def shown_label(self) -> LabelAt:
        return LabelAt(self.view.stats)

    @cached_property
    def target_sums(self) -> npt.NDArray[np.float64]:
        assert self.view.targets is not None
        return self.view.targets.sum(axis=1, dtype=np.float64)

    @cached_property
    def target_positives(self) -> npt.NDArray[np.int64]:
        assert self.view.targets is not None
        return np.count_nonzero(self.view.targets, axis=1)

    @cached_property
    def multi_label(self) -> npt.NDArray[np.bool_]:
        """Dense target rows with several positives (XE206): entries in [0, 1], as multi-hot rows hold
        (found in review: rows of logits passed as targets, negative entries and all, were called
        multi-label; they are not distributions, XE207)."""
        t = self.view.targets
        assert t is not None
        ones = np.count_nonzero(t == 1, axis=1)
        with np.errstate(invalid="ignore"):
            in_range = ((t >= 0) & (t <= 1)).all(axis=1)
        return in_range & ((ones >= 2) | ((self.target_sums > 1 + PROBS_SUM_TOLERANCE) & (np.count_nonzero(t >= 0.5, axis=1) >= 2)))

    @cached_property
    def label(self) -> npt.NDArray[np.int64]:
        """The labels, −1 where a label is not a whole number (as LabelAt shows them)."""
        return np.where(self.view.stats.label_is_int, self.view.stats.label, -1)

    @cached_property
    def nan_rows(self) -> npt.NDArray[np.bool_]:
        return np.isnan(self.top) | np.isnan(self.bottom)

    @cached_property
    def inf_rows(self) -> npt.NDArray[np.bool_]:
        return ~self.nan_rows & (np.isinf(self.top) | np.isinf(self.bottom))

    @cached_property
    def masked(self) -> npt.NDArray[np.bool_]:
        """Rows whose infinite scores are −inf masks off the target: no +inf, and a finite loss
        where the row is scored (an ignored row or an unusable label has no loss to judge by)."""
        stats, view = self.view.stats, self.view
        scored = stats.label_ok & ~view.ignored
        return self.inf_rows & (self.top < np.inf) & ~(scored & ~np.isfinite(stats.loss))

    @cached_property
    def finite(self) -> npt.NDArray[np.bool_]:
        return ~self.nan_rows & ~self.inf_rows

    @cached_property
    def magnitude(self) -> npt.NDArray:
        return np.maximum(np.abs(self.top), np.abs(self.bottom))

    @cached_property
    def counted(self) -> npt.NDArray[np.bool_]:
        return self.view.stats.counted & ~self.view.ignored

    @cached_property
    def sparse_labels(self) -> npt.NDArray[np.bool_]:
        """Integer labels that are not ignored (XE202 looks at their range)."""
        at = self.label_rows
        labels = self.view.stats.label_is_int & ~self.view.ignored
        return labels if at is None else labels & at


