"""Per-sample output: one row per input row, streamed chunk by chunk to Parquet or CSV.

The rows go to a temporary file beside the target, renamed into place only when the run
completes, so an interrupted run never leaves a half-written file. Inputs are never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from xentcli import native
from xentcli.errors import OutputError
from xentcli.plain import escaped_surrogates
from xentcli.sources.columns import from_numpy

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def output_format(path: str) -> str:
    for ext, fmt in FORMATS.items():
        if path.lower().endswith(ext):
            return fmt
    raise OutputError("unknown output type", path=path, hint="name a .parquet or .csv file")


class SampleRows(Protocol):
    """What the per-sample writer reads of one chunk's results (engine.ChunkResult has it)."""

    offset: int
    stats: Any  # kernels.SampleStats
    ids: Any
    ignored: npt.NDArray[np.bool_]
    weights: npt.NDArray | None
    sample: npt.NDArray | None
    position: npt.NDArray | None
    framework_values: dict[str, npt.NDArray]
    binary: dict[str, npt.NDArray] | None


def sample_table(result: SampleRows, id_column: str | None, like: str | None = None) -> pa.RecordBatch:
    """The per-sample columns of one chunk; NaN and unusable-label values become null.

    With `like`, `loss` holds that framework's per-sample output and `loss_true` the true loss.
    """
    stats = result.stats
    n = stats.loss.size
    no_label = ~stats.label_ok | result.ignored
    no_scores = np.isnan(stats.p_max)
    undefined = no_label | np.isnan(stats.loss)
    columns: dict[str, pa.Array] = {"row": from_numpy(np.arange(result.offset, result.offset + n, dtype=np.int64))}
    if result.sample is not None:  # sequences: the sequence, and the position in it where known (not with --group-col)
        columns["sample"] = from_numpy(result.sample)
        if result.position is not None:
            columns["position"] = from_numpy(result.position)
    if id_column is not None and result.ids is not None:
        columns[id_column] = result.ids if isinstance(result.ids, pa.Array) else from_numpy(result.ids)
    loss = (stats.loss if like is None else result.framework_values[like]) + 0.0  # + 0.0: a loss of −0.0 (p = 1, lp = 0) is written 0.0
    if result.binary is not None and "hamming_accuracy" in result.binary:  # a multi-label head: per-label lists
        b = result.binary
        k = b["p"].shape[1]

        def lists(values: npt.NDArray) -> pa.Array:
            flat = from_numpy(values.ravel())
            return pa.FixedSizeListArray.from_arrays(flat, k).cast(pa.list_(flat.type))

        columns.update(
            target=lists(b["target"]), loss=from_numpy(loss, np.isnan(loss)), p=lists(b["p"]), pred=lists(b["pred"].astype(np.int8)),
            exact_match=from_numpy(b["exact_match"] == 1, np.isnan(b["exact_match"])),
            hamming_accuracy=from_numpy(b["hamming_accuracy"], np.isnan(b["hamming_accuracy"])),
        )
    elif result.binary is not None:  # a binary head: P(y = 1), the decision and its margin in logits
        b = result.binary
        columns.update(
            target=from_numpy(b["target"], np.isnan(b["target"])),
            label=from_numpy(stats.label, ~stats.label_is_int),
            loss=from_numpy(loss, np.isnan(loss)),
            p=from_numpy(b["p"], np.isnan(b["p"])),
            pred=from_numpy(stats.pred, np.isnan(b["p"])),
            correct=from_numpy(stats.correct, undefined),
            margin=from_numpy(b["margin"], np.isnan(b["margin"])),
        )
    else:
        columns.update(
            label=from_numpy(stats.label, ~stats.label_is_int),
            loss=from_numpy(loss, np.isnan(loss)),
            pred=from_numpy(stats.pred, no_scores),
            correct=from_numpy(stats.correct, undefined),
            p_true=from_numpy(stats.p_true, undefined | np.isnan(stats.p_true)),
            rank=from_numpy(stats.rank, undefined),
            p_max=from_numpy(stats.p_max, no_scores),
            margin=from_numpy(stats.margin, undefined | np.isnan(stats.margin)),
            entropy=from_numpy(stats.entropy, np.isnan(stats.entropy)),
        )
    if like is not None:  # every head: the framework's value in `loss`, the true one beside it
        columns["loss_true"] = from_numpy(stats.loss + 0.0, np.isnan(stats.loss))
    if result.weights is not None:
        columns["weight"] = from_numpy(result.weights)
    return pa.RecordBatch.from_pydict(columns)


