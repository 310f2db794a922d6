"""The engine: chunk sizes, options only the data can refute, the per-sample contract, and the
thread pool's bound on memory when one row is larger than a chunk."""

from __future__ import annotations

from dataclasses import replace

import math

import numpy as np
import pytest

from reference import dense_loss64, sparse_loss64
from xentcli import engine
from xentcli.accumulate import BLOCK_ROWS
from xentcli.config import DEFAULT_CHUNK_BYTES, LossOptions, RunConfig, SourceConfig
from xentcli.engine import ROW_STATE_BYTES, chunk_rows, run
from xentcli.errors import OptionError


def _dump(tmp_path, rows=50, classes=4, kind=np.float32):
    rng = np.random.default_rng(1)
    z = rng.standard_normal((rows, classes)).astype(kind)
    y = rng.integers(0, classes, rows)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    return SourceConfig((str(tmp_path / "z.npy"),), labels_path=str(tmp_path / "y.npy")), z, y


def test_chunk_rows():
    assert chunk_rows(RunConfig(SourceConfig(("x",)), chunk_rows=7), 40) == 7
    # about DEFAULT_CHUNK_BYTES of scores and state; from half a loss block on, whole blocks (16 MiB / 296 B = 56,679 → 65,536)
    assert chunk_rows(RunConfig(SourceConfig(("x",))), 40 + ROW_STATE_BYTES) == BLOCK_ROWS == 65_536
    assert chunk_rows(RunConfig(SourceConfig(("x",))), 4000 + ROW_STATE_BYTES) == DEFAULT_CHUNK_BYTES // (4000 + ROW_STATE_BYTES)
    assert chunk_rows(RunConfig(SourceConfig(("x",))), 20) == 13 * BLOCK_ROWS  # 838,860 rows → 12.8 blocks → 13
    assert chunk_rows(RunConfig(SourceConfig(("x",))), 10 * DEFAULT_CHUNK_BYTES) == 1


@pytest.mark.parametrize("loss,says", [
    (LossOptions(class_weights=(1.0, 2.0)), "--class-weights has 2 entries"),
    (LossOptions(epsilon=1e-7), "--epsilon clips probabilities"),
    (LossOptions(label_smoothing=float("nan")), "--label-smoothing must lie in [0, 1]"),
])
def test_options_the_data_refutes(tmp_path, loss, says):
    source, _, _ = _dump(tmp_path)
    with pytest.raises(OptionError, match=says.replace("[", r"\[").replace("]", r"\]")):
        run(RunConfig(source, loss))


def test_a_sink_needs_per_sample(tmp_path):
    source, _, _ = _dump(tmp_path)
    with pytest.raises(ValueError, match="per_sample"):
        run(RunConfig(source), sink=object())  # type: ignore[arg-type]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("rows", [1, 7, 50])
def test_threads_and_chunks_do_not_change_the_numbers(tmp_path, threads, rows):
    source, z, y = _dump(tmp_path)
    report = run(RunConfig(source, chunk_rows=rows, threads=threads, worst=3))
    loss = sparse_loss64(z, y)
    assert report.summary["loss_mean"] == pytest.approx(loss.mean(), rel=1e-6)
    assert [w["row"] for w in report.worst] == np.lexsort((np.arange(50), -loss))[:3].tolist()


def test_one_chunk_at_a_time_when_a_row_is_larger_than_a_chunk(tmp_path, monkeypatch):
    source, z, y = _dump(tmp_path, rows=6, classes=8)
    pools = []
    monkeypatch.setattr(engine, "DEFAULT_CHUNK_BYTES", 16)  # one row of 8 float32 scores is larger than a chunk
    real_pool = engine.ThreadPoolExecutor
    monkeypatch.setattr(engine, "ThreadPoolExecutor", lambda *args, **kwargs: pools.append(args) or real_pool(*args, **kwargs))
    report = run(RunConfig(source, threads=4))
    assert pools == [] and report.summary["rows"] == 6
    assert report.summary["loss_mean"] == pytest.approx(sparse_loss64(z, y).mean(), rel=1e-6)


