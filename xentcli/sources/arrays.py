"""Reading NPY files (memory-mapped) and NPZ members (streamed from the zip) a slice of rows at a time.

Neither is ever loaded whole, and pickled object arrays are refused.
"""

from __future__ import annotations

import math
import mmap
import os
import sys
import tokenize
import zipfile
import zlib
from collections import deque
from collections.abc import Iterator
from typing import IO

import numpy as np
import numpy.typing as npt

from xentcli import native
from xentcli.config import SourceConfig
from xentcli.errors import InputError, LayoutError, OptionError
from xentcli.plain import name_list, quoted
from xentcli.sources import paths
from xentcli.sources.names import SCORE_LIST_NAMES, TARGET_NAMES, check_boolean_names, kind_from_name, names_true_false
from xentcli.sources.side import Side, value_kind

# The same names as for Parquet and CSV columns (names.py): logits, scores, probs, log_probs, logprobs…
# An NPZ file's arrays by name, in the README's order: where several are there, the first is read
# and a note names the others (np.savez(f, logits=z, probs=p, labels=y) is common)
SCORE_KEYS = ("logits", "probs", "probabilities", "log_probs", "logprobs", "scores",
              "logit", "prob", "probability", "log_prob", "logprob", "score")
LABEL_KEYS = ("labels", "label", "targets", "target", "y")
assert set(SCORE_KEYS) == set(SCORE_LIST_NAMES) and set(LABEL_KEYS) == set(TARGET_NAMES)
# What reading a zip member can raise on a damaged, encrypted or unsupported archive.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, OSError, ValueError)


def _zip_error(exc: BaseException) -> str:
    """What went wrong in a zip member: the error's text, or its kind where it has none (a member
    cut short ends in a bare EOFError)."""
    if isinstance(exc, EOFError) and not str(exc):
        return "the member ends early (the archive is cut short)"
    return str(exc) or type(exc).__name__


# One read() returns at most about 2 GiB on Linux: larger blocks are read in pieces.
_READ_PIECE = 1 << 30


def _check_dtype(dtype: np.dtype, path: str, name: str, kinds: str = "biuf") -> None:
    """Numbers only (ids may also be text, bytes, dates and durations: kinds "biufUSMm")."""
    if dtype.hasobject:
        raise InputError(f"'{name}' is an array of Python objects", path=path, hint="pickled arrays are refused: save numbers")
    if dtype.kind not in kinds:
        raise InputError(f"'{name}' holds {dtype}, not numbers", path=path, hint="save the array as float or integer")


def _check_shape(shape: tuple[int, ...], path: str, name: str) -> None:
    if any(size < 0 for size in shape):
        raise InputError(f"'{name}' claims the shape {list(shape)}", path=path, hint="the header is damaged")


