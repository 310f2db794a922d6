"""Every format and layout gives the same results; every bad input gives one clear error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dumps import LAYOUTS, write_dump
from reference import dense_loss64, sparse_loss64
from typer.testing import CliRunner

from xentcli.cli import app
from xentcli.config import RunConfig, SourceConfig
from xentcli.engine import run
from xentcli.errors import InputError, LayoutError, OptionError, XentError
from xentcli.sources import Source


class Collect:
    def __init__(self):
        self.loss = []
        self.rows = []

    def write(self, result):
        self.loss.append(result.stats.loss)
        self.rows.append(result.offset + np.arange(result.stats.loss.size))


def config_from_args(args, **options) -> RunConfig:
    labels = args[2] if len(args) > 1 else None
    run_options = {k: options.pop(k) for k in list(options) if k in ("chunk_rows", "threads", "worst", "top_k")}
    return RunConfig(SourceConfig((args[0],), labels_path=labels, **options), per_sample=True, **run_options)


def score(args, **options):
    sink = Collect()
    report = run(config_from_args(args, **options), sink=sink)
    return report, np.concatenate(sink.loss), np.concatenate(sink.rows)


@pytest.fixture(scope="module")
def data64():
    rng = np.random.default_rng(11)
    z = rng.standard_normal((301, 7)) * 4
    y = rng.integers(0, 7, 301)
    return z, y


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("chunk_rows,threads", [(None, 1), (1, 2), (64, 2), (1000, 1)])
def test_every_layout_gives_the_reference(tmp_path, data64, layout, chunk_rows, threads):
    z, y = data64
    args = write_dump(tmp_path, layout, z, y)
    report, loss, rows = score(args, chunk_rows=chunk_rows, threads=threads)
    np.testing.assert_array_equal(rows, np.arange(len(y)))
    np.testing.assert_allclose(loss, sparse_loss64(z, y), rtol=1e-12)
    assert report.summary["rows"] == 301 and report.input.num_classes == 7
    assert report.summary["loss_mean"] == pytest.approx(sparse_loss64(z, y).mean(), rel=1e-12)


def test_layouts_agree_to_1e12(tmp_path, data64):
    z, y = data64
    summaries = []
    for layout in LAYOUTS:
        report, _, _ = score(write_dump(tmp_path / layout, layout, z, y), chunk_rows=50)
        summaries.append(report.summary)
    for other in summaries[1:]:
        for key, value in summaries[0].items():
            assert other[key] == pytest.approx(value, rel=1e-12), key


@pytest.mark.parametrize("layout", ["parquet-list", "parquet-wide", "csv", "npy", "npz"])
def test_dense_targets_in_every_family(tmp_path, layout):
    rng = np.random.default_rng(12)
    z = rng.standard_normal((40, 5))
    t = rng.dirichlet(np.ones(5), 40)
    report, loss, _ = score(write_dump(tmp_path, layout, z, t), chunk_rows=7)
    assert report.input.target_kind == "dense"
    np.testing.assert_allclose(loss, dense_loss64(z, t), rtol=1e-12)


def test_float_and_null_labels(tmp_path):
    z = np.zeros((4, 3))
    table = pa.table({"logits": pa.array([[0.0, 0.0, 0.0]] * 4), "label": pa.array([1.0, 2.0, None, 0.5])})
    pq.write_table(table, tmp_path / "f.parquet")
    report, loss, _ = score([str(tmp_path / "f.parquet")])
    assert report.summary["counted"] == 2 and report.summary["nonfinite"] == 2
    np.testing.assert_allclose(loss[:2], sparse_loss64(z[:2], np.array([1, 2])), rtol=1e-14)


def test_names_say_probabilities(tmp_path):
    p = np.array([[0.25, 0.75], [0.5, 0.5]])
    pq.write_table(pa.table({"probs": pa.array(p.tolist()), "y": [1, 0]}), tmp_path / "p.parquet")
    source = Source(SourceConfig((str(tmp_path / "p.parquet"),)))
    assert source.description.input_kind == "probs"
    assert source.description.input_kind_from == "column name 'probs'"
    report, loss, _ = score([str(tmp_path / "p.parquet")])
    np.testing.assert_allclose(loss, [-np.log(0.75), -np.log(0.5)], rtol=1e-14)


def test_wide_prob_prefix_and_explicit_columns(tmp_path):
    table = pa.table({"prob_0": [0.2, 0.9], "prob_1": [0.8, 0.1], "gold": [1, 1], "other": [[1.0], [2.0]]})
    pq.write_table(table, tmp_path / "w.parquet")
    source = Source(SourceConfig((str(tmp_path / "w.parquet"),), score_prefix="prob", label_col="gold"))
    assert source.description.input_kind == "probs" and source.description.num_classes == 2


def _error(tmp_path, **config) -> XentError:
    with pytest.raises(XentError) as caught:
        run(RunConfig(SourceConfig(**config)))
    return caught.value


def test_missing_and_unknown_files(tmp_path):
    assert "no such file" in _error(tmp_path, paths=(str(tmp_path / "none.parquet"),)).one_line()
    (tmp_path / "x.txt").write_text("hello")
    err = _error(tmp_path, paths=(str(tmp_path / "x.txt"),))
    assert isinstance(err, InputError) and "--format" in err.one_line()
    (tmp_path / "bad.parquet").write_text("not parquet")
    assert "cannot read as parquet" in _error(tmp_path, paths=(str(tmp_path / "bad.parquet"),)).one_line()


def test_no_score_column_lists_columns(tmp_path):
    pq.write_table(pa.table({"a": [1.0], "label": [0]}), tmp_path / "n.parquet")
    line = _error(tmp_path, paths=(str(tmp_path / "n.parquet"),)).one_line()
    assert "no score column found (columns: 'a', 'label')" in line and "--score-col" in line


def test_non_numeric_scores_and_labels(tmp_path):
    pq.write_table(pa.table({"logits": [["a", "b"]], "label": [0]}), tmp_path / "s.parquet")
    assert "not numbers" in _error(tmp_path, paths=(str(tmp_path / "s.parquet"),)).one_line()
    pq.write_table(pa.table({"logits": [[0.0, 1.0]], "label": ["cat"]}), tmp_path / "l.parquet")
    line = _error(tmp_path, paths=(str(tmp_path / "l.parquet"),)).one_line()
    assert "labels in column 'label' are strings, and no class names were given" in line and "--classes" in line


def test_ragged_scores_name_the_row(tmp_path):
    pq.write_table(pa.table({"logits": [[0.0, 1.0]] * 5 + [[0.0]], "label": [0] * 6}), tmp_path / "r.parquet")
    err = _error(tmp_path, paths=(str(tmp_path / "r.parquet"),))
    assert isinstance(err, LayoutError) and "row 5 has 1 values where row 0 has 2" in err.one_line()


def test_missing_named_column(tmp_path, data64):
    args = write_dump(tmp_path, "parquet-list", *data64)
    line = _error(tmp_path, paths=(args[0],), label_col="gold").one_line()
    assert "no column 'gold'" in line and "--label-col" in line
    line = _error(tmp_path, paths=(args[0],), id_col="key").one_line()
    assert "no column 'key'" in line and "--id-col" in line


@pytest.mark.parametrize("kind", ["npy", "parquet", "csv"])
def test_labels_file_with_other_row_count(tmp_path, data64, kind):
    z, y = data64
    np.save(tmp_path / "z.npy", z)
    labels = tmp_path / f"y.{kind}"
    if kind == "npy":
        np.save(labels, y[:-1])
    elif kind == "parquet":
        pq.write_table(pa.table({"label": y[:-1]}), labels)
    else:
        labels.write_text("label\n" + "\n".join(map(str, y.tolist() + [0])) + "\n")
    err = _error(tmp_path, paths=(str(tmp_path / "z.npy"),), labels_path=str(labels))
    assert isinstance(err, LayoutError) and str(labels) in err.one_line() and "rows" in err.one_line()


def test_npy_refusals(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "y.npy", np.zeros(1, int))
    assert "pickled" in _error(tmp_path, paths=(str(tmp_path / "obj.npy"),), labels_path=str(tmp_path / "y.npy")).one_line()
    np.save(tmp_path / "z.npy", np.zeros((2, 3)))
    assert "--labels" in _error(tmp_path, paths=(str(tmp_path / "z.npy"),)).one_line()
    np.save(tmp_path / "z4.npy", np.zeros((2, 3, 4, 5)))
    line = _error(tmp_path, paths=(str(tmp_path / "z4.npy"),), labels_path=str(tmp_path / "y.npy")).one_line()
    assert "expected [rows, classes] or [N, T, C]" in line


def test_dense_width_mismatch(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((2, 3)))
    np.save(tmp_path / "t.npy", np.zeros((2, 4)))
    line = _error(tmp_path, paths=(str(tmp_path / "z.npy"),), labels_path=str(tmp_path / "t.npy")).one_line()
    assert "dense targets have 4 classes but the scores have 3" in line


def test_target_option_contradicting_data(tmp_path, data64):
    args = write_dump(tmp_path, "parquet-list", *data64)
    err = _error(tmp_path, paths=(args[0],), target_kind="dense")
    assert isinstance(err, OptionError) and "--target dense" in err.one_line()


def test_inputs_are_opened_read_only(tmp_path, data64):
    args = write_dump(tmp_path, "parquet-list", *data64)
    before = (tmp_path / "dump.parquet").stat()
    tmp_path.joinpath("dump.parquet").chmod(0o444)
    score(args)
    after = (tmp_path / "dump.parquet").stat()
    assert (before.st_mtime_ns, before.st_size) == (after.st_mtime_ns, after.st_size)


@pytest.mark.parametrize("kind", ["csv", "parquet", "npy"])
def test_inputs_without_rows(tmp_path, kind):
    if kind == "csv":
        (tmp_path / "e.csv").write_text("logit_0,logit_1,label\n")
        config = {"paths": (str(tmp_path / "e.csv"),)}
    elif kind == "parquet":
        pq.write_table(pa.table({"logits": pa.array([], pa.list_(pa.float32())), "label": pa.array([], pa.int64())}), tmp_path / "e.parquet")
        config = {"paths": (str(tmp_path / "e.parquet"),)}
    else:
        np.save(tmp_path / "e.npy", np.zeros((0, 4), np.float32))
        np.save(tmp_path / "y.npy", np.zeros(0, np.int64))
        config = {"paths": (str(tmp_path / "e.npy"),), "labels_path": str(tmp_path / "y.npy")}
    err = _error(tmp_path, **config)
    assert "holds no rows" in err.one_line()


@pytest.mark.parametrize(
    "array,expected",
    [
        (pa.array([1.5, 2.5, 3.5, 4.5], pa.float32()).slice(1, 2), np.array([2.5, 3.5], np.float32)),
        (pa.array([7, -1, 3], pa.int16()).slice(2), np.array([3], np.int16)),
        (pa.array([1, None, 3], pa.int64()), np.array([1.0, np.nan, 3.0])),  # nulls: pyarrow's conversion
        (pa.array([], pa.float64()), np.array([], np.float64)),
        (pa.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]).slice(1).offsets, np.array([2, 4, 6], np.int32)),
    ],
)
def test_arrow_to_numpy_views_sliced_buffers(array, expected):
    from xentcli.sources.columns import to_numpy

    got = to_numpy(array)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_columnar_runs_do_not_import_pandas(tmp_path, data64):
    """pyarrow's to_numpy imports pandas (~0.3 s of every start); xent views the buffers instead."""
    import subprocess
    import sys

    z, y = data64
    pq.write_table(pa.table({"logits": pa.array(list(z.astype(np.float32))), "label": y}), tmp_path / "d.parquet")
    code = (
        "import sys; from xentcli.engine import run; from xentcli.config import RunConfig, SourceConfig; "
        f"run(RunConfig(SourceConfig(({str(tmp_path / 'd.parquet')!r},)))); print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---- inputs named by URL (sources/paths.py): file:// stands for s3://, gs://… (the same pyarrow file-system calls) ----

URL_SAMPLES = [("cifar10_val.parquet",), ("cifar10_val.csv",), ("cifar10_val.arrow",), ("cifar10_val.npz",),
               ("cifar10_val_logits.npy", "--labels", "{}cifar10_val_labels.npy")]


@pytest.mark.parametrize("args", URL_SAMPLES, ids=lambda a: a[0])
def test_a_url_reads_as_the_local_file(args):
    import json

    from typer.testing import CliRunner

    from xentcli.cli import app

    folder = Path(__file__).resolve().parent.parent / "sample_data"
    local = [str(folder / args[0]), *[a.format(str(folder) + "/") for a in args[1:]]]
    url = ["file://" + str(folder / args[0]), *[a.format("file://" + str(folder) + "/") for a in args[1:]]]
    runner = CliRunner()
    a, b = runner.invoke(app, ["score", *local, "--json", "--worst", "3"]), runner.invoke(app, ["score", *url, "--json", "--worst", "3"])
    assert a.exit_code == b.exit_code == 0, (a.stderr, b.stderr)
    first, second = json.loads(a.stdout), json.loads(b.stdout)
    assert second["input"]["path"].startswith("file://")
    for doc in (first, second):
        doc["input"].pop("path"), doc["input"].pop("labels_path")
    assert first == second


def test_url_folders_and_refusals(tmp_path):
    import json

    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from xentcli.cli import app

    table = pq.read_table(Path(__file__).resolve().parent.parent / "sample_data" / "cifar10_val.parquet")
    (tmp_path / "dump" / "sub").mkdir(parents=True)
    pq.write_table(table.slice(0, 200), tmp_path / "dump" / "a.parquet")
    pq.write_table(table.slice(200), tmp_path / "dump" / "sub" / "b.parquet")
    (tmp_path / "dump" / ".hidden.parquet").write_bytes(b"not parquet")
    runner = CliRunner()
    doc = json.loads(runner.invoke(app, ["score", f"file://{tmp_path}/dump", "--json"]).stdout)
    assert doc["summary"]["rows"] == 500 and doc["input"]["shards"] == 2
    assert doc["summary"]["loss_mean"] == json.loads(runner.invoke(app, ["score", str(tmp_path / "dump"), "--json"]).stdout)["summary"]["loss_mean"]
    for url, says in ((f"file://{tmp_path}/missing.parquet", "no such file"), ("nosuchscheme://host/x.parquet", "cannot open this URL"),
                      (f"file://{tmp_path}/dump/*.parquet", "a URL cannot be a glob")):
        result = runner.invoke(app, ["score", url])
        assert result.exit_code == 2 and says in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("label_type", [pa.int8(), pa.int64(), pa.float64()])
def test_dictionary_encoded_number_labels_are_their_values(tmp_path, label_type):
    """A pandas Categorical of integers written to Feather is a dictionary<int64> column: its
    values are the labels (it was refused as 'not numbers'), scored as the plain column is."""
    import pyarrow.feather as feather

    z = np.random.default_rng(0).standard_normal((6, 3))
    labels = pa.array([0, 1, 2, 2, 1, 0], label_type)
    feather.write_feather(pa.table({"logits": list(z), "label": labels.dictionary_encode()}), str(tmp_path / "cat.arrow"))
    feather.write_feather(pa.table({"logits": list(z), "label": labels}), str(tmp_path / "plain.arrow"))
    runs = [CliRunner().invoke(app, ["score", str(tmp_path / name), "--json"]) for name in ("cat.arrow", "plain.arrow")]
    assert all(r.exit_code == 0 for r in runs), [r.stderr for r in runs]
    cat, plain = (json.loads(r.stdout)["summary"] for r in runs)
    expected = float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(6), [0, 1, 2, 2, 1, 0]]))
    assert cat["loss_mean"] == plain["loss_mean"] == pytest.approx(expected, rel=1e-15) and cat["counted"] == 6


