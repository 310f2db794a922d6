"""The options of one run, parsed once into frozen dataclasses that flow down the pipeline."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

InputKind = Literal["logits", "probs", "log-probs"]
TargetKind = Literal["auto", "sparse", "dense"]
FileFormat = Literal["parquet", "arrow", "csv", "npy", "npz"]

DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class SourceConfig:
    """Where the scores and targets are and how to read them."""

    paths: tuple[str, ...]
    format: FileFormat | None = None
    labels_path: str | None = None
    score_col: str | None = None
    score_prefix: str | None = None
    label_col: str | None = None
    target_prefix: str | None = None
    score_key: str | None = None
    label_key: str | None = None
    id_col: str | None = None
    input_kind: InputKind | None = None  # None: from the column names, else logits
    target_kind: TargetKind = "auto"


@dataclass(frozen=True)
class RunConfig:
    """How to compute and what to keep: everything `score` needs beyond the source."""

    source: SourceConfig
    top_k: int = 5
    worst: int = 0
    per_class: bool = False
    chunk_rows: int | None = None  # None: sized by DEFAULT_CHUNK_BYTES of scores
    threads: int = os.cpu_count() or 1
