"""Reading Parquet, Arrow IPC/Feather and CSV files as a stream of record batches of chosen columns.

One class per file; everything about column roles lives in `columns.py`. Files are opened for
reading only, and never read whole: Parquet by row-group batches, Arrow IPC from a memory map,
CSV with pyarrow's streaming reader.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pq

from xentcli.config import SourceConfig
from xentcli.errors import InputError, LayoutError, OptionError
from xentcli.sources.columns import (
    Field, arrow_value_kind, bad_cell_error, check_target_kind, find_scores, find_targets, find_weights, group_field, id_field, is_list, is_text,
    list_to_matrix, list_width, reconcile_classes, to_numpy, wide_to_matrix,
)
from xentcli.plain import name_list, quoted
from xentcli.sources import paths
from xentcli.sources.names import check_boolean_names, kind_from_name, names_true_false
from xentcli.sources.side import Side

# pyarrow parses CSV blocks on several threads ahead of the reader: 1 MiB blocks keep that
# read-ahead near 100 MB of resident memory (4 MiB blocks: ~250 MB) at the same speed.
CSV_BLOCK_BYTES = 1 << 20
# Parquet is read through a buffered stream, column chunk by column chunk: resident memory stays
# near one row group of decoded values instead of the whole file pre-buffered.
PARQUET_BUFFER_BYTES = 1 << 20
CSV_MAX_BLOCK_BYTES = 1 << 30
# pyarrow's CSV reader holds about 10 KB per column whatever the rows (a builder and parse state
# per column and block): 10^6 columns (7 MB of header, 5 rows) ended in std::bad_alloc, an abort.
CSV_MAX_COLUMNS = 100_000


class ColumnarFile:
    """One Parquet, Arrow or CSV file: its schema, its row count when known, and batches of columns."""

    def __init__(self, path: str, fmt: str) -> None:
        self.path = path
        self.format = fmt
        self._raw: BinaryIO | None = None
        self._column_types: dict[str, pa.DataType] = {}
        self._label_columns: set[str] = set()  # a CSV file's label column: a bad cell there is XE203's when blank
        self._target_rows = False  # its targets are wide rows (label_0 … label_{C−1})
        self._csv_block = CSV_BLOCK_BYTES
        if fmt == "csv":  # the header line, read once: the block that holds rows, and the column count
            header = _csv_header(path)
            self._csv_block = _csv_block_for(header)
            _refuse_too_wide(header, path)
        try:
            if fmt == "parquet":
                self._parquet = pq.ParquetFile(paths.parquet_source(path), pre_buffer=False,
                                               buffer_size=PARQUET_BUFFER_BYTES)
                self.schema = self._parquet.schema_arrow
                self.rows: int | None = self._parquet.metadata.num_rows
            elif fmt == "arrow":
                self._open_ipc()
            else:
                with self._csv_reader({}, None) as reader:
                    self.schema = reader.schema
                self.rows = None
        except (pa.ArrowInvalid, pa.ArrowIOError, pa.ArrowNotImplementedError, OSError, ValueError) as exc:
            raise InputError(f"cannot read as {fmt}: {_first_line(exc)}", path=path, hint="check the file or --format") from None
        try:
            names = self.schema.names
        except UnicodeDecodeError:  # pyarrow decodes the names as UTF-8 only when they are asked for
            raise InputError("its column names are not UTF-8 text", path=path, hint="save the file with UTF-8 column names") from None
        repeated = sorted(name for name, count in Counter(names).items() if count > 1)  # O(C): 60,000 columns happen
        if repeated:
            raise InputError(f"column names repeat: {', '.join(map(repr, repeated))}", path=path, hint="give every column its own name")

    def _mapped(self) -> Any:
        """The Arrow file, memory-mapped (a URL: opened through its file system). Cut short under
        the map, it reads as zeros past its new end: paths.FileStamp checks it once it is read."""
        return paths.open_file(self.path) if paths.is_url(self.path) else pa.memory_map(paths.native(self.path))

    def _open_ipc(self) -> None:
        source = self._mapped()
        try:
            self._ipc_file = pa_ipc.open_file(source)
            self.schema = self._ipc_file.schema
            self.rows = sum(self._ipc_file.get_batch(i).num_rows for i in range(self._ipc_file.num_record_batches))
        except pa.ArrowInvalid:
            self._ipc_file = None
            self.schema = pa_ipc.open_stream(self._mapped()).schema
            self.rows = None
            self._check_stream_end()

    def _check_stream_end(self) -> None:
        """An Arrow stream ends with its end-of-stream marker (0xFFFFFFFF 0; a zero length in the
        legacy format before Arrow 0.15, whose messages begin without 0xFFFFFFFF): a stream without
        it was cut short — at a batch's end, pyarrow's reader would take it for whole."""
        with paths.open_file(self.path) as stream:
            head = stream.read(4)
            stream.seek(0, os.SEEK_END)
            end = stream.tell()
            marker = b"\xff\xff\xff\xff\x00\x00\x00\x00" if head == b"\xff\xff\xff\xff" else b"\x00\x00\x00\x00"
            stream.seek(max(0, end - len(marker)))
            tail = stream.read(len(marker))
        if tail != marker:
            raise InputError("ends without the Arrow stream's end marker: it was cut short (its writer stopped before closing it)",
                             path=self.path, hint="write the stream again; a whole stream ends with the marker")

    def _csv_reader(self, column_types: dict[str, pa.DataType], include: list[str] | None) -> pa_csv.CSVStreamingReader:
        """A streaming CSV reader whose blocks hold at least a few rows: a block smaller than a row
        (60,000 wide columns) is an error in pyarrow, so the block grows until the first one parses."""
        while True:
            self._raw = paths.open_file(self.path)  # closed by the reader's owner
            stream = pa.CompressedInputStream(self._raw, "gzip") if self.path.lower().endswith(".gz") else self._raw
            try:
                return pa_csv.open_csv(
                    stream,
                    read_options=pa_csv.ReadOptions(block_size=self._csv_block),
                    convert_options=pa_csv.ConvertOptions(column_types=column_types, include_columns=include,
                                                          strings_can_be_null=False),
                )
            except pa.ArrowInvalid as exc:
                self._raw.close()
                if "straddling" not in str(exc) or self._csv_block >= CSV_MAX_BLOCK_BYTES:
                    raise
                self._csv_block *= 4

    def csv_type(self, column: str) -> pa.DataType:
        """The type a CSV column is read as (set_csv_types: text unless it holds scores, labels or weights)."""
        return self._column_types.get(column, pa.string())

    def set_csv_types(self, fields: dict[str, Field]) -> None:
        """Parse CSV score, label and weight columns as float64 so a later block cannot change their
        type, and ids as text, kept exactly as written (007 stays 007)."""
        for role, found in fields.items():
            if role == "targets":
                self._label_columns = set(found.columns)
                self._target_rows = found.wide  # a blank cell in a target row is XE207, in a label column XE203
            if role == "ids" or role.startswith("by"):
                self._column_types.setdefault(found.columns[0], pa.string())  # a label column named by --by too keeps its type
            elif role == "targets" and is_text(found.dtype) and not found.wide:
                self._column_types[found.columns[0]] = pa.string()  # class names: a later block cannot read them as booleans
            elif role == "targets" and pa.types.is_boolean(found.dtype) and not found.wide:
                self._column_types[found.columns[0]] = pa.bool_()  # true/false labels (pandas writes True/False): 1/0
            elif found.wide or pa.types.is_integer(found.dtype) or pa.types.is_floating(found.dtype) or pa.types.is_null(found.dtype):
                # null: a column empty in the first block (found in review: a later '3' was a conversion error)
                for name in found.columns:
                    self._column_types[name] = pa.float64()

    def first_bad_cell(self, columns: list[str]) -> tuple[str, int, str] | None:
        """(column, row, text) of the first cell among `columns` that is text but not a number
        (a null or empty cell is NaN, not an error). One more pass over the file, on the error path only."""
        import pyarrow.compute as pc  # the error path only

        types = {name: pa.string() for name in columns}
        offset = 0
        try:
            with self._csv_reader(types, columns) as reader:
                for batch in reader:
                    for name in columns:
                        column = batch.column(name)
                        bad = _first_unparsable(column, pc, self._column_types.get(name) == pa.bool_())
                        if bad is not None:
                            return name, offset + bad, column[bad].as_py()
                    offset += batch.num_rows
        except pa.ArrowInvalid as exc:  # a cell that is not even text: bytes that are not UTF-8
            raise InputError(f"cannot read: {_first_line(exc)}", path=self.path,
                             hint="save the file as UTF-8 text" if "UTF8" in str(exc) else "check the file") from None
        return None

    def first_batch(self, columns: list[str], tokens: str | None = None) -> pa.RecordBatch | None:
        """The first batch that holds rows (an Arrow file or stream may begin with an empty one: it
        was read as "holds no rows", found in review, 2026-12-03) — with `tokens`, a nested column,
        one of whose sequences holds a token (leading empty sequences say nothing of the classes) —,
        else the last, else None."""
        last = None
        for batch in self.record_batches(columns, 16):
            if batch.num_rows and (tokens is None or len(batch.column(tokens).flatten().drop_null())):
                return batch
            last = batch
        return last

    def record_batches(self, columns: list[str], rows: int, part: tuple[int, int] | None = None) -> Iterator[pa.RecordBatch]:
        """Batches of the columns; with `part` (first, stop), only those rows (Parquet and Arrow files)."""
        try:
            if part is not None:
                yield from _rows_between(self._part_batches(columns, rows, *part), *part)
            elif self.format == "parquet":
                yield from self._parquet.iter_batches(batch_size=rows, columns=columns, use_threads=True)
            elif self.format == "arrow":
                yield from self._ipc_batches(columns)
            else:
                with self._csv_reader(self._column_types, columns) as reader:
                    yield from reader
        except (pa.ArrowInvalid, pa.ArrowIOError, pa.ArrowNotImplementedError, OSError) as exc:
            numbers = [name for name in columns if self._column_types.get(name) in (pa.float64(), pa.bool_())]
            if self.format == "csv" and "conversion error" in str(exc) and numbers:
                found = self.first_bad_cell(numbers)
                if found is not None:
                    flagged = ("XE207" if self._target_rows else "XE203") if found[0] in self._label_columns else "XE101"
                    raise bad_cell_error(self.path, *found, flagged=flagged,
                                         boolean=self._column_types.get(found[0]) == pa.bool_()) from None
            hint = "a row is longer than the CSV block: is this a CSV file?" if "straddling" in str(exc) else "check the file"
            raise InputError(f"cannot read: {_first_line(exc)}", path=self.path, hint=hint) from None

    def _part_batches(self, columns: list[str], rows: int, first: int, stop: int) -> Iterator[tuple[int, pa.RecordBatch]]:
        """(row of its first row, batch) from the row group or record batch that holds row `first`
        on (Parquet: up to the row group that holds row `stop` − 1, and no further)."""
        if self.format == "parquet":
            sizes = [self._parquet.metadata.row_group(i).num_rows for i in range(self._parquet.num_row_groups)]
            starts = np.cumsum([0, *sizes])
            group = max(0, int(np.searchsorted(starts, first, side="right")) - 1)
            end = max(group + 1, min(len(sizes), int(np.searchsorted(starts, stop, side="left"))))
            at = int(starts[group])
            for batch in self._parquet.iter_batches(batch_size=rows, columns=columns, use_threads=True,
                                                    row_groups=range(group, end)):
                yield at, batch
                at += batch.num_rows
        elif self.format == "arrow" and self._ipc_file is not None:
            at = 0
            for i in range(self._ipc_file.num_record_batches):
                batch = self._ipc_file.get_batch(i)
                if at + batch.num_rows > first:
                    yield at, _validated(batch.select(columns), self.path)
                at += batch.num_rows
        else:
            raise ValueError(f"a {self.format} file is read whole")  # distributed.plan splits Parquet and Arrow files only

    def _ipc_batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        if self._ipc_file is not None:
            batches = (self._ipc_file.get_batch(i) for i in range(self._ipc_file.num_record_batches))
        else:
            batches = iter(pa_ipc.open_stream(self._mapped()))
        for batch in batches:
            yield _validated(batch.select(columns), self.path)

    def progress(self) -> float | None:
        """Fraction of a CSV file's bytes read so far (other formats count rows instead)."""
        if self._raw is None or self._raw.closed:
            return None
        return self._raw.tell() / max(1, paths.size(self.path))


