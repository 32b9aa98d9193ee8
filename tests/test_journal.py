"""An interrupted compression resumes from its journal and gives the same archive."""

import dataclasses

import pytest
from typer.testing import CliRunner

import memzip.ranks.engine
import memzip.exact.engine
from memzip.cli import app
from memzip.pipeline import compress_bytes, job_identity, plan
from memzip.errors import UsageError
from memzip.format.container import encode_archive
from memzip.engines import UnitResult
from memzip.journal import Journal
from memzip.options import CompressOptions

TEXT = b"One chunk after another, the book goes into vectors. " * 4
OPTIONS = CompressOptions(mem_vectors=1, max_steps=3, chunk_tokens=8, batch_size=2, store_fallback=False)
FAST = ["--streams", "8", "--no-store", "--quiet"]  # two groups of 4 streams sharing a bias: 2 units


def interrupt_unit(monkeypatch, index: int, engine=memzip.exact.engine.ExactEngine):
    """Ctrl-C while unit `index` (the index-th stream or group, from 0) is being compressed, after
    the earlier ones were journaled. Returns the list of units that started."""
    real, started = engine.compress_unit, []

    def compress_unit(self, loaded, job, first, unit, progress):
        started.append(first)
        if len(started) == index + 1:
            raise KeyboardInterrupt
        return real(self, loaded, job, first, unit, progress)

    monkeypatch.setattr(engine, "compress_unit", compress_unit)
    return started


