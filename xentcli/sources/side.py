"""What an adapter reports of one file: its role reader and how its fields were understood."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt


class Roles(Protocol):
    path: str
    rows: int | None

    def batches(self, rows: int) -> Iterator[dict[str, npt.NDArray]]: ...

    def progress(self) -> float | None: ...


def value_kind(dtype: np.dtype) -> str:
    """What kind of values a group column holds (numpy; columns.arrow_value_kind for Arrow): integer,
    float, text, bool, time or bytes — what must agree between shards and merged partials, whose
    values would otherwise meet as equal Python values (True and 1) or as equal text (1 and "1")."""
    kinds = {"b": "bool", "i": "integer", "u": "integer", "f": "float", "U": "text", "S": "bytes", "M": "time", "m": "time"}
    return kinds.get(dtype.kind, str(dtype))


@dataclass
class Side:
    """One file's part of the input: its role reader and how its fields were described."""

    roles: Roles
    scores: str = ""
    targets: str = ""
    target_kind: str = ""
    target_width: int = 0
    num_classes: int = 0
    score_dtype: str = ""
    kind_hint: str | None = None
    kind_hint_from: str = ""
    ids: str | None = None
    weights: str | None = None
    seq_len: int | None = None
    class_axis: int = 2
    samples: int | None = None
    sequences: str | None = None
    classes: tuple[str, ...] | None = None
    label_names: bool = False
    id_type: str | None = None
    group_types: str | None = None  # --by columns' kinds of values (columns.value_kind), comma-joined
    sequence_type: str | None = None  # --group-col's kind of values: the same in every shard (5 and "5" are two sequences)
    notes: list[str] = field(default_factory=list)
