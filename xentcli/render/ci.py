"""CI formats of a finished run (`--output-format github|gitlab|junit|markdown`): GitHub Actions
workflow commands, a GitLab Code Quality report, JUnit XML and GitHub-flavoured markdown. Each is a
pure function of a CiRun, built from what `score`, `check` or `diff` decided; every text from the
data (paths, class and id names, messages quoting them) is escaped for the format it lands in."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from xentcli.diagnostics import SEVERITIES
from xentcli.plain import distinct_digits, group_label
from xentcli.render.escape import number_text as _number, terminal, text_of

FORMATS = ("github", "gitlab", "junit", "markdown")


@dataclass
class Gate:
    name: str
    passed: bool
    detail: str  # the value against its limit, in words
    reason: str = ""  # why it failed


@dataclass
class Diagnostic:
    code: str
    name: str
    severity: str
    rows: int
    message: str
    hint: str
    failing: bool  # at or above --fail-on: it fails the run
    side: str | None = None  # diff: base, candidate or pairs


@dataclass
class CiRun:
    command: str  # "xent check", …
    path: str
    passed: bool
    verdict: str
    summary: list[tuple[str, str]] = field(default_factory=list)
    gates: list[Gate] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    failing_reasons: list[str] = field(default_factory=list)  # the diagnostics' part of the reasons
    side_paths: dict[str, str] = field(default_factory=dict)  # diff: the dump each side's diagnostics are about

    def path_of(self, d: Diagnostic) -> str:
        """The file a diagnostic annotates: its side's dump (diff), else the run's."""
        return self.side_paths.get(d.side or "", self.path)


def _diagnostics(items: list[dict[str, Any]], fail_on: str | None) -> list[Diagnostic]:
    worst = SEVERITIES.index(fail_on) if fail_on in SEVERITIES else -1
    return [Diagnostic(item["code"], item["name"], item["severity"], int(item.get("rows") or 0), item["message"], item.get("hint", ""),
                       SEVERITIES.index(item["severity"]) <= worst, item.get("side")) for item in items]


def counts_and_mean(report: Any) -> list[tuple[str, Any]]:
    """The summary's first lines in every report (CI formats, HTML): rows, counted, ignored (when
    any: the counts add up), and the mean loss, labelled weighted when it is."""
    s = report.summary
    items: list[tuple[str, Any]] = [("rows", s["rows"]), ("counted", s["counted"])]
    if s.get("ignored"):
        items.append(("ignored", s["ignored"]))
    return items + [("mean loss (weighted)" if "weight_sum" in s else "mean loss", s["loss_mean"])]


def _summary(report: Any) -> list[tuple[str, str]]:
    s = report.summary
    rows = [(name, _number(value)) for name, value in counts_and_mean(report)] + [
            ("exact match" if report.input.head == "multilabel" else "accuracy", _number(s["accuracy"])),
            ("non-finite rows", _number(s["nonfinite"])), ("loss p99", _number(s["loss_p99"]))]
    if report.calibration is not None:
        rows.append(("ECE", _number(report.calibration["ece"])))
    return rows


def of_score(report: Any) -> CiRun:
    """`score` has no gates: its error-level diagnostics are what a CI would fail on."""
    diagnostics = _diagnostics(report.diagnostics, "error")
    passed = not any(d.failing for d in diagnostics)
    verdict = "no error-level diagnostic" if passed else "error-level diagnostics: " + ", ".join(d.code for d in diagnostics if d.failing)
    return CiRun("xent score", report.input.path, passed, verdict, _summary(report), [], diagnostics)


def of_check(report: Any, result: dict[str, Any], fail_on: str, verdict: str) -> CiRun:
    gates = []
    for gate, reasons in zip(result["gates"], result["gate_reasons"]):
        digits = distinct_digits(gate["value"], gate["limit"], 6)  # as the text verdict shows it
        detail = f"{_number(gate['value'], digits)} (limit {gate['op']} {_number(gate['limit'], digits)})"
        gates.append(Gate(gate["gate"], gate["passed"], detail, "; ".join(reasons) or f"{gate['gate']} {detail}: outside the limit"))
    return CiRun("xent check", report.input.path, result["passed"], verdict, _summary(report), gates,
                 _diagnostics(report.diagnostics, fail_on))


def of_diff(report: Any, fail_on: str, verdict: str) -> CiRun:
    loss = report.metrics["loss_mean"]
    summary = [("pairs", _number(report.pairing["usable_pairs"])), ("loss base", _number(loss["base"])),
               ("loss candidate", _number(loss["candidate"])), ("loss Δ", _number(loss["delta"])),
               (f"{report.confidence:.0%} CI", f"[{_number(loss['ci'][0])}, {_number(loss['ci'][1])}]"), ("p", _number(loss["p_value"]))]
    gates = []
    for gate in report.gates:
        detail = f"{gate['bound']} {_number(gate['value'])} against {_number(gate['margin'])}"
        failing = gate.get("failed_groups") or []  # a group gate names the groups that fail it, as check's does (found in review)
        named = "; failing: " + ", ".join(f"group {group_label(by)}" for by in failing[:5]) + (
            f" and {len(failing) - 5:,} more" if len(failing) > 5 else "") if failing and not gate["passed"] else ""
        gates.append(Gate(gate["gate"], gate["passed"], detail, f"{gate['gate']}: {detail}{named}"))
    summary.insert(0, ("base → candidate", f"{report.base.input.path} → {report.candidate.input.path}"))
    return CiRun("xent diff", report.candidate.input.path, report.passed, verdict, summary, gates,
                 _diagnostics(report.diagnostics, fail_on if fail_on != "never" else None),
                 side_paths={"base": report.base.input.path, "candidate": report.candidate.input.path})


# ---- GitHub Actions ---------------------------------------------------------------------------

def _gh_data(text: str) -> str:
    """A workflow command's message: % CR LF escaped (docs: 'Workflow commands', escaping); other
    control characters made visible (the log is a terminal)."""
    return terminal(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def _located(path: str) -> str | None:
    """The path an annotation is placed on: a file or folder that exists (a merge's several inputs,
    a glob or a URL name none: GitHub cannot place `file=a.parquet b.parquet`; found in review)."""
    return path if os.path.exists(path) else None


def _gh_file(path: str) -> str:
    located = _located(path)
    return f"file={_gh_property(located)}," if located else ""


def github(run: CiRun) -> str:
    """One ::error / ::warning / ::notice per diagnostic, one ::error per failed gate, the verdict last."""
    level = {"error": "error", "warning": "warning", "info": "notice"}
    lines = []
    for d in run.diagnostics:
        side = f" ({d.side})" if d.side else ""
        lines.append(f"::{level[d.severity]} {_gh_file(run.path_of(d))}title={_gh_property(f'{d.code} {d.name}{side}')}::"
                     + _gh_data(f"{d.message} → {d.hint}" if d.hint else d.message))
    for gate in run.gates:
        if not gate.passed:
            lines.append(f"::error {_gh_file(run.path)}title={_gh_property(f'xent gate: {gate.name}')}::{_gh_data(gate.reason)}")
    # a plain log line, not a workflow command (it starts with PASS/FAIL, never "::"): only made visible, not %-escaped
    word = "PASS" if run.passed else "FAIL"  # (diff's "PASS (no gate on the delta given…" had become "PASS: PASS (…")
    lines.append(terminal(run.verdict if run.verdict.startswith(word) else f"{word}: {run.verdict}"))
    return "\n".join(lines) + "\n"


# ---- GitLab Code Quality ------------------------------------------------------------------------

GITLAB_SEVERITY = {"error": "critical", "warning": "major", "info": "info"}


def gitlab(run: CiRun) -> str:
    """A Code Quality report: one issue per diagnostic and per failed gate; fingerprints hash what
    names the issue (the command, the path, the code or gate, the side), so they are stable across runs."""
    def fingerprint(*parts: str) -> str:
        return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()

    issues = []
    location = {"path": text_of(_located(run.path) or "."), "lines": {"begin": 1}}
    for d in run.diagnostics:
        issues.append({"description": text_of(f"{d.code} {d.name}: {d.message}" + (f" ({d.side})" if d.side else "")),
                       "check_name": d.code, "fingerprint": fingerprint(run.command, run.path, d.code, d.side or ""),
                       "severity": GITLAB_SEVERITY[d.severity], "location": {"path": text_of(_located(run.path_of(d)) or "."), "lines": {"begin": 1}}})
    for gate in run.gates:
        if not gate.passed:
            issues.append({"description": text_of(gate.reason), "check_name": f"xent-gate-{gate.name}",
                           "fingerprint": fingerprint(run.command, run.path, "gate", gate.name), "severity": "critical",
                           "location": location})
    return json.dumps(issues, indent=2, ensure_ascii=False) + "\n"


# ---- JUnit XML -----------------------------------------------------------------------------------

def junit(run: CiRun) -> str:
    """One testsuite; a testcase per gate and per diagnostic code found, failed when the gate failed
    or the code is at or above --fail-on; the suite's counts are its testcases'. XML cannot hold
    most control characters: every text is made visible first."""
    import xml.etree.ElementTree as ET

    suite = ET.Element("testsuite", name=run.command)
    failures = 0
    for gate in run.gates:
        case = ET.SubElement(suite, "testcase", classname="xent.gates", name=text_of(gate.name), time="0")
        if not gate.passed:
            failures += 1
            ET.SubElement(case, "failure", message=text_of(gate.reason), type="gate").text = text_of(gate.detail)
    for d in run.diagnostics:
        name = f"{d.code} {d.name}" + (f" ({d.side})" if d.side else "")
        case = ET.SubElement(suite, "testcase", classname="xent.diagnostics", name=text_of(name), time="0")
        text = text_of(f"{d.message} → {d.hint}" if d.hint else d.message)
        if d.failing:
            failures += 1
            ET.SubElement(case, "failure", message=text_of(d.message), type=d.severity).text = text
        else:
            ET.SubElement(case, "system-out").text = text
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", "0")
    suite.set("time", "0")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


# ---- markdown ------------------------------------------------------------------------------------

_MD_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# A number as number_text writes it (1,234 · 0.507451 · 1e-05 · inf), or an interval of two: nothing
# else is left unescaped (found in review: '[-+0-9.,e []]*' let a path '---' or '1.' through, a rule
# or a list in the rendered page)
_MD_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?|[-+]?inf|nan"
_MD_NUMBER = re.compile(rf"(?:{_MD_NUM})|\[(?:{_MD_NUM}), (?:{_MD_NUM})\]|undefined|True|False|None")


def _md(text: Any) -> str:
    """Markdown text: control characters visible, then every ASCII punctuation character
    backslash-escaped (CommonMark lets any be; it then stands for itself), so no link, image,
    heading, emphasis, HTML or table cell can come from the data."""
    shown = text_of(text)
    if _MD_NUMBER.fullmatch(shown):  # a number (or an interval of them) is safe as it is: no escapes to read
        return shown
    return _MD_PUNCTUATION.sub(r"\\\1", shown)


def markdown(run: CiRun) -> str:
    lines = [f"## {run.command}: {'PASS' if run.passed else 'FAIL'}", "", _md(run.path), "", "| | |", "|---|--:|"]
    lines += [f"| {_md(key)} | {_md(value)} |" for key, value in run.summary]
    if run.gates:
        lines += ["", "### Gates", "", "| gate | value | |", "|---|---|---|"]
        lines += [f"| {_md(g.name)} | {_md(g.detail)} | {'ok' if g.passed else '**FAIL**'} |" for g in run.gates]
    if run.diagnostics:
        lines += ["", "### Diagnostics", "", "| code | name | severity | rows | what and what to do |", "|---|---|---|--:|---|"]
        for d in run.diagnostics:
            what = _md(d.message) + (f" — {_md(d.hint)}" if d.hint else "")
            lines.append(f"| {d.code} | {d.name}{f' ({_md(d.side)})' if d.side else ''} | "
                         f"{'**' + d.severity + '**' if d.failing else d.severity} | {f'{d.rows:,}' if d.rows else ''} | {what} |")
    lines += ["", _md(run.verdict)]
    return "\n".join(lines) + "\n"


def error_report(fmt: str, code: str, message: str, path: str | None) -> str:
    """What a CI format holds when xent cannot judge the dump (exit 2): one error the job shows —
    an ::error, a critical Code Quality issue, a JUnit suite with one error, a markdown heading —
    where stdout held nothing, an empty file a CI job could not read (found in review)."""
    if fmt == "github":
        where = f"file={_gh_property(path)}," if path else ""  # the path as given: the error may be that it names nothing
        return f"::error {where}title={_gh_property(f'xent: {code}')}::{_gh_data(message)}\n"
    if fmt == "gitlab":
        issue = {"description": text_of(message), "check_name": f"xent-{code}",
                 "fingerprint": hashlib.sha256(f"{code}\x1f{path or ''}".encode("utf-8", "surrogatepass")).hexdigest(),
                 "severity": "blocker", "location": {"path": text_of(path or "."), "lines": {"begin": 1}}}
        return json.dumps([issue], indent=2, ensure_ascii=False) + "\n"
    if fmt == "junit":
        import xml.etree.ElementTree as ET

        suite = ET.Element("testsuite", name="xent", tests="1", failures="0", errors="1", skipped="0", time="0")
        case = ET.SubElement(suite, "testcase", classname="xent", name="read and score the dump", time="0")
        ET.SubElement(case, "error", message=text_of(message), type=text_of(code)).text = text_of(message)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    return f"## xent: ERROR\n\n{_md(message)}\n"


def render(run: CiRun, fmt: str) -> str:
    return {"github": github, "gitlab": gitlab, "junit": junit, "markdown": markdown}[fmt](run)
