"""`xent check`: the gates a run must pass, decided on a finished report. No I/O here."""

from __future__ import annotations

import math
from typing import Any

from xentcli.diagnostics import SEVERITIES
from xentcli.config import Gates
from xentcli.errors import OptionError
from xentcli.plain import distinct_digits, group_label
from xentcli.report import Report
from xentcli.slices import holm_failures


def _breaks(value: float, limit: float, upper: bool) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True  # an undefined figure cannot pass a gate
    return value > limit if upper else value < limit


def evaluate(report: Report, gates: Gates) -> dict[str, Any]:
    """{"passed", "reasons", "gates", "gate_reasons"}: every gate with its value and limit, why the run
    failed, and the reasons that are each gate's (aligned with "gates"; the CI formats attach them
    to their gate — never by matching text, which data can steer)."""
    summary = report.summary
    checks = []
    bound = gates.gate_on == "upper"  # the interval's pessimistic side: the loss's upper, the accuracy's lower
    for name, key, limit, upper in (
        ("mean loss" + (" (upper bound)" if bound else ""), "loss_mean", gates.max_loss, True),
        ("non-finite rows", "nonfinite", gates.max_nonfinite, True),
        # a multi-label head's accuracy is its exact-match rate: the gate says so, as the summary does
        (("exact match" if getattr(report.input, "head", "softmax") == "multilabel" else "accuracy") + (" (lower bound)" if bound else ""),
         "accuracy", gates.min_accuracy, False),
        ("loss p99", "loss_p99", gates.max_loss_p99, True),
        ("ECE", "ece", gates.max_ece, True),
    ):
        if limit is None:
            continue
        if key == "ece" and report.calibration is None:
            raise OptionError("--max-ece needs --calibration", hint="add --calibration")
        value = report.calibration["ece"] if key == "ece" else summary[key]  # type: ignore[index]
        if bound and key == "loss_mean":
            value = summary["loss_ci"][1]
        elif bound and key == "accuracy":
            value = summary["accuracy_ci"][0]
        passed = not _breaks(value, limit, upper)
        checks.append({"gate": name, "value": value, "limit": limit, "op": "<=" if upper else ">=", "passed": passed})
    gate_reasons = [
        [] if c["passed"] else [f"{c['gate']} {_pair(c['value'], c['limit'], '>' if c['op'] == '<=' else '<')}"
                                if c["value"] is not None and not (isinstance(c["value"], float) and math.isnan(c["value"]))
                                else f"{c['gate']} is undefined ({_why_undefined(c['gate'], summary)})"]
        for c in checks
    ]
    if gates.max_group_gap is not None:
        confidence = summary.get("confidence", 0.95)
        failed, bound, untestable = holm_failures(report.groups, gates.max_group_gap, confidence)
        small = sum(1 for group in report.groups if group.get("small"))
        checks.append({"gate": "group gap (Holm lower bound)", "value": bound, "limit": gates.max_group_gap, "op": "<=",
                       "passed": not failed and not math.isnan(bound), "untested_groups": small})
        gate_reasons.append(reasons := [])
        if untestable:
            shown = group_label(untestable[0]["by"], untestable[0].get("merged_groups", 0))
            reasons.append(f"group gap (Holm lower bound) is undefined: group {shown} ({untestable[0]['counted']:,} counted {'row' if untestable[0]['counted'] == 1 else 'rows'}) has no "
                           f"standard error (one row, or an infinite spread){' nor do ' + str(len(untestable) - 1) + ' more' if len(untestable) > 1 else ''}")
        elif math.isnan(bound):
            reasons.append("group gap (Holm lower bound) is undefined (no group of --min-group rows or more)")
        for group in failed:
            shown = group_label(group["by"], group.get("merged_groups", 0))
            overall = group["loss_mean"] - group["delta_loss"]
            reasons.append(f"group {shown}: mean loss {_show(group['loss_mean'])} exceeds the overall {_show(overall)} "
                           f"by more than {_show(gates.max_group_gap)} (Holm-adjusted p {_show(group['p_value'])})")
    reasons = [reason for gate in gate_reasons for reason in gate]
    if gates.fail_on != "never":
        worst = SEVERITIES.index(gates.fail_on)
        for item in report.diagnostics:
            if SEVERITIES.index(item["severity"]) <= worst:
                reasons.append(f"{item['code']} {item['name']} ({item['severity']}, {item['rows']:,} {'row' if item['rows'] == 1 else 'rows'})" if item["rows"] else f"{item['code']} {item['name']} ({item['severity']})")
    return {"passed": not reasons, "reasons": reasons, "gates": checks, "gate_reasons": gate_reasons}