def test_library_resume_gives_identical_archive(tiny, tmp_path, monkeypatch):
    reference, _ = compress_bytes(TEXT, tiny, OPTIONS)
    journal = Journal(tmp_path / "x.memz.journal")
    interrupt_unit(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        compress_bytes(TEXT, tiny, OPTIONS, journal=journal)
    monkeypatch.undo()
    identity = job_identity(TEXT, tiny, plan(OPTIONS, tiny))
    assert sorted(Journal(journal.path).open(identity)) == [0, 2]

    computed = interrupt_unit(monkeypatch, -1)  # never interrupts; records what runs
    resumed, _ = compress_bytes(TEXT, tiny, OPTIONS, journal=Journal(journal.path), resume=True)
    assert computed == list(range(4, resumed.header.text.chunks, 2))  # only the groups not journaled
    assert encode_archive(resumed) == encode_archive(reference)


@pytest.mark.parametrize("options, module", [
    (CompressOptions(streams=8, store_fallback=False), memzip.exact.engine.ExactEngine),
    (CompressOptions(engine="float", chunk_tokens=8, batch_size=2, store_fallback=False), memzip.ranks.engine.RanksEngine),
], ids=["exact-streams", "float-groups"])
def test_model_only_compression_resumes_too(options, module, tiny, tmp_path, monkeypatch):
    reference, _ = compress_bytes(TEXT, tiny, options)
    journal = Journal(tmp_path / "x.memz.journal")
    interrupt_unit(monkeypatch, 1, module)
    with pytest.raises(KeyboardInterrupt):
        compress_bytes(TEXT, tiny, options, journal=journal)
    assert journal.saved_units == 1 and journal.total_units > 1 and journal.saved_tokens > 0
    monkeypatch.undo()
    resumed, _ = compress_bytes(TEXT, tiny, options, journal=Journal(journal.path), resume=True)
    assert encode_archive(resumed) == encode_archive(reference)


def test_a_group_of_streams_is_a_small_unit_of_work(tiny):
    """Streams are at most STREAM_TOKENS long and a unit is a group of 4 (that share an adaptive
    bias), so an interruption loses at most 4 streams' work (2-5 minutes on two CPU cores at the
    measured speeds) whatever the file's size."""
    from memzip.options import STREAM_TOKENS
    from memzip.planning import chunk_spans, units

    job = plan(CompressOptions(), tiny)
    spans = chunk_spans(tiny, job, list(range(10 * STREAM_TOKENS + 5)))
    assert max(b - a for a, b in spans) <= STREAM_TOKENS and len(spans) == 11
    # under 2 x 4,096 tokens one stream; then up to 4 streams of at least 4,096
    assert len(chunk_spans(tiny, job, list(range(8191)))) == 1 and len(chunk_spans(tiny, job, list(range(900)))) == 1
    assert job.chunks_per_unit == 4 and units(job, [[1]] * 11) == [0, 4, 8]
    assert plan(CompressOptions(adaptive_bias=False), tiny).chunks_per_unit == 1
    assert len(chunk_spans(tiny, job, list(range(8192)))) == 2 and len(chunk_spans(tiny, job, list(range(12288)))) == 3
    assert len(chunk_spans(tiny, job, list(range(20000)))) == 4


def test_interrupted_before_the_first_group_resumes(tiny, tmp_path, monkeypatch):
    """Ctrl-C before any unit finished leaves a journal with none; --resume continues from it."""
    journal = Journal(tmp_path / "x.memz.journal")
    interrupt_unit(monkeypatch, 0)
    with pytest.raises(KeyboardInterrupt):
        compress_bytes(TEXT, tiny, OPTIONS, journal=journal)
    assert journal.exists() and journal.saved_units == 0 and journal.saved_summary() == "nothing was saved yet"
    monkeypatch.undo()
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

    group = UnitResult(first=4, residual=b"\x01\x02", misses=[0, 3], coded_bits=[1.5, 2.0], model_bits=[1.25, 2.5],
                       residual_lengths=[1, 1], digest=b"12345678", ce_without_vectors_bits=[3.0, 4.0],
                       packed=np.ones((2, 1, 3), np.float16), scales=None, steps=[5, 6], losses=[0.1, 0.2],
                       accuracies=[1.0, 0.5], seconds=1.25)
    journal = Journal(tmp_path / "j")
    journal.open({"job": 1})
    journal.append(group)
    (back,) = Journal(journal.path).open({"job": 1}).values()
    assert dataclasses.asdict(back) | {"packed": None} == dataclasses.asdict(group) | {"packed": None}
    assert np.array_equal(back.packed, group.packed)


def test_cli_interrupt_then_rerun(tiny_dir, tmp_path, monkeypatch):
    source = tmp_path / "book.txt"
    source.write_bytes(TEXT)
    target = tmp_path / "book.txt.memz"
    runner = CliRunner()
    interrupt_unit(monkeypatch, 1)
    result = runner.invoke(app, ["compress", str(source), "-m", str(tiny_dir), *FAST])
    assert result.exit_code == 130
    message = " ".join(result.stderr.split())
    assert "interrupted; 1 of 2 units of work" in message and "are saved in" in message and "--resume" in message
    assert not target.exists()  # no half-written archive under the final name
    assert (tmp_path / "book.txt.memz.journal").exists()
    assert source.read_bytes() == TEXT
    monkeypatch.undo()

    result = runner.invoke(app, ["compress", str(source), "-m", str(tiny_dir), "--resume", *FAST])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "book.txt.memz.journal").exists()
    resumed = target.read_bytes()

    target.unlink()
    assert runner.invoke(app, ["compress", str(source), "-m", str(tiny_dir), *FAST]).exit_code == 0
    assert target.read_bytes() == resumed

    out = tmp_path / "out.txt"
    assert runner.invoke(app, ["extract", str(target), "-o", str(out), "-q"]).exit_code == 0
    assert out.read_bytes() == TEXT


def test_cli_says_when_nothing_was_saved(tiny_dir, tmp_path, monkeypatch):
    source = tmp_path / "book.txt"
    source.write_bytes(TEXT)
    interrupt_unit(monkeypatch, 0)
    result = CliRunner().invoke(app, ["compress", str(source), "-m", str(tiny_dir), *FAST])
    assert result.exit_code == 130
    message = " ".join(result.stderr.split())
    assert "nothing was saved yet" in message and "Nothing to resume" in message


def test_resume_without_journal_is_an_error(tiny_dir, tmp_path):
    source = tmp_path / "a.txt"
    source.write_bytes(b"abc")
    result = CliRunner().invoke(app, ["compress", str(source), "-m", str(tiny_dir), "--resume", "-q"])
    assert result.exit_code == 2 and "nothing to resume" in result.stderr
