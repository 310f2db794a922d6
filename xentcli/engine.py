"""The engine: reads chunks, runs the kernels on a pool of threads, merges partials in input order.

Reading happens on the calling thread while workers compute (pyarrow and numpy release the GIL),
with at most `threads` chunks in flight, so memory is bounded by the chunk size. Partials merge
in chunk order, so the thread count never changes a result.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy.typing as npt

from xentcli.accumulate import LossSummary
from xentcli.config import DEFAULT_CHUNK_BYTES, RunConfig
from xentcli.kernels import SampleStats, sample_stats
from xentcli.report import Report
from xentcli.sources import Chunk, Source


@dataclass
class ChunkResult:
    offset: int
    stats: SampleStats
    ids: npt.NDArray | None
    partial: LossSummary


class SampleSink(Protocol):
    """Receives every chunk's per-sample results, in input order (see render/rows.py)."""

    def write(self, result: ChunkResult) -> None: ...


ProgressCallback = Callable[[int, float | None], None]


def chunk_rows(config: RunConfig, bytes_per_row: int) -> int:
    """Rows per chunk: as asked, else about DEFAULT_CHUNK_BYTES of scores."""
    if config.chunk_rows:
        return config.chunk_rows
    return max(1, DEFAULT_CHUNK_BYTES // max(1, bytes_per_row))


def _compute(chunk: Chunk, kind: str, num_classes: int, top_k: int, worst: int, detail: bool) -> ChunkResult:
    stats = sample_stats(chunk.scores, kind, labels=chunk.labels, targets=chunk.targets, detail=detail)  # type: ignore[arg-type]
    partial = LossSummary(num_classes, top_k, worst)
    partial.update(stats, chunk.offset, chunk.ids)
    return ChunkResult(chunk.offset, stats, chunk.ids, partial)


def run(
    config: RunConfig,
    source: Source | None = None,
    sink: SampleSink | None = None,
    on_progress: ProgressCallback | None = None,
) -> Report:
    """One pass over the input: every aggregate of `score`, and the per-sample rows to `sink`."""
    source = source or Source(config.source)
    info = source.description
    num_classes = info.num_classes
    top_k = max(1, min(config.top_k, num_classes))
    total = LossSummary(num_classes, top_k, config.worst)

    def finish(result: ChunkResult) -> None:
        total.merge(result.partial)
        if sink is not None:
            sink.write(result)
        if on_progress is not None:
            on_progress(total.rows, source.progress())

    args = (info.input_kind, num_classes, top_k, config.worst, sink is not None)
    chunks = source.chunks(chunk_rows(config, info.bytes_per_row))
    if config.threads <= 1:
        for chunk in chunks:
            finish(_compute(chunk, *args))
    else:
        with ThreadPoolExecutor(config.threads, thread_name_prefix="xent") as pool:
            in_flight: deque[Future[ChunkResult]] = deque()
            try:
                for chunk in chunks:
                    in_flight.append(pool.submit(_compute, chunk, *args))
                    while len(in_flight) > config.threads:
                        finish(in_flight.popleft().result())
                while in_flight:
                    finish(in_flight.popleft().result())
            finally:
                for future in in_flight:
                    future.cancel()
    return Report(
        input=info,
        summary=total.summary(),
        per_class=total.per_class_rows() if config.per_class else [],
        worst=total.worst.details,
        id_column=config.source.id_col,
    )
