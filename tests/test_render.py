"""Every human renderer on one shared Report, at a fixed width, against exact golden text
(tests/golden/*.txt): the tables, check's gates and verdict, explain, the error line. The renderers
are pure functions of the Report; a change in what they print shows here first.

XENT_UPDATE_GOLDEN=1 rewrites the files; do that only for a change of output that is meant."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from rich.console import Console

from xentcli.config import Gates, LossOptions, RunConfig, SourceConfig
from xentcli.diagnostics import RULES
from xentcli.engine import run
from xentcli.gates import evaluate, verdict_line
from xentcli.render.table import render_check, render_explain, render_tables

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
WIDTH = 100


@pytest.fixture(scope="module")
def report():
    """The sample dump with ids, worst rows, per class and the frameworks: every table is filled."""
    config = RunConfig(
        SourceConfig(("sample_data/cifar10_val.parquet",), id_col="id"), LossOptions(compare=True), worst=3, per_class=True,
    )
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return run(config)
    finally:
        os.chdir(cwd)


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=WIDTH, color_system=None, force_terminal=False, highlight=False), buffer


def _golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("XENT_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name}: the rendered text changed (XENT_UPDATE_GOLDEN=1 rewrites it)"


def test_tables(report):
    console, buffer = _console()
    render_tables(report, console)
    _golden("tables", buffer.getvalue())


@pytest.mark.parametrize("gates", [Gates(max_loss=2.5, min_accuracy=0.5), Gates(max_loss=0.4, fail_on="warning"),
                                   Gates(fail_on="never", max_loss_p99=9.0)], ids=["pass", "fail", "never"])
def test_check(report, gates, request):
    console, buffer = _console()
    result = evaluate(report, gates)
    render_check(report, result, verdict_line(result, report, gates), console)
    _golden(f"check_{request.node.callspec.id}", buffer.getvalue())


def test_explain_one_and_all():
    console, buffer = _console()
    render_explain([RULES["XE102"]], single=True, console=console)
    render_explain(list(RULES.values()), single=False, console=console)
    _golden("explain", buffer.getvalue())


def test_error_line(capsys):
    from xentcli.cli.app import error_line

    error_line("error", "dump[eval]\x1b[2J.parquet: column 'logit_2' row 3: '#VALUE!' is not a number")
    _golden("error_line", capsys.readouterr().err)


def test_cut_text_always_ends_with_the_marker():
    """Found in review: text cut to the limit without an escape in it came back as its first `limit`
    characters with no '…' — a 200,000-character id showed as an 80-character one."""
    from xentcli.render.escape import terminal

    assert terminal("a" * 100, 10) == "a" * 9 + "…"
    assert terminal("a" * 11, 10) == "a" * 9 + "…"
    assert terminal("a" * 10, 10) == "a" * 10
    assert terminal("\x1b" * 20, 10) == "\\x1b\\x1b\\…"


def test_score_says_when_its_numbers_do_not_measure_the_model():
    """Found in a new-user review: a broken dump (1-based labels) printed a mean loss like any other
    and exited 0; the last line now names the error-level codes and says check fails on it. A clean
    dump has no such line."""
    from pathlib import Path

    from typer.testing import CliRunner

    from xentcli.cli import app

    samples = Path(__file__).resolve().parent.parent / "sample_data"
    broken = CliRunner().invoke(app, ["score", str(samples / "broken_one_based.parquet")])
    assert broken.exit_code == 0
    assert " ".join(broken.stdout.split()).endswith(
        "Error-level diagnostics (XE201, XE202, XE401): the numbers above do not measure this model as they stand; "
        "xent check fails on this dump.")
    clean = CliRunner().invoke(app, ["score", str(samples / "cifar10_val.parquet")])
    assert "Error-level diagnostics" not in clean.stdout


def test_ordinary_text_is_shown_as_it_is(monkeypatch):
    """Found in the regression review: emoji with variation selectors (❤️), a flag's tag sequence
    (Scotland's) and CJK ideographic variation selectors were shown as escapes; and in a GitHub
    Actions job '::' was escaped in files too (JUnit, GitLab JSON, HTML), which no runner reads as
    log lines. Lone tag characters and the other invisible characters stay escapes."""
    from xentcli.render.escape import terminal, text_of

    scotland = "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
    for text in ("❤️ love", "☀️ sunny", scotland + " scot", "葛\U000e0100飾", "ᠠ\u180bᠡ", "https://x.org/a::b", "C:\\data\\img45.png"):
        assert terminal(text) == text and text_of(text) == text
    assert terminal("eu\U000e0020") == "eu\\U000e0020" and terminal("eu\u00ad") == "eu\\u00ad"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert terminal("std::vector") == "std\\x3a:vector" and text_of("std::vector") == "std::vector"


def _unescaped(text):
    """The reverse of text_of (no cut): '\\\\' is a backslash, '\\x..', '\\u....', '\\U........', '\\n',
    '\\t', '\\r' the characters they name, any other backslash itself. A hand-written reader, so
    the test knows nothing of how text_of escapes."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "\\" or i + 1 == len(text):
            out.append(text[i])
            i += 1
            continue
        kind = text[i + 1]
        width = {"x": 2, "u": 4, "U": 8}.get(kind)
        if kind == "\\":
            out.append("\\")
            i += 2
        elif kind in "ntr":
            out.append({"n": "\n", "t": "\t", "r": "\r"}[kind])
            i += 2
        elif width:
            code = int(text[i + 2 : i + 2 + width], 16)
            out.append(chr(0xDC00 + code) if kind == "x" and code >= 0x80 else chr(code))  # \xNN above 0x7f: an undecodable byte
            i += 2 + width
        else:
            out.append("\\")
            i += 1
    return "".join(out)


@pytest.mark.parametrize("github", [False, True])
def test_no_two_texts_look_alike(monkeypatch, github):
    """Every string of up to 4 characters over backslashes, the letters of the escapes, controls,
    a bidi override, '#' and ':' reads back as itself from what the terminal is shown (so no two
    look alike). The text "\\x1b" and an ESC, "a\\u202eb" and a right-to-left override, were shown
    alike in a --by table, and so were U+0085 and the undecodable byte 0x85 of a file name (found
    in review, 2026-12-03)."""
    import itertools

    from xentcli.render.escape import terminal

    if github:
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
    alphabet = ["\\", "x", "1", "b", "\x1b", "\u202e", "#", ":", "[", "\n", "n", "U", "\x85", "\udc85"]  # a C1 control, the byte 0x85
    for length in range(1, 5):
        for chars in itertools.product(alphabet, repeat=length):
            text = "".join(chars)
            assert _unescaped(terminal(text)) == text, (text, terminal(text))
    shown = [terminal(v) for v in ("\x1b", "\\x1b", "a\u202eb", "a\\u202eb", "\\", "\\\\")]
    assert len(set(shown)) == len(shown), shown
    assert terminal("C:\\data") == "C:\\data" and terminal("\\alpha") == "\\alpha"


def test_small_shares_and_single_counts_read_right(tmp_path):
    """Found in review: 1 row of 3,000 showed "0.0%" beside its count; "1 bins"."""
    import numpy as np
    from typer.testing import CliRunner

    from xentcli.cli import app
    from xentcli.render.table import fmt_share

    assert (fmt_share(1 / 3000), fmt_share(0.0), fmt_share(0.0005), fmt_share(0.25)) == ("<0.1%", "0.0%", "0.1%", "25.0%")
    np.savez(tmp_path / "d.npz", logits=np.zeros((4, 2)), labels=np.array([0, 1, 0, 1]))
    result = CliRunner().invoke(app, ["score", str(tmp_path / "d.npz"), "--calibration", "--bins", "1"])
    assert result.exit_code == 0 and "Calibration (1 bin," in result.stdout
