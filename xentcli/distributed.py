"""`--engine dask`: the same pass, its chunks read and computed on Dask workers.

The work is planned with xent's own sources, never through dask.dataframe (which turns list
columns into Python objects): one task per group of whole Parquet row groups, per range of an
.npy or Arrow file's rows, per CSV or NPZ file (or sequence dump). A task runs the local code —
reader, kernels, tally, diagnostics — over its rows, numbered from 0, and returns each chunk's
part (part.py), not their sum; the driver shifts them past the rows before and merges them in
input order, as a local run merges its chunks. So counts, the sketch, the worst rows and the
diagnostics are those of a local run whatever the tasks and their completion order, and the float
sums too where the tasks' rows start on the local run's chunk boundaries (.npy and Arrow ranges are
cut there; a Parquet task starts on a row group, whose chunks may be cut elsewhere: then the sums
agree to rounding, ~1e-16 relative).

Per-sample rows (-o): each task writes its rows to an Arrow file in a hidden folder beside the
target; the driver copies them in input order, renumbered, into the target, which is moved into
place only when the run completes (render/rows.py); the folder is removed either way.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import shutil
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from xentcli import native
from xentcli.config import RunConfig
from xentcli.errors import OptionError, OutputError, XentError
from xentcli.part import Part
from xentcli.plain import quoted
from xentcli.sources import FileSource, InputDescription, Source, detect_format, paths

TASK_BYTES = 64 << 20  # scores per task by default: a few chunks, so a dump of a few GB has tens of tasks
RETRIES = 2  # a task whose worker died runs again this many times


@dataclass(frozen=True)
class Engine:
    """--engine dask's settings: an existing cluster's scheduler, or a LocalCluster of `workers`."""

    scheduler: str | None = None
    workers: int | None = None
    task_rows: int | None = None  # rows per task (rounded to whole chunks); None: about TASK_BYTES of scores


@dataclass(frozen=True)
class Task:
    """One file's rows (`config.source.part`, or the whole file), computed as a local run would."""

    config: RunConfig
    first: tuple[str, tuple[str, ...]] | None  # the first shard's path and class names (a later shard's column order)
    samples_to: str | None = None  # the Arrow file for the task's per-sample rows (-o)
    id_column: str | None = None
    rows: bool = False  # also return each chunk's per-row state (xent diff pairs it)


@dataclass
class CompactStats:
    """What `xent diff` pairs of each row's statistics (compare.SideRows.of reads them)."""

    loss: Any
    label: Any
    label_ok: Any
    correct: Any
    p_true: Any = None  # a two-class softmax's: paired with a binary head it predicts by --threshold


@dataclass
class ChunkRows:
    """A chunk's per-row state for `xent diff`: engine.ChunkResult less the scores and statistics it does not pair."""

    offset: int
    stats: CompactStats
    ignored: Any
    ids: Any = None
    sample: Any = None
    targets: Any = None
    groups: list[Any] | None = None


@dataclass
class TaskResult:
    parts: list[Part]  # one per chunk, rows numbered from the task's first
    rows: list[ChunkRows] | None = None


def require_dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise OptionError("--engine dask needs Dask, which is not installed", hint="pip install 'xentcli[dask]'") from None
    return distributed