def _read_header(stream: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype of the .npy stream, leaving it at the first data byte."""
    try:
        version = np.lib.format.read_magic(stream)
    except ValueError:
        raise ValueError("no NPY header") from None
    try:
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(stream)
        return np.lib.format.read_array_header_2_0(stream)
    except (tokenize.TokenError, RecursionError, MemoryError) as exc:  # numpy's header filter and literal_eval on a
        raise ValueError(f"the header is not a Python literal ({type(exc).__name__})") from None  # damaged header (found in review)


class _Buffers:
    """The memory of the blocks a reader hands out, reused once nothing holds a block any more,
    instead of a fresh array for each (which malloc may serve from pages it must fault in and zero
    again): scoring NPY 500,000 × 1000 float32 peaked at 83 MiB instead of 97, for ~2% less CPU.
    Whether a block is still held (by a chunk in flight, or a view of it kept anywhere) is its
    reference count; a block still held is never reused, so at most the blocks in flight exist."""

    def __init__(self) -> None:
        self._buffers: list[npt.NDArray[np.uint8]] = []

    def take(self, nbytes: int) -> npt.NDArray[np.uint8]:
        """`nbytes` bytes that nothing else refers to, as a flat uint8 array."""
        for buffer in self._buffers:
            # references: the list, `buffer`, getrefcount's argument; any block or view made of it adds one
            if buffer.size >= nbytes and sys.getrefcount(buffer) == _UNHELD:
                return buffer[:nbytes]
        buffer = np.empty(nbytes, np.uint8)
        self._buffers.append(buffer)
        return buffer[:nbytes]


_UNHELD = 3


class NpyArray:
    """An .npy file read by rows. A local file is memory-mapped (copy-on-write: a block written to
    never reaches the file) and its blocks are views of the map, without a copy: scoring NPY
    500,000 × 1,000 float32 took 0.71x the wall time of reading it into buffers, its system time
    0.38 -> 0.10 s. The pages of the blocks nothing holds any more are dropped from the process
    (madvise), so that its resident memory stays with the chunks in flight. A file cut short while
    it is read is an error before each block, and a bus error between those checks ends the
    process with one line (native.catch_bus_errors). A URL, or a run without the C library (which
    holds that handler), reads by plain sequential reads into blocks whose memory is reused
    (_Buffers); a Fortran-ordered file is copied from its map block by block."""

    def __init__(self, path: str, name: str, kinds: str = "biuf", start: int = 0) -> None:
        self.path = path
        self.name = name
        try:
            with paths.open_file(path) as stream:
                stream.seek(start)  # where the .npy begins: 0, or an uncompressed NPZ member's data (NpzMember)
                self.shape, self._fortran, self.dtype = _read_header(stream)
                self._data_offset = stream.tell()
        except (ValueError, SyntaxError, TypeError) as exc:
            raise InputError(f"not a readable .npy file: {exc}", path=path, hint="check the file or --format") from None
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", path=path) from None
        _check_dtype(self.dtype, path, name, kinds)
        _check_shape(self.shape, path, name)
        self._expected_bytes = expected = self._data_offset + int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize
        if paths.size(path) < expected:
            raise InputError(f"holds {paths.size(path):,} bytes where its header promises {expected:,}", path=path,
                             hint="the file is truncated")

    def slices(self, rows: int, first: int = 0, stop: int | None = None) -> Iterator[npt.NDArray]:
        """Blocks of `rows` rows from row `first` up to `stop` (the end)."""
        total = self.shape[0] if self.shape else 0
        total = total if stop is None else min(stop, total)
        if self._fortran and len(self.shape) > 1:
            if paths.is_url(self.path):
                raise InputError("a Fortran-ordered .npy is read through a memory map, which a URL cannot give", path=self.path,
                                 hint="save it with np.ascontiguousarray(...), or copy it to a local file")
            yield from self._fortran_blocks(rows, first, total)
            return
        row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        mapped = self._map() if row_bytes and first < total and _mappable(self.path) else None
        if mapped is not None:
            yield from self._mapped_blocks(mapped, rows, first, total, row_bytes)
            return
        buffers = _Buffers()
        with paths.open_file(self.path) as stream:
            stream.seek(self._data_offset + first * row_bytes)
            for start in range(first, total, rows):
                count = min(rows, total - start)
                raw = buffers.take(count * row_bytes)
                block = raw.view(self.dtype).reshape(count, *self.shape[1:])
                view = memoryview(raw)  # bytes of any dtype (datetime64 has no buffer format)
                done = 0
                while done < block.nbytes:  # one read returns at most ~2 GiB
                    got = stream.readinto(view[done : done + _READ_PIECE])
                    if not got:
                        raise InputError(f"ends early at row {start}", path=self.path, hint="the file is truncated")
                    done += got
                yield block
                del raw, block, view  # the generator holds none of it while the next block is taken

    def _map(self) -> mmap.mmap | None:
        """The file's memory map (its size() is the file's size now); None where it cannot be
        mapped (a pipe, a special file): read then. A file cut short since its header was read
        (an empty file cannot be mapped) is an error here."""
        try:
            with open(self.path, "rb") as stream:
                size = os.fstat(stream.fileno()).st_size
                if size < self._expected_bytes:
                    raise self._cut_short(size)
                return mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_COPY)
        except (OSError, ValueError):
            return None

    def _check_holds(self, mapped: mmap.mmap, end: int) -> None:
        """Before a block is read from the map: the file (and the map) still hold its bytes. What is
        read after the last check is checked once every chunk is scored (paths.FileStamp)."""
        size = min(mapped.size(), len(mapped))  # a file cut short, or cut and grown again since it was mapped
        if size < end:
            raise self._cut_short(size)

    def _cut_short(self, size: int) -> InputError:
        """The error for the file holding `size` bytes now: the first row it no longer holds whole
        (a Fortran-ordered file, whose rows lie across it: its bytes)."""
        row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        where = (f"holds {size:,} of its {self._expected_bytes:,} bytes" if self._fortran and len(self.shape) > 1 or not row_bytes
                 else f"ends early at row {max(0, size - self._data_offset) // row_bytes}")
        return InputError(f"{where}: it was cut short while xent read it", path=self.path,
                          hint="score a file that no other program is writing")

    def _mapped_blocks(self, mapped: mmap.mmap, rows: int, first: int, total: int, row_bytes: int) -> Iterator[npt.NDArray]:
        """slices' blocks as views of the file's memory map (see the class)."""
        held: deque[tuple[npt.NDArray, int]] = deque()  # each block's flat array and where its bytes end, in file order
        released = self._data_offset + first * row_bytes
        released -= released % mmap.PAGESIZE  # the map's bytes before this are dropped already
        for start in range(first, total, rows):
            count = min(rows, total - start)
            offset = self._data_offset + start * row_bytes
            released = _release(mapped, held, released)
            self._check_holds(mapped, offset + count * row_bytes)
            _populate(mapped, offset, count * row_bytes)
            flat = np.frombuffer(mapped, np.uint8, count * row_bytes, offset)
            held.append((flat, offset + count * row_bytes))
            block = flat.view(self.dtype).reshape(count, *self.shape[1:])
            if not block.flags.aligned:  # an offset the dtype does not divide (a hand-made header)
                block = block.copy()
            yield block
            del flat, block

    def _fortran_blocks(self, rows: int, first: int, total: int) -> Iterator[npt.NDArray]:
        """slices' blocks of a Fortran-ordered file (a row's values lie apart, across the whole
        file): copies from its memory map, which must hold every byte before each block is read."""
        if paths.is_url(self.path):
            raise InputError("a Fortran-ordered .npy is read through a memory map, which a URL cannot give", path=self.path,
                             hint="save it with np.ascontiguousarray(...), or copy it to a local file")
        mapped = self._map() if _mappable(self.path) else None
        if mapped is None:  # no C library to turn a bus error into one line: numpy's own map
            whole = np.memmap(self.path, self.dtype, "r", self._data_offset, self.shape, order="F")
            for start in range(first, total, rows):
                yield np.ascontiguousarray(whole[start : min(start + rows, total)])
            return
        count = int(np.prod(self.shape, dtype=np.int64))
        self._check_holds(mapped, self._expected_bytes)
        whole = np.frombuffer(mapped, self.dtype, count, self._data_offset).reshape(self.shape, order="F")
        for start in range(first, total, rows):
            self._check_holds(mapped, self._expected_bytes)
            yield np.ascontiguousarray(whole[start : min(start + rows, total)])


_POPULATE_READ = [22]  # MADV_POPULATE_READ (Linux 5.14); emptied where the kernel refuses it


def _populate(mapped: mmap.mmap, offset: int, length: int) -> None:
    """Map a block's pages on the reading thread, before a worker reads them: the workers then take
    no page faults (~0.1 s of their CPU for 2 GB). A kernel that refuses the advice: never again."""
    start = offset - offset % mmap.PAGESIZE
    if _POPULATE_READ:
        try:
            mapped.madvise(_POPULATE_READ[0], start, offset + length - start)
        except OSError:
            _POPULATE_READ.clear()


def _mappable(path: str) -> bool:
    """Whether an .npy file is read through a memory map: a local file, in a run with the C library
    (whose handler turns a bus error into one line: native.catch_bus_errors)."""
    return not paths.is_url(path) and native.name() == "c"


def _release(mapped: mmap.mmap, held: deque[tuple[npt.NDArray, int]], released: int) -> int:
    """Drop the map's pages up to the first block still held (by a chunk in flight, or any view of
    it: its flat array's reference count), and return where the dropped pages end."""
    end = released
    while held and sys.getrefcount(held[0][0]) == _UNHELD_BLOCK:
        end = held.popleft()[1]
    end -= end % mmap.PAGESIZE  # the page it ends in may hold the next block's first rows
    if end > released and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED, released, end - released)
        return end
    return released