@pytest.mark.parametrize(("column", "flagged"), [("label", "XE203"), ("logit_1", "XE101")])
def test_a_late_bad_csv_cell_is_named_with_the_code_a_blank_one_gets(tmp_path, column, flagged):
    """A cell past the first block (1 MiB, where the types are inferred) that is not a number: named
    by column and row, and the hint names what a blank cell there becomes (a NaN label: XE203; it
    said XE101, the NaN-score code, for labels too)."""
    rows = 250_000  # 1.5 MB: the bad cell lies past the first block
    lines = ["logit_0,logit_1,label"] + ["1,2,0"] * rows
    at = rows - 2
    lines[at + 1] = "1,x,0" if column == "logit_1" else "1,2,x"
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "d.csv")])
    assert result.exit_code == 2
    assert f"column '{column}' row {at}: 'x' is not a number" in result.stderr and f"flagged {flagged}" in result.stderr


@pytest.mark.parametrize("null_row", [0, 2])
def test_a_null_score_row_is_named_wherever_it_is(tmp_path, null_row):
    """A null list in row 0 read as 'the scores have no classes (empty rows)'; it is named as a null
    row anywhere else is."""
    scores = [[0.1, 0.2], [0.3, 0.1], [0.5, 0.5]]
    scores[null_row] = None
    pq.write_table(pa.table({"logits": scores, "label": [0, 1, 0]}), tmp_path / "d.parquet")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "d.parquet")])
    assert result.exit_code == 2 and f"row {null_row} of column 'logits' is null" in result.stderr


def test_npy_blocks_reuse_memory_only_once_released(tmp_path, monkeypatch):
    # Read into buffers (a URL, or no C library), the reader reuses a block's memory for a later block
    # once nothing refers to it (arrays._Buffers): a block still held (here the first, and a view of
    # the third) must keep its values to the end.
    from xentcli.sources import arrays
    from xentcli.sources.arrays import NpyArray

    monkeypatch.setattr(arrays, "_mappable", lambda path: False)

    values = np.arange(100 * 3, dtype=np.float32).reshape(100, 3)
    np.save(tmp_path / "s.npy", values)
    blocks = NpyArray(str(tmp_path / "s.npy"), "scores").slices(10)
    first = next(blocks)
    addresses, held = [], None
    for index, block in enumerate(blocks, start=1):
        np.testing.assert_array_equal(block, values[10 * index : 10 * index + 10])
        addresses.append(block.ctypes.data)
        if index == 3:
            held = block[2:5]  # a view: its block's memory stays held
    np.testing.assert_array_equal(first, values[:10])
    np.testing.assert_array_equal(held, values[32:35])
    # released blocks were reused: 9 blocks read after the first, in at most 3 buffers besides the two held
    assert len(set(addresses)) <= 4 and addresses[2] not in addresses[3:]