def test_the_summary_is_the_same_to_the_bit_for_every_chunk_size_and_thread_count(tmp_path):
    """The mean loss, its sum, standard error and interval, perplexity: bit for bit whatever the
    chunks (smaller and larger than the loss blocks, edges anywhere) and threads, and right
    against a float64 reference. A NaN row and an ignored row do not count."""
    rows = 2 * BLOCK_ROWS + 4321
    rng = np.random.default_rng(8)
    z = (rng.standard_normal((rows, 5)) * 4).astype(np.float32)
    y = rng.integers(0, 5, rows)
    z[17, 2] = np.nan
    y[40_000] = -100
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    source = SourceConfig((str(tmp_path / "z.npy"),), labels_path=str(tmp_path / "y.npy"))
    keys = ("counted", "loss_sum", "loss_mean", "loss_se", "loss_ci", "perplexity", "perplexity_ci")
    first = {key: run(RunConfig(source)).summary[key] for key in keys}
    for chunk, threads in ((1_000, 2), (7_777, 1), (65_536, 2), (100_003, 2), (rows, 1)):
        summary = run(RunConfig(source, chunk_rows=chunk, threads=threads)).summary
        assert {key: summary[key] for key in keys} == first, (chunk, threads)
    loss = sparse_loss64(z.astype(np.float64), np.where(y < 0, 0, y))
    keep = np.isfinite(loss) & (y >= 0)
    assert first["counted"] == rows - 2
    assert first["loss_mean"] == pytest.approx(loss[keep].mean(), rel=1e-7)  # float32 scores: per-row losses to ~1e-7
    assert first["loss_se"] == pytest.approx(loss[keep].std(ddof=1) / np.sqrt(keep.sum()), rel=1e-6)


def test_the_weighted_summary_is_the_same_to_the_bit_for_every_chunk_size(tmp_path):
    """With class and sample weights: the weighted mean, its sums and the ratio estimator's error
    bars, bit for bit across chunks and threads, and right against float64 formulas (mean Σy/Σx,
    se √(Σ (y − m·x)²·n/(n − 1))/Σx, y = s·w[label]·ℓ, x = s·w[label])."""
    rows = BLOCK_ROWS + 30_001
    rng = np.random.default_rng(9)
    z = (rng.standard_normal((rows, 4)) * 2).astype(np.float32)
    y = rng.integers(0, 4, rows)
    s = rng.uniform(0, 3, rows)
    s[::7] = 0.0
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "s.npy", s)
    weights = (0.5, 1.0, 2.0, 4.0)
    source = SourceConfig((str(tmp_path / "z.npy"),), labels_path=str(tmp_path / "y.npy"), sample_weights_path=str(tmp_path / "s.npy"))
    keys = ("loss_mean", "weighted_loss_sum", "weight_sum", "loss_se", "loss_ci", "perplexity")
    config = RunConfig(source, LossOptions(class_weights=weights))
    first = {key: run(config).summary[key] for key in keys}
    for chunk, threads in ((999, 2), (65_536, 1), (70_000, 2)):
        summary = run(RunConfig(source, LossOptions(class_weights=weights), chunk_rows=chunk, threads=threads)).summary
        assert {key: summary[key] for key in keys} == first, (chunk, threads)
    loss = sparse_loss64(z.astype(np.float64), y)
    x = s * np.array(weights)[y]
    mean = (x * loss).sum() / x.sum()
    assert first["loss_mean"] == pytest.approx(mean, rel=1e-7)
    assert first["weight_sum"] == pytest.approx(x.sum(), rel=1e-12)
    n = int(np.count_nonzero(x > 0))  # HC1: the n/(n − 1) of the unweighted SE
    assert first["loss_se"] == pytest.approx(np.sqrt(((x * loss - mean * x) ** 2).sum() * n / (n - 1)) / x.sum(), rel=1e-6)