def _true_false_names(fmt: str, targets: Field, classes: tuple[str, ...] | None, path: str) -> Field:
    """A CSV label column of true/false cells (pyarrow's booleans) is text when --classes names a
    class with one of those spellings ("True", "False", "Maybe"): class names, mapped by the list,
    not the labels 1 and 0 (found in review: --classes True,False read them swapped)."""
    if not classes or targets.wide or not pa.types.is_boolean(targets.value_type) or not names_true_false(classes):
        return targets
    if fmt == "csv":
        return replace(targets, dtype=pa.string())
    # a boolean column (Parquet, Arrow) holds True as 1: names that say otherwise are refused, not obeyed (found in review)
    check_boolean_names(classes, path, targets.describe)
    return targets


def _refuse_numbers_or_names(fmt: str, targets: Field, classes: tuple[str, ...] | None, path: str) -> None:
    """A CSV label column of numbers with class names that are numbers too, not 0 … C−1 in order
    (--classes 3,2,1,0): CSV cannot say whether '3' is position 3 or the class named "3" — Parquet's
    text labels are names, its integers positions (found in review: CSV took positions, Parquet
    names, two numbers for one dump). Refused; where both readings agree it is read."""
    if fmt != "csv" or not classes or targets.wide or arrow_value_kind(targets.value_type) not in ("integer", "float", "text"):
        return
    if any(_number_text(name) for name in classes) and list(classes) != [str(i) for i in range(len(classes))]:
        raise LayoutError(f"the labels are numbers and class names ({name_list(classes)}) are numbers too: in CSV xent cannot "
                          "tell a position from a name", path=path,
                          hint="write the labels as positions 0 … C−1 and name the classes with words, or store the file as Parquet")


