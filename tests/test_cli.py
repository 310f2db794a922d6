"""The command line: what a user sees, what a machine reads, exit codes, and the files written."""

from __future__ import annotations

import ast
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dumps import random_npy
from reference import log_softmax64, sparse_loss64
from xentcli import __version__, native
from xentcli.cli import app

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
runner = CliRunner()


@pytest.fixture(scope="module")
def sample():
    z = np.load(SAMPLES / "cifar10_val_logits.npy")
    y = np.load(SAMPLES / "cifar10_val_labels.npy")
    return z, y, sparse_loss64(z, y)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_json_document(sample):
    z, y, loss = sample
    result = invoke("score", SAMPLES / "cifar10_val.parquet", "--json", "--id-col", "id", "--worst", "3", "--per-class")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"xent_version", "input", "summary", "per_class", "worst", "diagnostics"}
    assert doc["xent_version"] == __version__
    s = doc["summary"]
    assert s["rows"] == 500 and s["counted"] == 500 and s["nonfinite"] == 0 and s["num_classes"] == 10
    assert abs(s["loss_mean"] - loss.mean()) <= 1e-6 * loss.mean()
    assert s["accuracy"] == pytest.approx((z.argmax(1) == y).mean(), abs=0)
    order = np.lexsort((np.arange(500), -loss))[:3]
    assert [w["row"] for w in doc["worst"]] == order.tolist()
    assert doc["worst"][0]["id"] == f"val_{order[0]:05d}"
    assert [c["support"] for c in doc["per_class"]] == np.bincount(y, minlength=10).tolist()
    assert doc["input"]["input_kind"] == "logits" and doc["input"]["target_kind"] == "sparse"


def test_json_writes_nan_as_null(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((2, 3)))
    np.save(tmp_path / "y.npy", np.array([7, 7]))
    result = invoke("score", tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--json")
    doc = json.loads(result.stdout)
    assert doc["summary"]["loss_mean"] is None and doc["summary"]["nonfinite"] == 2


def test_table_for_people(sample):
    _, _, loss = sample
    result = invoke("score", SAMPLES / "cifar10_val.csv", "--worst", "2")
    assert result.exit_code == 0
    out = result.stdout
    assert "Cross-entropy" in out and "500 × 10" in out and "wide columns logit_0 … logit_9" in out
    assert f"{loss.mean():.7g}" in out
    assert "Worst 2 rows" in out


def test_per_sample_parquet(tmp_path, sample):
    z, y, loss = sample
    out = tmp_path / "rows.parquet"
    result = invoke("score", SAMPLES / "cifar10_val.parquet", "--id-col", "id", "-o", out, "--chunk-rows", "64")
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.column_names == ["row", "id", "label", "loss", "pred", "correct", "p_true", "rank", "p_max", "margin", "entropy"]
    got = table.to_pydict()
    assert got["row"] == list(range(500)) and got["id"][3] == "val_00003"
    np.testing.assert_allclose(got["loss"], loss, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["p_true"], np.exp(-loss), rtol=1e-5, atol=1e-7)
    assert got["pred"] == z.argmax(1).tolist()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".xent-")]


def test_per_sample_csv_nulls_for_unusable_labels(tmp_path):
    z = np.log(np.array([[0.5, 0.25, 0.25]] * 3))
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", np.array([0.0, 1.5, 9.0]))
    out = tmp_path / "rows.csv"
    result = invoke("score", tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "-o", out)
    assert result.exit_code == 0, result.output
    rows = pa_csv.read_csv(out).to_pydict()
    assert rows["loss"][0] == pytest.approx(-np.log(0.5)) and rows["loss"][1:] == [None, None]
    assert rows["label"] == [0, None, 9]
    assert rows["correct"] == [True, None, None] and rows["pred"] == [0, 0, 0]


