"""Inputs and outputs at the edges: stdin, full disks, existing files, odd paths."""

import errno
import hashlib
import os

import pytest
from typer.testing import CliRunner

from memzip.cli import app
from memzip.errors import OutputExistsError, OutputWriteError
from memzip.files import write_atomic

FAST = ["--chunk-tokens", "16", "--quiet"]


def test_stdin_round_trip(tiny_dir, tmp_path):
    data = b"piped \xff text\r\n"
    archive = tmp_path / "piped.memz"
    runner = CliRunner()
    result = runner.invoke(app, ["compress", "-", "-o", str(archive), "-m", str(tiny_dir), *FAST], input=data)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["extract", str(archive), "--stdout", "-q"])
    assert result.stdout_bytes == data


def test_full_disk_leaves_nothing_behind(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OutputWriteError, match="No space left") as info:
        write_atomic(target, b"data", force=False)
    assert "disk space" in info.value.hint
    assert list(tmp_path.iterdir()) == []  # no temporary file, no partial output


def test_full_disk_keeps_the_old_file_under_force(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old and precious")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    with pytest.raises(OutputWriteError):
        write_atomic(target, b"new", force=True)
    assert target.read_bytes() == b"old and precious"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_file_appearing_during_the_work_is_not_clobbered(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"appeared meanwhile")
    with pytest.raises(OutputExistsError):
        write_atomic(target, b"new", force=False)
    assert target.read_bytes() == b"appeared meanwhile"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes regardless of permissions")
def test_unreadable_input_and_read_only_directory(tmp_path, tiny_dir):
    source = tmp_path / "secret.txt"
    source.write_bytes(b"x")
    source.chmod(0)
    result = CliRunner().invoke(app, ["compress", str(source), "-m", str(tiny_dir), "-o", str(tmp_path / "a.memz")])
    assert result.exit_code == 2 and "permission denied" in result.stderr
    source.chmod(0o600)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    result = CliRunner().invoke(app, ["compress", str(source), "-m", str(tiny_dir), "-o", str(locked / "a.memz")])
    assert result.exit_code == 3 and "not writable" in result.stderr


def test_extract_never_writes_outside_the_archive_directory(tiny):
    """The stored name is a bare file name; a crafted '../x' is refused by the reader, in the
    JSON header of formats 2-4 and in format 5's binary one."""
    import dataclasses
    import json

    from memzip.pipeline import compress_bytes
    from memzip.errors import HeaderFormatError
    from memzip.format.container import decode_archive, encode_archive
    from memzip.format.header import parse_header

    archive = compress_bytes(b"x", tiny)[0]
    header = json.loads(archive.header.to_json())
    header["text"]["sha256"] = hashlib.sha256(b"x").hexdigest()  # formats 2-4 keep the whole digest
    for bad in ("../escape.txt", "dir/x.txt", "..", ".", "a\\b", "nul\0", "\ud800.txt"):
        header["text"]["name"] = bad
        with pytest.raises(HeaderFormatError, match="text.name"):
            parse_header(json.dumps(header).encode())
        if bad.isprintable() or "\0" in bad:  # a lone surrogate cannot be written as UTF-8 at all
            crafted = dataclasses.replace(archive, header=dataclasses.replace(
                archive.header, text=dataclasses.replace(archive.header.text, name=bad)))
            with pytest.raises(HeaderFormatError, match="file name"):
                decode_archive(encode_archive(crafted))