def _number_text(text: str) -> bool:
    """A class name that reads as a number (a finite one: 'Nan' and 'Inf' are names)."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _validated(batch: pa.RecordBatch, path: str) -> pa.RecordBatch:
    """An Arrow IPC batch whose offsets and lengths agree with its buffers: the reader trusts the
    file's own numbers, and a damaged or crafted file (a string offset past its data, a batch longer
    than its columns) would otherwise be read out of bounds — a crash, or numbers from other memory.
    Full validation is linear in rows (and in text bytes, checked as UTF-8), not in scores."""
    for name, column in zip(batch.schema.names, batch.columns):
        try:
            column.validate(full=True)
        except pa.ArrowInvalid as exc:
            raise InputError(f"is damaged: column {quoted(name)}: {_first_line(exc)}", path=path,
                             hint="write the file again; its offsets or lengths point outside its data") from None
    try:
        batch.validate()
    except pa.ArrowInvalid as exc:
        raise InputError(f"is damaged: {_first_line(exc)}", path=path, hint="write the file again") from None
    return batch


def _csv_header(path: str) -> bytes:
    """A CSV file's first line (up to CSV_MAX_BLOCK_BYTES), b"" when it cannot be read (the reader reports why)."""
    import gzip

    opener = gzip.open if path.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            return stream.readline(CSV_MAX_BLOCK_BYTES)
    except (OSError, EOFError):
        return b""


