"""The exception hierarchy: every error a user can cause, with the place and a hint."""

from __future__ import annotations


class XentError(Exception):
    """Base of every error xent raises on purpose; the CLI turns it into one line and exit code 2."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.hint = hint
        self.code = code  # the diagnostic code (XE3xx) of a shape error, when it has one

    def one_line(self) -> str:
        """`[XE301] path: message; hint` — the single line the CLI prints."""
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.code:
            text = f"[{self.code}] {text}"
        return f"{text}; {self.hint}" if self.hint else text


class InputError(XentError):
    """A file that cannot be read as asked: missing, unknown format, wrong types."""


class LayoutError(InputError):
    """Columns or arrays that cannot be mapped to scores and targets, or that disagree in shape."""


class OptionError(XentError):
    """Options that contradict each other or the data."""


class OutputError(XentError):
    """An output file that cannot or must not be written."""
