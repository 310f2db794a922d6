"""--engine dask: the same numbers as a local run, on a real cluster of worker processes
(LocalCluster, processes=True), whatever the number of tasks; per-sample rows assembled in input
order; a worker lost mid-run retried; a run that cannot finish refused with one line."""

from __future__ import annotations

import builtins
import json
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from xentcli.cli import app

distributed = pytest.importorskip("distributed")  # `make test` installs the dask extra: this skip never happens there
import cloudpickle  # noqa: E402 — distributed's own dependency

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the worker plugins below travel by value

runner = CliRunner()


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


def xent(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def doc(*args, code=0):
    return json.loads(xent(*args, "--json", "-q", code=code).stdout)


OPTIONS = ["--worst", "7", "--per-class", "--calibration", "--confusions", "4", "--chunk-rows", "500"]


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    """20,000 rows of 10 classes with a NaN, an overflow, an ignored and an out-of-range label: as
    an .npy pair, and as two Parquet shards of row groups of 1,500 rows with ids."""
    folder = tmp_path_factory.mktemp("dask")
    rng = np.random.default_rng(5)
    n = 20_000
    z = (rng.standard_normal((n, 10)) * 3).astype(np.float32)
    y = rng.integers(0, 10, n)
    z[17, 2] = np.nan
    z[15_000] = 3e38
    y[300] = -100
    y[12_345] = 10
    np.save(folder / "z.npy", z)
    np.save(folder / "y.npy", y)
    np.save(folder / "g.npy", rng.integers(0, 4, n))
    (folder / "shards").mkdir()
    for i, (a, b) in enumerate([(0, 9_000), (9_000, n)]):
        table = pa.table({"id": [f"r{k}" for k in range(a, b)],
                          "logits": pa.FixedSizeListArray.from_arrays(pa.array(z[a:b].ravel()), 10), "label": y[a:b]})
        pq.write_table(table, folder / "shards" / f"part-{i}.parquet", row_group_size=1_500)
    (folder / "csv").mkdir()
    for i, (a, b) in enumerate([(0, 700), (700, 1_500), (1_500, 2_000)]):
        table = pa.table({**{f"logit_{c}": z[a:b, c].astype(np.float64) for c in range(10)}, "label": y[a:b]})
        pa_csv.write_csv(table, folder / "csv" / f"part-{i}.csv")
    return folder


@pytest.mark.parametrize("task_rows", [20_000, 7_000, 3_000, 1_000])  # 1, 3, 7 and 20 tasks
def test_npy_equals_local_for_any_task_count(dump, cluster, task_rows):
    args = ["score", dump / "z.npy", "--labels", dump / "y.npy", "--by-file", dump / "g.npy", *OPTIONS]
    local = doc(*args)
    remote = doc(*args, "--engine", "dask", "--scheduler", cluster.scheduler_address, "--task-rows", task_rows)
    assert remote == local  # every number, bit for bit: the tasks start on the local run's chunk boundaries


def test_parquet_shards_and_per_sample_rows(dump, cluster, tmp_path):
    args = ["score", dump / "shards", "--id-col", "id", *OPTIONS, "--chunk-rows", "750"]
    local = doc(*args, "-o", tmp_path / "local.parquet")
    remote = doc(*args, "-o", tmp_path / "dask.parquet", "--engine", "dask", "--scheduler", cluster.scheduler_address,
                 "--task-rows", 3_000)
    assert remote == local
    assert pq.read_table(tmp_path / "dask.parquet").equals(pq.read_table(tmp_path / "local.parquet"))
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".xent")]  # the tasks' parts are gone


def test_csv_shards_whole_files(dump, cluster, tmp_path):
    args = ["check", dump / "csv", "--worst", "3", "--max-loss", "9"]
    local = runner.invoke(app, [str(a) for a in args + ["--json", "-o", tmp_path / "l.csv"]])
    remote = runner.invoke(app, [str(a) for a in args + ["--json", "-o", tmp_path / "d.csv", "--engine", "dask", "--scheduler",
                                                          cluster.scheduler_address]])
    assert local.exit_code == remote.exit_code == 1  # the NaN row fails --max-nonfinite 0
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    assert (tmp_path / "d.csv").read_bytes() == (tmp_path / "l.csv").read_bytes()