def _csv_block_for(header: bytes) -> int:
    """A CSV block that holds several rows: four times the header line, at least CSV_BLOCK_BYTES
    (pyarrow refuses a row, or a header, longer than its block)."""
    return min(CSV_MAX_BLOCK_BYTES, max(CSV_BLOCK_BYTES, 4 * len(header)))


def _refuse_too_wide(header: bytes, path: str) -> None:
    """Refuse, before pyarrow allocates for them, more than CSV_MAX_COLUMNS columns (the commas of
    the header bound the count; a header over that bound is parsed, quotes and all, to count exactly)."""
    if header.count(b",") < CSV_MAX_COLUMNS:
        return
    import csv

    columns = len(next(csv.reader([header.decode("utf-8", "replace")]), []))
    if columns > CSV_MAX_COLUMNS:
        raise InputError(f"has {columns:,} columns; xent reads at most {CSV_MAX_COLUMNS:,} from a CSV file "
                         f"(its CSV reader needs about 10 KB per column: {columns * 10 / 1e6:,.0f} GB here)", path=path,
                         hint="store the scores as one list column (Parquet or Arrow) or as an NPY array")


# What pyarrow's CSV reader takes for a boolean cell (ConvertOptions' defaults), besides a null one.
CSV_BOOLEANS = ("1", "True", "TRUE", "true", "0", "False", "FALSE", "false")


