"""The result of a run as one plain dataclass: what was read, the aggregates, the breakdowns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xentcli.config import LossOptions
from xentcli.sources import InputDescription


@dataclass
class Report:
    """Everything a renderer needs; no numpy arrays, no file handles."""

    input: InputDescription
    summary: dict[str, Any]
    per_class: list[dict[str, Any]] = field(default_factory=list)
    worst: list[dict[str, Any]] = field(default_factory=list)
    id_column: str | None = None
    like: dict[str, Any] | None = None  # the --like framework's numbers (FrameworkSummary.document)
    compare: list[dict[str, Any]] = field(default_factory=list)  # --compare-frameworks
    loss: LossOptions = field(default_factory=LossOptions)  # the loss as asked (render/explanations.py reads it)
    zero_weight_rows: int = 0  # rows whose sample weight is 0 (Keras still counts them)
    per_sequence: list[dict[str, Any]] = field(default_factory=list)  # --per-sequence
    calibration: dict[str, Any] | None = None  # --calibration: calibration.Calibration.report
    groups: list[dict[str, Any]] = field(default_factory=list)  # --by: slices.GroupTotals.report
    confusions: list[dict[str, Any]] = field(default_factory=list)  # --confusions K
    confusions_exact: bool = True  # False when more distinct error pairs than confusions.MAX_PAIRS
    diagnostics: list[dict[str, Any]] = field(default_factory=list)  # most severe first
    histogram: list[dict[str, Any]] = field(default_factory=list)  # the counted losses' log-spaced bins (histogram.py)


@dataclass
class DiffReport:
    """`xent diff`'s result: each side's own report, how the rows were paired, the paired metrics,
    the flips, the most regressed and improved pairs, the gates and the diagnostics."""

    base: Report
    candidate: Report
    pairing: dict[str, Any]
    confidence: float
    metrics: dict[str, dict[str, Any]]
    bootstrap: dict[str, Any]
    flips: dict[str, int]
    regressed: list[dict[str, Any]]
    improved: list[dict[str, Any]]
    diagnostics: list[dict[str, Any]] = field(default_factory=list)  # each with its "side"
    groups: list[dict[str, Any]] = field(default_factory=list)  # --by: compare.group_metrics
    delta_histogram: list[dict[str, Any]] = field(default_factory=list)  # the usable pairs' d, log-spaced bins
    gates: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # why the gates failed
    gated: bool = False  # a gate or --fail-on judged it (else PASS says no gate was given)

    @property
    def passed(self) -> bool:
        return not self.reasons