def test_sequences_number_across_tasks(tmp_path, cluster):
    rng = np.random.default_rng(9)
    for i in range(3):
        np.save(tmp_path / f"z{i}.npy", rng.standard_normal((5, 4, 3)).astype(np.float32))
        np.save(tmp_path / f"y{i}.npy", rng.integers(0, 3, (5, 4)))
    (tmp_path / "d").mkdir()
    for i in range(3):
        np.savez(tmp_path / "d" / f"s{i}.npz", scores=np.load(tmp_path / f"z{i}.npy"), labels=np.load(tmp_path / f"y{i}.npy"))
    args = ["score", tmp_path / "d", "--per-sequence", "--worst", "4"]
    local = doc(*args, "-o", tmp_path / "l.parquet")
    remote = doc(*args, "-o", tmp_path / "r.parquet", "--engine", "dask", "--scheduler", cluster.scheduler_address)
    assert remote == local
    assert [s["sequence"] for s in remote["per_sequence"]] == list(range(15))
    assert pq.read_table(tmp_path / "r.parquet").equals(pq.read_table(tmp_path / "l.parquet"))


def test_a_local_cluster_of_two_workers(dump):
    args = ["score", dump / "z.npy", "--labels", dump / "y.npy", "--worst", "3"]
    assert doc(*args, "--engine", "dask", "--workers", "2") == doc(*args)


class KillWorker(distributed.WorkerPlugin):
    """Kills the worker process when it starts a task of xent's: once (a marker file says it
    happened), or every time."""

    def __init__(self, marker: str, always: bool) -> None:
        self.marker, self.always = marker, always

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and "run_task" in str(key) and (self.always or not os.path.exists(self.marker)):
            open(self.marker, "w").close()
            os._exit(1)


def test_a_worker_lost_mid_run_is_retried(dump, tmp_path):
    args = ["score", dump / "z.npy", "--labels", dump / "y.npy", *OPTIONS]
    local = doc(*args)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c, \
            distributed.Client(c) as client:
        client.register_plugin(KillWorker(str(tmp_path / "killed"), always=False))
        remote = doc(*args, "--engine", "dask", "--scheduler", c.scheduler_address, "--task-rows", 4_000)
    assert (tmp_path / "killed").exists()  # a worker did die
    assert remote == local


