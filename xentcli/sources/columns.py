"""Which Arrow columns hold the scores, the targets and the ids, and how to turn a batch into arrays.

Shared by every columnar format (Parquet, Arrow IPC, CSV): the plan is made once from the schema
(and the first row, for the number of classes of a list column) and then applied to each batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from xentcli.errors import LayoutError, OptionError
from xentcli.plain import name_list, quoted
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


def from_numpy(values: Any, missing: npt.NDArray[np.bool_] | None = None) -> pa.Array:
    """A column as an Arrow array, null where `missing` — to_numpy's inverse. A 1-D numpy array of
    numbers or booleans is built from its buffers (numbers zero-copy, booleans and the validity as
    bits): pa.array, on a numpy array or a list, imports pandas (~0.2 s) to ask whether it is a
    pandas object. Anything else (ids of any type, lists) goes through pa.array."""
    if not (isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "biuf" and values.dtype.isnative):
        return pa.array(values, mask=missing) if missing is not None and missing.any() else pa.array(values)
    values = np.ascontiguousarray(values)
    nulls = 0 if missing is None else int(np.count_nonzero(missing))
    validity = pa.py_buffer(np.packbits(~missing, bitorder="little")) if nulls else None
    if values.dtype == np.bool_:
        return pa.Array.from_buffers(pa.bool_(), values.size, [validity, pa.py_buffer(np.packbits(values, bitorder="little"))], null_count=nulls)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), values.size, [validity, pa.py_buffer(values)], null_count=nulls)


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
        if self.wide and len(self.columns) == 1:
            return f"column '{self.columns[0]}'"
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
        """The type of one value (a dictionary-encoded column's: its values', read decoded)."""
        inner = self.per_row_type
        inner = inner.value_type if is_list(inner) and not self.wide else inner
        return inner.value_type if pa.types.is_dictionary(inner) else inner


class CellFinder(Protocol):
    """Finds the first cell of a column that is not a number (CSV, whose types are inferred)."""

    def first_bad_cell(self, columns: list[str]) -> tuple[str, int, str] | None: ...


def wide_groups(schema: pa.Schema) -> dict[str, tuple[str, ...]]:
    """Columns named prefix + index, grouped by prefix and sorted by index, whatever their type
    (a member that is not numeric is an error of the group, not a column to leave out)."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for name in schema.names:
        match = _WIDE.match(name)
        if match:
            groups.setdefault(match.group(1), []).append((int(match.group(2)), name))
    return {prefix: tuple(name for _, name in sorted(members)) for prefix, members in groups.items()}


def bad_cell_error(path: str, column: str, row: int, text: str, flagged: str = "XE101", boolean: bool = False) -> LayoutError:
    """A score, label or weight cell that is not a number (`boolean`: a label column of true/false
    values, a cell that is neither), named by column, row (0-based) and text; `flagged`: the code
    that flags a blank cell there (a NaN score XE101, a NaN label XE203)."""
    what = "true or false, as the column's other labels are" if boolean else "a number"
    return LayoutError(f"column '{column}' row {row}: {quoted(text)} is not {what}", path=path,
                       hint=f"fix or blank the cell (an empty cell reads as NaN and is flagged {flagged})")


def check_numeric(schema: pa.Schema, columns: tuple[str, ...], path: str, cells: CellFinder | None, flagged: str = "XE101") -> None:
    """Every column of a group must hold numbers: name the first that does not, and in a CSV file
    the cell (row 0-based, as -o numbers rows) that made it text."""
    bad = [name for name in columns if not is_number(schema.field(name).type)]
    if not bad:
        return
    found = cells.first_bad_cell(bad) if cells is not None else None
    if found is not None:
        raise bad_cell_error(path, *found, flagged=flagged)
    raise LayoutError(
        f"column '{bad[0]}' holds {schema.field(bad[0]).type}, not numbers", path=path,
        hint="store the scores and targets as numbers",
    )


def _wide_field(schema: pa.Schema, prefix: str, members: tuple[str, ...], path: str, cells: CellFinder | None,
                flagged: str = "XE101") -> Field:
    """Wide columns prefix0 … prefix{C−1}; `flagged`: the code a blank cell there gets (a score's
    XE101, a target row's XE207)."""
    indices = [int(_WIDE.match(name).group(2)) for name in members]  # type: ignore[union-attr]
    if indices != list(range(len(indices))):
        missing = sorted(set(range(max(indices) + 1)) - set(indices))
        raise LayoutError(
            f"wide columns '{prefix}N' must be numbered 0 … C-1, but index {missing[0] if missing else indices[0]} "
            f"is missing or repeated",
            path=path,
            hint="rename the columns or pick others with --score-prefix/--target-prefix",
        )
    check_numeric(schema, members, path, cells, flagged)
    return Field(members, True, schema.field(members[0]).type)


def _find_prefix(schema: pa.Schema, prefix: str, path: str, option: str, cells: CellFinder | None) -> Field:
    groups = wide_groups(schema)
    for candidate in dict.fromkeys((prefix, prefix + "_")):
        if candidate in groups:
            return _wide_field(schema, candidate, groups[candidate], path, cells, "XE207" if option == "--target-prefix" else "XE101")
    raise LayoutError(
        f"no columns named {prefix}0, {prefix}1, … (columns: {name_list(schema.names)})",
        path=path,
        hint=f"check {option}",
    )


