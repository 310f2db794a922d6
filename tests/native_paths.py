"""The C extension's test variants: where it is not built, fail if it could have been."""

from __future__ import annotations

import os
import shutil

import pytest

from xentcli import native


def require_c_extension() -> None:
    """Skip a C-path test variant where the extension is absent, but fail where a C compiler exists:
    the extension is optional at install time, and a failed build must not pass unnoticed."""
    if native.name() == "c":
        return
    if shutil.which("cc") and os.environ.get("XENT_KERNEL", "").lower() != "numpy":
        pytest.fail("the C extension is not built although a C compiler exists (pip install -e . -v)")
    pytest.skip("the C extension is not built")
