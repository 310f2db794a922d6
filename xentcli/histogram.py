"""Histograms drawn from the mergeable accumulators, never from per-row data: the loss histogram
(and diff's Δloss one) from the quantile sketch's log-spaced buckets, and text bars for the
terminal (`--plot`). The same dump gives the same bins whatever the chunking: the sketch's counts
merge exactly and the bin edges follow from its keys alone."""

from __future__ import annotations

import math
import sys
from typing import Any

from xentcli.sketch import QuantileSketch

BINS_PER_SIDE = 16


def _side(sketch: QuantileSketch, keys: list[tuple[int, int]], sign: int, bins: int) -> list[dict[str, Any]]:
    """Equal-width groups of consecutive bucket keys (log-spaced values): bucket k holds (γ^(k−1), γ^k]."""
    if not keys:
        return []
    low, high = keys[0][0], keys[-1][0]
    width = max(1, math.ceil((high - low + 1) / bins))
    counts: dict[int, int] = {}
    for key, count in keys:
        counts[(key - low) // width] = counts.get((key - low) // width, 0) + count
    out = []
    for index in sorted(counts):
        first, last = low + index * width, min(high, low + (index + 1) * width - 1)
        lo, hi = _power(sketch.gamma, first - 1), _power(sketch.gamma, last)
        out.append({"lo": lo, "hi": hi, "count": counts[index]} if sign > 0 else {"lo": -hi, "hi": -lo, "count": counts[index]})
    return out if sign > 0 else out[::-1]


def _power(gamma: float, key: int) -> float:
    """γ^key, an edge of the buckets: the largest float where the edge passes float64's range (the
    bucket of values near the largest float ends there)."""
    try:
        return min(gamma**key, sys.float_info.max)
    except OverflowError:
        return sys.float_info.max


def log_histogram(sketch: QuantileSketch, bins: int = BINS_PER_SIDE) -> list[dict[str, Any]]:
    """Bins of the sketched values, ascending: negatives (log-spaced by magnitude), exact zeros
    (x = 0) in a bin of their own, positives; the counts add up to the values sketched."""
    out = _side(sketch, sketch.negative.items(), -1, bins)
    if sketch.zeros:
        out.append({"lo": 0.0, "hi": 0.0, "count": sketch.zeros})
    return out + _side(sketch, sketch.positive.items(), 1, bins)


BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(fraction: float, width: int, ascii_only: bool) -> str:
    """A bar of `fraction` of `width` cells: block characters in eighths, or '#' in whole cells."""
    fraction = min(max(fraction, 0.0), 1.0)
    if ascii_only:
        return "#" * round(fraction * width)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (BLOCKS[part] if part else "")


def _edge(value: float) -> str:
    return "0" if value == 0 else f"{value:.3g}"


def histogram_lines(title: str, bins: list[dict[str, Any]], width: int, ascii_only: bool) -> list[str]:
    """One line per bin: its edges, a bar, the count and the share."""
    total = sum(b["count"] for b in bins)
    lines = [title]
    if not total:
        return lines + ["  (nothing counted)"]
    dash = " .. " if ascii_only else " – "
    labels = [("0" if b["lo"] == b["hi"] == 0 else f"{_edge(b['lo'])}{dash}{_edge(b['hi'])}") for b in bins]
    label_width = max(len(label) for label in labels)
    counts = [f"{b['count']:,}" for b in bins]
    count_width = max(len(c) for c in counts)
    bar_width = max(10, width - label_width - count_width - 12)
    top = max(b["count"] for b in bins)
    for label, b, count in zip(labels, bins, counts):
        drawn = bar(b["count"] / top, bar_width, ascii_only)
        lines.append(f"  {label:>{label_width}} {'|' if ascii_only else '│'}{drawn:<{bar_width}} {count:>{count_width}} {b['count'] / total:6.1%}")
    return lines


def reliability_lines(table: list[dict[str, Any]], width: int, ascii_only: bool, binary: bool) -> list[str]:
    """Per calibration bin: a bar of the observed accuracy (positive rate) and a marker at the mean
    confidence; a well calibrated bin has the marker at the bar's end."""
    observed = "positive rate" if binary else "accuracy"
    lines = [f"Reliability: bar = {observed}, {'|' if ascii_only else '┃'} = {'mean P(y = 1)' if binary else 'confidence'}"]
    bar_width = max(10, width - 40)
    for row in table:
        drawn = list(bar(row["accuracy"], bar_width, ascii_only).ljust(bar_width))
        mark = min(bar_width - 1, int(row["confidence"] * bar_width))
        drawn[mark] = "|" if ascii_only else "┃"
        lines.append(f"  ({row['lo']:.3f}, {row['hi']:.3f}] {''.join(drawn)} {row['accuracy']:.3f} vs {row['confidence']:.3f} {row['count']:>7,}")
    return lines
