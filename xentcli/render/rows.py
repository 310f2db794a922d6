"""Per-sample output: one row per input row, streamed chunk by chunk to Parquet or CSV.

The rows go to a temporary file beside the target, renamed into place only when the run
completes, so an interrupted run never leaves a half-written file. Inputs are never overwritten.
"""

from __future__ import annotations

import os
import tempfile
from types import TracebackType

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from xentcli.engine import ChunkResult
from xentcli.errors import OutputError

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def output_format(path: str) -> str:
    for ext, fmt in FORMATS.items():
        if path.lower().endswith(ext):
            return fmt
    raise OutputError("unknown output type", path=path, hint="name a .parquet or .csv file")


def _nullable(values: npt.NDArray, missing: npt.NDArray[np.bool_]) -> pa.Array:
    return pa.array(values, mask=missing)


def sample_table(result: ChunkResult, id_column: str | None, like: str | None = None) -> pa.RecordBatch:
    """The per-sample columns of one chunk; NaN and unusable-label values become null.

    With `like`, `loss` holds that framework's per-sample output and `loss_true` the true loss.
    """
    stats = result.stats
    n = stats.loss.size
    no_label = ~stats.label_ok | result.ignored
    no_scores = np.isnan(stats.p_max)
    undefined = no_label | np.isnan(stats.loss)
    columns: dict[str, pa.Array] = {"row": pa.array(np.arange(result.offset, result.offset + n, dtype=np.int64))}
    if result.sample is not None and result.position is not None:
        columns["sample"] = pa.array(result.sample)
        columns["position"] = pa.array(result.position)
    if id_column is not None and result.ids is not None:
        columns[id_column] = pa.array(result.ids)
    loss = stats.loss if like is None else result.framework_values[like]
    columns.update(
        label=_nullable(stats.label, ~stats.label_is_int),
        loss=_nullable(loss, np.isnan(loss)),
        pred=_nullable(stats.pred, no_scores),
        correct=_nullable(stats.correct, undefined),
        p_true=_nullable(stats.p_true, undefined | np.isnan(stats.p_true)),
        rank=_nullable(stats.rank, undefined),
        p_max=_nullable(stats.p_max, no_scores),
        margin=_nullable(stats.margin, undefined | np.isnan(stats.margin)),
        entropy=_nullable(stats.entropy, np.isnan(stats.entropy)),
    )
    if like is not None:
        columns["loss_true"] = _nullable(stats.loss, np.isnan(stats.loss))
    if result.weights is not None:
        columns["weight"] = pa.array(result.weights)
    return pa.RecordBatch.from_pydict(columns)


class SampleWriter:
    """A sink for the engine; use as a context manager: renamed into place on success, removed on error."""

    def __init__(self, path: str, inputs: list[str], id_column: str | None, force: bool, like: str | None = None) -> None:
        self.path = path
        self.like = like
        self.format = output_format(path)
        self.id_column = id_column
        for source in inputs:
            if os.path.exists(path) and os.path.samefile(path, source):
                raise OutputError("is one of the inputs", path=path, hint="write the per-sample rows to a new file")
        if os.path.exists(path) and not force:
            raise OutputError("already exists", path=path, hint="pass --force to replace it")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise OutputError("its folder does not exist", path=path, hint="create the folder first")
        handle, self._temp = tempfile.mkstemp(prefix=".xent-", suffix=f".{self.format}.part", dir=folder)
        os.close(handle)
        self._writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None

    def write(self, result: ChunkResult) -> None:
        batch = sample_table(result, self.id_column, self.like)
        if self._writer is None:
            if self.format == "parquet":
                self._writer = pq.ParquetWriter(self._temp, batch.schema)
            else:
                self._writer = pa_csv.CSVWriter(self._temp, batch.schema)
        self._writer.write_batch(batch)

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._writer is not None:
            self._writer.close()
        if kind is None and self._writer is not None:
            os.replace(self._temp, self.path)
        elif os.path.exists(self._temp):
            os.unlink(self._temp)