def _rss_file_kib() -> int:
    """The process's resident pages of mapped files (Linux: /proc/self/status RssFile)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssFile:"))


def test_npy_blocks_from_the_memory_map(tmp_path):
    """A local .npy is read as views of its memory map (arrays.NpyArray._mapped_blocks): the values of
    every block, also of blocks held to the end while later pages are dropped; a block written to
    changes nothing in the file (copy-on-write); rows from `first` to `stop`."""
    from tests.native_paths import require_c_extension
    from xentcli.sources.arrays import NpyArray

    require_c_extension()
    values = np.arange(40_000 * 5, dtype=np.float64).reshape(40_000, 5)  # 1.6 MB: hundreds of pages
    path = tmp_path / "s.npy"
    np.save(path, values)
    before = path.read_bytes()
    blocks = NpyArray(str(path), "scores").slices(999)
    first = next(blocks)
    assert not first.flags.owndata and first.flags.writeable and first.flags.aligned
    held = None
    for index, block in enumerate(blocks, start=1):
        np.testing.assert_array_equal(block, values[999 * index : 999 * index + 999])
        block[:] = -1.0  # the consumer's business: never the file's
        if index == 3:
            held = block[2:5].copy(), block[2:5]
    np.testing.assert_array_equal(first, values[:999])
    np.testing.assert_array_equal(held[1], -1.0)  # the view held still sees its block (its pages were not dropped)
    assert path.read_bytes() == before
    parts = list(NpyArray(str(path), "scores").slices(1000, first=2500, stop=4999))
    np.testing.assert_array_equal(np.concatenate(parts), values[2500:4999])


def test_npy_blocks_are_mapped_before_they_are_handed_out(tmp_path, monkeypatch):
    """The reading thread maps a block's pages (madvise MADV_POPULATE_READ) before it hands the block
    to a worker, which then takes no page faults on it: the block's pages are resident before any is
    touched. A kernel that refuses the advice (older than Linux 5.14: here an unknown advice) gives
    the same values, and xent stops asking."""
    from tests.native_paths import require_c_extension
    from xentcli.sources import arrays

    require_c_extension()
    path = tmp_path / "m.npy"
    values = np.arange(2048 * 1024, dtype=np.float32).reshape(2048, 1024)  # 8 MiB
    np.save(path, values)
    start = _rss_file_kib()
    block = next(arrays.NpyArray(str(path), "scores").slices(1024))  # 4 MiB, untouched
    assert _rss_file_kib() - start >= 4000
    del block
    monkeypatch.setattr(arrays, "_POPULATE_READ", [0x7FFF])
    got = np.concatenate(list(arrays.NpyArray(str(path), "scores").slices(700)))
    np.testing.assert_array_equal(got, values)
    assert arrays._POPULATE_READ == []


def test_npy_memory_map_keeps_the_resident_pages_to_the_blocks_held(tmp_path):
    """The pages of the blocks nothing holds any more are dropped (madvise): streaming 256 MB in 8 MB
    blocks leaves the resident mapped pages near a block or two, not the file (a memory bound, not a timing)."""
    from tests.native_paths import require_c_extension
    from xentcli.sources.arrays import NpyArray

    require_c_extension()
    path = tmp_path / "big.npy"
    np.save(path, np.ones((8192, 8192), np.float32))  # 256 MiB
    start, peak, total = _rss_file_kib(), 0, 0.0
    for block in NpyArray(str(path), "scores").slices(256):  # 8 MiB a block
        total += float(block[:, ::1024].sum())  # a page of every row touched
        peak = max(peak, _rss_file_kib() - start)
        del block
    assert total == 8192 * 8
    assert peak < 48 * 1024, f"{peak} KiB of the file resident"


def test_npy_cut_short_while_read_is_one_error(tmp_path):
    """A file that another program cuts short between two blocks: an InputError naming the row, not a
    bus error (the map's pages past the end no longer exist)."""
    from tests.native_paths import require_c_extension
    from xentcli.errors import InputError
    from xentcli.sources.arrays import NpyArray

    require_c_extension()
    path = tmp_path / "s.npy"
    np.save(path, np.zeros((10_000, 100), np.float32))
    blocks = NpyArray(str(path), "scores").slices(2000)
    next(blocks)
    with open(path, "r+b") as f:
        f.truncate(1_000_000)  # inside the second block (bytes 800,128 to 1,600,128), in row (1,000,000 − 128) // 400
    with pytest.raises(InputError, match="ends early at row 2499: it was cut short while xent read it"):
        next(blocks)


def _change_after_last_block(monkeypatch, name: str, change) -> None:
    """Another program changes the file `name` (`change(path)`) right after the reader handed out its
    last block, before the kernel reads it."""
    from xentcli.sources import arrays

    real = arrays.NpyArray.slices

    def slices(self, rows, first=0, stop=None):
        blocks = list(real(self, rows, first, stop))  # views of the map: nothing is read yet (a Fortran file's: copies)
        if self.path.endswith(name):
            change(self.path)
        yield from blocks

    monkeypatch.setattr(arrays.NpyArray, "slices", slices)


def _cut(keep_less: int):
    def change(path):
        with open(path, "r+b") as f:
            f.truncate(f.seek(0, 2) - keep_less)
    return change


def _dump(tmp_path, fortran: bool = False) -> list[str]:
    """1,000 rows of 10 logits, the largest (5) at class 3, class 9 at 2, labels 3: each row's loss is
    log(1 + 8 + e^(2−5)·…) — any zero read in place of a value changes it."""
    logits = np.zeros((1000, 10), np.float32)
    logits[:, 3], logits[:, 9] = 5.0, 2.0
    np.save(tmp_path / "logits.npy", np.asfortranarray(logits) if fortran else logits)
    np.save(tmp_path / "labels.npy", np.full(1000, 3, np.int64))
    return ["score", str(tmp_path / "logits.npy"), "--labels", str(tmp_path / "labels.npy")]


@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("cut", ["logits", "labels", "fortran"])
def test_npy_cut_short_after_its_last_block_is_handed_out(tmp_path, monkeypatch, cut, threads):
    """The last block of a file is read after the reader's last check: a file then cut within its last
    page reads as zeros there, without a bus error (the last logit, 2, becomes 0; the last label, 3,
    becomes 0: a loss near 5 instead of ~0.06). Every input is checked once every chunk is scored
    (paths.FileStamp): exit 2 and one line, never the wrong mean with exit 0 — whatever the chunks
    (one block, or several) and threads. (A Fortran-ordered file's blocks are copies, read before the
    cut: its check is that the file is still whole.)"""
    from tests.native_paths import require_c_extension

    require_c_extension()
    name = "labels.npy" if cut == "labels" else "logits.npy"
    _change_after_last_block(monkeypatch, name, _cut(8 if cut == "labels" else 4))
    for chunk in ("100000", "128"):
        args = _dump(tmp_path, fortran=cut == "fortran")
        size = (tmp_path / name).stat().st_size
        result = CliRunner().invoke(app, [*args, "--threads", threads, "--chunk-rows", chunk])
        assert result.exit_code == 2, result.output
        assert result.stderr == (f"xent: error: {tmp_path / name}: was cut short while xent read it: it holds {size - (8 if cut == 'labels' else 4):,} "
                                 f"of its {size:,} bytes; score a file that no other program is writing\n")


@pytest.mark.parametrize("change, error", [
    ("restore", "changed while xent read it"),  # cut short, then the bytes written back: the same bytes, new times
    ("rewrite", "changed while xent read it"),  # another value written in place, the size unchanged
    ("remove", "was removed while xent read it"),  # cut short, then deleted: the map kept the zeros it read
    ("replace", "was replaced by another file while xent read it"),  # cut short, then another file renamed over it
])
def test_npy_changed_after_its_last_block_is_one_error(tmp_path, monkeypatch, change, error):
    """A file the check by size alone would pass once it is done with: every one is an error, exit 2."""
    from tests.native_paths import require_c_extension

    require_c_extension()

    def changed(path):
        whole = open(path, "rb").read()
        _cut(8)(path)
        if change == "restore":
            open(path, "r+b").write(whole)
        elif change == "rewrite":
            with open(path, "r+b") as f:
                f.seek(len(whole) - 8)
                f.write(np.int64(1).tobytes())
        elif change == "remove":
            os.unlink(path)
        else:
            other = path + ".new"
            open(other, "wb").write(whole)
            os.replace(other, path)

    import os

    _change_after_last_block(monkeypatch, "labels.npy", changed)
    result = CliRunner().invoke(app, [*_dump(tmp_path), "--threads", "1"])
    assert (result.exit_code, result.stderr) == (2, f"xent: error: {tmp_path / 'labels.npy'}: {error}; score a file that no other program is writing\n")


def test_an_input_changed_while_its_rows_are_written_is_one_error(tmp_path, monkeypatch):
    """`-o`: the writer's thread reads the last rows' columns (the labels: views of the map) after the
    pass has ended and checked its inputs; an input changed then is an error too (the writer checks
    them again before its file moves into place), and no per-sample file is left."""
    from xentcli.render import rows

    real = rows._WriterThread.close

    def close(self, raise_error):  # the pass and the run have checked the inputs; the last batches are being written
        with open(tmp_path / "labels.npy", "r+b") as f:
            f.seek(-8, 2)
            f.write(np.int64(0).tobytes())
        real(self, raise_error)

    monkeypatch.setattr(rows._WriterThread, "close", close)
    result = CliRunner().invoke(app, [*_dump(tmp_path), "-o", str(tmp_path / "rows.parquet")])
    assert (result.exit_code, result.stderr) == (
        2, f"xent: error: {tmp_path / 'labels.npy'}: changed while xent read it; score a file that no other program is writing\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.npy", "logits.npy"]


def test_a_fortran_npy_cut_short_before_it_is_mapped(tmp_path):
    """A Fortran-ordered file cut short between its header's check and its map (empty: it cannot be
    mapped at all): one error naming its bytes, not numpy's EOFError (exit 3)."""
    from tests.native_paths import require_c_extension
    from xentcli.errors import InputError
    from xentcli.sources.arrays import NpyArray

    require_c_extension()
    _dump(tmp_path, fortran=True)
    path = tmp_path / "logits.npy"
    size = path.stat().st_size
    for keep in (0, 100):
        np.save(path, np.asfortranarray(np.ones((1000, 10), np.float32)))
        array = NpyArray(str(path), "scores")
        with open(path, "r+b") as f:
            f.truncate(keep)
        with pytest.raises(InputError, match=f"holds {keep:,} of its {size:,} bytes: it was cut short while xent read it"):
            next(array.slices(100))


@pytest.mark.parametrize("threads", ["1", "2"])
def test_arrow_cut_short_while_read_is_one_error(tmp_path, monkeypatch, threads):
    """An Arrow file is read from pyarrow's memory map: cut short after it was opened (here its footer,
    which pyarrow reads again from the map: it then finds no batch and reads no row), it is an error
    once every chunk is scored: exit 2, one line — not "0 rows", PASS."""
    import pyarrow.ipc as pa_ipc

    from xentcli.sources import columnar

    rows = 1000
    logits = np.zeros((rows, 10), np.float32)
    logits[:, 3] = 5.0
    path = tmp_path / "d.arrow"
    table = pa.table({"logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel()), 10), "label": np.full(rows, 3)})
    with pa_ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)
    size = path.stat().st_size
    keep = size - 1000
    real = columnar.ColumnarFile.record_batches

    def record_batches(self, columns, rows, part=None):
        if rows > 16:  # the read, not the look at the first rows when the file is opened
            with open(self.path, "r+b") as f:
                f.truncate(keep)
        yield from real(self, columns, rows, part)

    monkeypatch.setattr(columnar.ColumnarFile, "record_batches", record_batches)
    for command in ("score", "check"):
        result = CliRunner().invoke(app, [command, str(path), "--threads", threads])
        assert result.exit_code == 2, result.output
        assert result.stderr == (f"xent: error: {path}: was cut short while xent read it: it holds {keep:,} of its {size:,} bytes; "
                                 "score a file that no other program is writing\n")
        with pa_ipc.new_file(path, table.schema) as writer:
            writer.write_table(table)


def test_parquet_and_csv_changed_while_read_are_one_error(tmp_path, monkeypatch):
    """Not only mapped files: a Parquet or CSV file written to while xent reads it gives a mix of two
    files' rows; every input is checked once it is read (exit 2), and a shard of a folder too."""
    from xentcli.sources import columnar

    logits = np.zeros((1000, 10), np.float32)
    logits[:, 3] = 5.0
    table = pa.table({"logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel()), 10), "label": np.full(1000, 3)})
    pq.write_table(table, tmp_path / "a.parquet")
    (tmp_path / "d").mkdir()
    pq.write_table(table, tmp_path / "d" / "s0.parquet")
    pq.write_table(table, tmp_path / "d" / "s1.parquet")
    (tmp_path / "a.csv").write_text("logit_0,logit_1,label\n" + "0.5,1.5,1\n" * 1000)
    real = columnar.ColumnarFile.record_batches
    touched = []

    def record_batches(self, columns, rows, part=None):
        yield from real(self, columns, rows, part)
        if rows > 16 and self.path not in touched:  # after its last batch: append a byte
            touched.append(self.path)
            with open(self.path, "ab") as f:
                f.write(b"\n")

    monkeypatch.setattr(columnar.ColumnarFile, "record_batches", record_batches)
    for target, changed in ((tmp_path / "a.parquet", tmp_path / "a.parquet"), (tmp_path / "a.csv", tmp_path / "a.csv"),
                            (tmp_path / "d", tmp_path / "d" / "s0.parquet")):
        result = CliRunner().invoke(app, ["score", str(target), "--threads", "1"])
        assert (result.exit_code, result.stderr) == (2, f"xent: error: {changed}: changed while xent read it; score a file that no other program is writing\n")


def test_npy_map_shorter_than_the_file_is_one_error(tmp_path, monkeypatch):
    """A file cut short and grown again between the header's check and its map: the map holds fewer
    bytes than the file now does (and than the header promises): an InputError before the block, not a
    ValueError from numpy (exit 3)."""
    from tests.native_paths import require_c_extension
    from xentcli.errors import InputError
    from xentcli.sources.arrays import NpyArray

    require_c_extension()
    path = tmp_path / "s.npy"
    np.save(path, np.ones((1000, 10), np.float32))
    whole = path.read_bytes()
    array = NpyArray(str(path), "scores")
    real = array._map

    def cut_map_grow():
        path.write_bytes(whole[:20_000])  # cut short (inside row 497: (20,000 − 128) // 40)
        mapped = real()
        path.write_bytes(whole)  # and grown again
        return mapped

    monkeypatch.setattr(array, "_map", cut_map_grow)
    with pytest.raises(InputError, match="ends early at row 496: it was cut short while xent read it"):
        next(array.slices(1000))


def test_a_bus_error_is_one_line_and_exit_2(tmp_path):
    """The last line of defence: a mapped file cut short under a block already handed out (between the
    reader's checks) makes the next read of it a bus error — with `xent`'s handler one line on stderr,
    exit 2 and the output in progress removed, not a silent death by SIGBUS."""
    import subprocess
    import sys

    from tests.native_paths import require_c_extension

    require_c_extension()
    data, output = tmp_path / "s.npy", tmp_path / ".xent-out.parquet.part"
    np.save(data, np.zeros((4096, 1024), np.float32))
    output.write_bytes(b"partial")
    script = f"""
import numpy as np
from xentcli import native
from xentcli.sources.arrays import NpyArray
assert native.catch_bus_errors("xent: error: bus error line\\n", "")
native.bus_output({str(output)!r}, held=True)
block = next(NpyArray({str(data)!r}, "scores").slices(4096))
with open({str(data)!r}, "r+b") as f:
    f.truncate(0)
print(float(block.sum()))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr, done.stdout) == (2, "xent: error: bus error line\n", "")
    assert not output.exists()


def test_bus_errors_of_many_threads_are_one_line(tmp_path):
    """Eight threads reading blocks of a file cut short under them fault at about the same time: one
    line and exit 2 (the first to fault prints it and ends the process; another faulting meanwhile
    waits for that — a race this test meets only now and then)."""
    import subprocess
    import sys

    from tests.native_paths import require_c_extension

    require_c_extension()
    data = tmp_path / "s.npy"
    script = f"""
import threading
from xentcli import native
from xentcli.sources.arrays import NpyArray
assert native.catch_bus_errors("xent: error: bus error line\\n", "")
blocks = list(NpyArray({str(data)!r}, "scores").slices(512))
with open({str(data)!r}, "r+b") as f:
    f.truncate(0)
start = threading.Barrier(8)
def read(block):
    start.wait()
    block.sum()
threads = [threading.Thread(target=read, args=(block,)) for block in blocks]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("read")
"""
    for _ in range(3):
        np.save(data, np.ones((8 * 512, 1024), np.float32))
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stderr, done.stdout) == (2, "xent: error: bus error line\n", "")


def test_a_bus_error_not_from_a_map_is_not_ours(tmp_path):
    """The handler answers a bus error of a mapped file (BUS_ADRERR) only: a SIGBUS of another origin
    (here sent by kill: SI_USER) takes its default action again, the process killed by the signal
    without the line (a defect to report, not an input to blame)."""
    import signal
    import subprocess
    import sys

    from tests.native_paths import require_c_extension

    require_c_extension()
    script = """
import os, signal
from xentcli import native
assert native.catch_bus_errors("xent: error: bus error line\\n", "")
os.kill(os.getpid(), signal.SIGBUS)
print("alive")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr, done.stdout) == (-signal.SIGBUS, "", "")


def test_the_bus_error_line_on_a_terminal_clears_the_progress_bar(monkeypatch):
    """On a terminal the line first returns to the column 0, clears the progress bar's line and shows
    the cursor Rich hid (the handler cannot ask Rich to); in a pipe or a file, the line alone."""
    import importlib
    import sys

    app_module = importlib.import_module("xentcli.cli.app")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert app_module._bus_line() == "\r\x1b[2K\x1b[?25h" + f"xent: error: {app_module.BUS_ERROR}\n"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert app_module._bus_line() == f"xent: error: {app_module.BUS_ERROR}\n"


def test_a_bus_error_in_a_run_of_xent(tmp_path):
    """`xent score --json -o` on an .npy that another program cuts short after its block was handed
    out (the reader's check passed; the kernel then reads pages that no longer exist): exit 2, the
    one line on stderr, the error document on stdout, and neither the output nor its temporary file."""
    import json
    import subprocess
    import sys

    from tests.native_paths import require_c_extension

    require_c_extension()
    logits, labels = tmp_path / "logits.npy", tmp_path / "labels.npy"
    np.save(logits, np.zeros((4096, 1024), np.float32))
    np.save(labels, np.zeros(4096, np.int64))
    script = f"""
import sys
from xentcli.sources import arrays
real = arrays.NpyArray.slices
def slices(self, *args, **kwargs):
    for block in real(self, *args, **kwargs):
        if self.path.endswith("logits.npy"):
            with open(self.path, "r+b") as f:
                f.truncate(0)
        yield block
arrays.NpyArray.slices = slices
sys.argv = ["xent", "score", {str(logits)!r}, "--labels", {str(labels)!r}, "--json", "--threads", "1", "-o", {str(tmp_path / "rows.parquet")!r}]
from xentcli.entry import main
main()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    line = ("xent: error: a memory-mapped input could not be read (bus error): was the file cut short while xent read it? "
            "No output was written\n")
    assert (done.returncode, done.stderr) == (2, line)
    assert json.loads(done.stdout)["error"] == {"code": "BusError", "message": line[len("xent: error: "):-1],
                                                "hint": "score a file that no other program is writing"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.npy", "logits.npy"]


def test_npz_member_cut_short_names_what_happened(tmp_path):
    """A stored zip member cut short under the reader ends in a bare EOFError: the line says what it
    means, not "cannot read array 'logits': ;"."""
    from xentcli.errors import InputError
    from xentcli.sources.arrays import NpzMember, open_npz

    path = tmp_path / "d.npz"
    np.savez(path, logits=np.ones((1000, 10), np.float32), labels=np.zeros(1000, np.int64))
    member = NpzMember(open_npz(str(path)), str(path), "logits")
    with open(path, "r+b") as f:
        f.truncate(20_000)  # inside the logits member (40,128 bytes from offset 0)
    with pytest.raises(InputError) as caught:
        list(member.slices(100))
    assert caught.value.one_line() == f"{path}: cannot read array 'logits': the member ends early (the archive is cut short); check the archive"


def test_a_bus_error_in_a_run_of_tasks_removes_their_rows(tmp_path):
    """A local run of row-group tasks with -o writes each task's rows into a hidden folder beside the
    target: a bus error (here the labels .npy cut short under the tasks' blocks) leaves neither the
    folder, nor its finished or unfinished parts, nor the target's temporary file."""
    import subprocess
    import sys

    from tests.native_paths import require_c_extension

    require_c_extension()
    rows = 40_000
    logits = np.zeros((rows, 64), np.float32)
    logits[:, 3] = 5.0
    table = pa.table({"logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel()), 64)})
    pq.write_table(table, tmp_path / "s.parquet", row_group_size=5_000)  # 8 row groups: tasks
    np.save(tmp_path / "labels.npy", np.full(rows, 3, np.int64))
    script = f"""
import sys, threading
from xentcli.sources import arrays
real = arrays.NpyArray.slices
seen = []
lock = threading.Lock()
def slices(self, *args, **kwargs):
    for block in real(self, *args, **kwargs):
        with lock:
            seen.append(1)
            if len(seen) == 4:  # a few tasks in: their parts are written, more are under way
                with open(self.path, "r+b") as f:
                    f.truncate(0)
        yield block
arrays.NpyArray.slices = slices
from xentcli import distributed
distributed.TASK_BYTES = 5_000 * 64 * 4  # a row group a task (64 MiB by default)
sys.argv = ["xent", "score", {str(tmp_path / "s.parquet")!r}, "--labels", {str(tmp_path / "labels.npy")!r}, "--threads", "2",
            "--chunk-rows", "1000", "-o", {str(tmp_path / "rows.parquet")!r}, "--json"]
from xentcli.entry import main
main()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert (done.returncode, done.stderr.splitlines()[-1:]) == (2, [
        "xent: error: a memory-mapped input could not be read (bus error): was the file cut short while xent read it? No output was written"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.npy", "s.parquet"]


def test_big_endian_scores_are_their_dtype(tmp_path):
    """Found in review: NPY/NPZ scores stored big-endian ('>f2', '>f4') kept that name as their
    dtype, so float16's rules (XE109, XE103's limit of 11.09, XE110's tolerance) and the float16 and
    float32 presets did not apply: --compare-frameworks reported 40000.2 where PyTorch in float16
    gives inf. A big-endian dump now reads as its little-endian twin, number for number."""
    z16 = np.array([[-60000, 60000], [0, 1], [1, 0], [30, 0]], np.float16)
    z32 = np.array([[-3e38, 3e38], [0, 1], [1, 0], [30, 0]], np.float32)
    y = np.array([0, 1, 0, 1])
    for z in (z16, z32):
        docs = []
        for order in ("<", ">"):
            scores = z.astype(z.dtype.newbyteorder(order))
            np.save(tmp_path / "z.npy", scores)
            np.save(tmp_path / "y.npy", y)
            np.savez(tmp_path / "d.npz", logits=scores, labels=y)
            for args in ([tmp_path / "z.npy", "--labels", tmp_path / "y.npy"], [tmp_path / "d.npz"]):
                result = CliRunner().invoke(app, ["score", *map(str, args), "--compare-frameworks", "--json"])
                doc = json.loads(result.stdout)
                assert doc["input"]["score_dtype"] == str(z.dtype)
                docs.append((doc["summary"]["loss_mean"], [d["code"] for d in doc["diagnostics"]],
                             [f["loss"] for f in doc["compare"]["frameworks"]]))
        for mean, codes, losses in docs:  # a big-endian block is copied for the C kernel: the same numbers to rounding
            assert mean == pytest.approx(docs[0][0], rel=1e-12) and codes == docs[0][1]
            assert [v is None for v in losses] == [v is None for v in docs[0][2]]
        assert docs[0][2][0] is None  # PyTorch in the dtype: the sum overflows (inf)


def test_arrow_stream_cut_at_a_batch_end_is_refused(tmp_path):
    """Found in review: an Arrow IPC stream cut after a whole batch (a writer killed before close)
    was read as the whole dump — 10 of 20 rows, and check passed. A stream must end with its
    end-of-stream marker (the legacy pre-0.15 format's too)."""
    import pyarrow.ipc as ipc

    y = np.array([0, 1, 2, 0] * 5)
    z = (np.arange(60, dtype=np.float32).reshape(20, 3) % 7) / 3
    table = pa.table({"logits": pa.array(list(z), pa.list_(pa.float32())), "label": y})
    sink = pa.BufferOutputStream()
    writer = ipc.new_stream(sink, table.schema)
    ends = []
    for batch in table.to_batches(max_chunksize=5):
        writer.write_batch(batch)
        ends.append(sink.tell())
    writer.close()
    data = sink.getvalue().to_pybytes()
    (tmp_path / "cut.arrow").write_bytes(data[: ends[1]])
    (tmp_path / "whole.arrow").write_bytes(data)
    with ipc.new_stream(str(tmp_path / "legacy.arrow"), table.schema, options=ipc.IpcWriteOptions(use_legacy_format=True)) as legacy:
        legacy.write_table(table)
    for command in ("score", "check"):
        result = CliRunner().invoke(app, [command, str(tmp_path / "cut.arrow")])
        assert result.exit_code == 2 and "end marker: it was cut short" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    want = sparse_loss64(z.astype(np.float64), y).mean()
    for name in ("whole", "legacy"):
        doc = json.loads(CliRunner().invoke(app, ["score", str(tmp_path / f"{name}.arrow"), "--json"]).stdout)
        assert doc["summary"]["rows"] == 20 and doc["summary"]["loss_mean"] == pytest.approx(want, rel=1e-6)


def test_text_that_is_not_utf8_is_refused_in_one_line(tmp_path):
    """Found in review: bytes that are not UTF-8 in a CSV header, a CSV cell (number or label
    column), an Arrow file's column name, or --classes on the command line were internal errors
    (exit 3). Each is one line on stderr, exit 2."""
    import pyarrow.ipc as ipc

    (tmp_path / "h.csv").write_bytes(b"logit_0,logit_1,lab\xe9l\n1,2,1\n")
    (tmp_path / "n.csv").write_bytes(b"logit_0,logit_1,label\n1,2,1\n3\xe9,0,0\n")
    (tmp_path / "l.csv").write_bytes(b"logit_0,logit_1,label\n1,2,caf\xe9\n3,0,dog\n")
    table = pa.table({"logits": pa.array([[0.1, 0.2]] * 2, pa.list_(pa.float32())), "label": [0, 1]})
    with ipc.new_file(str(tmp_path / "a.arrow"), table.schema) as writer:
        writer.write_table(table)
    (tmp_path / "b.arrow").write_bytes((tmp_path / "a.arrow").read_bytes().replace(b"label", b"lab\xe9l"))
    (tmp_path / "s.csv").write_text("logit_0,logit_1,label\n1,2,cat\n3,0,dog\n")
    cases = [([tmp_path / "h.csv"], "column names are not UTF-8"), ([tmp_path / "n.csv"], "invalid UTF8"),
             ([tmp_path / "l.csv"], "invalid UTF8"), ([tmp_path / "b.arrow"], "column names are not UTF-8"),
             ([tmp_path / "s.csv", "--classes", "caf\udce9,dog"], "--classes holds a name that is not UTF-8")]
    for args, said in cases:
        result = CliRunner().invoke(app, ["score", *map(str, args)])
        assert result.exit_code == 2 and said in result.stderr and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


@pytest.mark.parametrize("kind", ["file", "stream"])
@pytest.mark.parametrize("column", ["id", "logits"])
def test_arrow_offsets_past_the_data_are_refused(tmp_path, kind, column):
    """Found in review: pyarrow's IPC reader trusts the offsets a file holds, so a crafted or damaged
    Arrow file whose string offsets pass the end of their data crashed the process (std::length_error,
    abort) under --id-col/--worst or --by, and list offsets made a 'ragged column' of 10^8 values. Each
    batch read is validated in full (linear in rows): one line naming the column, exit 2. Run in a
    child process: a regression is a crash, not a failed assertion in this one."""
    import subprocess
    import sys

    import pyarrow.ipc as ipc

    n = 100
    ids = pa.array([f"r{i}" for i in range(n)])
    logits = pa.array([[0.5, 1.0, -1.0]] * n, pa.list_(pa.float32()))
    batch = pa.RecordBatch.from_pydict({"logits": logits, "label": pa.array([0, 1] * 50), "id": ids})
    sink = pa.BufferOutputStream()
    writer = (ipc.new_file if kind == "file" else ipc.new_stream)(sink, batch.schema)
    writer.write_batch(batch)
    writer.close()
    raw = sink.getvalue().to_pybytes()
    offsets = np.frombuffer((ids if column == "id" else logits).buffers()[1], np.int32)
    assert raw.count(offsets[60:64].tobytes()) == 1
    path = tmp_path / "crafted.arrow"
    path.write_bytes(raw.replace(offsets[60:64].tobytes(), np.full(4, 10**8, np.int32).tobytes()))
    for extra in (["--id-col", "id", "--worst", "3"], ["--by", "id", "--min-group", "1"], ["-o", str(tmp_path / "o.csv"), "--id-col", "id"]):
        result = subprocess.run([sys.executable, "-m", "xentcli", "score", str(path), *extra], capture_output=True, text=True)
        assert result.returncode == 2, (extra, result.returncode, result.stderr)
        assert result.stderr.startswith(f"xent: error: {path}: is damaged: column {column!r}: Offset invariant failure")
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.csv").exists()


def test_a_csv_too_wide_for_the_reader_is_refused_before_it_allocates(tmp_path):
    """Found in review: 10^6 CSV columns (5 rows) ended in std::bad_alloc, an abort — pyarrow's CSV
    reader holds about 10 KB per column. Over 100,000 columns (counted from the header, quotes and
    all) is one line and exit 2; the column list of a message is cut to its first names (a 10^5-column
    'no score column' error was a megabyte line), each quoted."""
    from xentcli.sources.columnar import CSV_MAX_COLUMNS

    wide = tmp_path / "wide.csv"
    names = [f"c{i}" for i in range(CSV_MAX_COLUMNS + 1)]
    wide.write_text(",".join(names) + "\n" + ",".join(["0.5"] * len(names)) + "\n")
    result = CliRunner().invoke(app, ["score", str(wide)])
    assert result.exit_code == 2 and result.stderr == (
        f"xent: error: {wide}: has 100,001 columns; xent reads at most 100,000 from a CSV file (its CSV reader needs about "
        "10 KB per column: 1 GB here); store the scores as one list column (Parquet or Arrow) or as an NPY array\n")
    quoted = tmp_path / "quoted.csv"  # 100,001 commas, but quoted: 3 columns, read
    quoted.write_text('"' + "," * CSV_MAX_COLUMNS + '",logit_0,logit_1,label\n"x",0.5,0.5,0\n')
    result = CliRunner().invoke(app, ["score", str(quoted), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["summary"]["loss_mean"] == pytest.approx(math.log(2), rel=1e-12)
    names = [f"n{i}" for i in range(40)] + ["a,b"]
    many = tmp_path / "many.csv"
    many.write_text(",".join(f'"{n}"' for n in names) + "\n" + ",".join(["1"] * len(names)) + "\n")
    result = CliRunner().invoke(app, ["score", str(many)])
    assert result.exit_code == 2
    assert "(columns: 'n0', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'n8', 'n9', 'n10', 'n11', … (29 more))" in result.stderr


@pytest.mark.parametrize("compression", ["stored", "deflated"])
def test_npz_header_claiming_more_than_its_member_is_refused(tmp_path, compression):
    """Found in review: an NPZ member's header is only a claim — 10^9 rows x 1000 in a 176-byte
    member was read as such (the labels' row count was blamed: XE302). The header's bytes are
    checked against the member's size before any block is read."""
    import io
    import zipfile

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 1000)})
    labels = io.BytesIO()
    np.save(labels, np.array([0, 1, 2]))
    path = tmp_path / "claim.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED if compression == "stored" else zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("logits.npy", head.getvalue() + np.zeros((3, 4), np.float32).tobytes())
        archive.writestr("labels.npy", labels.getvalue())
    result = CliRunner().invoke(app, ["score", str(path)])
    assert result.exit_code == 2 and result.stderr == (
        f"xent: error: {path}: array 'logits' is cut short: its header says 4,000,000,000,128 bytes, its member holds 176; "
        "the file is truncated or damaged; save the arrays again\n")


def test_npz_blocks_read_in_pieces_are_the_arrays(tmp_path, monkeypatch):
    """A block larger than a piece is read piece by piece into one array (a deflated member's huge
    row no longer held several times over): the same numbers, and a member that ends inside a block
    still refused."""
    import zipfile

    from xentcli.sources import arrays

    monkeypatch.setattr(arrays, "NPZ_PIECE_BYTES", 40)  # 10 float32: every row of 7 x 13 spans two pieces
    rng = np.random.default_rng(5)
    z = rng.standard_normal((7, 13)).astype(np.float32)
    y = rng.integers(0, 13, 7)
    np.savez_compressed(tmp_path / "d.npz", logits=z, labels=y)
    doc = json.loads(CliRunner().invoke(app, ["score", str(tmp_path / "d.npz"), "--json", "--chunk-rows", "3"]).stdout)
    assert doc["summary"]["loss_mean"] == pytest.approx(sparse_loss64(z.astype(np.float64), y).mean(), rel=1e-6)
    member = arrays.NpzMember(zipfile.ZipFile(tmp_path / "d.npz"), str(tmp_path / "d.npz"), "logits")
    np.testing.assert_array_equal(np.concatenate(list(member.slices(3))), z)
    member.shape = (8, 13)  # one row more than the member holds: the last block ends early
    with pytest.raises(InputError, match="array 'logits' ends early at row 6"):
        list(member.slices(3))


def test_parquet_and_arrow_files_named_in_bytes_that_are_not_utf8(tmp_path):
    """Found in review: a Parquet or Arrow file whose name is not UTF-8 was refused ("surrogates not
    allowed": pyarrow encodes str paths as UTF-8), alone or as one shard of a folder, while CSV, NPY
    and NPZ read; and --json wrote its path with a lone surrogate "\\udcff", which strict readers
    refuse. Such files are read by their bytes, and JSON shows the byte as the text \\xff."""
    import os

    import pyarrow.ipc as ipc

    table = pa.table({"logits": pa.array([[0.0, 1.0], [2.0, 0.0], [0.5, 0.5]], pa.list_(pa.float32())), "label": [1, 0, 1]})
    want = sparse_loss64(np.array([[0.0, 1.0], [2.0, 0.0], [0.5, 0.5]]), np.array([1, 0, 1])).mean()
    folder = os.fsdecode(bytes(tmp_path) + b"/d\xfe")
    os.mkdir(folder)
    parquet, arrow = os.path.join(folder, os.fsdecode(b"a\xff.parquet")), os.path.join(folder, os.fsdecode(b"b\xff.arrow"))
    with open(parquet, "wb") as f:
        pq.write_table(table, f)
    with open(arrow, "wb") as f, ipc.new_file(f, table.schema) as writer:
        writer.write_table(table)
    for path, rows in ((parquet, 3), (arrow, 3)):
        result = CliRunner().invoke(app, ["score", path, "--json"])
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout.encode("utf-8", "strict"))  # strict UTF-8: no lone surrogate in the text
        assert doc["summary"]["rows"] == rows and doc["summary"]["loss_mean"] == pytest.approx(want, rel=1e-6)
        assert doc["input"]["path"].endswith(("a\\xff.parquet", "b\\xff.arrow")) and "d\\xfe" in doc["input"]["path"]
    os.remove(arrow)
    result = CliRunner().invoke(app, ["score", folder, "--json", "--engine", "local"])
    assert result.exit_code == 0 and json.loads(result.stdout)["summary"]["rows"] == 3, result.stderr


def test_a_file_named_twice_is_refused_and_extensionless_shards_are_said(tmp_path):
    """Found in review: the same file counted twice (named twice, a folder and a file in it, a
    symlink beside its target: 80 rows read as 160), and a Hadoop-style shard without an extension
    (part-00001) dropped without a word (check passed on half the rows). The first are refused; the
    second are named in a note, and read with --format."""
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(60, 5)), rng.integers(0, 5, 60)
    folder = tmp_path / "dump"
    folder.mkdir()
    pq.write_table(pa.table({"logits": [list(r) for r in z[:30]], "label": y[:30]}), folder / "part-00000.parquet")
    pq.write_table(pa.table({"logits": [list(r) for r in z[30:]], "label": y[30:]}), folder / "part-00001")
    first = str(folder / "part-00000.parquet")
    for args in ([first, first], [str(folder), first]):
        result = CliRunner().invoke(app, ["score", *args])
        assert result.exit_code == 2 and "its rows would count twice" in result.stderr
    (folder / "link.parquet").symlink_to(folder / "part-00000.parquet")
    result = CliRunner().invoke(app, ["score", str(folder)])
    assert result.exit_code == 2 and "is the same file as" in result.stderr
    (folder / "link.parquet").unlink()
    doc = json.loads(CliRunner().invoke(app, ["score", str(folder), "--json"]).stdout)
    assert doc["summary"]["rows"] == 30 and any("'part-00001'" in note for note in doc["input"]["notes"])
    doc = json.loads(CliRunner().invoke(app, ["score", str(folder), "--format", "parquet", "--json"]).stdout)
    assert doc["summary"]["rows"] == 60
    assert doc["summary"]["loss_mean"] == pytest.approx(sparse_loss64(z, y).mean(), rel=1e-12)


def test_columns_named_like_scores_beat_a_guess_and_two_candidates_are_refused(tmp_path):
    """Found in review: an unnamed list column (an 'embedding', 'token_ids') beside logit_0 … logit_4
    was taken for the scores (7 'classes', check passed); a 'target' column before 'label', and in an
    NPZ 'label' beside 'labels' or 'scores' beside 'probs', were chosen between silently. Names beat
    guesses; two named candidates are refused with one line."""
    rng = np.random.default_rng(0)
    n, c = 60, 5
    z, y = rng.normal(size=(n, c)) * 2, rng.integers(0, c, n)
    want = sparse_loss64(z, y).mean()
    wide = {f"logit_{j}": z[:, j] for j in range(c)}
    pq.write_table(pa.table({"embedding": [list(r) for r in rng.normal(size=(n, 7))], "label": y, **wide}), tmp_path / "emb.parquet")
    doc = json.loads(CliRunner().invoke(app, ["score", str(tmp_path / "emb.parquet"), "--json"]).stdout)
    assert doc["input"]["num_classes"] == c and doc["summary"]["loss_mean"] == pytest.approx(want, rel=1e-12)
    refused = {
        "both.parquet": (pa.table({"logits": [list(r) for r in z], "label": y, **wide}), "several columns could hold the scores"),
        "targets.parquet": (pa.table({**wide, "target": (y + 1) % c, "label": y}), "several columns could hold the targets"),
        "cases.parquet": (pa.table({**wide, "Label": (y + 1) % c, "label": y}), "several columns could hold the targets"),
    }
    for name, (table, says) in refused.items():
        pq.write_table(table, tmp_path / name)
        result = CliRunner().invoke(app, ["score", str(tmp_path / name)])
        assert result.exit_code == 2 and says in result.stderr, (name, result.stderr)
    # an NPZ file: the README's order (labels before label, probs before scores), and a note names the others
    # (np.savez(f, logits=z, probs=p, labels=y) is common: refusing it broke such dumps)
    np.savez(tmp_path / "labels.npz", logits=z, labels=y, label=(y + 1) % c)
    np.savez(tmp_path / "scores.npz", probs=np.exp(z) / np.exp(z).sum(1, keepdims=True), scores=rng.normal(size=(n, c)), labels=y)
    for name, says in (("labels.npz", "read the label from array 'labels', not 'label'"),
                       ("scores.npz", "read the score from array 'probs', not 'scores'")):
        doc = json.loads(CliRunner().invoke(app, ["score", str(tmp_path / name), "--json"]).stdout)
        assert doc["summary"]["loss_mean"] == pytest.approx(want, rel=1e-9) and any(says in note for note in doc["input"]["notes"])
    # ordinary neighbours are no candidates: summary columns beside a logits list, a 'y' beside 'label',
    # a one-hot label_N beside 'label' (found in the regression review: all were refused)
    for extra in ({"prob_max": z.max(1), "prob_true": z[:, 0]}, {"y": rng.normal(size=n)},
                  {f"label_{j}": (y == j).astype(float) for j in range(c)}):
        pq.write_table(pa.table({"logits": [list(r) for r in z], "label": y, **extra}), tmp_path / "ok.parquet")
        doc = json.loads(CliRunner().invoke(app, ["score", str(tmp_path / "ok.parquet"), "--json"]).stdout)
        assert doc["summary"]["loss_mean"] == pytest.approx(want, rel=1e-12), extra
    # an unnamed list of outputs and a 'score' (a confidence, or a binary head's score) cannot be told apart
    pq.write_table(pa.table({"model_output": [list(r) for r in z], "label": y, "score": z.max(1)}), tmp_path / "conf.parquet")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "conf.parquet")])
    assert result.exit_code == 2 and "list column 'model_output' and column 'score'" in result.stderr


def test_a_labels_file_longer_than_the_scores_says_so(tmp_path):
    """Found in review: 60 rows of scores with a CSV of 61 labels said 'ends after 61 rows, before
    the scores do' — the reverse of what happened."""
    import gzip

    np.save(tmp_path / "z.npy", np.random.default_rng(0).normal(size=(60, 5)))
    for rows, says in ((61, "holds more rows than the 60 rows of scores"), (59, "ends after 59 rows, before the scores do")):
        with gzip.open(tmp_path / f"y{rows}.csv.gz", "wt") as f:
            f.write("label\n" + "".join(f"{i % 5}\n" for i in range(rows)))
        result = CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / f"y{rows}.csv.gz")])
        assert result.exit_code == 2 and says in result.stderr and "[XE302]" in result.stderr