def test_the_weighted_error_bars_of_nearly_equal_losses(tmp_path):
    """Losses of 1000 ± 1e-6 (float64 logits [1000 + δ, 0], label 1) with sample weights: the ratio
    estimator's spread through each block's own ratio keeps its digits (Σy² − 2mΣxy + m²Σx² gave a
    standard error of 0, an interval of width 0). Reference: float64 over the rows, √(Σ (y − m·x)²·n/(n − 1))/Σx
    (within 2e-10 of the same formula in exact rational arithmetic)."""
    n = 2 * BLOCK_ROWS + 11
    rng = np.random.default_rng(0)
    z = np.zeros((n, 2))
    z[:, 0] = 1000 + rng.standard_normal(n) * 1e-6
    w = rng.uniform(0.5, 2, n)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", np.ones(n, np.int64))
    np.save(tmp_path / "w.npy", w)
    source = SourceConfig((str(tmp_path / "z.npy"),), labels_path=str(tmp_path / "y.npy"), sample_weights_path=str(tmp_path / "w.npy"))
    loss = z[:, 0] + np.log1p(np.exp(-z[:, 0]))
    mean = (w * loss).sum() / w.sum()
    expected = np.sqrt(((w * loss - mean * w) ** 2).sum() * n / (n - 1)) / w.sum()  # ~2.9e-9, HC1 as the summary's
    for chunk in (None, 50_000):
        summary = run(RunConfig(source, chunk_rows=chunk)).summary
        assert summary["loss_se"] == pytest.approx(expected, rel=1e-9)