# The columns xent writes itself; an id column may not take one of their names.
OUTPUT_COLUMNS = ("row", "sample", "position", "label", "loss", "pred", "correct", "p_true", "rank", "p_max", "margin",
                  "entropy", "loss_true", "weight", "target", "p", "exact_match", "hamming_accuracy")


# The outputs of this process moved into place so far: an interruption removes them (cli.app).
PLACED: list[str] = []


class AtomicTarget:
    """An output file written beside its target and moved into place only on success: never one of
    the inputs, a folder, or (without `force`) a file that exists — also one that appears during the
    run (link-then-unlink fails instead of replacing); the mode an ordinary open() would give it."""

    def __init__(self, path: str, inputs: list[str], force: bool, what: str) -> None:
        self.path, self.force, self._temp = path, force, ""
        for source in inputs:
            if os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
                raise OutputError("is one of the inputs", path=path, hint=f"write the {what} to a new file")
        if os.path.isdir(path):
            raise OutputError("is a folder", path=path, hint="name a file")
        if os.path.lexists(path) and not force:  # a symlink too, even one to nothing
            raise OutputError("already exists", path=path, hint="pass --force to replace it")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise OutputError("its folder does not exist", path=path, hint="create the folder first")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError("cannot write in its folder (permission denied)", path=path)
        try:
            longest = os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError):
            longest = 255
        if len(os.fsencode(os.path.basename(path))) > longest:  # before the run, not when the file moves into place
            raise OutputError(f"its name is longer than the {longest} bytes a file name may have there", path=path,
                              hint="choose a shorter name")
        self._folder = folder

    def create_temp(self, suffix: str) -> str:
        """A new empty file beside the target, named (and known to cleanup) before it exists: an
        interrupt once it exists finds it (a flake of test_terminated_run_leaves_no_part_file under load: SIGTERM inside tempfile.mkstemp, after
        its file was made and before its name came back, left the file behind)."""
        for _ in range(100):
            self._temp = os.path.join(self._folder, f".xent-{secrets.token_hex(6)}{suffix}")
            native.bus_output(self._temp, held=True)  # removed by a bus error's handler too (native.catch_bus_errors)
            try:
                os.close(os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666))  # (less the umask)
                return self._temp
            except FileExistsError:  # another's file: not ours to remove
                native.bus_output(self._temp, held=False)
                self._temp = ""
            except OSError as exc:
                native.bus_output(self._temp, held=False)
                self._temp = ""
                raise OutputError(f"cannot write in its folder: {exc.strerror}", path=self.path) from None
        raise OutputError("cannot write in its folder: no free name for a temporary file", path=self.path)

    def move_into_place(self) -> None:
        try:
            self._move()
            PLACED.append(self.path)
        except OutputError:
            raise
        except OSError as exc:  # the error names the target, not the temporary file
            raise OutputError(f"cannot be created: {exc.strerror or exc}", path=self.path) from None

    def _move(self) -> None:
        if self.force:
            os.replace(self._temp, self.path)
            return
        try:  # link-then-unlink: fails, rather than replaces, when the target appeared meanwhile
            os.link(self._temp, self.path)
        except FileExistsError:
            raise OutputError("appeared while xent was writing it; nothing was replaced", path=self.path,
                              hint="pass --force to replace it") from None
        except OSError:  # a file system without hard links: check, then rename (a small window remains)
            if os.path.exists(self.path):
                raise OutputError("appeared while xent was writing it; nothing was replaced", path=self.path) from None
            os.rename(self._temp, self.path)

    def cleanup(self) -> None:
        if self._temp and os.path.exists(self._temp):
            os.unlink(self._temp)
        if self._temp:
            native.bus_output(self._temp, held=False)


    def write(self, data: bytes) -> None:
        """The whole file at once (a report, a partial file, a chart); an error in writing (a disk
        full) names the file."""
        try:
            with _write_errors(self.path), open(self.create_temp(".part"), "wb") as f:
                f.write(data)
            self.move_into_place()
        finally:
            self.cleanup()


def write_atomically(path: str, data: bytes, inputs: list[str], force: bool, what: str) -> None:
    """A whole small file (a report) through an AtomicTarget."""
    AtomicTarget(path, inputs, force, what).write(data)


