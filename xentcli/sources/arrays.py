"""Reading NPY files (memory-mapped) and NPZ members (streamed from the zip) a slice of rows at a time.

Neither is ever loaded whole, and pickled object arrays are refused.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from typing import IO

import numpy as np
import numpy.typing as npt

from xentcli.errors import InputError, LayoutError

SCORE_KEYS = ("logits", "probs", "log_probs", "scores")
LABEL_KEYS = ("labels", "label", "targets", "target", "y")


def _check_dtype(dtype: np.dtype, path: str, name: str) -> None:
    if dtype.hasobject:
        raise InputError(f"'{name}' is an array of Python objects", path=path, hint="pickled arrays are refused: save numbers")
    if dtype.kind not in "biuf":
        raise InputError(f"'{name}' holds {dtype}, not numbers", path=path, hint="save the array as float or integer")


def _read_header(stream: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype of the .npy stream, leaving it at the first data byte."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    return np.lib.format.read_array_header_2_0(stream)


class NpyArray:
    """A memory-mapped .npy file, sliced by rows."""

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self.name = name
        try:
            self._array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            if "pickle" in str(exc) or "object" in str(exc).lower():
                raise InputError("holds pickled Python objects", path=path, hint="pickled arrays are refused: save numbers") from None
            raise InputError(f"not a readable .npy file: {exc}", path=path, hint="check the file or --format") from None
        except OSError as exc:
            raise InputError(f"cannot read: {exc}", path=path) from None
        if not isinstance(self._array, np.ndarray):
            raise InputError("holds an .npz archive, not one array", path=path, hint="use --format npz")
        self.shape: tuple[int, ...] = self._array.shape
        self.dtype = self._array.dtype
        _check_dtype(self.dtype, path, name)

    def slices(self, rows: int) -> Iterator[npt.NDArray]:
        for start in range(0, self.shape[0] if self.shape else 0, rows):
            yield self._array[start : start + rows]


class NpzMember:
    """One array inside an .npz file, read sequentially from its zip member (stored or deflated)."""

    def __init__(self, archive: zipfile.ZipFile, path: str, key: str) -> None:
        self.path = path
        self.name = key
        self._archive = archive
        self._member = f"{key}.npy"
        with self._open() as stream:
            self.shape, fortran, self.dtype = _read_header(stream)
        _check_dtype(self.dtype, path, key)
        if fortran and len(self.shape) > 1:
            raise InputError(
                f"array '{key}' is stored in Fortran order and cannot be streamed by rows",
                path=path,
                hint="save it with np.ascontiguousarray(...)",
            )

    def _open(self) -> IO[bytes]:
        return self._archive.open(self._member)

    def slices(self, rows: int) -> Iterator[npt.NDArray]:
        row_items = int(np.prod(self.shape[1:], dtype=np.int64))
        row_bytes = row_items * self.dtype.itemsize
        with self._open() as stream:
            _read_header(stream)
            for start in range(0, self.shape[0] if self.shape else 0, rows):
                n = min(rows, self.shape[0] - start)
                raw = stream.read(n * row_bytes)
                if len(raw) != n * row_bytes:
                    raise InputError(f"array '{self.name}' ends early at row {start}", path=self.path, hint="the file is truncated")
                yield np.frombuffer(raw, dtype=self.dtype).reshape((n, *self.shape[1:]))


def open_npz(path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"not a readable .npz file: {exc}", path=path, hint="check the file or --format") from None


def npz_member(archive: zipfile.ZipFile, path: str, key: str | None, defaults: tuple[str, ...], option: str) -> NpzMember | None:
    """The member named by `key`, else the first of `defaults` present; None when none is."""
    names = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
    if key is not None:
        if key not in names:
            raise LayoutError(f"no array '{key}' (arrays: {', '.join(names)})", path=path, hint=f"check {option}")
        return NpzMember(archive, path, key)
    for candidate in defaults:
        if candidate in names:
            return NpzMember(archive, path, candidate)
    return None


class ArrayRoles:
    """Role arrays (scores, labels or targets) from NPY files or NPZ members, row-aligned."""

    def __init__(self, members: dict[str, NpyArray | NpzMember], path: str) -> None:
        self.members = members
        self.path = path
        lengths = {role: (m.shape[0] if m.shape else 0) for role, m in members.items()}
        self.rows: int | None = next(iter(lengths.values()))
        for role, member in members.items():
            if len(member.shape) == 0:
                raise LayoutError(f"'{member.name}' is a scalar, not an array of rows", path=member.path)
            if lengths[role] != self.rows:
                raise LayoutError(
                    f"'{member.name}' has {lengths[role]} rows but the scores have {self.rows}",
                    path=member.path,
                    hint="scores and labels must hold the same rows in the same order",
                )

    def progress(self) -> float | None:
        return None

    def batches(self, rows: int) -> Iterator[dict[str, npt.NDArray]]:
        iterators = {role: member.slices(rows) for role, member in self.members.items()}
        for parts in zip(*iterators.values()):
            yield dict(zip(iterators.keys(), parts))