def _first_unparsable(column: pa.Array, pc: object, boolean: bool = False) -> int | None:
    """Index of the first string in `column` that does not cast to float64 — or, for a column of
    true/false labels, that is not one of CSV_BOOLEANS (bisection) — leaving out the spellings the
    reader takes as missing (NA, null, …: a blank label, not the cell that stopped the read)."""
    column = pc.if_else(pc.is_in(column, pa.array(pa_csv.ConvertOptions().null_values)), pa.scalar(None, column.type), column)  # type: ignore[attr-defined]

    def parses(part: pa.Array) -> bool:
        if boolean:
            return bool(pc.all(pc.or_kleene(pc.is_null(part), pc.is_in(part, pa.array(CSV_BOOLEANS)))).as_py())  # type: ignore[attr-defined]
        try:
            pc.cast(part, pa.float64())  # type: ignore[attr-defined]
            return True
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False

    if parses(column):
        return None
    low, high = 0, len(column)  # the first bad cell lies in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        if parses(column.slice(low, middle - low)):
            low = middle
        else:
            high = middle
    return low


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _rows_between(batches: Iterator[tuple[int, pa.RecordBatch]], first: int, stop: int) -> Iterator[pa.RecordBatch]:
    """The rows first to stop of numbered batches."""
    for at, batch in batches:
        if at >= stop:
            return
        lo, hi = max(first - at, 0), min(stop - at, batch.num_rows)
        if hi > lo:
            yield batch if (lo, hi) == (0, batch.num_rows) else batch.slice(lo, hi - lo)


class ColumnarRoles:
    """Batches of one columnar file turned into role arrays: scores, labels/targets, ids, weights.

    Sequences come in two layouts: nested lists (one row per sequence: list<list<float>> scores,
    a list of labels), flattened here to one row per token; or one row per token with a `group`
    column naming the sequence. Both add `sample` and `position` arrays.
    """

    def __init__(self, file: ColumnarFile, roles: dict[str, Field], classes: tuple[str, ...] | None = None) -> None:
        self.file = file
        self.roles = roles
        self.classes = None if classes is None else pa.array(classes)
        self.path = file.path
        self.nested = "scores" in roles and roles["scores"].nested
        self.rows = None if self.nested else file.rows
        if file.format == "csv":
            file.set_csv_types(roles)
        self._columns = list(dict.fromkeys(name for found in roles.values() for name in found.columns))  # a column in two roles: read once
        first = file.first_batch(self._columns, roles["scores"].columns[0] if self.nested else None)
        self.empty = first is None or first.num_rows == 0
        self.widths = {
            role: list_width(None if first is None else first.column(found.columns[0]), found)
            for role, found in roles.items()
            if found.wide or is_list(self._per_token_type(found))
        }
        self._rows_read = 0
        self._part: tuple[int, int] | None = None

    def _per_token_type(self, found: Field) -> pa.DataType:
        """With nested sequences every list column holds one entry per token."""
        if self.nested and not found.wide and is_list(found.dtype):
            return found.dtype.value_type
        return found.dtype

    def restrict(self, first: int, stop: int) -> None:
        """Read rows `first` to `stop` only (a Parquet or Arrow file with a row per row)."""
        self._part = (first, stop)
        self.rows = stop - first

    def batches(self, rows: int) -> Iterator[dict[str, npt.NDArray]]:
        offset = 0
        first = self._part[0] if self._part is not None else 0  # errors name rows as the file numbers them
        for batch in self.file.record_batches(self._columns, rows, self._part):
            if self.nested:
                arrays = self._sequence_batch(batch, offset)
            else:
                arrays = {role: self._array(batch.column(found.columns[0]) if not found.wide else batch, role, found, first + offset)
                          for role, found in self.roles.items() if role != "group"}
                if "group" in self.roles:
                    arrays.update(self._group_positions(batch.column(self.roles["group"].columns[0])))
            offset += batch.num_rows
            self._rows_read = offset
            yield arrays

    def _array(self, column: pa.Array | pa.RecordBatch, role: str, found: Field, offset: int) -> npt.NDArray:
        if role in self.widths:
            if found.wide:
                return wide_to_matrix(column, found.columns)  # type: ignore[arg-type]
            return list_to_matrix(column, self.widths[role], self.path, found.columns[0], offset)  # type: ignore[arg-type]
        if role == "targets" and self.classes is not None and is_text(column.type):  # type: ignore[union-attr]
            # class names → indices; a name that is not a class becomes null → NaN, an unusable label
            import pyarrow.compute as pc  # only here: importing it costs ~50 ms of every start

            column = pc.index_in(column.cast(pa.string()), value_set=self.classes)  # type: ignore[union-attr]
        if role == "ids" or role.startswith("by"):  # identifiers and groups keep their Arrow type and values exactly
            return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column  # type: ignore[return-value]
        if pa.types.is_dictionary(column.type):  # a categorical of numbers (pandas writes them to Feather): its values
            column = column.dictionary_decode()  # type: ignore[union-attr]
        return np.asarray(to_numpy(column))  # type: ignore[arg-type]

    def _sequence_batch(self, batch: pa.RecordBatch, offset: int) -> dict[str, npt.NDArray]:
        """Nested rows → one row per token, with each token's sequence (row) and position."""
        scores = batch.column(self.roles["scores"].columns[0])
        if scores.null_count:
            row = offset + int(np.flatnonzero(scores.is_null().to_numpy(zero_copy_only=False))[0])
            raise LayoutError(f"row {row} has no scores (null)", path=self.path, hint="every sequence needs a list of score rows")
        lengths = _list_lengths(scores)
        out: dict[str, npt.NDArray] = {}
        for role, found in self.roles.items():
            column = batch.column(found.columns[0])
            if role in ("scores", "targets") and is_list(column.type):
                if role == "targets":
                    mismatch = np.flatnonzero(_list_lengths(column) != lengths)
                    if mismatch.size:
                        row = int(mismatch[0])
                        raise LayoutError(
                            f"row {offset + row}: {_list_lengths(column)[row]} labels for {lengths[row]} positions",
                            path=self.path,
                            hint="each sequence needs one label (or target row) per position",
                            code="XE302",
                        )
                out[role] = self._array(column.flatten(), role, found, offset)
            elif role == "targets":  # one label per sequence beside per-token scores: which token does it mean?
                raise LayoutError(f"the scores hold one row per token but {found.describe} one label per sequence",
                                  path=self.path, hint="store a list of labels per sequence, one per token (or the scores of each "
                                  "sequence as one row)")
            elif role == "ids" or role.startswith("by"):
                out[role] = self._array(column, role, found, offset).take(np.repeat(np.arange(len(lengths)), lengths))  # type: ignore[attr-defined]
            else:  # a sequence's weight: its tokens'
                out[role] = np.repeat(self._array(column, role, found, offset), lengths)
        starts = np.cumsum(lengths) - lengths
        out["sample"] = np.repeat(np.arange(offset, offset + len(lengths)), lengths)
        out["position"] = np.arange(int(lengths.sum())) - np.repeat(starts, lengths)
        return out

    def _group_positions(self, groups: pa.Array) -> dict[str, npt.NDArray]:
        """Each row's sequence: the group value. No position: with --group-col a sequence's rows may
        lie anywhere in the dump (in other chunks, shards or tasks), so a row's place among them is
        not known where the row is read."""
        return {"sample": to_numpy(groups)}

    def progress(self) -> float | None:
        if self.rows:
            return self._rows_read / self.rows
        return self.file.progress()