def plan(source: Source, config: RunConfig, rows_per_chunk: int, task_rows: int | None, samples_folder: str | None) -> list[Task]:
    """The tasks of a run, in input order."""
    info = source.description
    whole_only = info.sequences is not None or any(
        path and detect_format(path, None) != "npy" for path in (config.source.labels_path, config.source.sample_weights_path))
    if task_rows is None:
        per_task = max(rows_per_chunk, TASK_BYTES // max(info.bytes_per_row, 1) // rows_per_chunk * rows_per_chunk)
    else:
        per_task = max(1, math.ceil(task_rows / rows_per_chunk)) * rows_per_chunk
    tasks: list[Task] = []
    first: int | None = 0  # the input's number of the next task's first row, while the plan knows it
    for shard, shard_rows in zip(source.shard_configs, source.shard_rows):
        path = shard.paths[0]
        ranges = [None] if whole_only else _ranges(path, detect_format(path, shard.format), per_task)
        for part in ranges:
            out = None if samples_folder is None else os.path.join(samples_folder, f"part-{len(tasks):06d}.arrow")
            # rows numbered from 0 in the task, their loss blocks' edges where the whole input has them (else
            # the driver's shift closes the blocks cut by them: the sums then agree to rounding, not to the bit)
            origin = (first + part[0]) if first is not None and part is not None else (first or 0)
            tasks.append(Task(replace(config, source=replace(shard, part=part), first_row=origin), source.first_classes, out,
                              info.id_column))
        size = ranges[-1][1] if ranges[-1] is not None else shard_rows  # a whole-file task: the rows its header says (CSV: unknown)
        first = first + size if first is not None and size is not None else None
    return tasks


def _ranges(path: str, fmt: str, per_task: int) -> list[tuple[int, int] | None]:
    """Row ranges of one file: whole row groups of about `per_task` rows for Parquet, `per_task`
    rows for .npy and Arrow files; [None] (the whole file) for CSV and NPZ, read in one stream."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(paths.parquet_source(path)).metadata
        ranges, start, at = [], 0, 0
        for i in range(meta.num_row_groups):
            at += meta.row_group(i).num_rows
            if at - start >= per_task or (i == meta.num_row_groups - 1 and at > start):  # empty row groups at the end: no task
                ranges.append((start, at))
                start = at
        return ranges or [None]  # type: ignore[return-value]
    if fmt == "npy":
        from xentcli.sources.arrays import NpyArray

        rows = NpyArray(path, os.path.basename(path)).shape[0]
    elif fmt == "arrow":
        import pyarrow as pa
        import pyarrow.ipc as pa_ipc

        try:
            reader = pa_ipc.open_file(paths.open_file(path) if paths.is_url(path) else pa.memory_map(paths.native(path)))
        except pa.ArrowInvalid:  # an Arrow stream: read in one go
            return [None]
        rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    else:
        return [None]
    return [(start, min(start + per_task, rows)) for start in range(0, rows, per_task)] or [None]  # type: ignore[list-item]


def run_task(task: Task) -> TaskResult:
    """A task, on a worker: the local pass over its rows; each chunk's part, and its per-sample rows."""
    from xentcli.engine import Pass

    if "distributed" in sys.modules:  # on a Dask worker (never imported by a local run: it takes ~0.4 s)
        from distributed import get_worker

        try:  # as many threads as the worker has (a cluster's workers share the machine's cores already)
            task = replace(task, config=replace(task.config, threads=max(1, min(task.config.threads, get_worker().state.nthreads))))
        except ValueError:
            pass  # not on a worker (a test calling run_task itself)
    source = FileSource(task.config.source, task.first)
    one = Pass(task.config, source, keep_totals=False)  # type: ignore[arg-type]
    out = TaskResult([], [] if task.rows else None)
    writer: Any = None
    with contextlib.ExitStack() as stack:
        if task.samples_to is not None:
            from xentcli.render.rows import SampleWriter

            writer = stack.enter_context(SampleWriter(task.samples_to, [], task.id_column, False, task.config.loss.like, fmt="arrow",
                                                      before_move=source.verify))
        for result in one.results():
            out.parts.append(result.part(task.config))
            if writer is not None:
                writer.write(result)
            if out.rows is not None:
                s = result.stats
                p_true = s.p_true if one.info.head == "softmax" and one.info.num_classes == 2 else None
                out.rows.append(ChunkRows(result.offset, CompactStats(s.loss, s.label, s.label_ok, s.correct, p_true), result.ignored,
                                          result.ids, result.sample, result.targets, result.groups))
    if one.worst is not None and out.parts:  # the task's worst rows, merged as its chunks came (Pass), with its last part
        out.parts[-1].summary.worst = one.worst.into
    sequences = source.sequence_count()
    if sequences and out.parts:  # the next task's numbers follow all of this one's sequences, the empty last ones too
        out.parts[-1].samples = max(out.parts[-1].samples, sequences)
    return out


def _local_cluster(distributed: Any, workers: int) -> Any:
    """A LocalCluster whose processes start with Ctrl-C ignored (an ignored signal stays ignored in a
    started process): a terminal's Ctrl-C reaches the whole process group, and each worker printed its
    KeyboardInterrupt traceback while xent, which gets it too, closes the cluster itself. xent's own
    handler is back once the processes are started."""
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                                        silence_logs=logging.CRITICAL)
    finally:
        if main:
            signal.signal(signal.SIGINT, before)


