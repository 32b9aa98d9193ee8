"""The library API on files: what each command does, without the CLI."""

import pytest

from memzip.api import CompressOptions, archive_header, archive_report, compress_file, extract_file
from memzip.errors import InputFileError, NotAnArchiveError, OutputExistsError, UsageError


@pytest.fixture
def book(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes(b"It was the best of times, it was the worst of times.\r\n\xff")
    return path


def test_compress_extract_report_and_header(book, tiny_dir, tmp_path):
    target = tmp_path / "book.memz"
    events = []
    summary = compress_file(str(book), target, CompressOptions(chunk_tokens=8), model=str(tiny_dir),
                            on_progress=events.append)
    assert summary["output"] == str(target) and summary["memz_bytes"] == target.stat().st_size
    assert summary["mode"] == "model-only" and summary["vectors"] == 0
    assert events and events[-1].done == events[-1].total == summary["chunks"]

    result = extract_file(target, tmp_path / "copy.txt")
    assert result["verified"] and (tmp_path / "copy.txt").read_bytes() == book.read_bytes()
    assert result["tokens_per_second"] > 0

    report = archive_report(target)
    assert report["original_bytes"] == len(book.read_bytes()) and report["chunks"] == summary["chunks"]
    header = archive_header(target)
    assert header.text.name == "book.txt" and header.model.source == "dir"


def test_extract_writes_the_original_name_beside_the_archive(book, tiny_dir, tmp_path):
    elsewhere = tmp_path / "out"
    elsewhere.mkdir()
    compress_file(str(book), elsewhere / "a.memz", model=str(tiny_dir))
    assert extract_file(elsewhere / "a.memz")["output"] == str(elsewhere / "book.txt")
    with pytest.raises(OutputExistsError):
        extract_file(elsewhere / "a.memz")


def test_nothing_is_overwritten_and_bad_inputs_are_refused(book, tiny_dir, tmp_path):
    target = tmp_path / "book.memz"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExistsError):
        compress_file(str(book), target, model=str(tiny_dir))
    assert target.read_bytes() == b"precious"
    with pytest.raises(NotAnArchiveError):
        archive_report(target)
    with pytest.raises(InputFileError):
        archive_header(tmp_path / "missing.memz")
    with pytest.raises(UsageError, match="nothing to resume"):
        compress_file(str(book), tmp_path / "new.memz", model=str(tiny_dir), resume=True)
    with pytest.raises(UsageError, match="--mem-vectors"):
        compress_file(str(book), tmp_path / "new.memz", CompressOptions(mem_vectors=-1), model=str(tiny_dir))
