"""Every case of the hostile corpus (tests/hostile/corpus.py) has its outcome: the right number,
a flagged code that fails `check`, or one line on stderr with exit 2, never an internal error."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hostile.corpus import CASES
from xentcli.cli import app

runner = CliRunner()


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_case(tmp_path, name):
    case = CASES[name](tmp_path)
    result = runner.invoke(app, [case.command, *case.args, "--json"])
    assert result.exit_code == case.exit, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if case.exit == 2:
        assert len(lines) == 1 and lines[0].startswith("xent: error:"), result.stderr
        assert case.says in lines[0], lines[0]
        doc = json.loads(result.stdout)
        assert set(doc) == {"xent_version", "error"} and case.says in doc["error"]["message"]
        return
    if case.says is not None:
        assert any(case.says in line for line in lines), result.stderr
    doc = json.loads(result.stdout)
    if case.loss_mean is not None:
        assert doc["summary"]["loss_mean"] == pytest.approx(case.loss_mean, rel=1e-6)
    assert case.codes <= {d["code"] for d in doc["diagnostics"]}
