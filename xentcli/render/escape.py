"""The one escaping function per output kind for text that comes from the data or the user (file,
column, class and id names, option values): shown as text, never as markup or terminal control."""

from __future__ import annotations

import math
import os
import re
from typing import Any

# Characters shown as escapes (\\x1b, \\u202e, \\U000e0020), never sent to a terminal or a report:
# C0 and C1 controls (ESC and CSI above all) and DEL; every format character (Unicode category Cf:
# bidirectional marks, overrides and isolates, zero-width characters, the soft hyphen, tag
# characters); line and paragraph separators; the characters that look like nothing (Hangul fillers,
# the braille blank, variation selectors, combining grapheme joiner); noncharacters (U+FFFE, U+FFFF
# and their kin, which XML cannot hold); and lone surrogates (the bytes of a file name that is not
# UTF-8, as Python decodes them, shown as the byte: \\xff). The ranges: Unicode 14's, generated once.
_CONTROL_CLASS = (
    "\x00-\x1f\x7f-\x9f\xad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u115f-\u1160\u17b4-\u17b5"
    "\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\u2800\u3164\ud800-\udfff\ufdd0-\ufdef"
    "\ufeff\uffa0\ufff9-\ufffb\ufffe-\uffff\U000110bd\U000110cd\U00013430-\U00013438"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
    + "".join(f"\\U{plane:04x}fffe-\\U{plane:04x}ffff" for plane in range(1, 17)))
# Variation selectors (emoji ❤️, CJK 葛󠄀, Mongolian) are part of ordinary text and stay; so do the tag
# characters of an emoji flag sequence (🏴 + tags + cancel tag: Scotland's flag), which the group
# below keeps whole (found in review: they were shown as escapes, and a flag cut mid-escape).
_CONTROL = re.compile(f"(\U0001F3F4[\U000E0020-\U000E007E]+\U000E007F)|[{_CONTROL_CLASS}]")
# Workflow commands a CI runner reads from any line of a log, wherever they stand in it: GitHub's
# legacy ##[command] and Azure Pipelines' ##vso[…]; and, in a GitHub Actions job, "::command::"
# (the runner trims a line before it looks, and a wrapped table cell can start a line). Their first
# character is shown as an escape, so text from the data never becomes a command.
_LOG_COMMAND = re.compile(r"#(?=#(?:vso)?\[)")
# A backslash of the data is shown doubled where what follows it could read as one of these escapes
# (x, u, U, n, t, r, another backslash, or a character shown as an escape): the text "\\x1b" and an
# ESC, or "a\\u202eb" and a right-to-left override, looked alike (found in review, 2026-12-03).
# Elsewhere it stays as it is (C:\\data, \\alpha).
_BACKSLASH = re.compile(f"\\\\(?=[xuUntr\\\\#:]|[{_CONTROL_CLASS}])")
_GITHUB_COMMAND = re.compile(r":(?=:)")
# A table cell longer than this is cut, with a marker; --json keeps every character.
MAX_CELL = 80


def _visible(match: re.Match[str]) -> str:
    if match.group(1):  # an emoji flag's tag sequence: kept
        return match.group(1)
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the undecodable byte itself
        return f"\\x{code - 0xDC00:02x}"
    if code > 0xFFFF:
        return f"\\U{code:08x}"
    # \xNN only below 0x80: from 0x80 on it is an undecodable byte's (above), so a C1 control or the
    # soft hyphen (U+0085, U+00AD) is \u0085, \u00ad — they and the bytes 0x85, 0xad looked alike (found in review)
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char, f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}")


def terminal(value: Any, limit: int | None = None) -> str:
    """Text for a terminal or a CI log: text_of's, and inside a GitHub Actions job no '::' (the
    runner reads a line that starts with it, once trimmed, as a command; a wrapped table cell can
    start a line). Rich markup is not interpreted by callers that pass the result as
    `rich.text.Text` (the tables do)."""
    text = text_of(value, limit)
    if os.environ.get("GITHUB_ACTIONS") == "true" and "::" in text:
        text = _GITHUB_COMMAND.sub(r"\\x3a", text)
        if limit is not None and len(text) > limit:
            return text[: limit - 1] + "…"
    return text


def text_of(value: Any, limit: int | None = None) -> str:
    """Text from the data for any output: every control character as a visible escape, one line,
    no runner command read anywhere in a line (##[…], ##vso[…]), and cut to `limit` characters with
    '…' when a limit is given. Files (XML, JSON, HTML, PNG, markdown) keep '::' as it is."""
    text = "null" if value is None else str(value)
    cut = limit is not None and len(text) > limit
    text = _BACKSLASH.sub(r"\\\\", text[: limit + 1] if cut else text)  # a 10M-character id is cut before it is escaped (one over: the '…' below)
    text = _CONTROL.sub(_visible, text)
    text = _LOG_COMMAND.sub(r"\\x23", text)
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def number_text(value: Any, digits: int = 6) -> str:
    """A number for reports (CI formats, HTML): integers with thousands separators, floats to
    `digits` significant digits, NaN as 'undefined'; anything else as its text (not escaped)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "undefined" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)