class SampleWriter:
    """A sink for the engine; use as a context manager: moved into place on success, removed on
    error or interruption (AtomicTarget)."""

    def __init__(self, path: str, inputs: list[str], id_column: str | None, force: bool, like: str | None = None,
                 reserved: tuple[str, ...] = OUTPUT_COLUMNS, fmt: str | None = None, before_move: Callable[[], None] | None = None) -> None:
        """`fmt`: "arrow" for a Dask task's part of the rows (distributed.py); else from the name.
        `before_move`: called once the file is written, before it moves into place (an error there
        leaves no file): the inputs' check (Source.verify), since the writer's thread reads the rows'
        columns — views of an input's memory map among them — after the pass has ended."""
        self.path = path
        self.before_move = before_move
        self.like = like
        self.format = fmt or output_format(path)
        self.id_column = id_column
        if id_column is not None and id_column in reserved:
            raise OutputError(f"the id column '{id_column}' has the name of a column xent writes ({', '.join(reserved)})",
                              path=path, hint="rename the id column in the dump, or leave out --id-col")
        self._target = AtomicTarget(path, inputs, force, "per-sample rows")
        self._temp = ""  # created with the first rows, inside the `with` block that removes it on any error
        self._writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None
        self._thread: _WriterThread | None = None

    def write(self, result: SampleRows) -> None:
        self.write_batch(sample_table(result, self.id_column, self.like))

    def write_batch(self, batch: pa.RecordBatch) -> None:
        """Append rows (the first batch fixes the schema; a later id type is cast to it).

        Parquet columns are declared required (not nullable) while they hold no null: pyarrow then
        writes no definition levels, which took more than half of the writing time. The first null
        in such a column makes it optional: the rows written so far are copied once into a new
        temporary file with that column optional (_widen)."""
        if self.format == "csv":
            batch = _csv_safe(batch)
        if self._writer is None:
            self._temp = self._target.create_temp(f".{self.format}.part")
            self._schema = _required_where_full(batch) if self.format == "parquet" else batch.schema
            with _write_errors(self.path):
                self._writer = self._open(self._schema)
        loose = _nullable_schema(self._schema)
        if batch.schema != loose:  # an id type that changed between chunks (null, then ints)
            try:
                batch = batch.cast(loose)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                raise OutputError("the id column changes type between chunks", path=self.path, hint="store the ids with one type") from None
        if self.format == "parquet":
            gaining = [f.name for f, column in zip(self._schema, batch.columns) if column.null_count and not f.nullable]
            if gaining:
                self._widen(gaining)
            batch = pa.RecordBatch.from_arrays(batch.columns, schema=self._schema)
        if self._thread is None:
            self._thread = _WriterThread(self._writer.write_batch, self.path)
        self._thread.put(batch)

    def _widen(self, names: list[str]) -> None:
        """Columns `names`, required so far, get nulls: the file so far is copied, row group by row
        group, into a new temporary file whose schema has them optional; writing goes on there."""
        if self._thread is not None:
            self._thread.close(raise_error=True)
            self._thread = None
        old = self._temp
        try:
            with _write_errors(self.path):
                self._writer.close()
                self._schema = pa.schema([f.with_nullable(True) if f.name in names else f for f in self._schema])
                self._temp = self._target.create_temp(f".{self.format}.part")
                self._writer = self._open(self._schema)
                written = pq.ParquetFile(old)
                for i in range(written.num_row_groups):
                    self._writer.write_table(written.read_row_group(i).cast(self._schema))
                written.close()
        finally:
            os.unlink(old)
            native.bus_output(old, held=False)

    def _open(self, schema: pa.Schema) -> Any:
        if self.format == "parquet":
            # Integer columns (row numbers, classes, ranks, sequence positions) delta-encoded: the row numbers
            # in next to no bytes at a third of the time, classes in about as many bytes as a dictionary's at
            # two thirds of its time; dictionaries where other values repeat (on floats they cost 2.5x and
            # grow the file); Snappy on the rest but the float64 columns, which it shrinks by 0-20% at a
            # third of the writing time.
            delta = [f.name for f in schema if pa.types.is_integer(f.type)]
            compression = {f.name: "none" if pa.types.is_float64(f.type) or f.name in delta else "snappy" for f in schema}
            return pq.ParquetWriter(self._temp, schema, use_dictionary=[name for name in DICTIONARY_COLUMNS if name in schema.names and name not in delta],
                                    compression=compression, column_encoding=dict.fromkeys(delta, "DELTA_BINARY_PACKED") or None)
        if self.format == "arrow":
            import pyarrow.ipc as pa_ipc

            return pa_ipc.new_file(self._temp, schema)
        return pa_csv.CSVWriter(self._temp, schema)

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self._thread is not None:
                self._thread.close(raise_error=kind is None)
            if self._writer is not None:
                with _write_errors(self.path, raise_them=kind is None):  # the file's last bytes (a Parquet footer)
                    self._writer.close()
            if kind is None and self.before_move is not None:
                self.before_move()
            if kind is None and self._writer is not None:
                self._target.move_into_place()
        finally:
            self._target.cleanup()