def _named_column(schema: pa.Schema, name: str, path: str, option: str) -> Field:
    if name not in schema.names:
        raise LayoutError(
            f"no column {quoted(name)} (columns: {name_list(schema.names)})", path=path, hint=f"check {option}"
        )
    return Field((name,), False, schema.field(name).type)


def find_scores(schema: pa.Schema, path: str, column: str | None, prefix: str | None, cells: CellFinder | None = None) -> Field:
    """The score field: named by option, else found by the rules in the README. `--score-prefix ""`
    names columns 0, 1, … (a predict_proba DataFrame)."""
    if column:
        found = _named_column(schema, column, path, "--score-col")
    elif prefix is not None:
        found = _find_prefix(schema, prefix, path, "--score-prefix", cells)
    else:
        found = _auto_scores(schema, path, cells)
    if not found.wide and is_number(found.dtype):  # one number per row: a binary head's scores, as one wide column
        found = Field(found.columns, True, found.dtype)
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


def named_class_columns(schema: pa.Schema, any_type: bool = False) -> dict[str, tuple[str, ...]]:
    """Numeric columns named prefix + class name (logit_cat, logit_dog …), grouped by known prefix;
    with `any_type` (CSV, whose types are guessed) columns of any type."""
    groups: dict[str, list[str]] = {}
    for name in schema.names:
        for prefix in sorted(SCORE_PREFIXES, key=len, reverse=True):
            if name.lower().startswith(prefix) and len(name) > len(prefix) and (any_type or is_number(schema.field(name).type)):
                groups.setdefault(name[: len(prefix)], []).append(name)
                break
    return {prefix: tuple(names) for prefix, names in groups.items() if len(names) >= 2}


def _auto_scores(schema: pa.Schema, path: str, cells: CellFinder | None) -> Field:
    """The score columns by their names, strongest first: a list column named like the scores; else
    one group of wide columns numbered P0 … P{C-1} with a score prefix; else columns named by class
    with a score prefix; and only where none is named so, the one list column not named like a
    target (found in review: an 'embedding' list beside logit_0 … logit_4 was taken for the scores),
    or one numeric column named like the scores (a binary head) — these two together are refused
    (a 'score' confidence beside an unnamed list of outputs, or a binary 'logit' beside token ids,
    cannot be told apart), as are two lists or two groups."""
    lists = [name for name in schema.names if is_list(schema.field(name).type)]
    named = [name for name in lists if name.lower() in SCORE_LIST_NAMES]
    if len(named) > 1:
        raise LayoutError(f"several list columns could hold the scores: {name_list(named)}", path=path, hint="choose one with --score-col")
    groups = {p: m for p, m in wide_groups(schema).items() if p.lower() in SCORE_PREFIXES}
    if len(groups) > 1:
        raise LayoutError(f"several groups of wide score columns: {', '.join(p + '0…' for p in groups)}", path=path,
                          hint="choose one with --score-prefix")
    if named and groups:
        prefix = next(iter(groups))
        raise LayoutError(f"several columns could hold the scores: list column {quoted(named[0])}, wide columns {prefix}0…", path=path,
                          hint="choose with --score-col or --score-prefix")
    if named:
        return Field((named[0],), False, schema.field(named[0]).type)
    if groups:
        prefix, members = next(iter(groups.items()))
        return _wide_field(schema, prefix, members, path, cells)
    named_groups = named_class_columns(schema, any_type=cells is not None)
    if len(named_groups) == 1:
        prefix, members = next(iter(named_groups.items()))
        check_numeric(schema, members, path, cells)
        return Field(members, True, schema.field(members[0]).type, tuple(m[len(prefix):] for m in members))
    unnamed = [name for name in lists if name.lower() not in TARGET_NAMES]
    scalars = [name for name in schema.names if name.lower() in SCORE_LIST_NAMES and not is_list(schema.field(name).type)]
    if len(unnamed) > 1:
        raise LayoutError(f"several list columns could hold the scores: {name_list(unnamed)}", path=path, hint="choose one with --score-col")
    if unnamed and len(scalars) == 1:
        raise LayoutError(f"several columns could hold the scores: list column {quoted(unnamed[0])} and column {quoted(scalars[0])} (a binary "
                          "head's score)", path=path, hint="choose with --score-col")
    if unnamed:
        return Field((unnamed[0],), False, schema.field(unnamed[0]).type)
    if len(scalars) == 1:  # one score per row (a binary head): a numeric column named like the scores
        check_numeric(schema, (scalars[0],), path, cells)
        return Field((scalars[0],), True, schema.field(scalars[0]).type)
    separated = len(schema.names) == 1 and next((sep for sep in (";", "\t", "|") if sep in schema.names[0]), None)
    raise LayoutError(
        f"no score column found (columns: {name_list(schema.names)})",
        path=path,
        hint=(f"its one column's name holds {quoted(separated)}: xent reads comma-separated CSV; save it with commas" if separated
              else "name a list column with --score-col, or wide columns with --score-prefix"),
    )