@pytest.mark.parametrize("first_null", [0, 1, 3, 6, None])
def test_per_sample_parquet_columns_required_until_a_null_arrives(tmp_path, first_null):
    """Parquet columns are written required while they hold no null (no definition levels to
    write); when a later chunk brings the first null, the rows written so far are copied into a
    file where that column is optional. Whatever chunk brings it: every value and every null where
    the hand-built reference has them, a row group per chunk, nothing left beside the file."""
    z = np.log(np.array([[0.5, 0.25, 0.25]] * 8))
    y = np.arange(8) % 3
    if first_null is not None:
        y[first_null] = 7  # out of range: its loss, p_true, correct … are null
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "rows.parquet"
    result = invoke("score", tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "-o", out, "--chunk-rows", "2", "--threads", "1")
    assert result.exit_code in (0, 1), result.output
    table = pq.read_table(out)
    loss = [-math.log(0.5) if label == 0 else -math.log(0.25) for label in y.tolist()]
    if first_null is not None:
        loss[first_null] = None
    got = table.column("loss").to_pylist()
    assert [g if g is None else pytest.approx(w) for g, w in zip(got, loss)] == loss
    assert table.column("label").to_pylist() == y.tolist() and table.column("row").to_pylist() == list(range(8))
    optional = {f.name for f in table.schema if f.nullable}
    assert optional == (set() if first_null is None else {"loss", "correct", "p_true", "rank", "margin"})
    assert pq.ParquetFile(out).metadata.num_row_groups == 4
    assert sorted(os.listdir(tmp_path)) == ["rows.parquet", "y.npy", "z.npy"]


@pytest.mark.parametrize("extra", [["-o", "rows.parquet"], ["-o", "rows.csv"], ["--by", "label"], ["--by", "label", "--by", "id"]])
def test_common_runs_do_not_import_pandas(tmp_path, extra):
    """pyarrow imports pandas (~0.2 s of a run) when it converts between numpy and Arrow with
    pa.array or to_numpy; the per-sample columns and the --by columns are converted through their
    buffers instead (sources.columns.from_numpy, to_numpy)."""
    extra = [str(tmp_path / a) if a.startswith("rows.") else a for a in extra]
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "xentcli", "score", str(SAMPLES / "cifar10_val.parquet"), *extra,
                          "--quiet"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "pyarrow" in imported and "pandas" not in imported


def test_output_refuses_existing_and_inputs(tmp_path):
    out = tmp_path / "rows.parquet"
    out.write_text("keep me")
    result = invoke("score", SAMPLES / "cifar10_val.parquet", "-o", out)
    assert result.exit_code == 2 and "already exists" in result.stderr and "--force" in result.stderr
    assert out.read_text() == "keep me"
    assert invoke("score", SAMPLES / "cifar10_val.parquet", "-o", out, "--force").exit_code == 0
    copy = tmp_path / "in.parquet"
    shutil.copy(SAMPLES / "cifar10_val.parquet", copy)
    result = invoke("score", copy, "-o", copy, "--force")
    assert result.exit_code == 2 and "is one of the inputs" in result.stderr