def test_a_csv_label_column_empty_in_its_first_block_reads_later_labels(tmp_path):
    """Found in review: a label column empty for the whole first block (1 MiB) was typed null by the
    CSV reader, and a later label '3' was refused as a conversion error; empty label cells are NaN
    (XE203) and the labels after them are read, as the README says."""
    rows = 400_000  # 2 MB of "0,1," lines before the first label: the reader types the first block (1 MiB) alone
    path = tmp_path / "late.csv"
    with open(path, "w") as f:
        f.write("logit_0,logit_1,label\n" + "0,1,\n" * rows + "".join(f"{i % 2},0,{i % 2}\n" for i in range(20)))
    doc = json.loads(CliRunner().invoke(app, ["score", str(path), "--json"]).stdout)
    assert (doc["summary"]["rows"], doc["summary"]["counted"]) == (rows + 20, 20)
    assert {"XE203"} <= {d["code"] for d in doc["diagnostics"]}
    z = np.array([[i % 2, 0] for i in range(20)], np.float64)
    assert doc["summary"]["loss_mean"] == pytest.approx(sparse_loss64(z, np.array([i % 2 for i in range(20)])).mean(), rel=1e-12)


def test_csv_labels_and_class_names_that_are_both_numbers_are_refused(tmp_path):
    """Found in review: CSV labels 0 … 3 with --classes 3,2,1,0 were read as positions while the
    same text labels in Parquet are names: two numbers for one dump. CSV cannot tell which is meant:
    refused, unless both readings agree (names 0 … C−1 in order) or the names are words."""
    path = tmp_path / "cls.csv"
    path.write_text("logit_0,logit_1,logit_2,logit_3,label\n1,0,0,0,3\n0,1,0,0,2\n0,0,3,0,0\n")
    result = CliRunner().invoke(app, ["score", str(path), "--classes", "3,2,1,0"])
    assert result.exit_code == 2 and "in CSV xent cannot tell a position from a name" in result.stderr
    z = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 3, 0]], np.float64)
    want = sparse_loss64(z, np.array([3, 2, 0])).mean()
    for names in ("0,1,2,3", "a,b,c,d"):
        doc = json.loads(CliRunner().invoke(app, ["score", str(path), "--classes", names, "--json"]).stdout)
        assert doc["summary"]["loss_mean"] == pytest.approx(want, rel=1e-12)