def reconcile_classes(found: Field, classes: tuple[str, ...], path: str, given_by: str) -> tuple[Field, str | None]:
    """Class-named score columns against class names known already (`--classes`, or the first
    shard's columns). The same names in another order: --classes yields to the columns' order, a
    later shard is read in the first shard's order; either way a note says so. Other names: an error."""
    assert found.classes is not None
    if found.classes == classes:
        return found, None
    columns, given = set(found.classes), set(classes)
    if columns != given:
        extra = [name for name in found.classes if name not in given][:5]
        missing = [name for name in classes if name not in columns][:5]
        parts = ([f"the columns name {name_list(extra)} not in {given_by}"] if extra else []) + (
            [f"{given_by} names {name_list(missing)} not among the columns"] if missing else [])
        error = OptionError if given_by == "--classes" else LayoutError
        raise error("class names disagree: " + "; ".join(parts), path=path,
                    hint="name the same classes" if given_by == "--classes" else "all shards of a dump must score the same classes")
    if given_by == "--classes":
        return found, f"{path}: --classes lists the score columns' classes in another order; the columns' order is used"
    position = {name: i for i, name in enumerate(found.classes)}
    columns = tuple(found.columns[position[name]] for name in classes)
    return replace(found, columns=columns, classes=classes), f"{path}: class columns come in another order than in {given_by}; read in its order"


def id_field(schema: pa.Schema, name: str, path: str, option: str = "--id-col (--key for diff)", role: str = "id") -> Field:
    """An id (or group) column: one scalar per row (numbers, text, bytes, dates, times, decimals), never a list."""
    found = _named_column(schema, name, path, option)
    if pa.types.is_nested(found.dtype):
        raise LayoutError(f"{role} column '{name}' holds {found.dtype}, not one value per row", path=path, hint=f"pick a column of scalars with {option}")
    return found


def group_field(schema: pa.Schema, name: str, path: str, option: str = "--group-col") -> Field:
    """The column naming each token row's sequence: integers or text (`option`: the option that named it)."""
    found = _named_column(schema, name, path, option)
    dtype = found.dtype.value_type if pa.types.is_dictionary(found.dtype) else found.dtype
    if not (pa.types.is_integer(dtype) or is_text(dtype)):
        raise LayoutError(f"group column '{name}' holds {found.dtype}; sequences are named by integers or text", path=path, hint=f"check {option}")
    return found


def arrow_value_kind(dtype: pa.DataType) -> str:
    """side.value_kind for an Arrow column."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    checks = ((pa.types.is_boolean, "bool"), (pa.types.is_integer, "integer"), (pa.types.is_floating, "float"), (is_text, "text"),
              (pa.types.is_temporal, "time"), (pa.types.is_binary, "bytes"), (pa.types.is_large_binary, "bytes"),
              (pa.types.is_decimal, "decimal"))
    return next((name for check, name in checks if check(dtype)), str(dtype))


def is_text(dtype: pa.DataType) -> bool:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)


def find_targets(
    schema: pa.Schema, path: str, column: str | None, prefix: str | None, classes: tuple[str, ...] | None = None,
    cells: CellFinder | None = None,
) -> Field:
    """The target field: an integer label column, a list column or wide columns of target rows;
    with class names, a column of strings."""
    if column:
        found = _named_column(schema, column, path, "--label-col")
    elif prefix is not None:
        found = _find_prefix(schema, prefix, path, "--target-prefix", cells)
    else:
        names = [name for name in schema.names if name.lower() in TARGET_NAMES]
        groups = {p: m for p, m in wide_groups(schema).items() if p.lower() in TARGET_PREFIXES}
        strong = [name for name in names if name.lower() != "y"]  # 'y' beside 'label' is more likely a coordinate
        if len(strong) > 1:  # found in review: 'target' before 'label' was taken silently (file order)
            raise LayoutError(f"several columns could hold the targets: {name_list(strong)}", path=path,
                              hint="choose one with --label-col")
        names = strong or names
        if names:
            found = Field((names[0],), False, schema.field(names[0]).type)
        elif groups:
            found = _wide_field(schema, *next(iter(groups.items())), path, cells, "XE207")
        else:
            raise LayoutError(
                f"no label column found (columns: {name_list(schema.names)})",
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
    if not found.wide and not is_list(found.dtype) and cells is not None and not (is_number(value_type) or pa.types.is_boolean(value_type)):
        check_numeric(schema, found.columns, path, cells, "XE203")  # a CSV label column that a bad cell made text
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
    if first_value is not None and first_value.null_count:  # a null row is named when it is read: the width is the first row's that has one
        first_value = first_value.drop_null()
    if first_value is None or len(first_value) == 0:
        return 0
    first = first_value[0]
    if found.nested or (first.is_valid and is_list(found.dtype) and is_list(found.dtype.value_type)):
        tokens = first_value.flatten().drop_null()  # the first token of any sequence: the first may have none (found in review)
        first = tokens[0] if len(tokens) else None
    return 0 if first is None or not first.is_valid else len(first)