def _why_undefined(gate: str, summary: dict[str, Any]) -> str:
    if not summary["counted"]:
        return "no counted rows"
    if "bound" in gate:
        n = summary["counted"]
        if n == 1:
            return "no interval from 1 counted row"
        if summary.get("se_clustered"):  # the standard error is clustered by sequence: its sequences count
            return f"no interval from {n:,} counted rows: clustered by sequence, it needs two sequences or more (or a finite spread)"
        if "weight_sum" in summary:
            return f"no interval from {n:,} counted rows: weighted, it needs two rows of weight above 0 or more (or a finite spread)"
        return f"no interval from {n:,} counted rows: an infinite spread"
    return "the data leave it undefined"


def _show(value: Any, digits: int = 6) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}g}"


def _pair(value: Any, limit: Any, op: str) -> str:
    """'value op limit', with the digits that tell them apart."""
    digits = distinct_digits(value, limit, 6)
    return f"{_show(value, digits)} {op} {_show(limit, digits)}"


def _untested(check: dict[str, Any]) -> str:
    """What a passing group gap did not test: the groups under --min-group (found in review: a PASS
    said nothing of 6 groups of 15 too small to judge)."""
    n = check.get("untested_groups", 0)
    return f" ({n:,} small {'group' if n == 1 else 'groups'} under --min-group not tested)" if n else ""


def verdict_line(result: dict[str, Any], report: Report, gates: Gates | None = None) -> str:
    """The last line of `xent check`, in words a CI log reader understands. With --fail-on never
    the diagnostics decide nothing, and the line does not claim they were clean."""
    if result["passed"]:
        passed = ", ".join(f"{c['gate']} {_pair(c['value'], c['limit'], c['op'])}" + _untested(c) for c in result["gates"])
        if gates is not None and gates.fail_on == "never":
            return "PASS: " + (passed or "no gate given") + " (diagnostics not gated: --fail-on never)"
        return "PASS: no diagnostic at the failing severity" + (f"; {passed}" if passed else "")
    return "FAIL: " + "; ".join(result["reasons"])


def diff_verdict_line(report: Any) -> str:
    """The last line of `xent diff`: the loss delta with its interval, the smallest delta this many
    pairs could show at 80% power (so a user sees when a gate cannot fail), and PASS or FAIL."""
    loss = report.metrics["loss_mean"]
    low, high = loss["ci"]
    # what cannot be computed (no usable pair; one pair has no spread) is said in words, as the tables do, not "nan"
    summary = f"loss Δ {loss['delta']:+.6g}" if math.isfinite(loss["delta"]) else "loss Δ undefined"
    summary += f" [{low:+.4g}, {high:+.4g}]" if math.isfinite(low) and math.isfinite(high) else " (no interval)"
    summary += f" p {loss['p_value']:.3g}" if math.isfinite(loss["p_value"]) else ""
    if math.isfinite(loss["min_detectable_delta"]):
        summary += f"; smallest Δ detectable at 80% power {loss['min_detectable_delta']:.4g}"
    if report.passed:
        # found in review: a clear regression ended 'PASS: …' where no gate was given to fail on
        return "PASS: " + summary if report.gated else "PASS (no gate on the delta given: --fail-on-regression, " \
            "--require-noninferior or --max-accuracy-drop judge it): " + summary
    return "FAIL: " + "; ".join(report.reasons) + " (" + summary + ")"