def test_format_reads_extensionless_shards_but_not_a_readme(tmp_path):
    """Found in the regression review: with --format csv a folder's README and LICENSE (no extension)
    were read as shards ('no score column found'); only shard names without an extension are."""
    folder = tmp_path / "csvs"
    folder.mkdir()
    (folder / "part-00000").write_text("logit_0,logit_1,label\n0,1,1\n")
    (folder / "part-1.csv").write_text("logit_0,logit_1,label\n1,0,0\n")
    (folder / "README").write_text("These are my shards\n")
    (folder / "LICENSE").write_text("MIT\n")
    doc = json.loads(CliRunner().invoke(app, ["check", str(folder), "--format", "csv", "--json"]).stdout)
    assert doc["summary"]["rows"] == 2 and doc["summary"]["loss_mean"] == pytest.approx(math.log1p(math.exp(-1)), rel=1e-12)


@pytest.mark.parametrize(("true", "false"), [("true", "false"), ("True", "False"), ("TRUE", "FALSE"), ("1", "false")])
def test_csv_true_false_labels_are_ones_and_zeros(tmp_path, true, false):
    """pandas writes a bool label column as True/False: such a CSV column (pyarrow reads it as
    booleans) holds the labels 1 and 0, as a Parquet bool column does (it was refused: 'True' is not
    a number). Reference: binary cross-entropy in float64, max(z, 0) − z·t + log1p(exp(−|z|))."""
    z = np.array([0.5, -1.25, 2.0, -0.75])
    t = np.array([1.0, 0.0, 1.0, 1.0])
    lines = ["logit,label"] + [f"{a},{true if b else false}" for a, b in zip(z, t)]
    (tmp_path / "b.csv").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "b.csv"), "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    expected = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    assert doc["input"]["head"] == "binary" and doc["summary"]["counted"] == 4
    assert doc["summary"]["loss_mean"] == pytest.approx(float(expected.mean()), rel=1e-15)
    assert doc["summary"]["accuracy"] == 0.75  # z = −0.75 with t = 1 is the one wrong row


