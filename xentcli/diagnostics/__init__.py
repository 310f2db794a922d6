"""Diagnostics: why a loss is wrong. A registry of rules, one record each (rules.py), found per
chunk in the same pass as the loss or at the end from the merged totals (run.py); findings merge
like the aggregates: counts add, facts take their declared min/max/sum, and up to five example
rows are kept (the first rows, or the most extreme by a declared key, ties to the lower row)."""

from xentcli.diagnostics import rules  # noqa: F401 — declares every rule into RULES
from xentcli.diagnostics.registry import (
    CONFIDENT, LOG_PROBS_TOLERANCE, MAX_EXAMPLES, PROBS_SUM_TOLERANCE, RULES, SEVERITIES, Rule, not_log_probs_tolerance,
    outlier_threshold, overflow_limit, selected, tallied_codes,
)
from xentcli.diagnostics.run import diagnose_chunk, finalize, merge_findings
from xentcli.diagnostics.view import ChunkView, ExampleFloors, Finding, LabelAt, RowMasks, top_rows

__all__ = [
    "CONFIDENT", "LOG_PROBS_TOLERANCE", "MAX_EXAMPLES", "PROBS_SUM_TOLERANCE", "RULES", "SEVERITIES", "ChunkView", "ExampleFloors",
    "Finding", "LabelAt", "RowMasks", "Rule", "diagnose_chunk", "finalize", "merge_findings", "not_log_probs_tolerance",
    "outlier_threshold", "overflow_limit", "selected", "tallied_codes", "top_rows",
]