def test_failed_run_leaves_no_output(tmp_path):
    rows = [[0.0, 1.0]] * 300 + [[0.0]]
    pq.write_table(pa.table({"logits": rows, "label": [0] * 301}), tmp_path / "ragged.parquet")
    out = tmp_path / "rows.parquet"
    result = invoke("score", tmp_path / "ragged.parquet", "-o", out, "--chunk-rows", "50")
    assert result.exit_code == 2 and "row 300" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["ragged.parquet"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["score", "missing.parquet"], "missing.parquet: no such file"),
        (["score", "Makefile"], "unknown file type"),
        (["score", "sample_data/cifar10_val.parquet", "--label-col", "gold"], "no column 'gold'"),
        (["score", "sample_data/cifar10_val_logits.npy"], "--labels"),
        (["score", "sample_data/cifar10_val.parquet", "-o", "out.json"], "name a .parquet or .csv file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle):
    cwd = os.getcwd()
    os.chdir(SAMPLES.parent)
    try:
        result = invoke(*args)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_version():
    assert invoke("--version").stdout.strip() == f"xent {__version__} ({native.name()} kernel)"


def _xent_command() -> list[str]:
    script = Path(sys.executable).with_name("xent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "xentcli"]


def test_installed_command_in_a_real_process(tmp_path, sample):
    _, _, loss = sample
    out = tmp_path / "rows.csv"
    proc = subprocess.run(
        [*_xent_command(), "score", str(SAMPLES / "cifar10_val.npz"), "--json", "-o", str(out)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert json.loads(proc.stdout)["summary"]["loss_mean"] == pytest.approx(loss.mean(), rel=1e-6)
    assert out.exists()


def _score_in_a_process(args: list[str], packages: tuple[str, ...]) -> tuple[dict, list[str]]:
    """`xent score ARGS` in a fresh interpreter: its JSON document, and the modules of `packages` it imported."""
    code = (
        "import sys; from xentcli.cli import app\n"
        f"try: app(['score', *{args!r}])\n"
        "except SystemExit: pass\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {packages!r}), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout), ast.literal_eval(proc.stderr.strip())


def test_json_runs_do_not_import_rich(sample):
    """Rich costs ~40 ms of start-up; a --json run prints no table, bar or error with it."""
    _, _, loss = sample
    doc, imported = _score_in_a_process([str(SAMPLES / "cifar10_val.parquet"), "--json"], ("rich",))
    assert doc["summary"]["loss_mean"] == pytest.approx(loss.mean(), rel=1e-6)
    assert imported == []


@pytest.mark.parametrize("shape", [(50, 4), (50,), (3, 5, 4)])
def test_npy_runs_do_not_import_pyarrow(tmp_path, shape):
    """pyarrow costs ~20 ms of every start (a fifth of a binary dump's time to its 1 GB/s): NPY and
    NPZ runs — softmax, binary and sequence dumps, with --worst and the calibration — read their
    arrays without it (an import of a Parquet helper in the NPY reader had brought it back; found
    2026-12-03)."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "z.npy", rng.standard_normal(shape).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 2 if len(shape) == 1 else 4, shape[:-1] if len(shape) > 1 else shape))
    np.savez(tmp_path / "d.npz", logits=np.load(tmp_path / "z.npy"), labels=np.load(tmp_path / "y.npy"))
    for args in ([str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy")], [str(tmp_path / "d.npz")]):
        doc, imported = _score_in_a_process([*args, "--json", "--worst", "3", "--calibration"], ("pyarrow", "pandas"))
        assert doc["summary"]["rows"] == int(np.prod(shape[:-1] if len(shape) > 1 else shape)), args
        assert imported == [], args


def test_python_dash_m_and_exit_code_in_a_real_process():
    proc = subprocess.run(
        [sys.executable, "-m", "xentcli", "score", str(SAMPLES / "nothing.parquet")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("xent: error:") and "Traceback" not in proc.stderr


def test_probability_dump_is_recognised_by_name(tmp_path):
    p = np.exp(log_softmax64(np.random.default_rng(0).standard_normal((20, 4))))
    np.save(tmp_path / "probs.npy", p)
    np.save(tmp_path / "y.npy", np.arange(20) % 4)
    result = invoke("score", tmp_path / "probs.npy", "--labels", tmp_path / "y.npy", "--json")
    doc = json.loads(result.stdout)
    assert doc["input"]["input_kind"] == "probs" and doc["input"]["input_kind_from"] == "array name 'probs'"
    assert doc["summary"]["loss_mean"] == pytest.approx(-np.log(p[np.arange(20), np.arange(20) % 4]).mean(), rel=1e-12)


def test_long_comma_lists_are_values_not_file_names(tmp_path):
    # 300 class weights or class names inline run past a file name's 255 bytes: they are the values
    # (the check for an option naming a file must not raise ENAMETOOLONG), and the weighted mean is the
    # float64 formula's: Σ w_y ℓ / Σ w_y.
    z, y = random_npy(tmp_path, 400, 300, seed=2)
    weights = np.random.default_rng(3).uniform(0.5, 2.0, 300).round(3)
    result = invoke("score", tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--json", "--class-weights", ",".join(map(str, weights)))
    assert result.exit_code == 0, result.output
    loss = sparse_loss64(z, y)
    assert json.loads(result.output)["summary"]["loss_mean"] == pytest.approx((weights[y] * loss).sum() / weights[y].sum(), rel=1e-6)
    names = [f"class_number_{i}" for i in range(300)]
    pq.write_table(pa.table({"logits": list(z), "label": np.array(names)[y]}), tmp_path / "named.parquet")
    result = invoke("score", tmp_path / "named.parquet", "--json", "--classes", ",".join(names))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["summary"]["loss_mean"] == pytest.approx(loss.mean(), rel=1e-6)


@pytest.mark.parametrize("option", ["--pos-weight", "--class-weights"])
def test_a_weights_file_is_an_input_never_overwritten(tmp_path, option):
    # --pos-weight and --class-weights take a file as well as a list: -o (or --report) naming it is refused.
    pq.write_table(pa.table({"logit": np.array([0.5, -1.0], np.float32), "label": [0, 1]}), tmp_path / "bin.parquet")
    for flag, name in (("-o", "w.csv"), ("--report", "w.html")):
        weights = tmp_path / name
        weights.write_text("2\n")
        result = invoke("score", tmp_path / "bin.parquet", option, weights, flag, weights, "--force", "--quiet")
        assert result.exit_code == 2 and "is one of the inputs" in result.stderr, (flag, result.output)
        assert weights.read_text() == "2\n"


def test_output_with_a_name_too_long_is_refused_before_the_run_naming_it(tmp_path):
    """A name of 260 bytes (ext4 and most file systems allow 255): refused with one line naming the
    target, not the temporary file beside it (which an earlier version named, after the run), and
    nothing is left in the folder."""
    name = "a" * 252 + ".parquet"
    result = invoke("score", SAMPLES / "cifar10_val.parquet", "-o", tmp_path / name)
    assert result.exit_code == 2 and name in result.stderr and "longer than the" in result.stderr
    assert ".xent-" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_options_that_would_be_ignored_or_misread_are_refused(tmp_path):
    """Found in review: each of these was accepted and ignored — --class-axis 1 on nested-list
    sequences scored the [T][C] lists as [C][T] would not be (2.8657 where the [N, C, T] array gives
    2.7284, and check passed) —, or made --select "" turn every diagnostic off, or --chunk-rows
    2^63 an internal error. Each is one line, exit 2."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from xentcli.cli import app

    samples = Path(__file__).resolve().parent.parent / "sample_data"
    rng = np.random.default_rng(4)
    pq.write_table(pa.table({"logits": pa.array([rng.normal(size=(5, 5)).tolist() for _ in range(6)], pa.list_(pa.list_(pa.float64()))),
                             "label": pa.array([rng.integers(0, 5, 5).tolist() for _ in range(6)])}), tmp_path / "nested.parquet")
    parquet = str(samples / "cifar10_val.parquet")
    npy = [str(samples / "cifar10_val_logits.npy"), "--labels", str(samples / "cifar10_val_labels.npy")]
    cases = [(["check", str(tmp_path / "nested.parquet"), "--class-axis", "1"], "--class-axis 1 does not apply to nested lists"),
             (["score", parquet, "--class-axis", "0"], "--class-axis 0 does not apply"),
             (["check", parquet, "--select", ""], "names no code"), (["check", parquet, "--ignore", ","], "names no code"),
             (["score", parquet, "--chunk-rows", str(2**63)], "--chunk-rows must lie in"),
             (["score", *npy, "--id-col", "image_id"], "--id-col names an array or column"),
             (["score", parquet, "--score-key", "logits"], "--score-key names an NPZ array"),
             (["score", parquet, "--bins", "7"], "--bins does nothing here"), (["score", parquet, "--threshold", "0.8"], "--threshold does nothing"),
             (["score", parquet, "--min-group", "5"], "--min-group does nothing"), (["score", parquet, "--max-groups", "3"], "--max-groups does nothing")]
    for args, said in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and said in result.stderr and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    for args in (["score", parquet, "--class-axis", "1"], ["score", parquet, "--calibration", "--bins", "20"],
                 ["score", str(samples / "spam_val.parquet"), "--threshold", "0.8"], ["score", parquet, "--by", "label", "--min-group", "5"]):
        assert CliRunner().invoke(app, args).exit_code == 0, args


def test_more_options_that_would_do_nothing_and_clearer_refusals(tmp_path):
    """Found in review: --gate-on upper without a loss or accuracy gate, --ascii without --plot, and
    merge --plot with gates were accepted and did nothing; --confidence 0.9999999999999999 was said
    not to lie in (0, 1), --class-weights "" not to be finite, and one class name was "1 classes"."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    sample = str(Path(__file__).resolve().parent.parent / "sample_data" / "cifar10_val.parquet")
    assert CliRunner().invoke(app, ["score", sample, "--save-partial", str(tmp_path / "p.xpart"), "-q"]).exit_code == 0
    (tmp_path / "c.csv").write_text("logit_0,logit_1,label\n1,2,1\n")
    cases = [(["check", sample, "--gate-on", "upper"], "neither is given"), (["score", sample, "--ascii"], "--ascii shapes the bars of --plot"),
             (["merge", str(tmp_path / "p.xpart"), "--plot", "--max-loss", "3"], "--plot draws nothing where gates judge"),
             (["score", sample, "--confidence", "0.9999999999999999"], "too close to 1"),
             (["score", sample, "--class-weights", ""], "--class-weights names no weight"),
             (["score", str(tmp_path / "c.csv"), "--classes", "nofile.txt"], "--classes names 1 class but")]
    for args, said in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and said in result.stderr and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert CliRunner().invoke(app, ["check", sample, "--gate-on", "upper", "--max-loss", "3"]).exit_code == 0
    assert CliRunner().invoke(app, ["merge", str(tmp_path / "p.xpart"), "--plot"]).exit_code == 0


def test_out_of_memory_is_one_line_naming_the_allocation(capsys):
    """Running out of memory is one line and exit 2 that says what could not be allocated (numpy's
    words) and what to do, including when no chunk size helps (found in review: a single huge row
    was told to lower --chunk-rows)."""
    import typer

    from xentcli.cli.app import guarded

    def action():
        raise MemoryError("Unable to allocate 191. MiB for an array with shape (1, 50000000) and data type float32")

    with pytest.raises(typer.Exit) as exit_info:
        guarded(False, action)
    assert exit_info.value.exit_code == 2
    err = capsys.readouterr().err
    assert err == (
        "xent: error: out of memory (Unable to allocate 191. MiB for an array with shape (1, 50000000) and data type "
        "float32); lower --chunk-rows or --threads (a single row, its scores, targets or id, too large for the memory "
        "cannot be scored at any chunk size)\n")


def test_a_signal_during_start_up_is_one_line():
    """Found in review: Ctrl-C while the modules loaded printed an import traceback. From the entry
    point on, a signal before the app's own handlers is one line and the signal's exit status."""
    import subprocess
    import sys

    script = ("from xentcli.entry import quiet_start_up\nquiet_start_up()\nimport os, signal, time\n"
              "os.kill(os.getpid(), signal.SIGINT)\ntime.sleep(10)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (130, "xent: interrupted: no output was written\n")


def test_signals_after_the_first_are_ignored_while_the_run_unwinds():
    """Found in review: a second signal (timeout sends two; so does a double Ctrl-C) raised again in the
    worker pool's shutdown: 'Exception ignored … KeyboardInterrupt'. The first ends the run; later
    ones are ignored."""
    import subprocess
    import sys

    script = ("import os, signal\nfrom xentcli.cli.app import Interrupted, setup_process\nsetup_process()\n"
              "try:\n    os.kill(os.getpid(), signal.SIGTERM)\nexcept Interrupted as exc:\n    print(exc.signum)\n"
              "print([signal.getsignal(s) == signal.SIG_IGN for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)])\n"
              "os.kill(os.getpid(), signal.SIGINT)\nprint('still here')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.split("\n")[:3] == [str(int(__import__("signal").SIGTERM)), "[True, True, True]", "still here"], result.stderr


def test_the_local_cluster_starts_its_processes_with_ctrl_c_ignored(monkeypatch):
    """Found in review: a terminal's Ctrl-C reaches the Dask workers too, and each printed its
    KeyboardInterrupt traceback (67 lines). The cluster's processes start with SIGINT ignored (kept in
    a started process), and xent's own handler is back once they are."""
    import signal

    from xentcli import distributed

    seen = []

    class FakeDistributed:
        @staticmethod
        def LocalCluster(**kwargs):  # noqa: N802 — the name of the real one
            seen.append(signal.getsignal(signal.SIGINT))
            return "cluster"

    before = signal.getsignal(signal.SIGINT)
    assert distributed._local_cluster(FakeDistributed, 2) == "cluster"
    assert seen == [signal.SIG_IGN] and signal.getsignal(signal.SIGINT) is before


def test_explain_takes_a_family_prefix():
    """Found in a new-user review: `xent explain XE2` was refused though `--select XE2` takes it."""
    result = CliRunner().invoke(app, ["explain", "XE2", "--json"])
    assert result.exit_code == 0
    codes = [doc["code"] for doc in json.loads(result.stdout)]
    assert codes and all(code.startswith("XE2") for code in codes) and "XE201" in codes
    assert json.loads(CliRunner().invoke(app, ["explain", "XE201", "--json"]).stdout)["code"] == "XE201"
    assert CliRunner().invoke(app, ["explain", "XE9"]).exit_code == 2


def test_a_signal_the_parent_ignores_stays_ignored():
    """Found in review: with the start-up and run handlers, a job started with SIGINT ignored (a
    script's `cmd &`, `trap '' INT`) was ended by SIGINT, where Python had left it ignored."""
    import signal
    import subprocess
    import sys

    script = ("from xentcli.entry import quiet_start_up\nquiet_start_up()\nfrom xentcli.cli.app import setup_process\nsetup_process()\n"
              "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\nprint('alive')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert result.returncode == 0 and result.stdout == "alive\n", result.stderr


def test_an_option_of_another_command_is_named_with_its_command():
    """Found in review: `score --max_loss 2` was answered with click's guess --max-groups; an option
    another command takes is named with it, and a snake_case spelling of one of this command's is
    answered with its spelling. Real processes: the usage errors are main()'s."""
    sample = str(SAMPLES / "cifar10_val.parquet")
    cases = ((["score", sample, "--max-loss", "2"], "--max-loss is an option of xent check and xent merge"),
             (["score", sample, "--max_loss", "2"], "--max-loss (not --max_loss) is an option of xent check"),
             (["check", sample, "--max_loss", "2"], "did you mean --max-loss?"))
    for args, says in cases:
        proc = subprocess.run([*_xent_command(), *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_gate_at_the_loss_every_row_has_passes(tmp_path):
    """Ten rows whose loss is exactly 47.1 (logits [0, −47.1], label 1: log1p(e^−47.1) is below half
    an ulp of 47.1): the mean is 47.1 and `check --max-loss 47.1` passes. The blocks' float sums had
    made the mean 47.10000000000001, and the gate failed (found in review, 2026-12-03)."""
    np.save(tmp_path / "z.npy", np.tile([0.0, -47.1], (10, 1)))
    np.save(tmp_path / "y.npy", np.ones(10, np.int64))
    rows = tmp_path / "rows.csv"
    result = invoke("check", tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--max-loss", "47.1", "--json", "-o", rows)
    assert result.exit_code == 0, result.output
    assert pa_csv.read_csv(rows).column("loss").to_pylist() == [47.1] * 10  # each row's loss is exactly the limit
    summary = json.loads(result.stdout)["summary"]
    assert summary["loss_mean"] == 47.1 and summary["loss_sum"] == 471.0 and summary["loss_se"] == 0.0