def test_csv_true_false_labels_with_a_softmax_head(tmp_path):
    """True/False labels beside two logit columns are the classes 1 and 0 of a softmax."""
    (tmp_path / "s.csv").write_text("logit_0,logit_1,label\n0.5,0.25,True\n-1,2,False\n")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "s.csv"), "--json"])
    assert result.exit_code == 0, result.stderr
    z = np.array([[0.5, 0.25], [-1.0, 2.0]])
    expected = np.log(np.exp(z).sum(1)) - z[[0, 1], [1, 0]]
    assert json.loads(result.stdout)["summary"]["loss_mean"] == pytest.approx(float(expected.mean()), rel=1e-15)


@pytest.mark.parametrize(("cell", "says"), [("2", "'2' is not true or false"), ("yes", "'yes' is not true or false")])
def test_a_late_csv_cell_that_is_not_true_or_false_is_named(tmp_path, cell, says):
    """A column of true/false labels with a cell past the first block that is neither: one line
    naming the column, the row (0-based) and the cell, exit 2 — not 'not a number' for a 2."""
    rows = 250_000  # past the first block, where the types are inferred
    lines = ["logit,label"] + ["0.5,true", "-0.5,false"] * (rows // 2)
    at = rows - 3
    lines[at + 1] = f"0.5,{cell}"
    (tmp_path / "b.csv").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "b.csv")])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"column 'label' row {at}: {says}" in result.stderr and "flagged XE203" in result.stderr