def _required_where_full(batch: pa.RecordBatch) -> pa.Schema:
    """The batch's schema with every column that holds no null declared required (a column of
    Arrow's null type, which an empty batch can give, stays optional: Parquet requires it)."""
    return pa.schema([f.with_nullable(bool(column.null_count) or pa.types.is_null(f.type)) for f, column in zip(batch.schema, batch.columns)],
                     metadata=batch.schema.metadata)


def _nullable_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema], metadata=schema.metadata)


@contextlib.contextmanager
def _write_errors(path: str, raise_them: bool = True) -> Iterator[None]:
    """An OSError in writing (disk full, a file-size limit) as one OutputError line naming the file;
    none at all when another error is on its way already."""
    try:
        yield
    except OSError as exc:
        if raise_them:
            raise OutputError(f"cannot write: {_os_error_text(exc)}", path=path) from None


def _os_error_text(exc: OSError) -> str:
    """An OSError's own words in one line (pyarrow's carry a 'Detail: [errno N] …' tail)."""
    return (exc.strerror or str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:200]


# Parquet columns worth a dictionary: labels, predictions, ranks and the like repeat; floats and row numbers do not.
DICTIONARY_COLUMNS = ("label", "pred", "rank", "sample", "position", "target", "correct", "exact_match")  # unless integers (delta)


class _WriterThread:
    """Writes batches on a thread of its own (pyarrow encodes and compresses without the GIL), at
    most QUEUE batches behind the computation, so the file is written while the next chunks are
    scored; an error in writing is raised on the next batch or at the end."""

    QUEUE = 2

    def __init__(self, write: Any, path: str) -> None:
        import queue
        import threading

        self._write, self._path = write, path
        self._queue: queue.Queue[pa.RecordBatch | None] = queue.Queue(self.QUEUE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="xent-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(batch)
                except BaseException as exc:  # noqa: BLE001 — handed to the calling thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, OSError):
                raise OutputError(f"cannot write: {_os_error_text(error)}", path=self._path) from None
            raise error

    def put(self, batch: pa.RecordBatch) -> None:
        self._raise()
        self._queue.put(batch)

    def close(self, raise_error: bool) -> None:
        self._queue.put(None)
        self._thread.join()
        if raise_error:
            self._raise()


def _csv_safe(batch: pa.RecordBatch) -> pa.RecordBatch:
    """CSV cells hold text: ids of types pyarrow's CSV writer cannot write (binary, durations,
    decimals…) are written as their text."""
    columns = []
    for column in batch.columns:
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type) or pa.types.is_fixed_size_binary(column.type):
            column = pa.array([None if v is None else v.decode("utf-8", "backslashreplace") for v in column.to_pylist()], pa.string())
        elif pa.types.is_duration(column.type) or pa.types.is_decimal(column.type) or pa.types.is_time(column.type):
            column = pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


# The columns of `xent diff -o`, one row per pair.
DELTA_COLUMNS = ("row", "key", "label", "loss_base", "loss_candidate", "delta", "correct_base", "correct_candidate")


class DeltaWriter:
    """`xent diff -o`: one row per pair (usable or not), null loss and delta where a side is ignored
    or non-finite; written through a SampleWriter (atomic, never over an input)."""

    def __init__(self, path: str, inputs: list[str], key: str | None, force: bool) -> None:
        self.writer = SampleWriter(path, inputs, None, force, reserved=DELTA_COLUMNS)

    def check_before_move(self, verify: Callable[[], None]) -> None:
        self.writer.before_move = verify

    def __enter__(self) -> DeltaWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.writer.__exit__(*exc)

    def write(self, base: Any, candidate: Any, delta: npt.NDArray, keyed: bool, labels: bool) -> None:
        """`labels`: a row has one class label (a multi-label head's rows have none: no `label` column)."""
        columns: dict[str, pa.Array] = {"row": from_numpy(base.row)}
        if keyed:  # int64 keys or their text (compare._keys): the same type in every batch, an empty one too
            columns["key"] = from_numpy(base.key) if base.key.dtype.kind == "i" else pa.array([escaped_surrogates(k) for k in base.key.tolist()], pa.string())
        usable = ~np.isnan(delta)
        if labels:
            columns["label"] = from_numpy(base.label, ~base.label_ok)
        columns.update(
            loss_base=from_numpy(base.loss, ~np.isfinite(base.loss) | base.ignored),
            loss_candidate=from_numpy(candidate.loss, ~np.isfinite(candidate.loss) | candidate.ignored),
            delta=from_numpy(np.nan_to_num(delta), ~usable),
            correct_base=from_numpy(base.correct, ~usable),
            correct_candidate=from_numpy(candidate.correct, ~usable),
        )
        self.writer.write_batch(pa.RecordBatch.from_pydict(columns))
