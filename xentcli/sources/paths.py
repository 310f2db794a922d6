"""Where an input lives: a local path, or a URL a pyarrow file system opens (`file://`, `s3://`,
`gs://`, `hdfs://` — pyarrow's own — or any fsspec protocol whose package is installed, e.g.
s3fs, gcsfs, adlfs). The adapters open files only through `open_file`, so every format reads from
either; outputs stay local paths."""

from __future__ import annotations

import os
import re
import stat
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


def native(path: str) -> str | bytes:
    """A local path as pyarrow's files take it: its bytes where it is not UTF-8 (pyarrow encodes a str
    path as UTF-8 and refused the undecodable bytes of such a name: "surrogates not allowed")."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def parquet_source(path: str) -> Any:
    """What pq.ParquetFile opens: a URL's file, a local path, or (a name that is not UTF-8) its file."""
    if is_url(path):
        return open_file(path)
    local = native(path)
    if isinstance(local, str):
        return local
    import pyarrow as pa

    return pa.OSFile(local)


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


class FileStamp:
    """A local input file as xent found it before opening it: which file (device, inode), its size,
    and the times of its last change (mtime, ctime). Another program that writes, cuts short, grows,
    replaces or removes it while xent reads it makes what was read a mix of two files — a file cut
    short under a memory map even reads as zeros past its new end, without an error — so once every
    chunk is scored and every output is written, but before an output moves into place, each input
    must still be the file it was (verify): else an InputError, exit 2. Pipes and other special
    files are not stamped (their times move as they are written)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.found = os.stat(path)

    @staticmethod
    def of(path: str) -> FileStamp | None:
        """The stamp of a local regular file; None for a URL, a special file, or a path that does
        not exist (its reader says so)."""
        if is_url(path):
            return None
        try:
            stamp = FileStamp(path)
        except OSError:
            return None
        return stamp if stat.S_ISREG(stamp.found.st_mode) else None

    def verify(self) -> None:
        found, hint = self.found, "score a file that no other program is writing"
        try:
            now = os.stat(self.path)
        except OSError:
            raise InputError("was removed while xent read it", path=self.path, hint=hint) from None
        if (now.st_dev, now.st_ino) != (found.st_dev, found.st_ino):
            raise InputError("was replaced by another file while xent read it", path=self.path, hint=hint)
        if now.st_size < found.st_size:
            raise InputError(f"was cut short while xent read it: it holds {now.st_size:,} of its {found.st_size:,} bytes",
                             path=self.path, hint=hint)
        if (now.st_size, now.st_mtime_ns, now.st_ctime_ns) != (found.st_size, found.st_mtime_ns, found.st_ctime_ns):
            raise InputError("changed while xent read it", path=self.path, hint=hint)