_UNHELD_BLOCK = 2  # references: the deque's tuple, and getrefcount's argument


class NpzMember:
    """One array inside an .npz file, read sequentially from its zip member (stored or deflated)."""

    def __init__(self, archive: zipfile.ZipFile, path: str, key: str, kinds: str = "biuf") -> None:
        self.path = path
        self.name = key
        self._archive = archive
        self._member = f"{key}.npy"
        try:
            with self._open() as stream:
                self.shape, fortran, self.dtype = _read_header(stream)
                header = _position(stream)
        except (*_ZIP_ERRORS, SyntaxError, TypeError) as exc:
            raise InputError(f"cannot read array '{key}': {_zip_error(exc)}", path=path, hint="check the archive") from None
        _check_dtype(self.dtype, path, key, kinds)
        _check_shape(self.shape, path, key)
        needed = header + int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize
        size = archive.getinfo(self._member).file_size
        if needed > size:  # before a block is read: a header's shape is only a claim (10^12 rows in a few bytes)
            raise InputError(f"array '{key}' is cut short: its header says {needed:,} bytes, its member holds {size:,}",
                             path=path, hint="the file is truncated or damaged; save the arrays again")
        self._fortran: NpyArray | None = None
        if fortran and len(self.shape) > 1:  # a row's values lie across the member: read through a map of the file, as an .npy
            info = archive.getinfo(self._member)
            if paths.is_url(path):
                raise InputError(f"array '{key}' is stored in Fortran order, whose rows are read through a memory map, which a URL "
                                 "cannot give", path=path, hint="save it with np.ascontiguousarray(...), or copy the file to a local path")
            if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
                raise InputError(f"array '{key}' is damaged: its zip entry stores {info.compress_size:,} bytes of {info.file_size:,}",
                                 path=path, hint="save the arrays again")
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1:
                raise InputError(f"array '{key}' is stored compressed and in Fortran order, whose rows cannot be streamed",
                                 path=path, hint="save it with np.savez (not compressed), or as np.ascontiguousarray(...)")
            self._verify()  # the map reads the bytes as they are: the zip's own checks first (a bad CRC, a member cut short)
            self._fortran = NpyArray(path, key, kinds, start=_member_data_start(path, info))

    def _verify(self) -> None:
        """Read the member once through zipfile, which checks its length and CRC at its end."""
        try:
            with self._open() as stream:
                while stream.read(NPZ_PIECE_BYTES):
                    pass
        except _ZIP_ERRORS as exc:
            raise InputError(f"cannot read array '{self.name}': {_zip_error(exc)}", path=self.path, hint="check the archive") from None

    def _open(self) -> IO[bytes]:
        return self._archive.open(self._member)

    def slices(self, rows: int, first: int = 0, stop: int | None = None) -> Iterator[npt.NDArray]:
        if first or stop is not None:
            raise ValueError("an .npz member is read whole")  # distributed.plan splits .npy files only
        if self._fortran is not None:
            yield from self._fortran.slices(rows)
            return
        row_items = int(np.prod(self.shape[1:], dtype=np.int64))
        row_bytes = row_items * self.dtype.itemsize
        try:
            with self._open() as stream:
                _read_header(stream)
                for start in range(0, self.shape[0] if self.shape else 0, rows):
                    n = min(rows, self.shape[0] - start)
                    block = _read_exactly(stream, n * row_bytes)
                    if block is None:
                        raise InputError(f"array '{self.name}' ends early at row {start}", path=self.path, hint="the file is truncated")
                    yield block.view(self.dtype).reshape((n, *self.shape[1:]))
        except _ZIP_ERRORS as exc:  # a bad CRC shows at the member's end; encryption, deflate64 at its start
            raise InputError(f"cannot read array '{self.name}': {_zip_error(exc)}", path=self.path, hint="check the archive") from None


