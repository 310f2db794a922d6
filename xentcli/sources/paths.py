"""Where an input lives: a local path, or a URL a pyarrow file system opens (`file://`, `s3://`,
`gs://`, `hdfs://` — pyarrow's own — or any fsspec protocol whose package is installed, e.g.
s3fs, gcsfs, adlfs). The adapters open files only through `open_file`, so every format reads from
either; outputs stay local paths."""

from __future__ import annotations

import os
import re
from typing import IO, Any

from xentcli.errors import InputError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path: str) -> bool:
    return bool(_SCHEME.match(path))


def _file_system(url: str) -> tuple[Any, str]:
    """(pyarrow file system, path in it) of a URL: pyarrow's own, else fsspec's through pyarrow."""
    import pyarrow.fs as pa_fs

    try:
        return pa_fs.FileSystem.from_uri(url)
    except Exception as native:  # pyarrow knows no such scheme, or lacks its support: fsspec may know it
        try:
            import fsspec
        except ImportError:
            raise InputError(f"cannot open this URL: {str(native).splitlines()[0][:160]}", path=url,
                             hint="install the file system's package (s3fs, gcsfs, adlfs) or use a local path") from None
        try:
            fs, inner = fsspec.core.url_to_fs(url)
        except Exception as exc:  # an unknown protocol, a missing package: fsspec's own words
            raise InputError(f"cannot open this URL: {str(exc).splitlines()[0][:160]}", path=url,
                             hint="install the file system's package (s3fs, gcsfs, adlfs) or use a local path") from None
        return pa_fs.PyFileSystem(pa_fs.FSSpecHandler(fs)), inner


def kind(path: str) -> str:
    """file, folder, missing or other (a pipe, socket or device)."""
    if not is_url(path):
        if not os.path.exists(path):
            return "missing"
        return "folder" if os.path.isdir(path) else "file" if os.path.isfile(path) else "other"
    import pyarrow.fs as pa_fs

    fs, inner = _file_system(path)
    try:
        found = fs.get_file_info(inner).type
    except OSError as exc:
        raise InputError(f"cannot reach: {str(exc).splitlines()[0][:160]}", path=path) from None
    return {pa_fs.FileType.File: "file", pa_fs.FileType.Directory: "folder", pa_fs.FileType.NotFound: "missing"}.get(found, "other")


def size(path: str) -> int:
    if not is_url(path):
        return os.path.getsize(path)
    fs, inner = _file_system(path)
    return int(fs.get_file_info(inner).size)


def open_file(path: str) -> IO[bytes]:
    """A seekable binary file (unbuffered when local: the readers read large blocks themselves)."""
    if not is_url(path):
        return open(path, "rb", buffering=0)  # noqa: SIM115 — the caller closes it
    fs, inner = _file_system(path)
    try:
        return fs.open_input_file(inner)
    except OSError as exc:
        raise InputError(f"cannot read: {str(exc).splitlines()[0][:160]}", path=path) from None


def folder_files(url: str) -> list[str]:
    """Every file under a folder URL, recursively, as URLs, in sorted order."""
    import pyarrow.fs as pa_fs

    fs, inner = _file_system(url)
    prefix, base = url.rstrip("/"), inner.rstrip("/")
    infos = fs.get_file_info(pa_fs.FileSelector(base, recursive=True))
    return sorted(prefix + info.path[len(base):] for info in infos if info.type == pa_fs.FileType.File)


class MappedRead:
    """What was read of a file through a memory map (an .npy's blocks, an Arrow file). A file cut
    short while it is read gives zeros for the rest of the page it now ends in (pages past it raise
    a bus error), and what is read after the reader's last check is not checked by it: so once every
    chunk is scored, the file must still hold every byte read (verify; a file replaced by another,
    or deleted, still held them: the map kept the old one)."""

    def __init__(self, path: str, identity: os.stat_result, data_offset: int = 0, row_bytes: int = 0, end: int = 0) -> None:
        self.path, self.device, self.inode = path, identity.st_dev, identity.st_ino
        self.data_offset, self.row_bytes = data_offset, row_bytes  # row_bytes 0: not read by rows (Fortran order, Arrow)
        self.end = end  # where the bytes read end

    def cut_short(self, size: int) -> InputError:
        """The error for the file holding `size` bytes now."""
        where = (f"ends early at row {max(0, size - self.data_offset) // self.row_bytes}" if self.row_bytes
                 else f"holds {size:,} of its {self.end:,} bytes")
        return InputError(f"{where}: it was cut short while xent read it", path=self.path,
                          hint="score a file that no other program is writing")

    def verify(self) -> None:
        try:
            now = os.stat(self.path)
        except OSError:
            return
        if (now.st_dev, now.st_ino) == (self.device, self.inode) and now.st_size < self.end:
            raise self.cut_short(now.st_size)