def _row_groups_dump(tmp_path, monkeypatch, rows=700, groups=100):
    """A Parquet file of several row groups, with a NaN row, labels out of range and ids; tasks of one
    row group each (distributed.TASK_BYTES lowered), as a large file's row groups become tasks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xentcli import distributed

    rng = np.random.default_rng(5)
    z = (rng.standard_normal((rows, 6)) * 3).astype(np.float32)
    y = rng.integers(0, 6, rows)
    z[[33, 512], 1] = np.nan
    y[[250, 699]] = [6, -4]
    pq.write_table(pa.table({"logits": list(z), "label": y, "id": [f"s{i}" for i in range(rows)]}), tmp_path / "d.parquet",
                   row_group_size=groups)
    monkeypatch.setattr(distributed, "TASK_BYTES", 1)
    return SourceConfig((str(tmp_path / "d.parquet"),), id_col="id"), z, y


def test_parquet_row_groups_run_as_tasks_the_same_for_every_thread_count(tmp_path, monkeypatch):
    """Row groups decode side by side as tasks (distributed.run_local): the tasks, and so every number,
    are the same for 1, 2 and 3 threads; the same as the streamed pass's (its chunks cut elsewhere:
    the exact sums to the bit, per-class sums to rounding); and right against float64."""
    import json

    from xentcli import distributed
    from xentcli.render.json_doc import render_json as report_json

    source, z, y = _row_groups_dump(tmp_path, monkeypatch)
    config = RunConfig(source, worst=4, calibration=True, per_class=True, chunk_rows=40)  # tasks of whole chunks
    assert len(distributed.local_tasks(config, engine.Source(source))) == 7
    reports = [json.loads(report_json(run(replace(config, threads=t)))) for t in (1, 2, 3)]
    assert reports[0] == reports[1] == reports[2]
    monkeypatch.setattr(distributed, "local_tasks", lambda *_: None)
    streamed = json.loads(report_json(run(replace(config, threads=2))))
    summary, other = reports[0]["summary"], streamed["summary"]
    for key in ("rows", "counted", "loss_sum", "loss_mean", "loss_se", "loss_ci", "accuracy", "perplexity"):
        assert summary[key] == other[key], key
    assert reports[0]["worst"] == streamed["worst"] and reports[0]["diagnostics"] == streamed["diagnostics"]
    for mine, theirs in zip(reports[0]["per_class"], streamed["per_class"]):
        assert mine == pytest.approx(theirs, rel=1e-12)
    loss = sparse_loss64(z.astype(np.float64), np.clip(y, 0, 5))
    keep = np.isfinite(loss) & (y >= 0) & (y < 6)
    assert summary["counted"] == 696
    assert summary["loss_mean"] == pytest.approx(loss[keep].mean(), rel=1e-7)
    assert [w["row"] for w in reports[0]["worst"]] == np.flatnonzero(keep)[np.argsort(-loss[keep], kind="stable")][:4].tolist()
    examples = {d["code"]: d["examples"] for d in reports[0]["diagnostics"]}
    assert [e["row"] for e in examples["XE101"]] == [33, 512] and [e["row"] for e in examples["XE201"]] == [250, 699]


def test_parquet_tasks_write_the_per_sample_rows_in_order(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from xentcli.cli import app
    from typer.testing import CliRunner

    _row_groups_dump(tmp_path, monkeypatch)
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(app, ["score", str(tmp_path / "d.parquet"), "--id-col", "id", "-o", str(out), "--quiet",
                                      "--chunk-rows", "30"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.column("row").to_pylist() == list(range(700))
    assert table.column("id").to_pylist() == [f"s{i}" for i in range(700)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet", "rows.parquet"]  # the tasks' files are gone


def test_parquet_task_errors_name_the_row_in_the_file(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xentcli import distributed
    from xentcli.errors import XentError

    rows = [[0.1, 0.2, 0.3]] * 500
    rows[420] = [0.1, 0.2]
    pq.write_table(pa.table({"logits": rows, "label": [0] * 500}), tmp_path / "r.parquet", row_group_size=100)
    monkeypatch.setattr(distributed, "TASK_BYTES", 1)
    with pytest.raises(XentError, match="row 420 has 2 values"):
        run(RunConfig(SourceConfig((str(tmp_path / "r.parquet"),)), threads=2, chunk_rows=50))
    weights = np.ones(500)
    weights[333] = -1.0
    pq.write_table(pa.table({"logits": [[0.1, 0.2, 0.3]] * 500, "label": [0] * 500, "w": weights}), tmp_path / "w.parquet",
                   row_group_size=100)
    with pytest.raises(XentError, match="the sample weight of row 333 is -1.0"):
        run(RunConfig(SourceConfig((str(tmp_path / "w.parquet"),), weight_col="w"), threads=2, chunk_rows=50))
    rows[420] = None
    pq.write_table(pa.table({"logits": rows, "label": [0] * 500}), tmp_path / "n.parquet", row_group_size=100)
    with pytest.raises(XentError, match="row 420 of column 'logits' is null"):
        run(RunConfig(SourceConfig((str(tmp_path / "n.parquet"),)), threads=2, chunk_rows=50))


def test_a_local_run_never_imports_dask(tmp_path):
    import subprocess
    import sys

    source, _, _ = _dump(tmp_path)
    code = ("import sys; from xentcli.engine import run; from xentcli.config import RunConfig, SourceConfig; "
            f"run(RunConfig(SourceConfig(({source.paths[0]!r},), labels_path={source.labels_path!r}))); "
            "assert 'distributed' not in sys.modules and 'dask' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_half_a_block_of_rows_is_a_whole_block():
    # 16 MiB / 512 bytes = 32,768 rows = half a loss block, which round() takes to 0 blocks (half to
    # even): 64 float32 classes from NPY, 32 from Parquet (whose scores count twice) must still run.
    assert chunk_rows(RunConfig(SourceConfig(("x",))), 512) == BLOCK_ROWS


@pytest.mark.parametrize("fmt,classes", [("npy", 64), ("parquet", 32)])
def test_rows_of_512_bytes_score(tmp_path, fmt, classes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    z = rng.standard_normal((1000, classes)).astype(np.float32)
    y = rng.integers(0, classes, 1000)
    if fmt == "npy":
        np.save(tmp_path / "z.npy", z)
        np.save(tmp_path / "y.npy", y)
        source = SourceConfig((str(tmp_path / "z.npy"),), labels_path=str(tmp_path / "y.npy"))
    else:
        pq.write_table(pa.table({"logits": list(z), "label": y}), tmp_path / "z.parquet")
        source = SourceConfig((str(tmp_path / "z.parquet"),))
    assert run(RunConfig(source)).summary["loss_mean"] == pytest.approx(sparse_loss64(z, y).mean(), rel=1e-6)


def test_parquet_tasks_skip_empty_row_groups(tmp_path, monkeypatch):
    """Empty row groups anywhere (the last ones after a task's edge too) make no task of their own."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xentcli import distributed

    rng = np.random.default_rng(4)
    z = rng.standard_normal((300, 5)).astype(np.float32)
    y = rng.integers(0, 5, 300)
    table = pa.table({"logits": list(z), "label": y})
    with pq.ParquetWriter(tmp_path / "e.parquet", table.schema) as writer:
        for lo, hi in ((0, 0), (0, 100), (100, 100), (100, 200), (200, 300), (300, 300), (300, 300)):
            writer.write_table(table.slice(lo, hi - lo))
    monkeypatch.setattr(distributed, "TASK_BYTES", 1)
    assert distributed._ranges(str(tmp_path / "e.parquet"), "parquet", 50) == [(0, 100), (100, 200), (200, 300)]
    for threads in (1, 3):
        summary = run(RunConfig(SourceConfig((str(tmp_path / "e.parquet"),)), chunk_rows=50, threads=threads)).summary
        assert summary["rows"] == 300 and summary["loss_mean"] == pytest.approx(sparse_loss64(z, y).mean(), rel=1e-6)


def test_parquet_tasks_leave_no_folder_when_a_task_fails(tmp_path, monkeypatch):
    """A task's error (a negative weight in row 5) ends the run with one line while other tasks are
    still writing their rows: the hidden folder of the tasks' rows is removed after they stop."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from xentcli import distributed
    from xentcli.cli import app

    rng = np.random.default_rng(6)
    weights = rng.uniform(0, 1, 20_000)
    weights[5] = -1.0
    pq.write_table(pa.table({"logits": list(rng.standard_normal((20_000, 8)).astype(np.float32)), "label": rng.integers(0, 8, 20_000),
                             "weight": weights}), tmp_path / "w.parquet", row_group_size=200)
    monkeypatch.setattr(distributed, "TASK_BYTES", 1)
    out = tmp_path / "out"
    out.mkdir()
    for _ in range(8):
        result = CliRunner().invoke(app, ["score", str(tmp_path / "w.parquet"), "--weight-col", "weight", "--chunk-rows", "50",
                                          "--threads", "8", "--quiet", "-o", str(out / "rows.parquet")])
        assert result.exit_code == 2 and "the sample weight of row 5 is -1.0" in result.output
        assert list(out.iterdir()) == []


def test_a_task_that_cannot_write_its_rows_names_the_target(tmp_path, monkeypatch):
    # A full disk while a task writes its rows to the hidden folder: the one-line error names the
    # file the user asked for (-o), not the task's hidden file.
    from typer.testing import CliRunner

    from xentcli import distributed
    from xentcli.cli import app
    from xentcli.errors import OutputError

    _row_groups_dump(tmp_path, monkeypatch)

    def full_disk(task):
        raise OutputError("cannot write: No space left on device", path=task.samples_to)

    monkeypatch.setattr(distributed, "run_task", full_disk)
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(app, ["score", str(tmp_path / "d.parquet"), "--chunk-rows", "40", "--quiet", "-o", str(out)])
    assert result.exit_code == 2
    assert f"{out}: cannot write: No space left on device" in result.output and ".xent-parts" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet"]


@pytest.mark.parametrize("classes", [7, 50])
@pytest.mark.parametrize("options", [[], ["--label-smoothing", "0.1"], ["--class-weights", "FILE", "--sample-weights", "W"]])
def test_dense_targets_give_each_row_the_same_loss_in_any_chunk(tmp_path, classes, options):
    """Soft rows beside one-hot rows: a row's loss (-o) is the same bits whatever chunk holds it, so
    with chunks of 16 rows (most without a soft row) and of the whole file; and right against float64."""
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from xentcli.cli import app

    rng = np.random.default_rng(classes)
    z = (rng.standard_normal((1000, classes)) * 3).astype(np.float32)
    t = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, 1000)]
    soft = rng.random(1000) < 0.02
    t[soft] = rng.dirichlet(np.ones(classes), int(soft.sum())).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "t.npy", t)
    np.save(tmp_path / "w.npy", rng.uniform(0.5, 2.0, 1000))
    weights = ",".join(f"{w:.3f}" for w in rng.uniform(0.5, 2.0, classes))
    options = [{"FILE": weights, "W": str(tmp_path / "w.npy")}.get(o, o) for o in options]
    losses = []
    for rows in (16, 1000):
        out = tmp_path / f"rows{rows}.parquet"
        result = CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "t.npy"), "--chunk-rows", str(rows),
                                          "--json", "-o", str(out), *options])
        assert result.exit_code == 0, result.output
        losses.append(pq.read_table(out).column("loss").to_numpy())
    np.testing.assert_array_equal(losses[0], losses[1])
    if not options:
        assert losses[0] == pytest.approx(dense_loss64(z, t), rel=1e-6)


@pytest.mark.parametrize("kind", ["logits", "probs", "log-probs"])
@pytest.mark.parametrize("options", [[], ["--sample-weights", "W"], ["--label-smoothing", "0.1"]])
def test_binary_soft_targets_beside_labels_give_each_row_the_same_numbers_in_any_chunk(tmp_path, kind, options):
    """A binary head whose targets are mostly 0/1 with a few soft ones, an ignored row, a label 2, a
    missing one and infinite logits: every per-sample column and the summary are the same whatever
    chunk holds a row — a chunk with a soft target scores its other rows as labels, as a chunk
    without one does — and the 0/1 rows' losses are the float64 formula's."""
    import json

    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from xentcli.cli import app

    rng = np.random.default_rng(9)
    z = (rng.standard_normal(2000) * 3).astype(np.float32)
    scores = {"logits": z, "probs": 1 / (1 + np.exp(-z)), "log-probs": -np.log1p(np.exp(-z))}[kind].astype(np.float32)
    t = rng.integers(0, 2, 2000).astype(np.float32)
    soft = rng.random(2000) < 0.02
    t[soft] = rng.random(int(soft.sum())).astype(np.float32)
    t[[5, 11, 13]] = [-100, 2, np.nan]
    if kind == "logits":
        scores[[7, 9]] = [np.inf, -np.inf]
    np.save(tmp_path / "s.npy", scores)
    np.save(tmp_path / "t.npy", t)
    np.save(tmp_path / "w.npy", rng.uniform(0.5, 2.0, 2000))
    options = [str(tmp_path / "w.npy") if o == "W" else o for o in options] + ([] if kind == "logits" else ["--input", kind])
    tables, summaries = [], []
    for rows in (64, 2000):
        out = tmp_path / f"rows{rows}.parquet"
        result = CliRunner().invoke(app, ["score", str(tmp_path / "s.npy"), "--labels", str(tmp_path / "t.npy"), "--chunk-rows", str(rows),
                                          "--json", "-o", str(out), *options])
        assert result.exit_code == 0, result.output
        tables.append(pq.read_table(out))
        summaries.append(json.loads(result.output)["summary"])
    assert tables[0].equals(tables[1]) and summaries[0] == summaries[1]
    plain = ~soft & (t >= 0) & (t <= 1) & np.isfinite(z)
    if not options or kind != "logits":
        loss = tables[0].column("loss").to_numpy(zero_copy_only=False)
        stored = scores.astype(np.float64)  # the loss of the numbers as stored, in float64
        with np.errstate(divide="ignore", invalid="ignore"):
            want = {"logits": np.logaddexp(0.0, stored) - t * stored,  # max(z, 0) − z·t + log1p(exp(−|z|))
                    "probs": -(t * np.log(stored) + (1 - t) * np.log1p(-stored)),
                    "log-probs": -(t * stored + (1 - t) * np.log(-np.expm1(stored)))}[kind]
        if not any(o == "--label-smoothing" for o in options):
            np.testing.assert_allclose(loss[plain], want[plain], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("options", [["--label-smoothing", "0.1"], ["--class-weights", "1,2,0.5,1,3"],
                                     ["--label-smoothing", "0.2", "--class-weights", "1,2,0.5,1,3"]])
def test_smoothed_and_weighted_losses_are_the_same_bits_in_any_chunk(tmp_path, dense, options):
    """Σ_c w_c log p_c (smoothing, class weights) was a float32 BLAS matmul, which rounds a row
    differently with the rows beside it: a row's loss moved by ~1e-8 between --chunk-rows 1 and a
    whole chunk. Now each row's sum has an order set by C alone; and the losses are the float64
    formula's, the weighted mean PyTorch's."""
    import json

    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from xentcli.cli import app

    rng = np.random.default_rng(11)
    n, c = 60, 5
    z = (rng.standard_normal((n, c)) * 3).astype(np.float32)
    y = rng.integers(0, c, n)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", np.eye(c, dtype=np.float32)[y] if dense else y)
    losses, means = [], []
    for rows in (1, 7, n):
        out = tmp_path / f"rows{rows}.parquet"
        result = CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy"), "--chunk-rows", str(rows),
                                          "--json", "-o", str(out), *options])
        assert result.exit_code == 0, result.output
        losses.append(pq.read_table(out).column("loss").to_numpy())
        means.append(json.loads(result.stdout)["summary"]["loss_mean"])
    np.testing.assert_array_equal(losses[0], losses[1])
    np.testing.assert_array_equal(losses[0], losses[2])
    assert means[0] == pytest.approx(means[2], rel=1e-14) and means[1] == pytest.approx(means[2], rel=1e-14)  # float64 sums per chunk
    eps = float(options[options.index("--label-smoothing") + 1]) if "--label-smoothing" in options else 0.0
    w = np.array([1, 2, 0.5, 1, 3.0]) if "--class-weights" in options else np.ones(c)
    z64 = z.astype(np.float64)
    lp = z64 - z64.max(1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(1, keepdims=True))
    # the per-sample loss −Σ t' log p; the mean PyTorch's Σ ℓ_w / Σ w[y], ℓ_w = (1 − ε)·w[y]·(−log p_y) + (ε/C)·Σ_c w_c·(−log p_c)
    np.testing.assert_allclose(losses[0], (1 - eps) * -lp[np.arange(n), y] + eps / c * -lp.sum(1), rtol=1e-6)
    weighted = (1 - eps) * w[y] * -lp[np.arange(n), y] + eps / c * -(lp * w).sum(1)
    assert means[2] == pytest.approx(weighted.sum() / w[y].sum(), rel=1e-6)


@pytest.mark.parametrize("centre", [1000.0, 3e4, 47.5])
def test_unit_weights_give_the_unweighted_error_bars_of_losses_a_few_ulps_apart(tmp_path, centre):
    """Losses a few ulps apart (logits [0, −L], label 1: each loss exactly L) with sample weights of 1:
    the weighted mean and standard error are the unweighted ones, exact. The weighted sums took
    their mean from the blocks' float sums, an ulp off, and the standard error was 29% high for three
    rows (found in review, 2026-12-03). Reference: exact fractions, √(M2/(n(n − 1)))."""
    from fractions import Fraction

    rng = np.random.default_rng(2)
    for n in (3, BLOCK_ROWS + 500):
        loss = centre + rng.integers(1, 6, n) * np.spacing(centre)
        np.save(tmp_path / "z.npy", np.stack([np.zeros(n), -loss], 1))
        np.save(tmp_path / "y.npy", np.ones(n, np.int64))
        np.save(tmp_path / "w.npy", np.ones(n))
        exact = [Fraction(v) for v in loss.tolist()]
        mean = sum(exact) / n
        se = math.sqrt(float(sum((v - mean) ** 2 for v in exact) / (n * (n - 1))))
        for weights in (None, str(tmp_path / "w.npy")):
            source = SourceConfig((str(tmp_path / "z.npy"),), labels_path=str(tmp_path / "y.npy"), sample_weights_path=weights)
            summary = run(RunConfig(source)).summary
            assert summary["loss_mean"] == float(mean) and summary["loss_se"] == pytest.approx(se, rel=1e-12), (n, weights)