NPZ_PIECE_BYTES = 1 << 24


def _member_data_start(path: str, info: zipfile.ZipInfo) -> int:
    """Where an uncompressed zip member's bytes begin in the file: after its local header (30
    bytes, then its name and extra field, whose lengths that header gives, not the central one)."""
    with paths.open_file(path) as stream:
        stream.seek(info.header_offset)
        local = stream.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise InputError(f"the zip entry of array '{info.filename[:-4]}' is damaged", path=path, hint="save the arrays again")
    return info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")


def _position(stream: IO[bytes]) -> int:
    """Where a zip member's stream stands; 0 where it cannot say (a member read from an unseekable URL)."""
    try:
        return stream.tell()
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return 0


def _read_exactly(stream: IO[bytes], nbytes: int) -> npt.NDArray[np.uint8] | None:
    """`nbytes` from a zip member into one array (None if it ends first). Read in pieces of 16 MiB
    into the array: a single read of a deflated member's huge row held the row several times over
    (zipfile's buffers, then bytes joined), ~4x a row where this holds the row and one piece."""
    if nbytes <= NPZ_PIECE_BYTES:
        raw = stream.read(nbytes)
        return np.frombuffer(raw, np.uint8) if len(raw) == nbytes else None
    block = np.empty(nbytes, np.uint8)
    done = 0
    while done < nbytes:
        piece = stream.read(min(NPZ_PIECE_BYTES, nbytes - done))
        if not piece:
            return None
        block[done:done + len(piece)] = np.frombuffer(piece, np.uint8)
        done += len(piece)
    return block