def _list_lengths(column: pa.Array) -> npt.NDArray[np.int64]:
    if pa.types.is_fixed_size_list(column.type):
        return np.full(len(column), column.type.list_size, dtype=np.int64)
    return np.diff(to_numpy(column.offsets)).astype(np.int64)


def _labels_follow_names(targets: Field | None, path: str, given_by: str) -> None:
    """A shard read in another shard's class order keeps its labels right only when they are class
    names: class indices, or target rows, count this shard's columns, which were just reordered."""
    if targets is not None and is_text(targets.value_type) and not targets.wide:
        return
    raise LayoutError(
        f"the class columns come in another order than in {given_by}, and the labels are class positions, "
        "which would then name other classes", path=path,
        hint="write every shard's class columns in one order, or store the labels as class names (with --classes)",
    )


def columnar_side(
    path: str, fmt: str, cfg: SourceConfig, want_scores: bool, seq: tuple[int | None, int] = (None, 2),
    classes: tuple[str, ...] | None = None, first: tuple[str, tuple[str, ...]] | None = None,
) -> Side:
    """`classes`: names known for the labels file; `first`: the first shard's path and class names,
    which a later shard's class-named columns must match."""
    if seq[0] is not None:
        raise OptionError("labels of [N, T, C] scores must be an .npy or .npz array", path=path, hint="save them as [N, T]")
    file = ColumnarFile(path, fmt)
    cells = file if fmt == "csv" else None
    roles: dict[str, Field] = {}
    notes: list[str] = []
    classes = classes or cfg.classes  # the scores' class-named columns, when they name the classes, decide the order
    if want_scores:
        found = find_scores(file.schema, path, cfg.score_col, cfg.score_prefix, cells)
        # class-named columns must match the first shard's (a later shard), else --classes
        known, given_by = (first[1], first[0]) if first else (cfg.classes, "--classes")
        if found.classes is not None and known is not None:
            found, note = reconcile_classes(found, known, path, given_by)
            notes += [note] if note else []
        roles["scores"] = found
        classes = found.classes or cfg.classes
    if not want_scores or cfg.labels_path is None:
        roles["targets"] = find_targets(file.schema, path, cfg.label_col, cfg.target_prefix, classes, cells)
        roles["targets"] = _true_false_names(fmt, roles["targets"], classes, path)
        _refuse_numbers_or_names(fmt, roles["targets"], classes, path)
    if first and notes:  # a later shard's class columns were put in the first shard's order
        _labels_follow_names(roles.get("targets"), path, first[0])
    if want_scores and cfg.id_col:
        roles["ids"] = id_field(file.schema, cfg.id_col, path)
    if want_scores and cfg.weight_col:
        roles["weights"] = find_weights(file.schema, path, cfg.weight_col)
    if want_scores and cfg.group_col:
        roles["group"] = group_field(file.schema, cfg.group_col, path, cfg.group_option)
    for i, name in enumerate(cfg.by if want_scores else ()):
        roles[f"by{i}"] = id_field(file.schema, name, path, "--by", "group")
    reader = ColumnarRoles(file, roles, classes)
    side = Side(reader, classes=classes, notes=notes)
    if "ids" in roles:
        side.id_type = "string" if fmt == "csv" else str(roles["ids"].dtype)
    by = [roles[f"by{i}"] for i in range(len(cfg.by))] if want_scores else []
    # a CSV group column is read as text, unless it is a label column too (numbers; found in review: 'text' for 1.0)
    side.group_types = ", ".join(arrow_value_kind(file.csv_type(found.columns[0]) if fmt == "csv" else found.dtype) for found in by) or None
    if want_scores:
        found = roles["scores"]
        side.scores = found.describe
        side.num_classes = reader.widths["scores"]
        side.score_dtype = str(found.value_type.to_pandas_dtype().__name__) if fmt != "csv" else "float64"
        name = found.columns[0] if not found.wide else found.columns[0].rstrip("0123456789")
        side.kind_hint = kind_from_name(name)
        side.kind_hint_from = f"column name '{name}'"
        side.ids = f"column '{cfg.id_col}'" if cfg.id_col else None
        side.weights = f"column '{cfg.weight_col}'" if cfg.weight_col else None
        if cfg.class_axis not in ((-1, 2) if reader.nested else (-1, 1)):  # refused where it would be ignored
            layout = "nested lists, read as [N, T, C] (each token's class scores)" if reader.nested else "rows of class scores ([N, C])"
            raise OptionError(f"--class-axis {cfg.class_axis} does not apply to {layout}", path=path,
                              hint="--class-axis 1 reads PyTorch's [N, C, T] arrays (NPY/NPZ); drop it here")
        if reader.nested:
            if cfg.group_col:
                raise OptionError(f"{cfg.group_option} with nested-list sequences: each row is a sequence already", path=path,
                                  hint=f"drop {cfg.group_option}")
            side.samples = file.rows
            side.sequences = f"{file.rows:,} sequences (one per row, nested lists)" if file.rows else "one per row (nested lists)"
            side.scores = side.scores.replace("list column", "nested list column")
        elif cfg.group_col:
            side.sequences = f"rows grouped by column '{cfg.group_col}'"
            side.sequence_type = "text" if fmt == "csv" else arrow_value_kind(roles["group"].dtype)
    if "targets" in roles:
        side.targets = roles["targets"].describe
        if is_text(roles["targets"].value_type) and classes:
            side.targets = f"class names in {side.targets}, mapped to {len(classes)} classes"
            side.label_names = True
        nested = "scores" in roles and roles["scores"].nested
        side.target_kind = check_target_kind(roles["targets"], cfg.target_kind, path, sequences=nested)
        side.target_width = reader.widths.get("targets", 0)
    return side