def test_a_run_that_cannot_finish_leaves_nothing(dump, tmp_path):
    target = tmp_path / "rows.parquet"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as c, \
            distributed.Client(c) as client:
        client.register_plugin(KillWorker(str(tmp_path / "killed"), always=True))
        result = runner.invoke(app, ["score", str(dump / "z.npy"), "--labels", str(dump / "y.npy"), "-o", str(target), "--engine",
                                     "dask", "--scheduler", c.scheduler_address, "-q"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the Dask run could not finish: KilledWorker" in lines[0]
    assert os.listdir(tmp_path) == ["killed"]  # no per-sample file, no temporary parts


def test_errors_in_a_task_are_the_local_run_s(dump, cluster, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("logit_0,logit_1,label\n0.5,0.1,1\nabc,0.2,0\n")
    local = runner.invoke(app, ["score", str(bad)])
    remote = runner.invoke(app, ["score", str(bad), "--engine", "dask", "--scheduler", cluster.scheduler_address])
    assert local.exit_code == remote.exit_code == 2
    assert remote.stderr == local.stderr and "abc" in remote.stderr


def test_without_dask_one_line(dump, monkeypatch):
    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    result = runner.invoke(app, ["score", str(dump / "z.npy"), "--labels", str(dump / "y.npy"), "--engine", "dask"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "xent: error: --engine dask needs Dask, which is not installed; pip install 'xentcli[dask]'"]


def test_refusals(dump):
    result = runner.invoke(app, ["score", str(dump / "z.npy"), "--labels", str(dump / "y.npy"), "--workers", "2"])
    assert result.exit_code == 2 and "--workers needs --engine dask" in result.stderr
    result = runner.invoke(app, ["score", str(dump / "z.npy"), "--labels", str(dump / "y.npy"), "--engine", "dask",
                                 "--temperature-scan"])
    assert result.exit_code == 2 and "not supported yet" in result.stderr
    result = runner.invoke(app, ["score", str(dump / "z.npy"), "--labels", str(dump / "y.npy"), "--engine", "dask",
                                 "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1 and "cannot reach" in result.stderr


def test_diff_row_order_with_groups_and_pairs_file(dump, cluster, tmp_path):
    rng = np.random.default_rng(11)
    candidate = np.load(dump / "z.npy") + rng.standard_normal((20_000, 10)).astype(np.float32) * 0.3
    np.save(tmp_path / "c.npy", candidate)
    args = ["diff", dump / "z.npy", tmp_path / "c.npy", "--labels", dump / "y.npy", "--by-file", dump / "g.npy", "--chunk-rows", "500",
            "--bootstrap", "200", "--top", "4", "--fail-on", "never"]  # the dump's planted errors: equality is the test
    local = doc(*args, "-o", tmp_path / "l.parquet")
    remote = doc(*args, "-o", tmp_path / "r.parquet", "--engine", "dask", "--scheduler", cluster.scheduler_address, "--task-rows", 3_000)
    assert remote == local
    assert pq.read_table(tmp_path / "r.parquet").equals(pq.read_table(tmp_path / "l.parquet"))


def test_diff_by_key(dump, cluster, tmp_path):
    z, y = np.load(dump / "z.npy")[:3_000], np.load(dump / "y.npy")[:3_000]
    order = np.random.default_rng(2).permutation(3_000)
    for name, rows, scale in (("base", np.arange(3_000), 1.0), ("cand", order, 1.1)):
        table = pa.table({"id": [f"k{k}" for k in rows], "logits": pa.FixedSizeListArray.from_arrays(pa.array((z[rows] * scale).ravel()), 10),
                          "label": y[rows]})
        pq.write_table(table, tmp_path / f"{name}.parquet", row_group_size=400)
    args = ["diff", tmp_path / "base.parquet", tmp_path / "cand.parquet", "--key", "id", "--chunk-rows", "200", "--fail-on", "never"]
    assert doc(*args, "--engine", "dask", "--scheduler", cluster.scheduler_address) == doc(*args)


@pytest.mark.parametrize("key", [False, True])
def test_diff_of_a_binary_head_and_a_two_class_softmax(cluster, tmp_path, key):
    """A binary head paired with its two-class softmax ([0, z]) on Dask: "internal error:
    'CompactStats' object has no attribute 'p_true'", exit 3 (found in review, 2026-12-03). The
    softmax side's p_1 now travels with its rows: the document is the local run's, and both
    accuracies the binary head's at --threshold 0.7 (numpy reference)."""
    rng = np.random.default_rng(8)
    z, y = rng.normal(size=2_000) * 2, rng.integers(0, 2, 2_000)
    ids = [f"r{i}" for i in range(2_000)]
    pq.write_table(pa.table({"id": ids, "logit": z, "label": y}), tmp_path / "binary.parquet", row_group_size=300)
    pq.write_table(pa.table({"id": ids, "logits": [[0.0, v] for v in z], "label": y}), tmp_path / "softmax.parquet", row_group_size=300)
    args = ["diff", tmp_path / "softmax.parquet", tmp_path / "binary.parquet", "--threshold", "0.7", "--chunk-rows", "250",
            *(["--key", "id"] if key else [])]
    remote = doc(*args, "--engine", "dask", "--scheduler", cluster.scheduler_address, "--task-rows", 700)
    assert remote == doc(*args)
    want = float(np.mean((1 / (1 + np.exp(-z)) >= 0.7) == (y == 1)))
    accuracy = remote["metrics"]["accuracy"]
    assert accuracy["base"] == accuracy["candidate"] == pytest.approx(want, rel=1e-15) and (accuracy["b"], accuracy["c"]) == (0, 0)


def test_a_url_folder_on_the_workers(dump, cluster):
    args = ["score", f"file://{dump}/shards", "--id-col", "id", "--worst", "3", "--chunk-rows", "750"]
    remote = doc(*args, "--engine", "dask", "--scheduler", cluster.scheduler_address, "--task-rows", 3_000)
    local = doc("score", dump / "shards", "--id-col", "id", "--worst", "3", "--chunk-rows", "750")
    assert remote["input"]["path"] == f"file://{dump}/shards"
    remote["input"].pop("path"), local["input"].pop("path")
    assert remote == local


def test_a_dask_run_saves_a_partial_that_merges(dump, cluster, tmp_path):
    args = ["score", dump / "z.npy", "--labels", dump / "y.npy", *OPTIONS]
    doc(*args, "--engine", "dask", "--scheduler", cluster.scheduler_address, "--task-rows", 7_000, "--save-partial", tmp_path / "a.xpart")
    merged, local = doc("merge", tmp_path / "a.xpart"), doc(*args)
    assert merged == local  # one partial: exactly the run it was saved from, which is the local run


def test_the_loss_summary_is_the_local_runs_bits_over_whole_file_shards(tmp_path, cluster):
    """NPZ shards (one task each) of odd sizes over several loss blocks: each task is told where its
    rows begin (from the shards' headers), so the sum, mean and error bars are the local run's to
    the bit (they differed in the last digits when the later shards' blocks were cut from 0)."""
    from xentcli.accumulate import BLOCK_ROWS

    rng = np.random.default_rng(12)
    for i, n in enumerate([BLOCK_ROWS + 4_465, 100_003]):
        y = rng.integers(0, 4, n)
        y[::20] = -100
        np.savez(tmp_path / f"s{i}.npz", logits=(rng.standard_normal((n, 4)) * 3).astype(np.float32), labels=y)
    keys = ("counted", "loss_sum", "loss_mean", "loss_se", "loss_ci", "perplexity")
    local = doc("score", tmp_path)["summary"]
    remote = doc("score", tmp_path, "--engine", "dask", "--scheduler", cluster.scheduler_address)["summary"]
    assert {k: remote[k] for k in keys} == {k: local[k] for k in keys}


def test_the_weighted_summary_is_the_local_runs_bits_over_shards(tmp_path, cluster):
    """Weighted pending pieces are renumbered with the rest of a task's part (they were not: the
    weighted mean differed from the local run's in its last digits)."""
    from xentcli.accumulate import BLOCK_ROWS

    rng = np.random.default_rng(13)
    for i, n in enumerate([BLOCK_ROWS + 1, 40_000, 70_003]):
        pq.write_table(pa.table({"logits": list((rng.standard_normal((n, 5)) * 3).astype(np.float32)), "label": rng.integers(0, 5, n),
                                 "w": rng.uniform(0, 2, n)}), tmp_path / f"s{i}.parquet", row_group_size=30_000)
    args = ["score", tmp_path, "--weight-col", "w", "--class-weights", "1,2,0.5,3,1"]
    keys = ("loss_mean", "weighted_loss_sum", "weight_sum", "loss_se", "loss_ci", "perplexity")
    local = doc(*args)["summary"]
    remote = doc(*args, "--engine", "dask", "--scheduler", cluster.scheduler_address, "--task-rows", "30000")["summary"]
    assert {k: remote[k] for k in keys} == {k: local[k] for k in keys}


def test_a_scheduler_that_is_no_address_is_one_line(tmp_path, monkeypatch):
    """Found in review: --scheduler bogus://x, localhost (no port), tcp://host:notaport, and the same
    in DASK_SCHEDULER_ADDRESS were internal errors (exit 3): one line, exit 2."""
    np.save(tmp_path / "z.npy", np.zeros((4, 3)))
    np.save(tmp_path / "y.npy", np.zeros(4, np.int64))
    args = ["score", tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--engine", "dask"]
    for address in ("bogus://x", "localhost", "tcp://", "tcp://host:notaport"):
        result = xent(*args, "--scheduler", address, code=2)
        assert "is not a Dask scheduler's address" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "foo://x")
    assert "is not a Dask scheduler's address" in xent(*args, code=2).stderr
