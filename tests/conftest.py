"""Test-wide policy: pytest.approx compares by the relative tolerance a test gives, with no hidden
absolute floor. pytest's default absolute tolerance of 1e-12 made `approx(x, rel=1e-15)` accept any
error below 1e-12 — all of them for numbers of order 1 — so such asserts could not fail: a
hand-derived constant 4.7e-14 off, a clustered standard error 4.7% high (1.55e-12 for 1.48e-12) and
a reference without the HC1 factor all passed. A test that wants an absolute tolerance says abs=."""

from __future__ import annotations

from typing import Any

import pytest

_approx = pytest.approx


def _relative(expected: Any, rel: float | None = None, abs: float | None = None, nan_ok: bool = False) -> Any:
    return _approx(expected, rel=rel, abs=0.0 if abs is None else abs, nan_ok=nan_ok)


pytest.approx = _relative
