"""The auditor's rule, item by item (issue: trust): on any input xent gives the right number, or
flags it with a coded diagnostic that fails `xent check`, or refuses with one line and exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from reference import sparse_loss64
from xentcli.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def check_json(*args):
    result = invoke("check", *args, "--json")
    return result, json.loads(result.stdout) if result.stdout.strip() else None


def codes(doc):
    return {d["code"] for d in doc["diagnostics"]}


def _npy(tmp_path: Path, scores, labels, name="logits.npy"):
    np.save(tmp_path / name, np.asarray(scores))
    np.save(tmp_path / "labels.npy", np.asarray(labels))
    return [tmp_path / name, "--labels", tmp_path / "labels.npy"]


# ---- 4. logits read as log-probabilities ---------------------------------------------------

@pytest.mark.parametrize("how", ["name", "option"])
def test_logits_read_as_log_probs_fail_check(tmp_path, how):
    rng = np.random.default_rng(4)
    z = (rng.standard_normal((50, 5)) * 3).astype(np.float32)
    y = rng.integers(0, 5, 50)
    if how == "name":
        pq.write_table(pa.table({"log_probs": list(z), "label": y}), tmp_path / "d.parquet")
        args = [tmp_path / "d.parquet"]
    else:
        args = [*_npy(tmp_path, z, y), "--input", "log-probs"]
    result, doc = check_json(*args)
    assert result.exit_code == 1
    assert "XE110" in codes(doc)
    xe110 = next(d for d in doc["diagnostics"] if d["code"] == "XE110")
    assert xe110["severity"] == "error" and xe110["rows"] == 50


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_true_log_probs_pass(tmp_path, dtype):
    rng = np.random.default_rng(5)
    z = rng.standard_normal((200, 50)) * 4
    lp = (z - np.log(np.exp(z).sum(axis=1, keepdims=True))).astype(dtype)
    y = rng.integers(0, 50, 200)
    result, doc = check_json(*_npy(tmp_path, lp, y), "--input", "log-probs")
    assert result.exit_code == 0, doc["diagnostics"]
    expected = -lp.astype(np.float64)[np.arange(200), y]
    assert doc["summary"]["loss_mean"] == pytest.approx(expected.mean(), rel=1e-6)


# ---- 11. masks are not errors ----------------------------------------------------------------

def test_vocabulary_masks_pass_check(tmp_path):
    rng = np.random.default_rng(6)
    z = rng.standard_normal((40, 8)).astype(np.float32)
    y = rng.integers(0, 4, 40)
    z[:, 4:] = -np.inf  # classes 4..7 are never targets: masked
    result, doc = check_json(*_npy(tmp_path, z, y))
    assert result.exit_code == 0, doc["diagnostics"]
    assert "XE111" in codes(doc) and "XE102" not in codes(doc)
    expected = sparse_loss64(z[:, :4], y)  # masked classes carry probability 0
    assert doc["summary"]["loss_mean"] == pytest.approx(expected.mean(), rel=1e-6)


@pytest.mark.parametrize("plant", ["minus_inf_on_target", "plus_inf", "all_minus_inf"])
def test_infinite_scores_that_break_the_loss_fail_check(tmp_path, plant):
    z = np.zeros((6, 3), np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    if plant == "minus_inf_on_target":
        z[2, 2] = -np.inf
    elif plant == "plus_inf":
        z[2, 0] = np.inf
    else:
        z[2] = -np.inf
    result, doc = check_json(*_npy(tmp_path, z, y))
    assert result.exit_code == 1
    xe102 = next(d for d in doc["diagnostics"] if d["code"] == "XE102")
    assert xe102["rows"] == 1 and xe102["examples"][0]["row"] == 2


# ---- 7. labels compared as the values they are -----------------------------------------------

@pytest.mark.parametrize("labels", [
    np.array([0, 1, 2**64 - 100, 2**63, 1], dtype=np.uint64),  # 2**64 - 100 wrapped to -100 before
    np.array([0, 1, 1e300, -1e300, 1], dtype=np.float64),
    np.array([0, 1, 2**62, -(2**62), 1], dtype=np.int64),
])
def test_huge_labels_are_out_of_range(tmp_path, labels):
    z = np.zeros((5, 3), np.float32)
    result, doc = check_json(*_npy(tmp_path, z, labels))
    assert result.exit_code == 1
    xe201 = next(d for d in doc["diagnostics"] if d["code"] == "XE201")
    assert xe201["rows"] == 2 and [e["row"] for e in xe201["examples"]] == [2, 3]
    assert doc["summary"]["ignored"] == 0 and "XE203" not in codes(doc)


def test_ignore_index_beyond_int64_is_refused(tmp_path):
    result = invoke("score", *_npy(tmp_path, np.zeros((2, 3)), [0, 1]), "--ignore-index", str(2**70))
    assert result.exit_code == 2


# ---- 15. --epsilon E is Keras' rule with that epsilon --------------------------------------

def test_epsilon_equals_keras_with_that_epsilon(tmp_path):
    p = np.array([[0.7, 0.3, 0.0], [0.2, 0.2, 0.6], [1.0, 0.0, 0.0]])
    y = np.array([2, 2, 1])
    args = _npy(tmp_path, p, y, name="probs.npy")
    eps = 1e-3
    truth = json.loads(invoke("score", *args, "--epsilon", eps, "--json").stdout)
    keras = json.loads(invoke("score", *args, "--epsilon", eps, "--like", "keras", "--json").stdout)
    # by hand, as keras/src/backend/tensorflow/nn.py does for integer labels: clip to [ε, 1 − ε],
    # then log_softmax of the log renormalises: −log(clip(p_y) / Σ clip(p))
    clipped = np.clip(p, eps, 1 - eps)
    hand = -np.log(clipped[np.arange(3), y] / clipped.sum(axis=1))
    assert truth["summary"]["loss_mean"] == pytest.approx(hand.mean(), rel=1e-12)
    assert keras["like"]["loss"] == pytest.approx(hand.mean(), rel=1e-12)


# ---- terminal and markup injection ------------------------------------------------------------

HOSTILE_TEXT = ["[link=http://x]click[/link]", "\x1b[2Jcleared", "[eval]", "bell\x07\x9b31m", "two\nlines", "[bold red]x",
                "txt.\u202eexe", "sep\u2028arated\u200b"]  # a right-to-left override; a line separator, a zero-width space


def _render_all(report) -> str:
    import io

    from rich.console import Console

    from xentcli.render.table import render_check, render_tables

    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None, force_terminal=False)
    render_tables(report, console)
    render_check(report, {"passed": False, "reasons": ["x"], "gates": []}, "FAIL: x", console)
    return buffer.getvalue()


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_hostile_names_are_shown_as_text(tmp_path, text):
    from xentcli.config import RunConfig, SourceConfig
    from xentcli.engine import run

    folder = tmp_path / f"dir{text[:6]}".replace("/", "_")
    folder.mkdir()
    rng = np.random.default_rng(1)
    z = rng.standard_normal((6, 2)) * 9
    ids = [text + str(i) for i in range(6)]
    column = "id" + text
    pq.write_table(pa.table({"score_" + text: z[:, 0], "score_b": z[:, 1], "label": [0, 1, 0, 1, 0, 1], column: ids}),
                   folder / "d.parquet")
    config = RunConfig(SourceConfig((str(folder / "d.parquet"),), id_col=column), worst=6, per_class=True)
    output = _render_all(run(config))
    assert not {"\x1b", "\x07", "\x9b", "\u202e", "\u2028", "\u200b"} & set(output)
    visible = text.replace("\x1b", "\\x1b").replace("\x07", "\\x07").replace("\x9b", "\\u009b").replace("\n", "\\n")
    visible = visible.replace("\u202e", "\\u202e").replace("\u2028", "\\u2028").replace("\u200b", "\\u200b")
    assert visible + "0" in output  # the id, whole: no markup eaten
    assert visible in output.split("Per class")[1]  # the class name from the column


def test_explain_prints_its_brackets():
    result = invoke("explain", "XE102")
    assert "scores [inf, 0, 0] → loss NaN" in result.stdout


def test_error_lines_escape_the_data(tmp_path):
    path = tmp_path / "bad\x1b[2J[red]name.parquet"
    path.write_bytes(b"not parquet")
    result = invoke("score", path)
    assert result.exit_code == 2
    assert "\x1b" not in result.stderr and "\\x1b[2J[red]name.parquet" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("name", "shown"), [("a\x1bb", "'a\\x1bb'"), ("a\nb", "'a\\nb'"), ("a\\x1bb", "'a\\\\x1bb'"),
                                            ("a\u202eb", "'a\\u202eb'"), ("[red]x", "'[red]x'")])
def test_names_in_error_lines_are_escaped_once(tmp_path, name, shown):
    """Found in review: names were quoted with repr and then escaped again, so an ESC in a column
    name showed as \\\\x1b (the tables' form of the text \\x1b). A column, an NPZ array and a
    diagnostic code named in an error line: control characters once as \\xNN, \\n, \\uNNNN; a
    backslash of the name doubled (as the tables show it); markup as text."""
    pq.write_table(pa.table({"logits": [[0.0, 1.0]], "label": [0]}), tmp_path / "d.parquet")
    np.savez(tmp_path / "d.npz", logits=np.zeros((1, 2)), labels=np.zeros(1, np.int64))
    copy = tmp_path / f"c{name}.xpart"  # a partial file's name, and a --by column's, in merge's refusals
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 1, 0], name: [1, 2, 1], "g": [1, 2, 1]}), tmp_path / "g.parquet")
    for by, part in ((name, "a"), ("g", "b")):
        assert invoke("score", tmp_path / "g.parquet", "--by", by, "--save-partial", tmp_path / f"{part}.xpart", "--json").exit_code == 0
    copy.write_bytes((tmp_path / "a.xpart").read_bytes())
    for command in (["score", tmp_path / "d.parquet", "--label-col", name], ["score", tmp_path / "d.npz", "--label-key", name],
                    ["explain", name], ["merge", tmp_path / "a.xpart", tmp_path / "b.xpart"], ["merge", copy, tmp_path / "a.xpart"]):
        result = invoke(*command)
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, (command, result.stderr)
        assert shown[1:-1] in result.stderr and "\x1b" not in result.stderr and "\u202e" not in result.stderr, (command, result.stderr)


# ---- 6. ids are kept exactly ------------------------------------------------------------------

def test_ids_keep_their_type_and_text(tmp_path):
    big = 2**53 + 1
    ids = pa.array([big, None, 7, big + 2], pa.int64())
    z = np.array([[0.0, 5.0], [0.0, 4.0], [0.0, 3.0], [0.0, 6.0]])
    pq.write_table(pa.table({"logits": list(z), "label": [0, 0, 0, 0], "id": ids}), tmp_path / "d.parquet")
    doc = json.loads(invoke("score", tmp_path / "d.parquet", "--id-col", "id", "--worst", "4", "--json").stdout)
    assert [w["id"] for w in doc["worst"]] == [big + 2, big, None, 7]
    out = tmp_path / "rows.parquet"
    assert invoke("score", tmp_path / "d.parquet", "--id-col", "id", "-o", out).exit_code == 0
    written = pq.read_table(out).column("id")
    assert written.type == pa.int64() and written.to_pylist() == [big, None, 7, big + 2]
    table = invoke("score", tmp_path / "d.parquet", "--id-col", "id", "--worst", "4").stdout
    assert str(big + 2) in table and "9.007" not in table and "9,007" not in table


@pytest.mark.parametrize("ids", [
    pa.array([b"a\xff", b"b", b"c"], pa.binary()),
    pa.array([0, 1, 2], pa.date32()),
    pa.array([0, 1, 2], pa.timestamp("ms")),
    pa.array([0, 1, 2], pa.duration("s")),
    pa.array(["1.50", "2.00", "3.25"]).cast(pa.decimal128(5, 2)),
])
@pytest.mark.parametrize("out", ["rows.parquet", "rows.csv"])
def test_ids_of_every_scalar_type(tmp_path, ids, out):
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 3, "label": [0, 1, 0], "id": ids}), tmp_path / "d.parquet")
    result = invoke("score", tmp_path / "d.parquet", "--id-col", "id", "--worst", "3", "--json", "-o", tmp_path / out)
    assert result.exit_code == 0, result.stderr
    shown = [w["id"] for w in json.loads(result.stdout)["worst"]]
    assert all(isinstance(value, str) for value in shown)


# ---- 13, 14. quantiles within [min, max]; worst rows whatever the chunking ---------------------

def test_quantiles_never_leave_min_max():
    from xentcli.sketch import QuantileSketch

    sketch = QuantileSketch()
    sketch.update(np.array([1.46115, 1.46115, 1.46116]))
    assert all(1.46115 <= sketch.quantile(q) <= 1.46116 for q in (0.0, 0.5, 0.9, 0.99, 1.0))
    negative = QuantileSketch()
    negative.update(np.array([-2.0001, -2.0]))
    assert all(-2.0001 <= negative.quantile(q) <= -2.0 for q in (0.0, 0.5, 1.0))


@pytest.mark.parametrize("chunk_rows", [1, 7, 333, 1000])
@pytest.mark.parametrize("threads", [1, 2])
def test_worst_rows_with_ties_do_not_depend_on_chunks(tmp_path, chunk_rows, threads):
    z = np.zeros((1000, 4), np.float32)  # every row the same loss: log 4
    z[[10, 500], 0] = -3.0  # two rows worse than the rest
    y = np.zeros(1000, np.int64)
    args = _npy(tmp_path, z, y)
    doc = json.loads(invoke("score", *args, "--worst", "5", "--chunk-rows", chunk_rows, "--threads", threads, "--json").stdout)
    assert [w["row"] for w in doc["worst"]] == [10, 500, 0, 1, 2]



@pytest.mark.parametrize("layout", ["npy", "parquet-row-groups", "shards"])
@pytest.mark.parametrize("threads", [1, 2])
def test_worst_rows_of_many_are_one_sort_of_every_row(tmp_path, layout, threads):
    """--worst K with K near the rows: the chunks keep details only for rows that beat the k-th so
    far and merge K at a time (a Parquet file's row groups as tasks, each task's rows merged inside
    it): the rows are those of one sort of every row's float64 loss — loss descending, ties to the
    lower row (losses on a grid of 8 values: thousands of ties)."""
    rng = np.random.default_rng(11)
    n, k = 6000, 2500
    z = (rng.integers(0, 3, (n, 4)) * 0.75).astype(np.float32)
    y = rng.integers(0, 4, n)
    loss = sparse_loss64(z.astype(np.float64), y)
    want = np.lexsort((np.arange(n), -np.round(loss, 9)))[:k]  # the float32 kernel's ties are the float64 ones
    if layout == "npy":
        args = _npy(tmp_path, z, y)
    else:
        table = pa.table({"logits": pa.array(list(z), pa.list_(pa.float32())), "label": y})
        if layout == "shards":
            (tmp_path / "dump").mkdir()
            for i, start in enumerate(range(0, n, 1700)):
                pq.write_table(table.slice(start, 1700), tmp_path / "dump" / f"part-{i:02d}.parquet", row_group_size=400)
            args = [tmp_path / "dump"]
        else:
            pq.write_table(table, tmp_path / "d.parquet", row_group_size=700)
            args = [tmp_path / "d.parquet"]
    doc = json.loads(invoke("score", *args, "--worst", k, "--chunk-rows", 300, "--threads", threads, "--json").stdout)
    assert [w["row"] for w in doc["worst"]] == want.tolist()
    assert [w["loss"] for w in doc["worst"]] == pytest.approx(loss[want].tolist(), rel=1e-6)

# ---- 9, 10. gates that cannot fail are refused --------------------------------------------------

@pytest.mark.parametrize("gate", [("--max-loss", "nan"), ("--max-loss", "inf"), ("--max-loss", "-1"), ("--max-loss-p99", "nan"),
                                  ("--min-accuracy", "80"), ("--min-accuracy", "nan"), ("--min-accuracy", "-0.1")])
def test_gates_that_cannot_fail_are_refused(tmp_path, gate):
    result = invoke("check", *_npy(tmp_path, np.zeros((2, 3)), [0, 1]), *gate)
    assert result.exit_code == 2 and gate[0] in result.stderr


def test_no_diagnostics_needs_fail_on_never(tmp_path):
    args = _npy(tmp_path, np.array([[np.nan, 0, 0], [0, 0, 0]]), [0, 1])
    assert invoke("check", *args, "--no-diagnostics").exit_code == 2
    result = invoke("check", *args, "--no-diagnostics", "--fail-on", "never", "--max-nonfinite", "5")
    assert result.exit_code == 0 and "PASS: no diagnostic" not in result.stdout


# ---- files you never meant to touch -----------------------------------------------------------

def _named_dump(tmp_path):
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 4, "label": ["a", "b", "a", "b"]}), tmp_path / "d.parquet")
    (tmp_path / "classes.csv").write_text("a\nb\n")
    return tmp_path / "d.parquet"


@pytest.mark.parametrize("force", [False, True])
def test_output_never_overwrites_option_files(tmp_path, force):
    dump = _named_dump(tmp_path)
    before = (tmp_path / "classes.csv").read_bytes()
    result = invoke("score", dump, "--classes", tmp_path / "classes.csv", "-o", tmp_path / "classes.csv", *(["--force"] if force else []))
    assert result.exit_code == 2 and "is one of the inputs" in result.stderr
    assert (tmp_path / "classes.csv").read_bytes() == before


def test_output_that_appears_during_the_run_is_not_replaced(tmp_path):
    from xentcli.errors import OutputError
    from xentcli.render.rows import SampleWriter

    target = tmp_path / "rows.parquet"
    with pytest.raises(OutputError, match="appeared while xent was writing"):
        with SampleWriter(str(target), [], None, force=False) as writer:
            writer.write_batch(pa.RecordBatch.from_pydict({"row": pa.array([0], pa.int64())}))
            target.write_text("another run's file")
    assert target.read_text() == "another run's file"
    assert not list(tmp_path.glob(".xent-*"))


def test_output_mode_follows_the_umask(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        args = _npy(tmp_path, np.zeros((3, 2)), [0, 1, 0])
        assert invoke("score", *args, "-o", tmp_path / "rows.csv").exit_code == 0
    finally:
        os.umask(old)
    assert (tmp_path / "rows.csv").stat().st_mode & 0o777 == 0o640


def test_output_onto_a_folder_leaves_nothing(tmp_path):
    (tmp_path / "rows.parquet").mkdir()
    result = invoke("score", *_npy(tmp_path, np.zeros((3, 2)), [0, 1, 0]), "-o", tmp_path / "rows.parquet", "--force")
    assert result.exit_code == 2 and "is a folder" in result.stderr
    assert not list(tmp_path.glob(".xent-*")) and not list((tmp_path / "rows.parquet").iterdir())


def _xent(*args, **kwargs):
    import subprocess
    import sys

    code = "from xentcli.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, **kwargs)


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_terminated_run_leaves_no_part_file(tmp_path, signum):
    import os
    import signal
    import subprocess
    import sys
    import time

    args = _npy(tmp_path, np.zeros((400_000, 4), np.float32), np.zeros(400_000, np.int64))
    env = {**os.environ, "XENT_KERNEL": "numpy"}
    process = subprocess.Popen(
        [sys.executable, "-c", "from xentcli.cli import main; main()", "score", *map(str, args), "-o", str(tmp_path / "rows.csv"),
         "--chunk-rows", "500", "--threads", "1"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".xent-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(getattr(signal, signum))
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + getattr(signal, signum), stderr
    assert "interrupted" in stderr
    assert not list(tmp_path.glob(".xent-*")) and not (tmp_path / "rows.csv").exists()


def test_file_size_limit_is_one_line(tmp_path):
    import resource
    import signal

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    args = _npy(tmp_path, np.zeros((20_000, 4), np.float32), np.zeros(20_000, np.int64))
    result = _xent("score", *args, "-o", tmp_path / "rows.csv", preexec_fn=limit)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("xent: error:") and len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob(".xent-*"))


def test_file_size_limit_on_whole_file_outputs_names_the_file(tmp_path):
    """Found in review: a disk full (here a file-size limit) while writing --report, --save-partial
    or --png said only "No space left on device": one line naming the file, exit 2, nothing left."""
    import resource
    import signal

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    args = _npy(tmp_path, np.random.default_rng(0).normal(size=(50, 4)), np.arange(50) % 4)
    for option, name in (("--report", "r.html"), ("--save-partial", "p.xpart"), ("--png", "charts")):
        result = _xent("score", *args, option, tmp_path / name, "--quiet", preexec_fn=limit)
        assert result.returncode == 2, result.stderr
        line = result.stderr.strip()
        assert len(line.splitlines()) == 1 and name in line and "cannot write" in line, line
        assert not list(tmp_path.glob(".xent-*")) and not list(tmp_path.glob(f"{name}/.xent-*"))


def test_usage_errors_are_one_line(tmp_path):
    result = _xent("score", tmp_path / "x.npy", "--wrost", "5")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xent: error: No such option: --wrost (Possible options: ")
    assert "--worst" in lines[0] and lines[0].endswith("(see 'xent score --help')")
    bad_choice = _xent("check", tmp_path / "x.npy", "--fail-on", "sometimes", "--json")
    assert bad_choice.returncode == 2 and len(bad_choice.stderr.strip().splitlines()) == 1
    assert json.loads(bad_choice.stdout)["error"]["code"] == "UsageError"


# ---- limits that must not depend on what a file claims ---------------------------------------

def test_thousands_of_shards_under_a_small_open_file_limit(tmp_path):
    import resource

    rng = np.random.default_rng(8)
    z = rng.standard_normal((300, 3)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    for i in range(300):
        pq.write_table(pa.table({"logits": [z[i]], "label": [y[i]]}), tmp_path / f"part-{i:04d}.parquet")

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    result = _xent("score", tmp_path, "--json", "--threads", "1", preexec_fn=limit)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["loss_mean"] == pytest.approx(sparse_loss64(z, y).mean(), rel=1e-6)


def test_pipes_in_a_folder_are_skipped(tmp_path):
    import os

    np.savez(tmp_path / "a.npz", logits=np.zeros((2, 3)), labels=np.array([0, 1]))
    os.mkfifo(tmp_path / "b.npz")
    result = invoke("score", tmp_path, "--json")
    assert result.exit_code == 0 and "not regular files" in result.stderr
    assert invoke("score", tmp_path / "b.npz").exit_code == 2


def test_csv_rows_longer_than_a_block(tmp_path, monkeypatch):
    from xentcli.sources import columnar

    monkeypatch.setattr(columnar, "CSV_BLOCK_BYTES", 256)  # a row of 200 scores is ~1.4 KiB
    z = np.round(np.random.default_rng(2).standard_normal((5, 200)), 4)
    header = ",".join(f"logit_{c}" for c in range(200)) + ",label"
    lines = [header] + [",".join(f"{v:.4f}" for v in row) + ",3" for row in z]
    (tmp_path / "wide.csv").write_text("\n".join(lines) + "\n")
    doc = json.loads(invoke("score", tmp_path / "wide.csv", "--json").stdout)
    assert doc["summary"]["loss_mean"] == pytest.approx(sparse_loss64(z, np.full(5, 3)).mean(), rel=1e-9)


def test_mixed_dtype_shards_are_reported(tmp_path):
    z = np.random.default_rng(3).standard_normal((8, 4))
    y = np.arange(8) % 4
    np.savez(tmp_path / "a.npz", logits=z[:4].astype(np.float16), labels=y[:4])
    np.savez(tmp_path / "b.npz", logits=z[4:].astype(np.float32), labels=y[4:])
    result = invoke("score", tmp_path, "--json")
    doc = json.loads(result.stdout)
    assert doc["input"]["score_dtype"] == "float16+float32" and "different dtypes" in result.stderr
    xe109 = next(d for d in doc["diagnostics"] if d["code"] == "XE109")
    assert xe109["rows"] == 4  # the float16 shard's rows only
    stored = np.concatenate([z[:4].astype(np.float16).astype(np.float64), z[4:].astype(np.float32).astype(np.float64)])
    assert doc["summary"]["loss_mean"] == pytest.approx(sparse_loss64(stored, y).mean(), rel=1e-6)


# ---- smaller conformance gaps ------------------------------------------------------------------

def test_npz_logprobs_name(tmp_path):
    lp = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    np.savez(tmp_path / "d.npz", logprobs=lp, labels=np.array([0, 1]))
    doc = json.loads(invoke("score", tmp_path / "d.npz", "--json").stdout)
    assert doc["input"]["input_kind"] == "log-probs"
    assert doc["summary"]["loss_mean"] == pytest.approx((np.log(2) + np.log(1.25)) / 2, rel=1e-12)


def test_per_sequence_weights_broadcast_over_positions(tmp_path):
    rng = np.random.default_rng(9)
    z = rng.standard_normal((4, 3, 5))
    y = rng.integers(0, 5, (4, 3))
    w = np.array([[1.0], [2.0], [0.0], [3.0]])
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "w.npy", w)
    doc = json.loads(invoke("score", tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--sample-weights", tmp_path / "w.npy", "--json").stdout)
    loss = sparse_loss64(z.reshape(12, 5), y.reshape(12))
    weights = np.repeat(w[:, 0], 3)
    assert doc["summary"]["loss_mean"] == pytest.approx((loss * weights).sum() / weights.sum(), rel=1e-9)


def test_input_rows_are_the_rows_read(tmp_path):
    """A footer that claims 10^12 rows (here: a description that says so) does not reach the report."""
    from dataclasses import replace

    from xentcli.config import RunConfig, SourceConfig
    from xentcli.engine import run
    from xentcli.sources import Source

    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 7, "label": [0] * 7}), tmp_path / "d.parquet")
    config = RunConfig(SourceConfig((str(tmp_path / "d.parquet"),)))
    source = Source(config.source)
    source.description = replace(source.description, rows=10**12)
    report = run(config, source)
    assert report.input.rows == 7 and report.summary["rows"] == 7


# ---- memory with a huge class count: per-class sums for the classes seen only ------------------

@pytest.mark.parametrize("kernel", ["c", "numpy"])
def test_sparse_per_class_sums_equal_dense(tmp_path, monkeypatch, kernel):
    from xentcli import accumulate, native, tally
    from xentcli.config import RunConfig, SourceConfig
    from xentcli.engine import run

    rng = np.random.default_rng(11)
    z = rng.standard_normal((300, 50)).astype(np.float32)
    y = rng.integers(0, 20, 300)  # classes 20..49 never occur as targets
    z[:, 40:] -= 10  # and 40..49 are never predicted
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    config = RunConfig(SourceConfig((str(tmp_path / "z.npy"),), labels_path=str(tmp_path / "y.npy")),
                       per_class=True, chunk_rows=37, threads=2)
    if kernel == "numpy":
        monkeypatch.setattr(native, "_TALLY", None)
    dense = run(config)
    monkeypatch.setattr(tally, "DENSE_CLASS_LIMIT", 8)
    monkeypatch.setattr(accumulate, "DENSE_CLASS_LIMIT", 8)
    sparse = run(config)
    # the classes seen, by support (ties to the lower class), equal the dense rows of those classes
    seen = sorted((row for row in dense.per_class if row["support"] or row["predicted"]), key=lambda r: (-r["support"], r["class"]))
    assert [row["class"] for row in sparse.per_class] == [row["class"] for row in seen]
    for got, want in zip(sparse.per_class, seen):
        assert got["support"] == want["support"] and got["predicted"] == want["predicted"]
        assert got["loss_mean"] == pytest.approx(want["loss_mean"], rel=1e-12, nan_ok=True)
    assert sparse.diagnostics == dense.diagnostics  # XE209 names the same absent classes
    xe209 = next(d for d in dense.diagnostics if d["code"] == "XE209")
    assert xe209["absent_targets"] == list(range(20, 50)) and xe209["never_predicted"] == list(range(40, 50))
    assert sparse.summary == dense.summary


@pytest.mark.parametrize("like", ["torch", "keras", "tf", "optax"])
def test_frameworks_keep_the_c_kernel(tmp_path, monkeypatch, like):
    from native_paths import require_c_extension

    from xentcli import native
    from xentcli.config import RunConfig, SourceConfig
    from xentcli.engine import run
    from xentcli.config import LossOptions

    require_c_extension()
    calls = []
    real = native.sparse_logits
    monkeypatch.setattr(native, "sparse_logits", lambda *args: calls.append(1) or real(*args))
    z = np.random.default_rng(4).standard_normal((50, 6)).astype(np.float32)
    y = np.arange(50) % 6
    args = _npy(tmp_path, z, y)
    config = RunConfig(SourceConfig((str(args[0]),), labels_path=str(args[2])), loss=LossOptions(like=like, compare=True))
    report = run(config)
    assert calls, "--like/--compare-frameworks fell back to the numpy kernel"
    assert report.like["loss"] == pytest.approx(sparse_loss64(z, y).mean(), rel=1e-6)


@pytest.mark.parametrize("where", ["__init__", "write_batch", "close"])
def test_a_write_error_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, where):
    """Disk full or a file-size limit when the per-sample file is opened, written or closed (its
    footer): one line naming the file, exit 2, no temporary file left."""
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from xentcli.cli import app

    np.save(tmp_path / "z.npy", np.zeros((500, 3), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(500, np.int64))

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, where, full)
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "-o", str(out / "rows.parquet"),
                                      "--chunk-rows", "100"])
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert result.stderr.strip().splitlines() == [f"xent: error: {out / 'rows.parquet'}: cannot write: No space left on device"]
    assert os.listdir(out) == []


def test_losses_near_the_largest_float(tmp_path):
    """Found in review: a finite loss of 1.79e308 was an internal error (the sketch's bucket value and
    the histogram's edges overflowed). Losses [1.79e308, log(1 + e^-1), 1.797e308] (logits [z, 0],
    labels 1, 1, 0: by hand) are scored: their exact mean, quantiles within the extremes, finite
    histogram edges; score and check exit 0."""
    z = np.array([[1.79e308, 0.0], [1.0, 0.0], [-1.797e308, 0.0]])
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", np.array([1, 1, 0]))
    result = runner.invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    small = float(np.log1p(np.exp(-1.0)))
    assert doc["summary"]["loss_mean"] == pytest.approx(1.79e308 / 3 + small / 3 + 1.797e308 / 3,  # the sum itself overflows float64
                                                        rel=1e-15)
    assert doc["summary"]["loss_max"] == 1.797e308 and doc["summary"]["loss_p99"] <= 1.797e308
    from xentcli.histogram import log_histogram
    from xentcli.sketch import QuantileSketch

    sketch = QuantileSketch()
    sketch.update(np.array([1.79e308, small, 1.797e308]))
    edges = [edge for item in log_histogram(sketch) for edge in (item["lo"], item["hi"])]
    assert all(np.isfinite(edge) for edge in edges)  # the table's and the page's histogram
    for command in (["score"], ["check"], ["score", "--report", str(tmp_path / "r.html")]):
        assert runner.invoke(app, [*command, str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy")]).exit_code == 0


def test_a_dangling_symlink_at_the_output_already_exists(tmp_path):
    """Found in review: a symlink to nothing at the -o path was said to have "appeared while xent was
    writing it"; it is there before the run: "already exists", and --force replaces the link itself."""
    args = _npy(tmp_path, np.random.default_rng(0).normal(size=(10, 3)), np.arange(10) % 3)
    (tmp_path / "out.parquet").symlink_to(tmp_path / "nowhere.parquet")
    result = _xent("score", *args, "-o", tmp_path / "out.parquet")
    assert result.returncode == 2 and "already exists" in result.stderr and "appeared" not in result.stderr
    assert _xent("score", *args, "-o", tmp_path / "out.parquet", "--force").returncode == 0
    assert not (tmp_path / "out.parquet").is_symlink() and not (tmp_path / "nowhere.parquet").exists()


def test_an_interruption_after_outputs_are_in_place_leaves_none(tmp_path, monkeypatch):
    """Found in review: a signal after the first outputs had moved into place (while the table
    printed, or between --save-partial and -o) left them behind under the words "interrupted: no
    output was written". Every output already in place is removed: the words are true."""
    from xentcli.render import table

    args = _npy(tmp_path, np.random.default_rng(0).normal(size=(30, 3)), np.arange(30) % 3)
    outputs = {"-o": tmp_path / "rows.parquet", "--save-partial": tmp_path / "p.xpart", "--report": tmp_path / "r.html"}

    def interrupted(*_: object, **__: object) -> None:
        assert all(path.exists() for path in outputs.values())  # every output is in place when the table prints
        raise KeyboardInterrupt

    monkeypatch.setattr(table, "render_tables", interrupted)
    result = runner.invoke(app, ["score", *map(str, args), *[str(v) for pair in outputs.items() for v in pair]])
    assert result.exit_code == 130 and "interrupted: no output was written" in result.stderr, result.stderr
    assert not any(path.exists() for path in outputs.values()) and not list(tmp_path.glob(".xent-*"))


@pytest.mark.parametrize("command", [["score"], ["score", "--json"], ["check", "--fail-on", "never"], ["explain", "XE101"]])
def test_a_closed_stdout_ends_as_a_pipes_writer_does(tmp_path, command):
    """Found in review: `xent check … | true` exited 1 — check's "failed" — (Rich's and click's
    handling of a closed pipe), with --json after the line "Broken pipe". A closed stdout ends the
    process silently with 141 (128 + SIGPIPE), as other command-line tools end."""
    import subprocess
    import sys

    args = [] if command[0] == "explain" else _npy(tmp_path, np.random.default_rng(0).normal(size=(30, 3)), np.arange(30) % 3)
    read, write = os.pipe()
    os.close(read)  # the reader is gone before xent writes a byte
    try:
        result = subprocess.run([sys.executable, "-c", "from xentcli.cli import main; main()", command[0], *map(str, args), *command[1:]],
                                stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert result.returncode == 141 and result.stderr == "", (result.returncode, result.stderr)


@pytest.mark.parametrize("threads", [1, 2])
def test_top_k_breaks_ties_as_the_prediction_does(tmp_path, threads):
    """Found in review: rank counted only the classes scored strictly higher, so ties went the
    model's way: rows of equal scores had top-1 accuracy 1.0 against an accuracy of 0.1 (top-k 1.0
    for every k). Ties are ranked as the argmax breaks them (the lower class first): top-1 is
    accuracy, and equal rows give k/C (scikit-learn 1.9.1's top_k_accuracy_score: 0.1, 0.2, 0.5, 0.9
    for k = 1, 2, 5, 9 on this dump; labels spread evenly, so its opposite tie order agrees)."""
    z = np.zeros((1000, 10), np.float32)
    y = np.arange(1000) % 10
    for dtype, kind in ((np.float32, "logits"), (np.float64, "logits"), (np.float64, "probs"), (np.float32, "log-probs")):
        scores = np.full((1000, 10), 0.1) if kind == "probs" else np.full((1000, 10), np.log(0.1)) if kind == "log-probs" else z
        args = _npy(tmp_path, scores.astype(dtype), y)  # logits: the C kernel; probabilities: the numpy kernel
        for k, want in ((1, 0.1), (2, 0.2), (5, 0.5), (9, 0.9)):
            s = json.loads(invoke("score", *args, "--input", kind, "--top-k", k, "--threads", threads, "--json").stdout)["summary"]
            assert (s["accuracy"], s["top_k_accuracy"]) == (0.1, want), (kind, k)
    rng = np.random.default_rng(0)
    z = rng.integers(0, 3, (1000, 10)).astype(np.float32)  # many partial ties
    y = rng.integers(0, 10, 1000)
    args = _npy(tmp_path, z, y)
    s = json.loads(invoke("score", *args, "--top-k", 1, "--json").stdout)["summary"]
    assert s["top_k_accuracy"] == s["accuracy"] == float(np.mean(z.argmax(axis=1) == y))
    above = (z > z[np.arange(1000), y][:, None]).sum(axis=1)
    ties = ((z == z[np.arange(1000), y][:, None]) & (np.arange(10) < y[:, None])).sum(axis=1)
    s = json.loads(invoke("score", *args, "--top-k", 3, "--json").stdout)["summary"]
    assert s["top_k_accuracy"] == float(np.mean(1 + above + ties <= 3))


def _npy_with_header(path: Path, header: bytes, data: np.ndarray) -> None:
    """An .npy file (version 1.0) with the header text given, padded as numpy pads it."""
    import struct

    magic = b"\x93NUMPY\x01\x00"
    header += b" " * ((64 - (len(magic) + 2 + len(header) + 1) % 64) % 64) + b"\n"
    path.write_bytes(magic + struct.pack("<H", len(header)) + header + data.tobytes())


def test_damaged_npy_headers_and_archives_are_one_line(tmp_path):
    """Found in review (2026-12-03), each an "internal error" (exit 3): a header with a stray '}'
    (numpy's header filter raises tokenize.TokenError), as the dump, the labels, the sample weights
    or an NPZ member; and an NPZ whose zip entry claims a newer zip version (NotImplementedError).
    Each is now one line and exit 2."""
    import zipfile

    z = np.zeros((30, 3))
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", np.zeros(30, np.int64))
    _npy_with_header(tmp_path / "bad.npy", b"{'descr': '<f8', 'fortran_order': False, 'shape': (30, 3), } }", z)
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as archive:
        archive.write(tmp_path / "bad.npy", "logits.npy")
        archive.write(tmp_path / "y.npy", "labels.npy")
    np.savez(tmp_path / "ok.npz", logits=z, labels=np.zeros(30, np.int64))
    raw = bytearray((tmp_path / "ok.npz").read_bytes())
    raw[raw.find(b"PK\x01\x02") + 6] = 161  # "version needed to extract": 16.1
    (tmp_path / "version.npz").write_bytes(bytes(raw))
    for args in (["bad.npy", "--labels", "y.npy"], ["z.npy", "--labels", "bad.npy"], ["z.npy", "--labels", "y.npy", "--sample-weights", "bad.npy"],
                 ["bad.npz"], ["version.npz"]):
        result = runner.invoke(app, ["score", *(str(tmp_path / a) if a.endswith((".npy", ".npz")) else a for a in args)])
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr, result.exception)
        assert "internal error" not in result.stderr


def test_merge_refuses_what_is_not_a_regular_file(tmp_path):
    """Found in review (2026-12-03): `xent merge` on a FIFO, or /dev/zero, read forever. Run in a
    process of its own with a time limit, so that the old behaviour fails rather than hangs."""
    import subprocess
    import sys

    os.mkfifo(tmp_path / "fifo")
    for path, says in ((tmp_path / "fifo", "is not a regular file"), ("/dev/zero", "is not a regular file"),
                       (tmp_path, "is a folder"), (tmp_path / "missing.xpart", "no such file")):
        done = subprocess.run([sys.executable, "-m", "xentcli", "merge", str(path)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and says in done.stderr and len(done.stderr.strip().splitlines()) == 1, (path, done.stderr)


@pytest.mark.parametrize("option", ["--weight-col", "--by", "--id-col", "--label-col", "--score-col", "--group-col"])
def test_an_empty_column_name_is_refused(tmp_path, option):
    """Found in review (2026-12-03): an empty name was dropped as if not given — `--weight-col ''`
    (pandas' to_csv names its index '') scored the unweighted mean 1.358 and `check --max-loss 1.5`
    passed where the weighted mean is 1.976. Refused with one line, exit 2, in score, check and diff."""
    import pandas as pd

    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 3))
    pd.DataFrame({"logit_0": z[:, 0], "logit_1": z[:, 1], "logit_2": z[:, 2], "label": rng.integers(0, 3, 50)},
                 index=rng.random(50)).to_csv(tmp_path / "d.csv")
    diff = [["diff", str(tmp_path / "d.csv")]] if option in ("--by", "--label-col", "--score-col") else []  # (diff's own: --key, --cluster)
    for command in (["score"], ["check", "--max-loss", "1.5"], *diff):
        result = runner.invoke(app, [command[0], str(tmp_path / "d.csv"), *command[1:], option, ""])
        assert result.exit_code == 2 and f"{option} names no column" in result.stderr, (command, result.stderr)
    for option in ("--key", "--cluster"):
        result = runner.invoke(app, ["diff", str(tmp_path / "d.csv"), str(tmp_path / "d.csv"), option, ""])
        assert result.exit_code == 2 and f"{option} names no column" in result.stderr, result.stderr


@pytest.mark.parametrize("layout", ["file", "stream"])
def test_an_arrow_dump_that_begins_with_an_empty_batch_is_read(tmp_path, layout):
    """Found in review (2026-12-03): an Arrow IPC file or stream whose first record batch is empty
    was refused as "holds no rows" (XE304). Its rows are scored: the mean equals the float64 loss."""
    import pyarrow.ipc as ipc

    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(30, 3)), rng.integers(0, 3, 30)
    table = pa.table({"logits": pa.array(list(z)), "label": y})
    path = tmp_path / "d.arrow"
    with pa.OSFile(str(path), "wb") as sink:
        writer = ipc.new_file(sink, table.schema) if layout == "file" else ipc.new_stream(sink, table.schema)
        writer.write_batch(pa.RecordBatch.from_pylist([], schema=table.schema))
        writer.write_table(table)
        writer.close()
    result = invoke("score", path, "--format", "arrow", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["loss_mean"] == pytest.approx(sparse_loss64(z, y).mean(), rel=1e-15)


def test_a_sequence_dump_whose_first_sequence_is_empty_is_read(tmp_path):
    """Found in review (2026-12-03): nested-list sequences whose first sequence has no tokens were
    refused ("the scores have no classes"): the class count came from the first sequence's first
    token. It comes from the first token of any. Reference: float64 losses of the three tokens."""
    tokens = np.array([[0.1, 0.2, 0.3], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    labels = np.array([0, 1, 2])
    for leading in (1, 40):  # 40: more than the first batch read for the classes (16 rows)
        table = pa.table({"logits": pa.array([[]] * leading + [list(tokens[:1]), [], list(tokens[1:])], pa.list_(pa.list_(pa.float64()))),
                          "labels": pa.array([[]] * leading + [[0], [], [1, 2]], pa.list_(pa.int64()))})
        pq.write_table(table, tmp_path / "s.parquet")
        result = invoke("score", tmp_path / "s.parquet", "--json")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["summary"]["loss_mean"] == pytest.approx(sparse_loss64(tokens, labels).mean(), rel=1e-15)
