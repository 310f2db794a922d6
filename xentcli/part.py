"""A part of a run: what one chunk, one Dask task or one whole run adds to the totals.

Parts merge in input order. Within one run the chunks' rows are numbered already; a part read on
its own (a task over some row groups, another run's partial file) numbers its rows and its
positional sequences from 0, and `then` shifts them past everything before it — so merging the
parts of an input in order gives what one run over the whole input gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xentcli.accumulate import ClusterRuns, LossSummary, SequenceTotals
from xentcli.diagnostics import Finding, merge_findings
from xentcli.frameworks import FrameworkSummary


@dataclass
class Part:
    """The mergeable totals of some rows: aggregates, the frameworks' sums, per-sequence runs, the
    diagnostics' findings; `samples`: one past the last positional sequence number (0: none or
    keyed sequences); `weight_total`: every row's sample weight summed (None: no weights)."""

    summary: LossSummary
    frameworks: dict[str, FrameworkSummary] = field(default_factory=dict)
    sequences: SequenceTotals = field(default_factory=SequenceTotals)
    findings: dict[str, Finding] = field(default_factory=dict)
    samples: int = 0
    weight_total: float | None = None

    def merge(self, other: Part) -> None:
        """Add a part whose rows are numbered in this run already (a chunk of it)."""
        self.summary.merge(other.summary)
        merge_findings(self.findings, other.findings)
        self.sequences.merge(other.sequences)
        for name, partial in other.frameworks.items():
            if name in self.frameworks:
                self.frameworks[name].merge(partial)
            else:
                self.frameworks[name] = partial
        self.samples = max(self.samples, other.samples)
        if other.weight_total is not None:
            self.weight_total = (self.weight_total or 0.0) + other.weight_total

    def then(self, other: Part) -> None:
        """Add the part that follows these rows in input order, its rows numbered from 0."""
        other.shift(self.summary.rows, self.samples)
        self.merge(other)

    def shift(self, rows: int, samples: int) -> None:
        """Number the rows from `rows` and the positional sequences from `samples` (in place)."""
        if rows:
            self.summary.moments.shift(rows)
            if self.summary.weighted_sums is not None:
                self.summary.weighted_sums.shift(rows)
            self.summary.worst.rows = self.summary.worst.rows + rows
            for finding in self.findings.values():
                finding.examples = [{**item, "row": item["row"] + rows} if "row" in item else item for item in finding.examples]
        if samples and self.samples:  # positional sequence numbers (not --group-col keys, which name themselves)
            self.samples += samples
            self.sequences.ids = [ids + samples for ids in self.sequences.ids]
            worst = self.summary.worst
            if "sample" in worst.columns:
                worst.columns = {**worst.columns, "sample": worst.columns["sample"] + samples}
            for clusters in (self.summary.clusters, self.summary.accuracy_clusters):
                if isinstance(clusters, ClusterRuns):
                    for run in {id(r): r for r in (clusters.first, clusters.last) if r is not None}.values():
                        run[0] += samples


def chunk_part(partial: LossSummary, frameworks: dict[str, FrameworkSummary], sequences: SequenceTotals | None,
               findings: dict[str, Finding], sample: Any, positional: bool, weights: Any) -> Part:
    """One chunk's part (engine.ChunkResult holds its pieces)."""
    samples = int(sample[-1]) + 1 if positional and sample is not None and sample.size else 0
    return Part(partial, frameworks, sequences or SequenceTotals(), findings, samples,
                None if weights is None else float(weights.sum()))
