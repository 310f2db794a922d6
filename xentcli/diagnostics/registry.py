"""The registry: each diagnostic declared once as a frozen record (ruff's rule registry is the model).

A record holds the texts `xent explain` prints, the message and hint of a finding, and how the rule
is found: a row mask over a chunk (optionally counted by the C tally, with examples ranked by a
column), a per-chunk function for rules that need more than a mask, or an end-of-run check over the
merged totals. Every consumer — the per-chunk pass, `finalize`, `explain`, JSON, the C tally's
order — loops over RULES. Codes are never reused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SEVERITIES = ("error", "warning", "info")
MAX_EXAMPLES = 5
# Largest |logit| whose exp() is finite in the dump's dtype: log(finfo.max).
OVERFLOW_LIMIT = {"float16": 11.09, "bfloat16": 88.72, "float32": 88.72, "float64": 709.78}
PROBS_SUM_TOLERANCE = 1e-3
LOG_PROBS_TOLERANCE = 1e-4
# How far from 0 a row's logsumexp may be before scores read as log-probabilities are not (XE110):
# half-precision log-probabilities are stored with steps of up to 2^-7 (float16) or 2^-5 (bfloat16)
# at |log p| ≈ 10, and Σp inherits that relative error.
NOT_LOG_PROBS_TOLERANCE = {"float16": 1e-2, "bfloat16": 1e-1}
CONFIDENT = 0.99
COLLAPSE_SHARE = 0.95
OUTLIER_FACTOR = 3.0  # loss above 3 · log C


@dataclass(frozen=True)
class Rule:
    """One diagnostic. `mask` (RowMasks → rows) makes it a per-row rule; `tallied` rules are counted
    by the C tally too, in registry order (`trigger`: the tally slot that says whether to look);
    `ranked`: its example rows are the tally's (largest `rank_by`); `columns` gives the example
    columns (name → per-row values); `chunk` replaces the mask for rules that need more; `facts` adds merged facts;
    `check` is an end-of-run rule over the totals. `message`/`hint`/`show`/`count`/`extra` make
    the record of a finding at the end."""

    code: str
    name: str
    severity: str
    summary: str
    why: str
    fix: str
    example: str
    hint: str | Callable[[Any, Any], str] = ""  # text, or (finding, totals) → text
    message: Callable[..., str] | None = None  # (finding, totals) → the message
    mask: Callable[[Any], Any] | None = None
    applies: Callable[[Any], bool] | None = None  # looked for in this chunk at all (default: yes)
    with_examples: bool = True  # the finding lists example rows
    softmax_only: bool = False  # a per-row rule about a softmax's rows: never flags a sigmoid head's (binary.py)
    tallied: bool = False
    trigger: str | None = None
    ranked: bool = False
    rank_by: str | None = None
    columns: Callable[[Any], dict[str, Any]] | None = None
    chunk: Callable[[Any], Any] | None = None
    facts: Callable[[Any, Any], None] | None = None
    show: Callable[[Any, Any], bool] | None = None
    count: Callable[[Any, Any], int] | None = None
    extra: Callable[[Any, Any], dict[str, Any]] | None = None
    check: Callable[[Any, Any], Any] | None = None

    def doc(self) -> dict[str, str]:
        """What `xent explain` shows, in text and JSON alike."""
        return {key: getattr(self, key) for key in ("code", "name", "severity", "summary", "why", "fix", "example")}


RULES: dict[str, Rule] = {}


def declare(rule: Rule) -> None:
    assert rule.code not in RULES and rule.severity in SEVERITIES, rule.code
    RULES[rule.code] = rule


def tallied_codes() -> tuple[str, ...]:
    """The rules the C tally counts, in its order (_ctally.c's enum; checked when it loads)."""
    return tuple(code for code, rule in RULES.items() if rule.tallied)


def selected(code: str, select: tuple[str, ...] | None, ignore: tuple[str, ...]) -> bool:
    """ruff-style selection by code prefix: --select XE2 keeps XE201 … XE209."""
    if any(code.startswith(prefix) for prefix in ignore):
        return False
    return select is None or any(code.startswith(prefix) for prefix in select)


def overflow_limit(score_dtype: str) -> float:
    return OVERFLOW_LIMIT.get(score_dtype, OVERFLOW_LIMIT["float32"])


def not_log_probs_tolerance(score_dtype: str) -> float:
    return NOT_LOG_PROBS_TOLERANCE.get(score_dtype, LOG_PROBS_TOLERANCE)


def outlier_threshold(num_classes: int, binary: bool = False) -> float:
    """3 · log C; for a binary head log 1000 (the target's probability under 0.1%): three times
    a coin's log 2 is a probability of 1/8, which a good binary model gives a few percent of rows."""
    import math

    return math.log(1000) if binary else OUTLIER_FACTOR * math.log(max(num_classes, 2))
