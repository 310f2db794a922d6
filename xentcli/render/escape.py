"""The one escaping function per output kind for text that comes from the data or the user (file,
column, class and id names, option values): shown as text, never as markup or terminal control."""

from __future__ import annotations

import math

import re
from typing import Any

# C0 controls, DEL and C1 controls (ESC and CSI above all), and the format characters that move
# or hide text (bidirectional overrides and isolates, zero-width characters, line and paragraph
# separators): shown as \\x1b or \\u202e, never sent to a terminal. Lone surrogates (the bytes of a
# file name that is not UTF-8, as Python decodes them) are shown as the byte: \\xff.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff]")
# A table cell longer than this is cut, with a marker; --json keeps every character.
MAX_CELL = 80


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the undecodable byte itself
        return f"\\x{code - 0xDC00:02x}"
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char, f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def terminal(value: Any, limit: int | None = None) -> str:
    """Text for a terminal: every control character as a visible escape, one line, and cut to
    `limit` characters with '…' when a limit is given. Rich markup is not interpreted by callers
    that pass the result as `rich.text.Text` (the tables do)."""
    text = "null" if value is None else str(value)
    cut = limit is not None and len(text) > limit
    text = _CONTROL.sub(_visible, text[:limit] if cut else text)  # a 10M-character id is cut before it is escaped
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
