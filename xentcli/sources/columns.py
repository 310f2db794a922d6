"""Which Arrow columns hold the scores, the targets and the ids, and how to turn a batch into arrays.

Shared by every columnar format (Parquet, Arrow IPC, CSV): the plan is made once from the schema
(and the first row, for the number of classes of a list column) and then applied to each batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from xentcli.errors import LayoutError, OptionError
from xentcli.sources.names import SCORE_LIST_NAMES, SCORE_PREFIXES, TARGET_NAMES, TARGET_PREFIXES

_WIDE = re.compile(r"^(.*?)(\d+)$")


def is_list(dtype: pa.DataType) -> bool:
    return pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype)


def is_number(dtype: pa.DataType) -> bool:
    """Numbers, or a column with no values at all (CSV infers `null` for an empty column)."""
    return (
        pa.types.is_integer(dtype)
        or pa.types.is_floating(dtype)
        or pa.types.is_decimal(dtype)
        or pa.types.is_null(dtype)
    )


def to_numpy(array: pa.Array) -> npt.NDArray:
    """An Arrow array as numpy: a zero-copy view of the values buffer for null-free integers and
    floats, pyarrow's own conversion otherwise (nulls → NaN, strings → objects). pyarrow's
    to_numpy imports pandas on first use, ~0.3 s of every start, even where numpy can view the
    buffer as it is."""
    dtype = array.type
    if array.null_count == 0 and (pa.types.is_integer(dtype) or pa.types.is_floating(dtype)):
        np_dtype = np.dtype(dtype.to_pandas_dtype())
        buffer = array.buffers()[1]
        if buffer is None:  # an empty array may carry no values buffer
            return np.empty(0, np_dtype)
        return np.frombuffer(buffer, np_dtype, count=len(array), offset=array.offset * np_dtype.itemsize)
    return array.to_numpy(zero_copy_only=False)


@dataclass(frozen=True)
class Field:
    """Where one role lives: a single column, or wide columns `prefix0 … prefix{C-1}` in class order."""

    columns: tuple[str, ...]
    wide: bool
    dtype: pa.DataType
    classes: tuple[str, ...] | None = None  # wide score columns named after classes (score_cat, …)

    @property
    def describe(self) -> str:
        if self.wide:
            return f"wide columns {self.columns[0]} … {self.columns[-1]}"
        kind = "list column" if is_list(self.dtype) else "column"
        return f"{kind} '{self.columns[0]}'"

    @property
    def nested(self) -> bool:
        """A list of lists per row: one sequence of per-token rows."""
        return not self.wide and is_list(self.dtype) and is_list(self.dtype.value_type)

    @property
    def per_row_type(self) -> pa.DataType:
        """The type of one token's entry: the row itself, or an element of a sequence."""
        return self.dtype.value_type if self.nested else self.dtype

    @property
    def value_type(self) -> pa.DataType:
        inner = self.per_row_type
        return inner.value_type if is_list(inner) and not self.wide else inner