def test_a_blank_true_false_label_is_flagged_not_scored(tmp_path):
    """A blank cell among true/false labels is a missing label (XE203), left out of the mean."""
    (tmp_path / "b.csv").write_text("logit,label\n0.5,true\n-1,\n2,false\n")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "b.csv"), "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    z, t = np.array([0.5, 2.0]), np.array([1.0, 0.0])
    expected = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    assert doc["summary"]["counted"] == 2 and "XE203" in [d["code"] for d in doc["diagnostics"]]
    assert doc["summary"]["loss_mean"] == pytest.approx(float(expected.mean()), rel=1e-15)


def test_npz_default_keys_match_in_any_case(tmp_path):
    """'Logits' and 'Labels' are found as 'logits' and 'labels' are (a column 'Logits' was; the
    arrays were refused: 'no score array'); the kind follows the name ('Probs' are probabilities);
    'LOGITS' beside 'logits' (or 'Labels' beside 'labels') is refused: which holds them only the
    writer knows (found in review: one was taken with a note, and check passed)."""
    z = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    np.savez(tmp_path / "a.npz", Logits=z, Labels=np.array([1, 2]))
    np.savez(tmp_path / "p.npz", Probs=np.array([[0.25, 0.75], [0.5, 0.5]]), Y=np.array([1, 0]))
    np.savez(tmp_path / "two.npz", LOGITS=z + 100, logits=z, labels=np.array([1, 2]))
    runs = {name: CliRunner().invoke(app, ["score", str(tmp_path / name), "--json"]) for name in ("a.npz", "p.npz")}
    assert all(r.exit_code == 0 for r in runs.values()), {k: r.stderr for k, r in runs.items()}
    docs = {name: json.loads(r.stdout) for name, r in runs.items()}
    expected = float(np.mean(np.log(np.exp(z).sum(1)) - z[[0, 1], [1, 2]]))
    assert docs["a.npz"]["summary"]["loss_mean"] == pytest.approx(expected, rel=1e-15)
    assert docs["a.npz"]["input"]["scores"] == "array 'Logits'" and docs["a.npz"]["input"]["input_kind"] == "logits"
    assert docs["p.npz"]["input"]["input_kind"] == "probs"
    assert docs["p.npz"]["summary"]["loss_mean"] == pytest.approx(-(np.log(0.75) + np.log(0.5)) / 2, rel=1e-15)
    np.savez(tmp_path / "labels.npz", logits=z, labels=np.array([1, 2]), Labels=np.array([0, 0]))
    for name, says in (("two.npz", "'LOGITS', 'logits' could each hold the score"), ("labels.npz", "could each hold the label")):
        refused = CliRunner().invoke(app, ["check", str(tmp_path / name)])
        assert refused.exit_code == 2 and says in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr


@pytest.mark.parametrize("as_bytes", [False, True])
def test_npz_and_npy_labels_stored_as_class_names(tmp_path, as_bytes):
    """Labels saved as class names (np.str_ or bytes) are read with --classes as a table's text
    column is: positions in the list, a name not in it an unusable label (XE204), the same JSON as
    the Parquet file of the same rows; without --classes one line names the option (exit 2; they
    were refused as 'not numbers' even with it)."""
    z = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [0.25, 0.5, -2.0], [1.5, 1.0, 0.0]])
    names = ["dog", "bird", "cat", "emu"]
    stored = np.array([n.encode() for n in names]) if as_bytes else np.array(names)
    np.savez(tmp_path / "d.npz", logits=z, labels=stored)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", stored)
    pq.write_table(pa.table({"logits": list(z), "label": names}), tmp_path / "d.parquet")
    classes = ["--classes", "cat,dog,bird"]
    runs = [CliRunner().invoke(app, ["score", *args, *classes, "--json"])
            for args in ([str(tmp_path / "d.npz")], [str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy")],
                         [str(tmp_path / "d.parquet")])]
    assert all(r.exit_code == 0 for r in runs), [r.stderr for r in runs]
    docs = [json.loads(r.stdout) for r in runs]
    y = [1, 2, 0]  # dog, bird, cat; emu is no class
    expected = float(np.mean(np.log(np.exp(z[:3]).sum(1)) - z[[0, 1, 2], y]))
    for doc in docs:
        assert doc["summary"]["counted"] == 3 and doc["summary"]["loss_mean"] == pytest.approx(expected, rel=1e-15)
        assert "XE204" in [d["code"] for d in doc["diagnostics"]]
        assert doc["input"]["targets"].startswith("class names in ")
    assert docs[0]["summary"] == docs[1]["summary"] == docs[2]["summary"]
    for args in ([str(tmp_path / "d.npz")], [str(tmp_path / "z.npy"), "--labels", str(tmp_path / "y.npy")]):
        refused = CliRunner().invoke(app, ["score", *args])
        assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1
        assert "are strings, and no class names were given" in refused.stderr and "--classes" in refused.stderr


@pytest.mark.parametrize("mapped", [True, False])
def test_fortran_order_npz_members_stored_uncompressed_are_read_by_rows(tmp_path, monkeypatch, mapped):
    """np.savez of a transposed array stores it in Fortran order: an uncompressed member is read
    through a map of the file at the member's data, as a Fortran .npy is (it was refused), the same
    blocks whatever their size and whether the C library maps it (`mapped`) or numpy does;
    compressed, whose rows cannot be streamed, it is refused in one line naming the way out."""
    from xentcli.sources import arrays

    if not mapped:
        monkeypatch.setattr(arrays, "_mappable", lambda path: False)
    z = np.random.default_rng(3).standard_normal((3, 50)).T.astype(np.float32)  # [50, 3], Fortran order
    targets = np.eye(3, dtype=np.float32)[np.arange(50) % 3].T.copy().T  # dense rows, Fortran order too
    assert z.flags.f_contiguous and not z.flags.c_contiguous and targets.flags.f_contiguous
    np.savez(tmp_path / "f.npz", logits=z, targets=targets)
    member = arrays.NpzMember(arrays.open_npz(str(tmp_path / "f.npz")), str(tmp_path / "f.npz"), "logits")
    for rows in (1, 7, 50):
        np.testing.assert_array_equal(np.concatenate(list(member.slices(rows))), z)
    result = CliRunner().invoke(app, ["score", str(tmp_path / "f.npz"), "--json"])
    assert result.exit_code == 0, result.stderr
    z64 = z.astype(np.float64)
    expected = float(np.mean(np.log(np.exp(z64).sum(1)) - z64[np.arange(50), np.arange(50) % 3]))
    assert json.loads(result.stdout)["summary"]["loss_mean"] == pytest.approx(expected, rel=1e-6)
    np.savez_compressed(tmp_path / "c.npz", logits=z, labels=np.arange(50) % 3)
    refused = CliRunner().invoke(app, ["score", str(tmp_path / "c.npz")])
    assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "compressed and in Fortran order" in refused.stderr and "np.savez (not compressed)" in refused.stderr


def test_csv_class_names_spelled_true_false_follow_classes(tmp_path):
    """Found in review: labels "True"/"False" that are class names (--classes True,False: True is
    class 0) were read as the booleans 1 and 0, the classes swapped, and passed check; a class
    "Maybe" first seen past the first block was refused as 'not true or false'. With --classes
    naming such a spelling the column is text. Reference: float64 log-softmax."""
    rng = np.random.default_rng(2)
    n = 250_000  # past the first block
    z = rng.standard_normal((n, 3))
    y = rng.integers(0, 2, n)
    y[-3] = 2
    names = np.array(["True", "False", "Maybe"])
    lines = ["logit_0,logit_1,logit_2,label"] + [f"{a!r},{b!r},{c!r},{names[k]}" for (a, b, c), k in zip(z.tolist(), y)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "d.csv"), "--classes", "True,False,Maybe", "--json"])
    assert result.exit_code == 0, result.stderr
    expected = float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(n), y]))
    assert json.loads(result.stdout)["summary"]["loss_mean"] == pytest.approx(expected, rel=1e-12)


