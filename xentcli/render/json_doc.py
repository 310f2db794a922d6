"""The `--json` document: one object, NaN and ±inf written as null (their count is in the summary)."""

from __future__ import annotations

import json
import re
import math
from typing import Any

from xentcli import __version__
from xentcli.render.explanations import explain_differences
from xentcli.report import DiffReport, Report


def _replace_nonfinite(value: Any) -> Any:
    """`value` with every NaN and ±inf float replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _replace_nonfinite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_nonfinite(item) for item in value]
    return value


def _group_values(by: dict[str, Any]) -> dict[str, Any]:
    """A group's values as data: a non-finite float value is named ("inf", "-inf", "nan"), never
    written as null, which names the group of missing values."""
    return {name: str(value) if isinstance(value, float) and not math.isfinite(value) else value for name, value in by.items()}


LONG_LIST = 100  # top-level lists longer than this (groups, per_class) are written one item per line


# The undecodable bytes of a name that is not UTF-8 (Python's surrogateescape: U+DC80–U+DCFF, never
# the low half of a surrogate pair) as JSON writes them, \udcff: a lone surrogate, which strict
# readers refuse and jq turns into U+FFFD. They are written as the text \xff instead, as every other
# output shows them (an even run of backslashes before one is the data's own).
_BYTE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)(?<!\\ud[89ab][0-9a-f]{2})\\udc([89a-f][0-9a-f])")


def dumps(doc: dict[str, Any]) -> str:
    """The document (see _dumps), every NaN and ±inf written as null, its undecodable name bytes as
    \\xNN text. The encoder's refusal of a non-finite float says whether there is one at all: most
    documents have none, and are encoded once (a walk in Python took 15 ms for 1,000 groups, a
    check by the encoder before encoding 6 ms)."""
    try:
        text = _dumps(doc)
    except ValueError:
        text = _dumps(_replace_nonfinite(doc))
    return _BYTE_ESCAPE.sub(r"\1\\\\x\2", text) if "\\udc" in text else text


def _dumps(doc: dict[str, Any]) -> str:
    """The document indented by 2, except that the items of a long top-level list are written one
    per line, by the C encoder (the indenting one is pure Python: 1,000 groups took ~0.1 s)."""
    long = {key: value for key, value in doc.items() if isinstance(value, list) and len(value) > LONG_LIST}
    if not long:
        return json.dumps(doc, indent=2, allow_nan=False)
    marks = {key: f"\x00xent-list:{key}" for key in long}
    text = json.dumps({key: marks.get(key, value) for key, value in doc.items()}, indent=2, allow_nan=False)
    encode = _item_encoder()
    for key, items in long.items():
        lines = ",\n    ".join(encode(item) for item in items)
        at = f"\n  {json.dumps(key)}: {json.dumps(marks[key])}"  # the top-level entry: no value from the data sits there
        text = text.replace(at, f"\n  {json.dumps(key)}: [\n    " + lines + "\n  ]", 1)
    return text


def _item_encoder() -> Any:
    """One compact encoder for every item of a long list (json.dumps with options, and each
    JSONEncoder.encode, make a new one a call: a third of the time of 100,000 worst rows)."""
    from json import encoder

    if encoder.c_make_encoder is None:  # an interpreter without the C encoder
        return json.JSONEncoder(allow_nan=False).encode
    make = encoder.c_make_encoder(None, json.JSONEncoder().default, encoder.encode_basestring_ascii, None, ": ", ", ", False, False, False)
    return lambda item: "".join(make(item, 0))


def document(report: Report) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "xent_version": __version__,
        "input": report.input.as_dict(),
        "summary": report.summary,
        "per_class": report.per_class,
        "worst": report.worst,
        "diagnostics": report.diagnostics,
    }
    if report.per_sequence:
        doc["per_sequence"] = report.per_sequence
    if report.calibration is not None:
        doc["calibration"] = report.calibration
    if report.confusions:
        doc["confusions"] = report.confusions
        if not report.confusions_exact:
            doc["confusions_approximate"] = True
    if report.groups:
        doc["groups"] = [{**{key: value for key, value in group.items() if key not in ("se", "df")},
                          "by": _group_values(group["by"])} for group in report.groups]
    if report.like is not None:
        doc["like"] = report.like
    if report.compare:
        doc["compare"] = {"frameworks": report.compare, "explanations": explain_differences(report)}
    return doc


def render_json(report: Report) -> str:
    return dumps(document(report))


def render_check_json(report: Report, result: dict[str, Any]) -> str:
    """`xent check --json`: the verdict first, then the same document as `score --json`."""
    doc = {"passed": result["passed"], "reasons": result["reasons"], "gates": result["gates"], **document(report)}
    return dumps(doc)


def render_diff_json(report: DiffReport) -> str:
    """`xent diff --json`: the keys README.md documents, in that order."""
    doc = {
        "xent_version": __version__,
        "base": report.base.input.as_dict(),
        "candidate": report.candidate.input.as_dict(),
        "pairing": report.pairing,
        "confidence": report.confidence,
        "metrics": report.metrics,
        "bootstrap": report.bootstrap,
        "flips": report.flips,
        "regressed": report.regressed,
        "improved": report.improved,
        **({"groups": [{**group, "by": _group_values(group["by"])} for group in report.groups]} if report.groups else {}),
        "gates": report.gates,
        "passed": report.passed,
        "diagnostics": report.diagnostics,
    }
    return dumps(doc)
