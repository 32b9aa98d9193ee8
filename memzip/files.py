"""Reading inputs and writing outputs without ever losing what the user had.

Outputs are written to a temporary file in the target directory, flushed and fsynced, then
moved into place: a crash or Ctrl-C never leaves a half-written file under the final name.
Without `force`, the final step is a hard link (no-clobber), so even a file that appeared
while we worked is never overwritten.
"""

from __future__ import annotations

import errno
import os
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


def check_output(path: Path, force: bool, inputs: tuple[str, ...] = ()) -> None:
    """Fail early (before hours of work) if the output cannot or must not be written."""
    for source in inputs:
        if source != STDIO and Path(source).exists() and path.exists() and path.samefile(source):
            raise UsageError(f"the output {path} is the input file", hint="Choose another path with -o.")
    if path.is_dir():
        raise OutputWriteError(f"output {path} is a directory", hint="Give a file name with -o.")
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputWriteError(f"output directory {parent} does not exist", hint="Create it first.")
    if not os.access(parent, os.W_OK):
        raise OutputWriteError(f"output directory {parent} is not writable",
                               hint="Choose another place with -o.")


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