def test_a_csv_label_column_that_is_also_a_group_or_the_id(tmp_path):
    """--by label or --id-col label names the label column a second time: it is read once (a CSV
    read refused the column list: internal error), as in Parquet."""
    (tmp_path / "b.csv").write_text("logit,label\n0.5,True\n-1.0,False\n2.0,True\n-0.25,True\n")
    z, t = np.array([0.5, -1.0, 2.0, -0.25]), np.array([1.0, 0.0, 1.0, 1.0])
    loss = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    by = CliRunner().invoke(app, ["score", str(tmp_path / "b.csv"), "--by", "label", "--min-group", "1", "--json"])
    assert by.exit_code == 0, by.stderr
    assert json.loads(by.stdout)["input"]["group_types"] == "bool"  # as read: the label column's type, not 'text'
    groups = {g["by"]["label"]: g for g in json.loads(by.stdout)["groups"]}
    assert groups[True]["loss_mean"] == pytest.approx(float(loss[t == 1].mean()), rel=1e-15)
    assert groups[False]["loss_mean"] == pytest.approx(float(loss[t == 0].mean()), rel=1e-15)
    ids = CliRunner().invoke(app, ["score", str(tmp_path / "b.csv"), "--id-col", "label", "--worst", "1", "--json"])
    assert ids.exit_code == 0, ids.stderr
    assert json.loads(ids.stdout)["worst"][0]["row"] == int(np.argmax(loss))


@pytest.mark.parametrize("labels", ["y.npy", "y.parquet"])
def test_class_name_labels_follow_the_score_columns_order_not_classes(tmp_path, labels):
    """Found in review: scores in class-named columns (logit_cat, logit_dog, logit_bird) with class
    name labels in a --labels file and --classes in another order: the note said the columns' order
    was used, but the labels were mapped by --classes' order (a wrong mean that passed)."""
    rng = np.random.default_rng(5)
    n = 300
    z = rng.standard_normal((n, 3))
    y = rng.integers(0, 3, n)
    names = np.array(["cat", "dog", "bird"])
    pq.write_table(pa.table({"logit_cat": z[:, 0], "logit_dog": z[:, 1], "logit_bird": z[:, 2]}), tmp_path / "z.parquet")
    np.save(tmp_path / "y.npy", names[y])
    pq.write_table(pa.table({"label": names[y]}), tmp_path / "y.parquet")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "z.parquet"), "--labels", str(tmp_path / labels),
                                      "--classes", "dog,cat,bird", "--json"])
    assert result.exit_code == 0, result.stderr
    expected = float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(n), y]))
    assert json.loads(result.stdout)["summary"]["loss_mean"] == pytest.approx(expected, rel=1e-14)
    assert "the columns' order is used" in result.stderr


def test_a_damaged_fortran_npz_member_is_refused_as_a_c_order_one_is(tmp_path):
    """Found in review: the map of a Fortran-order member skipped the zip's checks — a byte changed
    after saving (bad CRC) scored 1.7668 for 1.7661 and a member whose entry claims more bytes than
    it stores read past its end (4.6e+273); both passed check. Now refused in one line each."""
    import struct
    import zipfile

    z = np.asfortranarray(np.random.default_rng(11).standard_normal((200, 4)))
    np.savez(tmp_path / "f.npz", logits=z, labels=np.arange(200) % 4)
    with zipfile.ZipFile(tmp_path / "f.npz") as archive:
        info = archive.getinfo("logits.npy")
    data = bytearray((tmp_path / "f.npz").read_bytes())
    start = info.header_offset + 30 + struct.unpack_from("<H", data, info.header_offset + 26)[0] + struct.unpack_from("<H", data, info.header_offset + 28)[0]
    bad = bytearray(data)
    bad[start + 200 : start + 208] = np.float64(3.0).tobytes()
    (tmp_path / "crc.npz").write_bytes(bad)
    short = bytearray(data)
    struct.pack_into("<I", short, info.header_offset + 18, info.compress_size - 800)  # the local entry stores less than it holds
    central = short.find(b"PK\x01\x02")
    struct.pack_into("<I", short, central + 20, info.compress_size - 800)
    (tmp_path / "short.npz").write_bytes(short)
    for name, says in (("crc.npz", "Bad CRC-32"), ("short.npz", "is damaged")):
        result = CliRunner().invoke(app, ["check", str(tmp_path / name)])
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1 and says in result.stderr, (name, result.stderr)


def test_class_name_label_arrays_of_other_shapes(tmp_path):
    """Class-name labels are one a row ([N], [N, 1]) or one a token ([N, T]): [N, 2] names (gold and
    a second annotator) were read as dense rows of class positions, a wrong mean that passed, and are
    refused; square [N, T, T] scores with [N, T] names are scored (their axis check converted the
    names to floats: internal error); a zero-width string dtype is refused in one line."""
    import io

    rng = np.random.default_rng(6)
    z = rng.standard_normal((40, 2))
    y = rng.integers(0, 2, 40)
    names = np.array(["neg", "pos"])
    np.savez(tmp_path / "two.npz", logits=z, labels=np.stack([names[y], names[1 - y]], axis=1))
    np.savez(tmp_path / "one.npz", logits=z, labels=names[y][:, None])
    seq_z = rng.standard_normal((40, 4, 4))
    seq_y = rng.integers(0, 4, (40, 4))
    np.savez(tmp_path / "square.npz", logits=seq_z, labels=np.array(list("abcd"))[seq_y])
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<U0", "fortran_order": False, "shape": (40,)})
    (tmp_path / "u0.npy").write_bytes(header.getvalue())
    np.save(tmp_path / "z.npy", z)
    runs = {
        "two": CliRunner().invoke(app, ["check", str(tmp_path / "two.npz"), "--classes", "neg,pos"]),
        "u0": CliRunner().invoke(app, ["score", str(tmp_path / "z.npy"), "--labels", str(tmp_path / "u0.npy"), "--classes", "neg,pos"]),
    }
    for name, says in (("two", "class names of shape [40, 2]"), ("u0", "strings of no characters")):
        assert runs[name].exit_code == 2 and len(runs[name].stderr.strip().splitlines()) == 1 and says in runs[name].stderr
    one = CliRunner().invoke(app, ["score", str(tmp_path / "one.npz"), "--classes", "neg,pos", "--json"])
    assert one.exit_code == 0, one.stderr
    assert json.loads(one.stdout)["summary"]["loss_mean"] == pytest.approx(
        float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(40), y])), rel=1e-15)
    square = CliRunner().invoke(app, ["score", str(tmp_path / "square.npz"), "--classes", "a,b,c,d", "--json"])
    assert square.exit_code == 0, square.stderr
    flat, labels = seq_z.reshape(-1, 4), seq_y.reshape(-1)
    assert json.loads(square.stdout)["summary"]["loss_mean"] == pytest.approx(
        float(np.mean(np.log(np.exp(flat).sum(1)) - flat[np.arange(160), labels])), rel=1e-14)


@pytest.mark.parametrize(("header", "good", "bad", "says"), [
    ("logit,label", ["0.5,true", "-0.5,false"], "0.5,yes", "'yes' is not true or false"),
    ("logit_0,logit_1,label", ["0.5,1,1", "0.5,1,0"], "0.5,1,x", "'x' is not a number"),
])
def test_the_cell_named_is_the_one_that_stopped_the_read_not_a_missing_one(tmp_path, header, good, bad, says):
    """Found in review: a label 'NA' early in the file (read as missing) was named as the bad cell
    instead of the 'yes' past the first block that stopped the read."""
    rows = 250_000
    lines = [header] + good * (rows // 2)
    lines[6] = good[0].rsplit(",", 1)[0] + ",NA"
    lines[rows - 2] = bad
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "d.csv")])
    assert result.exit_code == 2 and f"row {rows - 3}: {says}" in result.stderr, result.stderr


@pytest.mark.parametrize("at", ["first block", "late"])
def test_a_bad_cell_in_wide_target_rows_names_the_code_a_blank_one_gets(tmp_path, at):
    """A wide target row (label_0 … label_{C−1}) with a cell that is not a number: the hint names
    XE207, which a blank cell there raises (it named XE101, the NaN-score code)."""
    rows = 250_000 if at == "late" else 10
    lines = ["logit_0,logit_1,label_0,label_1"] + ["0.5,1,1,0"] * rows
    lines[rows - 1] = "0.5,1,x,1"
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "d.csv")])
    assert result.exit_code == 2 and f"column 'label_0' row {rows - 2}: 'x' is not a number" in result.stderr
    assert "flagged XE207" in result.stderr
    lines[rows - 1] = "0.5,1,,1"
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    blank = CliRunner().invoke(app, ["score", str(tmp_path / "d.csv"), "--json"])
    assert "XE207" in [d["code"] for d in json.loads(blank.stdout)["diagnostics"]]


def test_boolean_labels_with_classes_naming_true_and_false(tmp_path):
    """Found in review: a boolean label column (Parquet, NPZ) with --classes True,False read True as
    class 1 while the names said class 0 — the CSV copy of the same table mapped them by name; and
    CSV True/False labels with --classes 0,1 were made text, every row an unknown class. Booleans
    are the classes 0 and 1: names that say otherwise are refused; 0,1 and False,True agree."""
    import pandas as pd

    z = np.array([[0.5, 1.0], [-1.0, 0.3], [2.0, -0.5], [0.1, 0.2]])
    y = np.array([True, False, True, True])
    frame = pd.DataFrame({"logit_0": z[:, 0], "logit_1": z[:, 1], "label": y})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    np.savez(tmp_path / "t.npz", logits=z, labels=y)
    as_ones = float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(4), y.astype(int)]))
    for name in ("t.csv", "t.parquet", "t.npz"):
        for classes in ("0,1", "False,True"):
            result = CliRunner().invoke(app, ["score", str(tmp_path / name), "--classes", classes, "--json"])
            assert result.exit_code == 0, (name, classes, result.stderr)
            assert json.loads(result.stdout)["summary"]["loss_mean"] == pytest.approx(as_ones, rel=1e-15)
    for name in ("t.parquet", "t.npz"):
        refused = CliRunner().invoke(app, ["score", str(tmp_path / name), "--classes", "True,False"])
        assert refused.exit_code == 2 and "are booleans (False is class 0, True class 1)" in refused.stderr
