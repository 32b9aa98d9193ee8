"""Reading inputs and writing outputs without ever losing what the user had.

Outputs are written to a temporary file in the target directory, flushed and fsynced, then
moved into place: a crash or Ctrl-C never leaves a half-written file under the final name.
Without `force`, the final step is a hard link (no-clobber), so even a file that appeared
while we worked is never overwritten.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from pathlib import Path

from memzip.errors import InputFileError, OutputExistsError, OutputWriteError, UsageError

STDIO = "-"


def read_input(path: str) -> bytes:
    if path == STDIO:
        return sys.stdin.buffer.read()
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"input file not found: {path}", hint="Check the path.")
    if p.is_dir():
        raise InputFileError(f"{path} is a directory; memzip compresses one file",
                             hint="Archive a directory with tar first: tar cf dir.tar dir")
    try:
        return p.read_bytes()
    except PermissionError:
        raise InputFileError(f"permission denied reading {path}", hint="Check the file's permissions.") from None
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}") from None


def is_special(path: Path) -> bool:
    """An existing output that is not a regular file or directory (/dev/null, a FIFO, a
    terminal): memzip writes into it and never replaces it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_output(path: Path, force: bool, inputs: tuple[str, ...] = ()) -> None:
    """Fail early (before hours of work) if the output cannot or must not be written."""
    for source in inputs:
        if source != STDIO and Path(source).exists() and path.exists() and path.samefile(source):
            raise UsageError(f"the output {path} is the input file", hint="Choose another path with -o.")
    if path.is_dir():
        raise OutputWriteError(f"output {path} is a directory", hint="Give a file name with -o.")
    if is_special(path):
        if not os.access(path, os.W_OK):
            raise OutputWriteError(f"output {path} is not writable")
        return
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputWriteError(f"output directory {parent} does not exist", hint="Create it first.")
    if not os.access(parent, os.W_OK):
        raise OutputWriteError(f"output directory {parent} is not writable",
                               hint="Choose another place with -o.")


def write_output(path: Path, data: bytes, force: bool) -> None:
    """Write an output: into a device or FIFO as it is, a regular file atomically."""
    if is_special(path):
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise OutputWriteError(f"cannot write {path}: {exc.strerror}") from None
        return
    write_atomic(path, data, force)


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise OutputWriteError(f"cannot create a file in {parent}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the path exists: never clobbers
            except FileExistsError:
                raise OutputExistsError(f"{path} already exists") from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                    raise
                if path.exists():  # file system without hard links: check, then rename
                    raise OutputExistsError(f"{path} already exists") from None
                os.replace(tmp, path)
    except OSError as exc:
        hint = "Free some disk space." if exc.errno == errno.ENOSPC else "Choose another place with -o."
        raise OutputWriteError(f"cannot write {path}: {exc.strerror}", hint=hint) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def file_metadata(path: str) -> tuple[int | None, int | None]:
    """The permission bits and modification time (ns) of an input file; None for stdin."""
    if path == STDIO:
        return None, None
    st = os.stat(path)
    return st.st_mode & 0o7777, st.st_mtime_ns


def restore_metadata(path: Path, permissions: int | None, mtime_ns: int | None) -> None:
    """Give an extracted regular file the original's permission bits and modification time, as
    gzip does (where the file system allows; a failure here loses no data)."""
    try:
        if is_special(path) or not path.is_file():
            return
        if permissions is not None:
            os.chmod(path, permissions)
        if mtime_ns is not None:
            os.utime(path, ns=(mtime_ns, mtime_ns))
    except OSError:
        pass