def wide_groups(schema: pa.Schema) -> dict[str, tuple[str, ...]]:
    """Columns named prefix + index, grouped by prefix and sorted by index."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for name in schema.names:
        match = _WIDE.match(name)
        if match and is_number(schema.field(name).type):
            groups.setdefault(match.group(1), []).append((int(match.group(2)), name))
    return {prefix: tuple(name for _, name in sorted(members)) for prefix, members in groups.items()}


def _wide_field(schema: pa.Schema, prefix: str, members: tuple[str, ...], path: str) -> Field:
    indices = [int(_WIDE.match(name).group(2)) for name in members]  # type: ignore[union-attr]
    if indices != list(range(len(indices))):
        missing = sorted(set(range(max(indices) + 1)) - set(indices))
        raise LayoutError(
            f"wide columns '{prefix}N' must be numbered 0 … C-1, but index {missing[0] if missing else indices[0]} "
            f"is missing or repeated",
            path=path,
            hint="rename the columns or pick others with --score-prefix/--target-prefix",
        )
    return Field(members, True, schema.field(members[0]).type)


def _find_prefix(schema: pa.Schema, prefix: str, path: str, option: str) -> Field:
    groups = wide_groups(schema)
    for candidate in (prefix, prefix + "_"):
        if candidate in groups:
            return _wide_field(schema, candidate, groups[candidate], path)
    raise LayoutError(
        f"no columns named {prefix}0, {prefix}1, … (columns: {', '.join(schema.names)})",
        path=path,
        hint=f"check {option}",
    )


def _named_column(schema: pa.Schema, name: str, path: str, option: str) -> Field:
    if name not in schema.names:
        raise LayoutError(
            f"no column '{name}' (columns: {', '.join(schema.names)})", path=path, hint=f"check {option}"
        )
    return Field((name,), False, schema.field(name).type)


def find_scores(schema: pa.Schema, path: str, column: str | None, prefix: str | None) -> Field:
    """The score field: named by option, else found by the rules in the README."""
    if column:
        found = _named_column(schema, column, path, "--score-col")
    elif prefix:
        found = _find_prefix(schema, prefix, path, "--score-prefix")
    else:
        found = _auto_scores(schema, path)
    if not (found.wide or is_list(found.dtype)):
        raise LayoutError(
            f"score column '{found.columns[0]}' holds {found.dtype}, not a list of numbers per row",
            path=path,
            hint="point --score-col at a list column, or --score-prefix at wide columns",
        )
    if not is_number(found.value_type):
        raise LayoutError(
            f"scores in {found.describe} are {found.value_type}, not numbers", path=path,
            hint="store the scores as float32/float64",
        )
    return found


def named_class_columns(schema: pa.Schema) -> dict[str, tuple[str, ...]]:
    """Numeric columns named prefix + class name (logit_cat, logit_dog …), grouped by known prefix."""
    groups: dict[str, list[str]] = {}
    for name in schema.names:
        for prefix in sorted(SCORE_PREFIXES, key=len, reverse=True):
            if name.lower().startswith(prefix) and len(name) > len(prefix) and is_number(schema.field(name).type):
                groups.setdefault(name[: len(prefix)], []).append(name)
                break
    return {prefix: tuple(names) for prefix, names in groups.items() if len(names) >= 2}


def _auto_scores(schema: pa.Schema, path: str) -> Field:
    lists = [name for name in schema.names if is_list(schema.field(name).type)]
    named = [name for name in lists if name.lower() in SCORE_LIST_NAMES]
    candidates = named or [name for name in lists if name.lower() not in TARGET_NAMES]
    if len(candidates) == 1:
        return Field((candidates[0],), False, schema.field(candidates[0]).type)
    if len(candidates) > 1:
        raise LayoutError(
            f"several list columns could hold the scores: {', '.join(candidates)}",
            path=path,
            hint="choose one with --score-col",
        )
    groups = {p: m for p, m in wide_groups(schema).items() if p.lower() in SCORE_PREFIXES}
    if len(groups) == 1:
        prefix, members = next(iter(groups.items()))
        return _wide_field(schema, prefix, members, path)
    if len(groups) > 1:
        raise LayoutError(
            f"several groups of wide score columns: {', '.join(p + '0…' for p in groups)}",
            path=path,
            hint="choose one with --score-prefix",
        )
    named_groups = named_class_columns(schema)
    if len(named_groups) == 1:
        prefix, members = next(iter(named_groups.items()))
        return Field(members, True, schema.field(members[0]).type, tuple(m[len(prefix):] for m in members))
    raise LayoutError(
        f"no score column found (columns: {', '.join(schema.names)})",
        path=path,
        hint="name a list column with --score-col, or wide columns with --score-prefix",
    )


def is_text(dtype: pa.DataType) -> bool:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)


def find_targets(
    schema: pa.Schema, path: str, column: str | None, prefix: str | None, classes: tuple[str, ...] | None = None
) -> Field:
    """The target field: an integer label column, a list column or wide columns of target rows;
    with class names, a column of strings."""
    if column:
        found = _named_column(schema, column, path, "--label-col")
    elif prefix:
        found = _find_prefix(schema, prefix, path, "--target-prefix")
    else:
        names = [name for name in schema.names if name.lower() in TARGET_NAMES]
        groups = {p: m for p, m in wide_groups(schema).items() if p.lower() in TARGET_PREFIXES}
        if names:
            found = Field((names[0],), False, schema.field(names[0]).type)
        elif groups:
            found = _wide_field(schema, *next(iter(groups.items())), path)
        else:
            raise LayoutError(
                f"no label column found (columns: {', '.join(schema.names)})",
                path=path,
                hint="name it with --label-col or --target-prefix, or pass the labels with --labels FILE",
            )
    value_type = found.value_type
    if is_text(value_type) and not found.wide:
        if classes is None:
            raise LayoutError(
                f"labels in {found.describe} are strings, and no class names were given",
                path=path,
                hint="name the classes in order with --classes a,b,c (or a file, one per line)",
            )
        return found
    if not (is_number(value_type) or pa.types.is_boolean(value_type)):
        raise LayoutError(
            f"labels in {found.describe} are {value_type}, not numbers",
            path=path,
            hint="store class indices as integers (0 … C-1)",
        )
    return found


def find_weights(schema: pa.Schema, path: str, column: str) -> Field:
    """The numeric column of per-row sample weights."""
    found = _named_column(schema, column, path, "--weight-col")
    if not is_number(found.dtype):
        raise LayoutError(
            f"weights in column '{column}' are {found.dtype}, not numbers", path=path, hint="store one number per row"
        )
    return found


def check_target_kind(target: Field, wanted: str, path: str, sequences: bool = False) -> str:
    """'sparse' for a column of labels, 'dense' for rows of one-hot/soft targets; checks --target.

    With nested (sequence) scores, a list of labels per row is sparse: one label per token."""
    per_token = target.dtype.value_type if sequences and is_list(target.dtype) else target.dtype
    found = "dense" if target.wide or is_list(per_token) else "sparse"
    if wanted not in ("auto", found):
        raise OptionError(
            f"--target {wanted} was given, but {target.describe} holds {found} targets",
            path=path,
            hint=f"use --target {found} or --target auto",
        )
    return found


def list_to_matrix(column: pa.Array | pa.ChunkedArray, width: int, path: str, name: str, offset: int) -> npt.NDArray:
    """A list column as a [rows, width] array; zero-copy when the values have no nulls."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    if column.null_count:
        row = offset + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise LayoutError(f"row {row} of column '{name}' is null", path=path, hint="every row needs a full list of values")
    if pa.types.is_fixed_size_list(column.type):
        lengths = np.full(n, column.type.list_size)
        values = column.flatten()
    else:
        offsets = to_numpy(column.offsets)
        lengths = np.diff(offsets)
        values = column.values.slice(offsets[0], offsets[-1] - offsets[0]) if n else column.values.slice(0, 0)
    if n and (lengths != width).any():
        bad = int(np.flatnonzero(lengths != width)[0])
        raise LayoutError(
            f"ragged column '{name}': row {offset + bad} has {lengths[bad]} values where row 0 has {width}",
            path=path,
            hint="every row must hold one value per class",
            code="XE301",
        )
    return to_numpy(values).reshape(n, width)


def wide_to_matrix(batch: pa.RecordBatch, columns: tuple[str, ...]) -> npt.NDArray:
    """Wide numeric columns as one [rows, C] array (null → NaN)."""
    arrays = [to_numpy(batch.column(name)) for name in columns]
    return np.column_stack(arrays) if arrays else np.empty((batch.num_rows, 0))


def list_width(first_value: pa.Array | None, found: Field) -> int:
    """The number of classes of a field: wide column count, fixed list size, or the first row's length."""
    if found.wide:
        return len(found.columns)
    if pa.types.is_fixed_size_list(found.dtype):
        return found.dtype.list_size
    if first_value is None or len(first_value) == 0:
        return 0
    first = first_value[0]
    if found.nested or (first.is_valid and is_list(found.dtype) and is_list(found.dtype.value_type)):
        first = first.values[0] if first.is_valid and len(first) else None
    return 0 if first is None or not first.is_valid else len(first)
