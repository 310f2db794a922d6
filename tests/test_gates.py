"""check's gates decided on a finished report: each gate on both sides of its limit, undefined
values fail, the failing severity, and the verdict line."""

from __future__ import annotations

import math

import pytest

from xentcli.config import Gates
from xentcli.errors import OptionError
from xentcli.gates import evaluate, verdict_line
from xentcli.report import Report


class _Input:
    path = "dump.parquet"
    num_classes = 3


def _report(diagnostics=(), **summary) -> Report:
    base = {"rows": 100, "counted": 100, "nonfinite": 0, "loss_mean": 1.0, "accuracy": 0.8, "loss_p99": 4.0}
    return Report(input=_Input(), summary={**base, **summary}, diagnostics=list(diagnostics))  # type: ignore[arg-type]


@pytest.mark.parametrize("gate,key,limit,passing,failing", [
    ("max_loss", "loss_mean", 1.0, 1.0, 1.0000001),
    ("max_loss_p99", "loss_p99", 4.0, 3.9, 4.1),
    ("min_accuracy", "accuracy", 0.8, 0.8, 0.7999),
    ("max_nonfinite", "nonfinite", 2, 2, 3),
])
def test_each_gate_on_both_sides(gate, key, limit, passing, failing):
    gates = Gates(**{"max_nonfinite": None, gate: limit})
    assert evaluate(_report(**{key: passing}), gates)["passed"]
    failed = evaluate(_report(**{key: failing}), gates)
    assert not failed["passed"] and failed["gates"][0]["passed"] is False


def test_undefined_values_fail():
    result = evaluate(_report(loss_mean=math.nan, counted=0), Gates(max_loss=10.0))
    assert not result["passed"] and result["reasons"] == ["mean loss is undefined (no counted rows)"]


@pytest.mark.parametrize("fail_on,fails", [("error", {"error"}), ("warning", {"error", "warning"}), ("never", set())])
def test_failing_severity(fail_on, fails):
    for severity in ("error", "warning", "info"):
        diagnostic = {"code": "XE999", "name": "x", "severity": severity, "rows": 1}
        result = evaluate(_report([diagnostic]), Gates(fail_on=fail_on))
        assert result["passed"] is (severity not in fails)
        if severity in fails:
            assert result["reasons"] == [f"XE999 x ({severity}, 1 row)"]


def test_verdict_lines():
    gates = Gates(max_loss=2.0)
    passed = evaluate(_report(), gates)
    assert verdict_line(passed, _report(), gates) == "PASS: no diagnostic at the failing severity; mean loss 1 <= 2, non-finite rows 0 <= 0"
    never = Gates(fail_on="never", max_nonfinite=None)
    assert verdict_line(evaluate(_report(), never), _report(), never) == "PASS: no gate given (diagnostics not gated: --fail-on never)"
    failed = evaluate(_report(loss_mean=2.5), gates)
    assert verdict_line(failed, _report(), gates) == "FAIL: mean loss 2.5 > 2"


@pytest.mark.parametrize("gates", [Gates(max_loss=math.nan), Gates(max_loss=-1.0), Gates(max_loss_p99=math.inf),
                                   Gates(min_accuracy=80.0), Gates(min_accuracy=-0.01)])
def test_gates_that_cannot_fail_are_refused(gates):
    with pytest.raises(OptionError):
        gates.validate()


def test_a_value_and_its_limit_are_shown_with_the_digits_that_tell_them_apart(tmp_path):
    """Found in review: a mean loss of 1.0497745712 against --max-loss 1.04977457 failed, rightly,
    as "mean loss 1.04977 > 1.04977" in the verdict and the CI formats. The value and its limit are
    shown with as many digits as it takes to tell them apart (the gate line, the verdict, GitHub)."""
    import numpy as np
    from typer.testing import CliRunner

    from xentcli.cli import app

    rng = np.random.default_rng(0)
    np.save(tmp_path / "z.npy", rng.normal(size=(300, 3)))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 300))
    args = ["check", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--fail-on", "never",
            "--max-loss", "1.32922241", "--min-accuracy", "0.3400001"]  # the dump: mean loss 1.3292224120625982, accuracy 0.34
    text = CliRunner().invoke(app, args).stdout
    assert "FAIL mean loss 1.329222412 (limit <= 1.32922241)" in text and "FAIL accuracy 0.34 (limit >= 0.3400001)" in text
    assert "FAIL: mean loss 1.329222412 > 1.32922241; accuracy 0.34 < 0.3400001" in text
    github = CliRunner().invoke(app, [*args, "--output-format", "github"]).stdout
    assert "mean loss 1.329222412 > 1.32922241" in github


def test_a_multi_label_accuracy_gate_is_named_exact_match():
    """Found in review: the summary said "exact match 0.2750" and the verdict "accuracy 0.275 < 0.5"."""
    from pathlib import Path

    from typer.testing import CliRunner

    from xentcli.cli import app

    tags = Path(__file__).resolve().parents[1] / "sample_data" / "tags_val.parquet"
    result = CliRunner().invoke(app, ["check", str(tags), "--head", "sigmoid", "--min-accuracy", "0.5"])
    assert result.exit_code == 1 and result.stdout.strip().splitlines()[-1].startswith("FAIL: exact match 0.275 < 0.5")
