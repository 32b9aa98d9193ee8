"""The library API on files: what each command does, without the CLI."""

import pytest

import os

from memzip.api import CompressOptions, archive_header, archive_report, compress_file, extract_file
from memzip.api import test_archive as verify  # (not named test_*: pytest would collect it)
from memzip.errors import InputFileError, NotAnArchiveError, OutputExistsError, UsageError


@pytest.fixture
def book(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes(b"It was the best of times, it was the worst of times.\r\n\xff")
    return path


def test_compress_extract_report_and_header(book, tiny_dir, tmp_path):
    target = tmp_path / "book.memz"
    events = []
    summary = compress_file(str(book), target, CompressOptions(streams=2, store_fallback=False), model=str(tiny_dir),
                            on_progress=events.append)
    assert summary["output"] == str(target) and summary["memz_bytes"] == target.stat().st_size
    assert summary["mode"] == "model-only" and summary["vectors"] == 0 and summary["chunks"] == 2
    assert events and events[-1].done == events[-1].total == summary["tokens"]

    result = extract_file(target, tmp_path / "copy.txt")
    assert result["verified"] and (tmp_path / "copy.txt").read_bytes() == book.read_bytes()
    assert result["tokens_per_second"] > 0

    report = archive_report(target)
    assert report["original_bytes"] == len(book.read_bytes()) and report["chunks"] == summary["chunks"]
    header = archive_header(target)
    assert header.text.name == "book.txt" and header.model.name == str(tiny_dir)  # format 5: the name alone


def test_names_work_as_gzip_s(book, tiny_dir, tmp_path):
    """FILE -> FILE.memz -> FILE. The name is recorded only where the archive's name would not
    give it back (gzip's -n habit): a renamed archive then extracts to its own name less .memz,
    one written under another name to the recorded one."""
    assert compress_file(str(book), model=str(tiny_dir))["output"] == str(book) + ".memz"
    assert archive_header(str(book) + ".memz").text.name is None
    with pytest.raises(OutputExistsError):
        extract_file(str(book) + ".memz")  # book.txt is still there
    elsewhere = tmp_path / "out"
    elsewhere.mkdir()
    (elsewhere / "book.txt.memz").write_bytes((tmp_path / "book.txt.memz").read_bytes())
    assert extract_file(elsewhere / "book.txt.memz")["output"] == str(elsewhere / "book.txt")
    (elsewhere / "renamed.memz").write_bytes((tmp_path / "book.txt.memz").read_bytes())
    assert extract_file(elsewhere / "renamed.memz")["output"] == str(elsewhere / "renamed")
    compress_file(str(book), elsewhere / "book.memz", model=str(tiny_dir))  # the format-2 naming
    assert archive_header(elsewhere / "book.memz").text.name == "book.txt"
    assert extract_file(elsewhere / "book.memz", force=True)["output"] == str(elsewhere / "book.txt")
    (elsewhere / "noext").write_bytes((tmp_path / "book.txt.memz").read_bytes())
    with pytest.raises(UsageError, match="does not end in .memz"):
        extract_file(elsewhere / "noext")
    assert extract_file(elsewhere / "noext", elsewhere / "given.txt")["output"] == str(elsewhere / "given.txt")


def test_the_input_s_mode_and_time_go_to_the_archive_and_come_back(book, tiny_dir, tmp_path):
    """Formats 5-6 keep the time in whole seconds, as gzip does, and the mode on the archive file
    itself, which extraction copies (format 4 kept both in its header: test_container.py)."""
    import os

    os.chmod(book, 0o640)
    os.utime(book, ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    archive = tmp_path / "kept.memz"
    compress_file(str(book), archive, model=str(tiny_dir))
    assert archive_header(archive).format_version == 9
    assert archive.stat().st_mode & 0o777 == 0o640 and archive.stat().st_mtime_ns == 1_600_000_000_123_456_789
    out = tmp_path / "back.txt"
    extract_file(archive, out)
    assert out.stat().st_mode & 0o777 == 0o640 and out.stat().st_mtime_ns == 1_600_000_000_000_000_000
    assert verify(archive)["verified"]


def test_test_writes_nothing_and_devices_are_written_into(book, tiny_dir, tmp_path):
    archive = tmp_path / "t.memz"
    compress_file(str(book), archive, model=str(tiny_dir))
    before = sorted(tmp_path.iterdir())
    assert verify(archive)["output"] is None and sorted(tmp_path.iterdir()) == before
    result = extract_file(archive, "/dev/null")  # exists, but is not a file: written into, never replaced
    assert result["output"] == "/dev/null" and os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


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


def test_bytes_in_and_out_as_gzip_and_lzma_offer_them(tiny):
    """memzip.compress / memzip.decompress at the package's top level, with a model handle that
    loads once; the archive is the file pipeline's (no name, mode or time recorded)."""
    import memzip
    from memzip.format.container import decode_archive

    data = b"Bytes in memory, as gzip.compress takes them. \xff\xfe" * 3
    model = memzip.Model(tiny)
    blob = model.compress(data, streams=2, store_fallback=False)
    assert decode_archive(blob).header.mode == "model"  # the model's archive, not stored bytes
    assert decode_archive(blob).header.text.name is None and decode_archive(blob).header.text.chunks == 2
    assert model.decompress(blob) == data == memzip.decompress(blob, model=model)
    assert memzip.compress(data, model=tiny, streams=2, store_fallback=False) == blob  # deterministic
    stored = memzip.compress(b"", model=tiny)  # an empty input is stored: no model needed to read it
    assert memzip.decompress(stored) == b""
    with pytest.raises(UsageError):
        model.compress(data, streams=0)
