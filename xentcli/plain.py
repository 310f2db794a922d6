"""Plain Python values from numpy and Arrow ones: what JSON, the tables and the examples hold."""

from __future__ import annotations

import json
import math
from typing import Any


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON and Rich understand (NaN stays a float)."""
    return value.item() if hasattr(value, "item") else value


def id_value(value: Any) -> Any:
    """An identifier as JSON can hold it exactly: integers (any size), text, booleans and null as
    they are; a non-finite float as null; bytes as text (undecodable bytes as lone surrogates, which
    JSON and every other output write as \\xNN); dates, times, decimals and durations as their ISO
    or decimal text."""
    if hasattr(value, "as_py"):  # an Arrow scalar
        value = value.as_py()
    value = plain(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):  # undecodable bytes kept as lone surrogates, which every output shows as \xNN (as a file
        return binary_key(value)  # name's): the text "\xff" is shown \\xff, and the two never look alike (found in review)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def binary_key(value: bytes) -> str:
    """A binary key as text that pairs with the same text in a string column, and with nothing else:
    undecodable bytes become lone surrogates, which no valid text holds (backslashreplace made
    b'\\xff' and the four bytes '\\xff' one key; found in review). id_value shows them as \\xNN."""
    return value.decode("utf-8", "surrogateescape")


def escaped_surrogates(text: str) -> str:
    """Text as an Arrow string can hold it (a file's column): undecodable bytes (binary_key) as the
    text \\xNN, any other lone surrogate as \\uNNNN; other text as it is."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")


def group_value(value: Any) -> Any:
    """A --by group's value: as id_value, but ±inf stays a float (a group of its own); NaN is null
    (NaN equals nothing, so it could not name one group)."""
    if hasattr(value, "as_py"):
        value = value.as_py()
    value = plain(value)
    if isinstance(value, float) and math.isinf(value):
        return value
    if isinstance(value, bytes):  # a group's value is a key of partial files too: text that any JSON holds
        return value.decode("utf-8", "backslashreplace")
    return id_value(value)


def id_at(ids: Any, row: int) -> Any:
    """The id of one row of a chunk's ids (an Arrow array or a numpy array)."""
    return id_value(ids[row])


def counted(n: int, one: str, many: str) -> str:
    """'1 row has' / '2 rows have', with thousands separators."""
    return f"{n:,} {one if n == 1 else many}"


def quoted(name: Any) -> str:
    """A name or a value from the data in a message, in single quotes, as it is: the message's
    escaping (render.escape) shows its control characters once (repr had escaped them already, so
    an ESC showed as \\\\x1b, and the text \\x1b as \\\\\\\\x1b; found in review)."""
    return f"'{name}'"


def name_list(names: Any, shown: int = 12) -> str:
    """Column or file names for a message: each quoted as text ('a', 'b,c'), the first `shown` of
    them and how many more (10^5 columns made a megabyte error line)."""
    names = list(names)
    text = ", ".join(map(quoted, names[:shown]))
    return text + (f", … ({len(names) - shown:,} more)" if len(names) > shown else "")


def group_value_text(value: Any) -> str:
    """A group's value as the tables, verdicts and pages show it: null as "(null)"; text that would
    read as one of those labels — "(null)", or the pool "(other…)" of the groups past --max-groups —
    and the empty text in double quotes, so that no value looks like another or like nothing."""
    if value is None:
        return "(null)"
    if isinstance(value, str) and (value in ("", "(null)") or value.startswith("(other")):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def group_label(by: dict[str, Any], pooled: int = 0) -> str:
    """A group as text: column=value, …; the "(other)" pool of `pooled` groups (--max-groups) as
    "(other: N groups)", told apart from a group whose value is the text "(other)"."""
    if pooled:
        return pooled_label(pooled)
    return ", ".join(f"{column}={group_value_text(value)}" for column, value in by.items())


def pooled_label(pooled: int) -> str:
    return f"(other: {pooled:,} groups)"


def distinct_digits(value: Any, limit: Any, digits: int) -> int:
    """The significant digits (`digits` at least, 17 at most) at which a value and its limit, both
    shown, differ as they do: a gate's line must never read "1.04977 > 1.04977"."""
    if isinstance(value, bool) or isinstance(limit, bool) or not isinstance(value, (int, float)) or not isinstance(limit, (int, float)):
        return digits
    a, b = float(value), float(limit)
    if a == b or not (math.isfinite(a) and math.isfinite(b)):
        return digits
    while digits < 17 and f"{a:.{digits}g}" == f"{b:.{digits}g}":
        digits += 1
    return digits
