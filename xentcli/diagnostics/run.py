"""The two loops over the registry: per chunk (rules that flag rows) and at the end (the records)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from xentcli.diagnostics.registry import RULES, SEVERITIES, Rule, selected
from xentcli.diagnostics.view import ChunkView, ExampleFloors, Finding, RowMasks, _examples, _rows, top_rows
from xentcli.plain import plain


def diagnose_chunk(view: ChunkView, tally: Any, floors: ExampleFloors | None = None) -> dict[str, Finding]:
    """Every per-chunk rule on one chunk; only rules that found something are returned. For rules
    the tally counts, its count says whether to look: clean chunks build no masks and no examples.
    `floors`: the ranked rules' last examples so far (a chunk that cannot add one makes none)."""
    masks = RowMasks(view, tally)
    found: dict[str, Finding] = {}
    with np.errstate(invalid="ignore", over="ignore"):
        for rule in RULES.values():
            if rule.check is not None or (rule.mask is None and rule.chunk is None):
                continue
            trigger = rule.trigger or (rule.code if rule.tallied else None)
            if trigger is not None and not tally.hits[trigger]:
                continue
            if rule.applies is not None and not rule.applies(masks):
                continue
            finding = rule.chunk(masks) if rule.chunk is not None else _by_mask(rule, masks, floors)
            if finding is not None:
                if rule.facts is not None:
                    rule.facts(masks, finding)
                found[rule.code] = finding
    return found


def _by_mask(rule: Rule, masks: RowMasks, floors: ExampleFloors | None = None) -> Finding | None:
    """A per-row rule's finding: its rows, and as examples the first of them, the rows with the
    largest `rank_by` value, or (ranked rules) the rows the tally kept — none when the best of them
    cannot enter the examples kept so far (`floors`)."""
    if rule.ranked:
        count = masks.tally.hits[rule.code]
        picked = masks.tally.ranked[rule.code]
        columns = rule.columns(masks, None)
        if floors is not None and rule.rank_by is not None and picked.size:
            keys = np.asarray(columns[rule.rank_by][np.asarray(picked, np.int64)]).tolist()
            rows = (picked + masks.view.offset).tolist()
            if not any(floors.admits(rule.code, plain(key), row) for key, row in zip(keys, rows)):
                return Finding.of(rule.code, np.empty(0, bool), None, rule.rank_by, count=count)
        return Finding.of(rule.code, np.empty(0, bool), lambda: _rows(masks.view, picked, columns), rule.rank_by, count=count)
    rows = masks.of(rule.code)
    if not rows.any():
        return None
    if not rule.with_examples:
        return Finding.of(rule.code, rows)
    columns = rule.columns(masks, rows) if rule.columns is not None else {}
    if rule.rank_by is not None:
        return Finding.of(rule.code, rows, lambda: _rows(masks.view, top_rows(rows, columns[rule.rank_by]), columns), rule.rank_by)
    return Finding.of(rule.code, rows, lambda: _examples(masks.view, rows, **columns))


def merge_findings(total: dict[str, Finding], partial: dict[str, Finding]) -> None:
    for code, finding in partial.items():
        if code in total:
            total[code].merge(finding)
        else:
            total[code] = finding


@dataclass
class Totals:
    """What the end-of-run rules see: the merged summary, per-class sums and the input."""

    summary: dict[str, Any]
    per_class: Any  # accumulate.PerClass
    info: Any  # sources.InputDescription
    calibration: dict[str, Any] | None = None  # the calibration report, with --calibration
    groups_merged: int = 0  # --by: groups beyond --max-groups, merged into "(other)"

    @property
    def rows(self) -> int:
        return self.summary["rows"]

    @property
    def num_classes(self) -> int:
        return self.info.num_classes


def finalize(
    findings: dict[str, Finding],
    summary: dict[str, Any],
    per_class: Any,
    info: Any,
    select: tuple[str, ...] | None = None,
    ignore: tuple[str, ...] = (),
    calibration: dict[str, Any] | None = None,
    groups_merged: int = 0,
) -> list[dict[str, Any]]:
    """The diagnostics of the run, most severe first: one record per finding and per end-of-run
    rule that holds, each with its message and hint."""
    totals = Totals(summary, per_class, info, calibration, groups_merged)
    out = []
    for rule in RULES.values():
        if not selected(rule.code, select, ignore):
            continue
        if rule.check is not None:
            found = rule.check(findings, totals)
            if found is not None:
                rows = found.pop("rows")
                message = found.pop("message")
                hint = found.pop("hint", rule.hint)
                out.append(_record(rule, rows, message, hint, [], totals, found))
            continue
        finding = findings.get(rule.code)
        if finding is None or (rule.show is not None and not rule.show(finding, totals)):
            continue
        assert rule.message is not None
        hint = rule.hint(finding, totals) if callable(rule.hint) else rule.hint
        rows = rule.count(finding, totals) if rule.count is not None else finding.rows
        examples = finding.examples if rule.with_examples else []
        extra = rule.extra(finding, totals) if rule.extra is not None else {}
        out.append(_record(rule, rows, rule.message(finding, totals), hint, examples, totals, extra))
    order = {severity: i for i, severity in enumerate(SEVERITIES)}
    out.sort(key=lambda d: (order[d["severity"]], d["code"]))
    return out


def _record(rule: Rule, rows: int, message: str, hint: str, examples: list[dict[str, Any]], totals: Totals,
            extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": rule.code,
        "name": rule.name,
        "severity": rule.severity,
        "rows": rows,
        "fraction": rows / totals.rows if totals.rows else 0.0,
        "message": message,
        "hint": hint,
        "examples": examples,
        **extra,
    }
