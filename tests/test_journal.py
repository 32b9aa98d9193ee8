"""An interrupted compression resumes from its journal and gives the same archive."""

import dataclasses

import pytest
from typer.testing import CliRunner

import memzip.decoder
import memzip.engine
from memzip.cli import app
from memzip.engine import compress_bytes, job_identity, plan
from memzip.errors import UsageError
from memzip.format.container import encode_archive
from memzip.journal import GroupResult, Journal
from memzip.options import CompressOptions

TEXT = b"One chunk after another, the book goes into vectors. " * 4
OPTIONS = CompressOptions(mem_vectors=1, max_steps=3, chunk_tokens=8, batch_size=2)
FAST = ["--mem-vectors", "1", "--max-steps", "3", "--chunk-tokens", "8", "--batch-size", "2", "--quiet"]


def stop_at_group(index: int):
    """A progress callback that interrupts compression when group `index` starts (after the
    earlier groups were journaled), as Ctrl-C would."""
    def on_progress(event):
        if event.stage == "compress" and event.step is None and event.done == index * OPTIONS.batch_size \
                and event.done < event.total:
            raise KeyboardInterrupt
    return on_progress


def test_library_resume_gives_identical_archive(tiny, tmp_path):
    reference, _ = compress_bytes(TEXT, tiny, OPTIONS)
    journal = Journal(tmp_path / "x.memz.journal")
    with pytest.raises(KeyboardInterrupt):
        compress_bytes(TEXT, tiny, OPTIONS, journal=journal, on_progress=stop_at_group(2))
    identity = job_identity(TEXT, tiny, plan(OPTIONS, tiny))
    assert sorted(Journal(journal.path).open(identity)) == [0, 2]

    computed = []
    resumed, _ = compress_bytes(TEXT, tiny, OPTIONS, journal=Journal(journal.path), resume=True,
                                on_progress=lambda e: computed.append(e.done) if e.step == 0 else None)
    assert computed == list(range(4, resumed.header.text.chunks, 2))  # only the groups not journaled
    assert encode_archive(resumed) == encode_archive(reference)


def test_model_only_compression_resumes_too(tiny, tmp_path):
    options = CompressOptions(chunk_tokens=8, batch_size=2)
    reference, _ = compress_bytes(TEXT, tiny, options)
    journal = Journal(tmp_path / "x.memz.journal")
    with pytest.raises(KeyboardInterrupt):
        compress_bytes(TEXT, tiny, options, journal=journal, on_progress=stop_at_group(1))
    resumed, _ = compress_bytes(TEXT, tiny, options, journal=Journal(journal.path), resume=True)
    assert encode_archive(resumed) == encode_archive(reference)


def test_interrupted_before_the_first_group_resumes(tiny, tmp_path):
    """Ctrl-C before any group finished leaves a journal with no group; --resume continues from it
    (it used to be called another job's journal)."""
    journal = Journal(tmp_path / "x.memz.journal")
    with pytest.raises(KeyboardInterrupt):
        compress_bytes(TEXT, tiny, OPTIONS, journal=journal, on_progress=stop_at_group(0))
    assert journal.exists()
    compress_bytes(TEXT, tiny, OPTIONS, journal=Journal(journal.path), resume=True)


def test_torn_journal_tail_is_redone(tiny, tmp_path):
    path = tmp_path / "x.journal"
    compress_bytes(TEXT, tiny, OPTIONS, journal=Journal(path))
    identity = job_identity(TEXT, tiny, plan(OPTIONS, tiny))
    whole = path.read_bytes()
    groups = len(Journal(path).open(identity))
    path.write_bytes(whole[:-10])  # a crash in the middle of the last record
    assert len(Journal(path).open(identity)) == groups - 1
    path.write_bytes(whole + b"\x05\x00\x00")  # a few stray bytes after a good record
    assert len(Journal(path).open(identity)) == groups


def test_journal_of_another_job_is_replaced_or_refused(tiny, tmp_path):
    path = tmp_path / "x.journal"
    compress_bytes(TEXT, tiny, OPTIONS, journal=Journal(path))
    other = job_identity(TEXT + b"!", tiny, plan(OPTIONS, tiny))
    with pytest.raises(UsageError, match="another input"):
        Journal(path).open(other, require_match=True)
    assert Journal(path).open(other) == {}  # started afresh
    assert Journal(path).open(other, require_match=True) == {}


def test_a_group_record_round_trips(tmp_path):
    import numpy as np

    group = GroupResult(first=4, residual=b"\x01\x02", digest=b"12345678", misses=[0, 3], ce_bits=[1.5, 2.0],
                        ce_without_vectors_bits=[3.0, 4.0], packed=np.ones((2, 1, 3), np.float16),
                        scales=None, steps=[5, 6], losses=[0.1, 0.2], accuracies=[1.0, 0.5], seconds=1.25)
    journal = Journal(tmp_path / "j")
    journal.open({"job": 1})
    journal.append(group)
    (back,) = Journal(journal.path).open({"job": 1}).values()
    assert dataclasses.asdict(back) | {"packed": None} == dataclasses.asdict(group) | {"packed": None}
    assert np.array_equal(back.packed, group.packed)


def test_cli_interrupt_then_rerun(tiny_dir, tmp_path, monkeypatch):
    source = tmp_path / "book.txt"
    source.write_bytes(TEXT)
    target = tmp_path / "book.memz"
    runner = CliRunner()
    real, calls = memzip.decoder.decode_group, {"n": 0}

    def interrupted_second_group(*args, **kwargs):  # Ctrl-C while the second group decodes
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(memzip.decoder, "decode_group", interrupted_second_group)
    monkeypatch.setattr(memzip.engine, "decode_group", interrupted_second_group)
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