def open_npz(path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(paths.open_file(path) if paths.is_url(path) else path)
    except _ZIP_ERRORS as exc:  # NotImplementedError too: an entry that claims a newer zip version (found in review)
        raise InputError(f"not a readable .npz file: {_zip_error(exc)}", path=path, hint="check the file or --format") from None


def npz_member(
    archive: zipfile.ZipFile,
    path: str,
    key: str | None,
    defaults: tuple[str, ...],
    option: str,
    role: str | None = None,
    hint: str | None = None,
    kinds: str = "biuf",
    notes: list[str] | None = None,
) -> NpzMember | None:
    """The member named by `key`, else the first of `defaults` present, in any case ('Logits', as a
    column name is matched; two names alike but for case are refused); when none is, None, or an
    error naming the arrays there if the `role` is required."""
    names = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
    if key is not None:
        if key not in names:
            raise LayoutError(f"no array {quoted(key)} (arrays: {name_list(names)})", path=path, hint=f"check {option}")
        return NpzMember(archive, path, key, kinds)
    present = [name for candidate in defaults for name in names if name.lower() == candidate]
    alike = [name for name in present if name.lower() == present[0].lower()] if present else []
    if len(alike) > 1:  # 'labels' and 'Labels': which one holds them, only the writer knows (tables refuse two alike, too)
        raise LayoutError(f"arrays {name_list(alike)} could each hold the {role or 'values'}: their names differ only in case",
                          path=path, hint=f"name one with {option}")
    if len(present) > 1 and notes is not None:  # found in review: chosen between without a word (and not in this order)
        notes.append(f"{path}: read the {role} from array {quoted(present[0])}, not {name_list(present[1:])} ({option} chooses)")
    if present:
        return NpzMember(archive, path, present[0], kinds)
    if role is not None:
        raise LayoutError(f"no {role} array (arrays: {name_list(names)})", path=path, hint=hint)
    return None


class ArrayRoles:
    """Role arrays (scores, labels or targets, weights, ids) from NPY files or NPZ members, row-aligned.

    With `seq_len` T the arrays hold sequences: scores [N, T, C] (or [N, C, T] with class_axis 1),
    labels [N, T], dense targets shaped like the scores, weights [N, T] or [N], ids [N]. Batches
    are then flattened to one row per token, with `sample` and `position` arrays.
    """

    def __init__(self, members: dict[str, NpyArray | NpzMember], path: str, seq_len: int | None = None, class_axis: int = 2,
                 classes: tuple[str, ...] | None = None) -> None:
        self.members = members
        self.classes = classes  # labels stored as class names (text or bytes): their positions in it
        self.path = path
        self.seq_len = seq_len
        self.class_axis = class_axis
        lengths = {role: (m.shape[0] if m.shape else 0) for role, m in members.items()}
        samples = next(iter(lengths.values()))
        self.rows: int | None = samples * (1 if seq_len is None else seq_len)
        self._part: tuple[int, int | None] = (0, None)
        for role, member in members.items():
            if len(member.shape) == 0:
                raise LayoutError(f"'{member.name}' is a scalar, not an array of rows", path=member.path)
            if lengths[role] != samples:
                raise LayoutError(
                    f"'{member.name}' has {lengths[role]} rows but the scores have {samples}",
                    path=member.path,
                    hint="scores and labels must hold the same rows in the same order",
                    code="XE302",
                )
            self._check_per_row(role, member)

    def _check_per_row(self, role: str, member: NpyArray | NpzMember) -> None:
        """Ids, weights and groups hold one value per row: [N], or per token [N, T] (weights also [N, 1])."""
        if role not in ("ids", "weights") and not role.startswith("by"):
            return
        shape = tuple(member.shape)
        allowed = [(shape[0],)] + ([(shape[0], self.seq_len)] if self.seq_len else []) + ([(shape[0], 1)] if role == "weights" else [])
        if shape not in allowed:
            expected = " or ".join(str(list(s)).replace(str(shape[0]), "N", 1) for s in allowed)
            raise LayoutError(f"'{member.name}' has shape {list(shape)}; {'groups' if role.startswith('by') else role} need {expected}", path=member.path,
                              hint="one value per row")

    def progress(self) -> float | None:
        return None

    def restrict(self, first: int, stop: int) -> None:
        """Read rows (sequences, for [N, T, C] arrays) `first` to `stop` only."""
        self._part = (first, stop)
        self.rows = (stop - first) * (1 if self.seq_len is None else self.seq_len)

    def _flatten(self, role: str, values: npt.NDArray) -> npt.NDArray:
        """One row per token: [k, T, C] / [k, C, T] → [k·T, C]; [k, T] → [k·T]; [k] → repeated."""
        seq_len = self.seq_len or 1
        if values.ndim == 3:
            if self.class_axis == 1:
                values = np.moveaxis(values, 1, 2)
            return np.ascontiguousarray(values).reshape(-1, values.shape[2])
        if values.ndim == 2 and role == "weights" and values.shape[1] == 1:  # one weight per sequence, as Keras broadcasts
            return np.repeat(values[:, 0], seq_len)
        if values.ndim == 2 and role != "scores":
            return values.reshape(-1)
        return np.repeat(values, seq_len, axis=0)

    def batches(self, rows: int) -> Iterator[dict[str, npt.NDArray]]:
        samples_per_batch = rows if self.seq_len is None else max(1, rows // self.seq_len)
        iterators = {role: member.slices(samples_per_batch, *self._part) for role, member in self.members.items()}
        first_sample = 0
        for parts in zip(*iterators.values()):
            # values stored big-endian in native order (a copy): every rule and kernel takes a float32 as float32
            batch = {role: v if v.dtype.isnative else v.astype(v.dtype.newbyteorder("=")) for role, v in zip(iterators.keys(), parts)}
            if self.classes is not None and batch.get("targets") is not None and batch["targets"].dtype.kind in "US":
                batch["targets"] = class_positions(batch["targets"], self.classes)
            if self.seq_len is not None:
                k = len(next(iter(batch.values())))
                batch = {role: self._flatten(role, values) for role, values in batch.items()}
                batch["sample"] = np.repeat(np.arange(first_sample, first_sample + k), self.seq_len)
                batch["position"] = np.tile(np.arange(self.seq_len), k)
                first_sample += k
            yield batch


def class_positions(names: npt.NDArray, classes: tuple[str, ...]) -> npt.NDArray[np.float64]:
    """Labels stored as class names (str, or UTF-8 bytes) as their positions in `classes`; a name
    that is not a class is NaN, an unusable label (XE203), as in a table's text column."""
    known = {(name.encode() if names.dtype.kind == "S" else name): float(i) for i, name in enumerate(classes)}
    unique, inverse = np.unique(names, return_inverse=True)
    return np.array([known.get(name, math.nan) for name in unique.tolist()], np.float64)[inverse.reshape(names.shape)]


def _target_kind_of_array(member: NpyArray | NpzMember, cfg: SourceConfig, seq_len: int | None) -> tuple[str, int]:
    """sparse or dense, and the width of dense rows. With sequences, [N, T] labels are sparse
    and arrays shaped like the scores are dense."""
    shape = member.shape
    flat = len(shape) - (1 if seq_len is None else 2)
    if flat == 0 or (flat == 1 and shape[-1] == 1 and cfg.target_kind != "dense" and seq_len is None):
        kind, width = "sparse", 0
    elif flat == 1:
        kind, width = "dense", shape[cfg.class_axis % 3] if seq_len is not None else shape[1]
    else:
        expected = "[rows] or [rows, classes]" if seq_len is None else "[N, T] labels or targets shaped like the scores"
        raise LayoutError(f"labels '{member.name}' have shape {shape}; expected {expected}", path=member.path)
    if cfg.target_kind not in ("auto", kind):
        raise OptionError(
            f"--target {cfg.target_kind} was given, but '{member.name}' holds {kind} targets of shape {shape}",
            path=member.path,
            hint=f"use --target {kind} or --target auto",
        )
    return kind, width


def check_sequence_labels(main: Side, target_side: Side, class_axis: int = -1) -> None:
    """[N, T] labels must match the scores' T; when they match the class axis instead, the class
    axis is probably the other one (PyTorch's [N, C, T] read as [N, T, C], or the reverse). Square
    scores (T = C), read by the default axis: the shapes cannot tell, so the first sequences do."""
    roles = target_side.roles
    if main.seq_len is None or not isinstance(roles, ArrayRoles) or target_side.target_kind != "sparse":
        return
    labels = roles.members["targets"]
    if main.seq_len == main.num_classes and class_axis == -1 and len(labels.shape) == 2 and isinstance(main.roles, ArrayRoles):
        _square_axis(main.roles.members["scores"], labels, main.num_classes, roles.classes)
    if len(labels.shape) == 2 and labels.shape[1] != main.seq_len:
        other_axis = 1 if main.class_axis == 2 else -1
        fits_other = labels.shape[1] == main.num_classes
        raise LayoutError(
            f"labels of shape {list(labels.shape)} do not fit scores read as "
            f"{'[N, C, T]' if main.class_axis == 1 else '[N, T, C]'} with T = {main.seq_len}"
            + ("; they fit the other layout" if fits_other else ""),
            path=labels.path,
            hint=f"pass --class-axis {other_axis}" if fits_other else "labels must be [N, T]",
            code="XE305" if fits_other else "XE302",
        )


SQUARE_SAMPLE = 64  # sequences read to tell the class axis of square [N, T, T] scores


def _square_axis(scores: NpyArray | NpzMember, labels: NpyArray | NpzMember, classes: int, names: tuple[str, ...] | None = None) -> None:
    """XE305 for square scores whose first sequences' labels are predicted far better with the classes
    on the other axis (found in review: [20, 8, 8] read the wrong way passed check at a mean loss of
    5.2 for 0.34): the argmax, which needs no input kind, on the tokens with a usable label."""
    z, y = next(scores.slices(SQUARE_SAMPLE), None), next(labels.slices(SQUARE_SAMPLE), None)
    if z is None or y is None:
        return
    n = min(len(z), len(y))
    y = class_positions(np.asarray(y[:n]), names) if names is not None and y.dtype.kind in "US" else np.asarray(y[:n])
    z, y = np.asarray(z[:n]), y.astype(np.float64)
    with np.errstate(invalid="ignore"):
        usable = (y >= 0) & (y < classes) & (y == np.round(y))
    if np.count_nonzero(usable) < 32:
        return
    target = np.where(usable, y, 0).astype(np.int64)[usable]
    used = float(np.mean(np.nanargmax(np.where(np.isnan(z), -np.inf, z), axis=2)[usable] == target))
    other = float(np.mean(np.nanargmax(np.where(np.isnan(z), -np.inf, z), axis=1)[usable] == target))
    if other >= used + 0.3 and other >= 2 * used:
        raise LayoutError(
            f"the scores are square ({classes} × {classes} a sequence) and their first {n} sequences' labels are predicted "
            f"far better with the classes on axis 1 (accuracy {other:.2f}) than on axis 2 ({used:.2f})",
            path=scores.path, hint="pass --class-axis 1 (PyTorch's [N, C, T]), or --class-axis 2 to keep axis 2", code="XE305")


def _sequence_layout(scores: NpyArray | NpzMember, cfg: SourceConfig) -> tuple[int, int | None, int]:
    """(classes, sequence length or None, class axis) of a score array."""
    shape = scores.shape
    if len(shape) == 1:  # one score per row: a binary head (sources._head)
        return 1, None, 1
    if len(shape) == 2:
        if cfg.class_axis not in (-1, 1):
            raise OptionError(f"--class-axis {cfg.class_axis} does not fit scores of shape {shape}", path=scores.path, hint="2-D scores are [rows, classes]")
        return shape[1], None, 1
    if len(shape) == 3:
        axis = cfg.class_axis % 3 if -3 <= cfg.class_axis < 3 else -1
        if axis not in (1, 2):
            raise OptionError(
                f"--class-axis {cfg.class_axis} cannot be read row by row from scores of shape {shape}",
                path=scores.path,
                hint="use 2 (or -1) for [N, T, C] and 1 for PyTorch's [N, C, T]",
            )
        return shape[axis], shape[3 - axis], axis
    raise LayoutError(
        f"scores '{scores.name}' have shape {shape}; expected [rows, classes] or [N, T, C]",
        path=scores.path,
        hint="reshape them, or use --class-axis for [N, C, T]",
    )


def array_side(
    path: str, fmt: str, cfg: SourceConfig, want_scores: bool, seq: tuple[int | None, int] = (None, 2),
    classes: tuple[str, ...] | None = None, first: tuple[str, tuple[str, ...]] | None = None,
) -> Side:
    """An NPY file or NPZ archive's side (class names play no part in arrays)."""
    members: dict[str, NpyArray | NpzMember] = {}
    notes: list[str] = []
    label_kinds = "biufUS"  # class names are refused below unless --classes names the classes
    if fmt == "npy":
        members["scores" if want_scores else "targets"] = NpyArray(path, os.path.basename(path), "biuf" if want_scores else label_kinds)
        if want_scores and cfg.weight_col:
            raise OptionError("--weight-col names a column or an NPZ array", path=path, hint="pass per-row weights of an .npy dump with --sample-weights weights.npy")
        if want_scores and cfg.labels_path is None:
            raise OptionError(
                "an .npy file holds only the scores", path=path, hint="pass the labels with --labels labels.npy"
            )
        if want_scores and cfg.by:
            raise OptionError("--by names columns; an .npy file has none", path=path, hint="give each row's group with --by-file groups.npy")
    else:
        archive = open_npz(path)
        if want_scores:
            members["scores"] = npz_member(  # type: ignore[assignment]
                archive, path, cfg.score_key, SCORE_KEYS, "--score-key", "score", "name it with --score-key", notes=notes
            )
            if cfg.id_col:
                members["ids"] = npz_member(archive, path, cfg.id_col, (), "--id-col", kinds="biufUSMm")  # type: ignore[assignment]
            if cfg.weight_col:
                members["weights"] = npz_member(archive, path, cfg.weight_col, (), "--weight-col")  # type: ignore[assignment]
            for i, name in enumerate(cfg.by):
                members[f"by{i}"] = npz_member(archive, path, name, (), "--by", kinds="biufUSMm")  # type: ignore[assignment]
        if not want_scores or cfg.labels_path is None:
            members["targets"] = npz_member(  # type: ignore[assignment]
                archive, path, cfg.label_key, LABEL_KEYS, "--label-key", "label",
                "name it with --label-key, or pass the labels with --labels FILE", kinds=label_kinds, notes=notes,
            )
    if "scores" in members:
        scores = members["scores"]
        num_classes, seq_len, class_axis = _sequence_layout(scores, cfg)
    else:
        num_classes = 0
        seq_len, class_axis = seq
    classes = classes or cfg.classes  # the scores' class-named columns, when they name the classes, decide the order
    named = "targets" in members and members["targets"].dtype.kind in "US"
    if "targets" in members and members["targets"].dtype.kind == "b" and classes and names_true_false(classes):
        check_boolean_names(classes, path, _array_name(members["targets"], fmt))  # True is class 1, whatever the names say
    if named:
        _check_named_labels(members["targets"], _array_name(members["targets"], fmt), seq_len, classes, path)
    side = Side(ArrayRoles(members, path, seq_len, class_axis, classes if named else None), seq_len=seq_len, class_axis=class_axis,
                classes=classes if named else None, notes=notes)
    if "scores" in members:
        side.scores = f"array '{scores.name}'" if fmt == "npz" else f"array of shape {list(scores.shape)}"
        if seq_len is not None:
            side.scores += f" ({'[N, C, T]' if class_axis == 1 else '[N, T, C]'})"
            side.samples = scores.shape[0]
            side.sequences = f"{scores.shape[0]:,} sequences of {seq_len} positions"
        side.num_classes = num_classes
        side.score_dtype = str(scores.dtype.newbyteorder("="))  # '>f2' is float16: the rules and presets compare names
        name = scores.name if fmt == "npz" else os.path.basename(path).split(".")[0]
        side.kind_hint = kind_from_name(name)
        side.kind_hint_from = f"array name '{name}'"
        side.ids = f"array '{cfg.id_col}'" if cfg.id_col else None
        side.id_type = str(members["ids"].dtype) if "ids" in members else None
        side.group_types = ", ".join(value_kind(members[f"by{i}"].dtype) for i in range(len(cfg.by))) or None
        side.weights = f"array '{cfg.weight_col}'" if cfg.weight_col else None
    if "targets" in members:
        side.target_kind, side.target_width = _target_kind_of_array(members["targets"], cfg, seq_len)
        side.targets = _array_name(members["targets"], fmt)
        if named:
            side.targets = f"class names in {side.targets}, mapped to {len(classes or ())} classes"
            side.label_names = True
    return side


def _check_named_labels(member: NpyArray | NpzMember, name: str, seq_len: int | None, classes: tuple[str, ...] | None,
                        path: str) -> None:
    """Labels stored as class names: one a row ([N], [N, 1]) or a token ([N, T]), of names that can
    hold text, with --classes to map them (found in review: [N, 2] names were read as dense target
    rows of class positions, and a zero-width dtype ended in an internal error)."""
    shape = tuple(member.shape)
    if not classes:
        raise LayoutError(f"labels in {name} are strings, and no class names were given", path=path,
                          hint="name the classes in order with --classes a,b,c (or a file, one per line)")
    if member.dtype.itemsize == 0:
        raise LayoutError(f"labels in {name} are strings of no characters ({member.dtype})", path=path, hint="save the class names")
    if not (len(shape) == 1 or (len(shape) == 2 and (shape[1] == 1 or (seq_len is not None and shape[1] == seq_len)))):
        expected = "[N] (or [N, 1])" if seq_len is None else "[N, T]"
        raise LayoutError(f"labels in {name} are class names of shape {list(shape)}; names give one label a row: {expected}",
                          path=path, hint="keep one column of names; soft targets are numbers in class order")


def _array_name(member: NpyArray | NpzMember, fmt: str) -> str:
    return f"array '{member.name}'" if fmt == "npz" else f"array of shape {list(member.shape)}"
