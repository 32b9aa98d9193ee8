"""Interrupted compression resumes from its journal and gives the same archive."""

import pytest
from typer.testing import CliRunner

import memzip.archive
from memzip.archive import CompressSettings, compress_bytes, job_identity
from memzip.cli import app
from memzip.container import encode_archive
from memzip.journal import Journal

TEXT = b"One chunk after another, the book goes into vectors. " * 4
FAST = ["--max-steps", "3", "--chunk-tokens", "8", "--batch-size", "2", "--quiet"]


def interrupt_after(calls: int, monkeypatch):
    real = memzip.archive._compress_group
    count = {"n": 0}

    def flaky(*args, **kwargs):
        if count["n"] == calls:
            raise KeyboardInterrupt
        count["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(memzip.archive, "_compress_group", flaky)
    return count


def test_library_resume_gives_identical_archive(tiny, tmp_path, monkeypatch):
    settings = CompressSettings(max_steps=3, chunk_tokens=8, batch_size=2)
    reference, _ = compress_bytes(TEXT, tiny, settings)
    journal = Journal(tmp_path / "x.memz.journal", job_identity(TEXT, tiny, settings, 8))

    interrupt_after(2, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        compress_bytes(TEXT, tiny, settings, journal=journal)
    assert sorted(journal.load()) == [0, 2]
    monkeypatch.undo()

    calls = interrupt_after(10**6, monkeypatch)  # counts the groups computed on resume
    resumed, _ = compress_bytes(TEXT, tiny, settings, journal=journal)
    assert calls["n"] == len(range(0, resumed.header.text.chunks, 2)) - 2
    assert encode_archive(resumed) == encode_archive(reference)


def test_torn_journal_tail_is_redone(tiny, tmp_path):
    settings = CompressSettings(max_steps=2, chunk_tokens=8, batch_size=2)
    path = tmp_path / "x.journal"
    journal = Journal(path, job_identity(TEXT, tiny, settings, 8))
    compress_bytes(TEXT, tiny, settings, journal=journal)
    whole = path.read_bytes()
    groups = len(journal.load())
    path.write_bytes(whole[:-10])  # a crash in the middle of the last record
    assert len(journal.load()) == groups - 1
    path.write_bytes(whole + b"\x05\x00\x00")  # a few stray bytes after a good record
    assert len(journal.load()) == groups


def test_journal_of_another_job_is_ignored(tiny, tmp_path):
    settings = CompressSettings(max_steps=2, chunk_tokens=8, batch_size=2)
    path = tmp_path / "x.journal"
    compress_bytes(TEXT, tiny, settings, journal=Journal(path, job_identity(TEXT, tiny, settings, 8)))
    other = Journal(path, job_identity(TEXT + b"!", tiny, settings, 8))
    assert other.load() == {}


def test_cli_interrupt_then_rerun(tiny_dir, tmp_path, monkeypatch):
    source = tmp_path / "book.txt"
    source.write_bytes(TEXT)
    target = tmp_path / "book.memz"
    runner = CliRunner()

    interrupt_after(1, monkeypatch)
    result = runner.invoke(app, ["compress", str(source), "-m", str(tiny_dir), *FAST])
    assert result.exit_code == 130
    assert "interrupted" in result.stderr and "--resume" in result.stderr
    assert not target.exists()  # no half-written archive under the final name
    assert (tmp_path / "book.memz.journal").exists()
    assert source.read_bytes() == TEXT
    monkeypatch.undo()

    result = runner.invoke(app, ["compress", str(source), "-m", str(tiny_dir), "--resume", *FAST])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "book.memz.journal").exists()
    resumed = target.read_bytes()

    target.unlink()
    assert runner.invoke(app, ["compress", str(source), "-m", str(tiny_dir), *FAST]).exit_code == 0
    assert target.read_bytes() == resumed

    out = tmp_path / "out.txt"
    assert runner.invoke(app, ["extract", str(target), "-o", str(out), "-q"]).exit_code == 0
    assert out.read_bytes() == TEXT


def test_resume_without_journal_is_an_error(tiny_dir, tmp_path):
    source = tmp_path / "a.txt"
    source.write_bytes(b"abc")
    result = CliRunner().invoke(app, ["compress", str(source), "-m", str(tiny_dir), "--resume", "-q"])
    assert result.exit_code == 2 and "nothing to resume" in result.stderr