@contextmanager
def client(engine: Engine) -> Iterator[Any]:
    """A Dask client: on the scheduler named (--scheduler, else DASK_SCHEDULER_ADDRESS), else on a
    LocalCluster of --workers single-threaded processes. A task uses as many threads as its worker has."""
    distributed = require_dask()
    for name in ("distributed", "tornado", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    address = engine.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    try:
        if address:
            try:
                connected = distributed.Client(address, timeout="20s")
            except (ValueError, TypeError) as exc:  # not an address at all: an unknown scheme, no port, a bad port
                raise OptionError(f"{quoted(address)} is not a Dask scheduler's address: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                                  hint="give --scheduler (or DASK_SCHEDULER_ADDRESS) as tcp://host:8786") from None
            with connected as c:
                yield c
            return
        workers = engine.workers or min(os.cpu_count() or 1, 4)
        if not 1 <= workers <= 256:
            raise OptionError(f"--workers must lie in [1, 256], not {workers}")
        with _local_cluster(distributed, workers) as cluster, distributed.Client(cluster) as c:
            yield c
    except (OSError, TimeoutError) as exc:
        raise OptionError(f"cannot reach the Dask scheduler {address or '(local cluster)'}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                          hint="check --scheduler (tcp://host:8786) and that the cluster is up") from None


class DaskPass:
    """engine.Pass's interface (info, results(), report()) for a pass whose chunks run on Dask:
    the tasks are submitted a few ahead of the one being merged (bounded memory), and their parts
    merged in input order."""

    def __init__(self, config: RunConfig, c: Any, engine: Engine, source: Source | None = None) -> None:
        from xentcli.engine import check_options, empty_part

        if config.temperature_scan:
            raise OptionError("--temperature-scan with --engine dask is not supported yet", hint="run it locally")
        self.config, self.engine, self._client = config, engine, c
        self.source = source or Source(config.source)
        self.info = self.source.description
        check_options(config, self.info)
        self.part = empty_part(config, self.info)
        self.planned = 0

    def tasks(self, samples_folder: str | None = None, rows: bool = False) -> Iterator[tuple[Task, tuple[int, int], TaskResult]]:
        """Each task, the (row, sequence) it starts at, and its result, in input order, once its parts are merged."""
        from xentcli.engine import chunk_rows, row_bytes

        config = replace(self.config, per_sample=samples_folder is not None)
        tasks = [replace(t, rows=rows) for t in plan(self.source, config, chunk_rows(config, row_bytes(config, self.info)),
                                                     self.engine.task_rows, samples_folder)]
        self.planned = len(tasks)
        window = max(4, 2 * sum(self._client.nthreads().values()) + 1)
        pending: deque[tuple[Task, Any]] = deque()
        queue = iter(tasks)
        try:
            while True:
                for task in queue:
                    pending.append((task, self._client.submit(run_task, task, pure=False, retries=RETRIES)))
                    if len(pending) >= window:
                        break
                if not pending:
                    return
                task, future = pending.popleft()
                result = future.result() if getattr(self._client, "local", False) else _result(future)
                future.release()
                start = (self.part.summary.rows, self.part.samples)
                for part in result.parts:
                    part.shift(*start)
                    self.part.merge(part)
                yield task, start, result
        finally:  # an error, or a consumer that stopped: the tasks submitted but not merged are dropped
            for _, future in pending:
                future.cancel()

    def results(self) -> Iterator[ChunkRows]:
        """Each chunk's per-row state in input order, its rows and positional sequences numbered in the whole input."""
        positional = self.config.source.group_col is None
        for _, (rows, samples), result in self.tasks(rows=True):
            for chunk in result.rows or []:
                chunk.offset += rows
                if chunk.sample is not None and positional and chunk.sample.dtype.kind in "iu":
                    chunk.sample = chunk.sample + samples
                yield chunk

    def report(self) -> Any:
        from xentcli.engine import report_of

        return report_of(self.config, self.info, self.part)


def run(config: RunConfig, source: Source, engine: Engine, samples: Any = None,
        on_progress: Callable[[int, float | None], None] | None = None) -> tuple[Part, InputDescription]:
    """The run's merged part on Dask, and its per-sample rows to `samples` (a render.rows.SampleWriter)."""
    if config.temperature_scan:
        raise OptionError("--temperature-scan with --engine dask is not supported yet", hint="run it locally")
    require_dask()
    with _parts_folder(samples) as folder, client(engine) as c:  # the client closed (its tasks gone) before the folder goes
        return _run_tasks(config, source, c, engine, samples, folder, on_progress)


def local_tasks(config: RunConfig, source: Source) -> list[Task] | None:
    """The tasks of a local run over Parquet row groups (the plan a Dask run makes), when they are
    how it runs: a Parquet row group decodes on one thread (pyarrow decodes a column's pages in
    turn), so the row groups of a file are decoded side by side only as tasks of their own, each
    on a thread. None where the run streams instead: no Parquet shard, fewer than two tasks, a
    temperature scan (its sample's threshold is shared while the chunks run), or `xent diff`."""
    if config.temperature_scan or not source.has_parquet:
        return None
    from xentcli.engine import chunk_rows, row_bytes

    tasks = plan(source, config, chunk_rows(config, row_bytes(config, source.description)), None, None)
    return tasks if len(tasks) > 1 else None


def run_local(config: RunConfig, source: Source, samples: Any = None,
              on_progress: Callable[[int, float | None], None] | None = None) -> tuple[Part, InputDescription]:
    """A local run as tasks (local_tasks), run on config.threads threads of this process, one
    thread each (decoding and scoring its rows; pyarrow and the kernels release the GIL), their
    parts merged in input order as a Dask run merges them. The tasks and so the chunks are the
    same for every thread count (and the same as a Dask run's by default), so every number is too."""
    threads = max(1, config.threads)
    with _parts_folder(samples) as folder:
        pool = ThreadPoolExecutor(threads, thread_name_prefix="xent-task")
        try:
            return _run_tasks(replace(config, threads=1), source, _Threads(pool, threads), Engine(), samples, folder, on_progress)
        finally:  # before the folder goes: the tasks not started are dropped, the running ones end with their row groups
            pool.shutdown(wait=True, cancel_futures=True)


class _Threads:
    """The calls DaskPass makes of a Dask client, on a pool of local threads."""

    local = True

    def __init__(self, pool: ThreadPoolExecutor, threads: int) -> None:
        self._pool, self._threads = pool, threads

    def submit(self, fn: Callable[..., Any], *args: Any, **_: Any) -> Any:
        future = self._pool.submit(fn, *args)
        future.release = lambda: None  # type: ignore[attr-defined]
        return future

    def nthreads(self) -> dict[str, int]:
        return {"local": self._threads}


@contextmanager
def _parts_folder(samples: Any) -> Iterator[str | None]:
    """The hidden folder beside the per-sample target (`samples`, or None: no folder) where the tasks
    write their rows, removed on the way out, whatever ends the run. The caller stops its tasks
    first (a task still running would write into the folder as it goes)."""
    if samples is None:
        yield None
        return
    parent, folder = os.path.dirname(os.path.abspath(samples.path)), ""
    try:  # named before it exists, as AtomicTarget.create_temp's files are: an interrupt once it exists finds it
        for _ in range(100):
            folder = os.path.join(parent, f".xent-parts-{secrets.token_hex(6)}")
            native.bus_folder(folder, held=True)  # a bus error's handler removes it too (native.catch_bus_errors)
            try:
                os.mkdir(folder, 0o700)
                break
            except FileExistsError:  # another's folder: not ours to remove
                native.bus_folder(folder, held=False)
                folder = ""
        else:
            raise OutputError("cannot write in its folder: no free name for a temporary folder", path=samples.path)
        yield folder
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
            native.bus_folder(folder, held=False)


def _run_tasks(config: RunConfig, source: Source, c: Any, engine: Engine, samples: Any, folder: str | None,
               on_progress: Callable[[int, float | None], None] | None) -> tuple[Part, InputDescription]:
    """The tasks of a run on client `c` (Dask's, or _Threads), merged; their per-sample rows, written
    to `folder`, copied into `samples`."""
    one = DaskPass(config, c, engine, source)
    try:
        for done, (task, (rows, first_sample), _) in enumerate(one.tasks(folder), 1):
            if samples is not None:
                _copy_rows(task, rows, first_sample, samples)  # then removed: the folder holds a few tasks' rows at most
            if on_progress is not None:
                on_progress(one.part.summary.rows, done / one.planned)
    except OutputError as exc:  # a task's file of rows could not be written (a full disk): say so of the target
        if folder is not None and exc.path and os.path.dirname(os.path.abspath(exc.path)) == os.path.abspath(folder):
            exc.path = samples.path
        raise
    return one.part, replace(one.info, rows=one.part.summary.rows)


def _result(future: Any) -> TaskResult:
    """A task's result; a task that failed raises its own error (one line), a lost one says so."""
    try:
        return future.result()
    except XentError:
        raise
    except Exception as exc:  # KilledWorker, a lost scheduler, a worker without xentcli
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise OptionError(f"the Dask run could not finish: {type(exc).__name__}{': ' + text[:200] if text else ''}",
                          hint="check the workers (each needs xentcli installed and the input's paths readable)") from None


def _copy_rows(task: Task, rows: int, first_sample: int, samples: Any) -> None:
    """One task's per-sample rows into the target, renumbered past the rows before."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.ipc as pa_ipc

    assert task.samples_to is not None
    if not os.path.exists(task.samples_to):  # a task over no rows
        return
    with pa.memory_map(task.samples_to) as stream:
        reader = pa_ipc.open_file(stream)
        positional = task.config.source.group_col is None
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            columns = dict(zip(batch.schema.names, batch.columns))
            columns["row"] = pc.add(columns["row"], pa.scalar(rows, pa.int64()))
            if "sample" in columns and positional and pa.types.is_integer(columns["sample"].type):
                columns["sample"] = pc.add(columns["sample"], pa.scalar(first_sample, columns["sample"].type))
            samples.write_batch(pa.RecordBatch.from_arrays(list(columns.values()), names=list(columns)))
    os.unlink(task.samples_to)
