"""`memzip bench` on the tiny model: the report has its fields, and its numbers come from the run
(lossless is judged by greedy decoding)."""

import json

import pytest
from typer.testing import CliRunner

from memzip.research.bench import batching_gain, run_bench
from memzip.research.samples import bench_chunks, sample_text
from memzip.cli import app


def test_sample_texts():
    assert "Alice" in sample_text("book")
    words = sample_text("random", seed=1, words=50).split()
    assert len(words) == 50 and sample_text("random", seed=1, words=50) == " ".join(words)
    assert sample_text("random", seed=2, words=50) != " ".join(words)


def test_bench_report_fields_and_consistency(tiny):
    report = run_bench(tiny, ["book", "random"], ["paper", "default"], count=2, chunk_tokens=6, max_steps=5)
    assert {r["recipe"] for r in report["results"]} == {"paper", "default"}
    for row in report["results"]:
        for key in ("recipe", "chunks", "lossless", "median_steps", "tokens_per_second"):
            assert key in row
        assert row["chunks"] == 2 and 0 <= row["lossless"] <= 2
        assert row["tokens_per_vector"] == 6 and row["budget"] == 5
        assert (row["median_steps"] is None) == (row["median_steps_at_least"] == 5)
        assert row["lossless"] == sum(s is not None for s in row["steps"])
        # the per-chunk figures agree with the summary: lossless exactly where no greedy miss
        assert [m == 0 for m in row["greedy_misses"]] == [s is not None for s in row["steps"]]
        assert all(1 <= s <= 5 for s in row["steps_to_stop"]) and len(row["teacher_forced_accuracy"]) == 2
    assert set(report["headline"]) == {"book", "random"}
    batching = report["batching"]  # its own test checks the arithmetic; here, that the report holds it
    assert batching["chunks"] > 0 and set(batching) >= {"decode_speedup", "optimize_speedup"}
    drift = report["drift"]
    assert 0 <= drift["max_abs_logit_diff_batch_vs_single"] < 0.5
    assert 0 <= drift["max_abs_logit_diff_training_forward_vs_decoder"] < 0.5


def test_chunks_are_full_length_and_seeded(tiny):
    chunks = bench_chunks(tiny, "book", 3, 8, seed=0)
    assert len(chunks) == 3 and all(len(c) == 8 for c in chunks)
    assert chunks == bench_chunks(tiny, "book", 3, 8, seed=0)


def test_batching_gain_compares_one_batch_with_one_chunk_at_a_time(tiny, monkeypatch):
    """The gain is the time of one call per chunk over one call for all, measured in the same run:
    on a clock where every call costs 3 units plus 1 per chunk it is given, 2 chunks take 5 units
    batched and 8 one at a time, for decoding and for fitting alike."""
    import memzip.research.bench as bench

    clock = [0.0]
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])

    def costs(real, chunk_arg: int):
        def timed(*args, **kwargs):
            result = real(*args, **kwargs)
            given = args[chunk_arg] if len(args) > chunk_arg else kwargs["chunks"]
            clock[0] += 3 + len(given)
            return result
        return timed
    monkeypatch.setattr(bench, "decode_group", costs(bench.decode_group, 1))
    monkeypatch.setattr(bench, "fit_chunks", costs(bench.fit_chunks, 1))
    chunks = bench_chunks(tiny, "book", 2, 5)
    gain = batching_gain(tiny, chunks, steps=2)
    assert gain["chunks"] == 2 and gain["optimizer_steps_measured"] == 2
    assert gain["decode_speedup"] == gain["optimize_speedup"] == round(8 / 5, 2)
    assert gain["decode_tokens_per_second_batched"] == round(10 / 5, 2)
    assert gain["decode_tokens_per_second_one_at_a_time"] == round(10 / 8, 2)


def test_bench_cli_json(tiny_dir):
    result = CliRunner().invoke(app, ["bench", "-m", str(tiny_dir), "--chunks", "2", "--chunk-tokens", "5",
                                      "--max-steps", "3", "--texts", "book", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["recipe"] for r in report["results"]] == ["paper", "default"]


def test_bench_cli_rejects_unknown_recipe(tiny_dir):
    result = CliRunner().invoke(app, ["bench", "-m", str(tiny_dir), "--recipes", "nope"])
    assert result.exit_code == 2 and "unknown recipe" in result.stderr


@pytest.mark.slow
def test_bench_memory_runs_child_processes(tiny_dir, tmp_path):
    small = tmp_path / "small.txt"
    small.write_bytes(b"tiny file")
    big = tmp_path / "big.txt"
    big.write_bytes(b"a somewhat larger file, repeated. " * 20)
    result = CliRunner().invoke(app, ["bench-memory", str(small), str(big), "-m", str(tiny_dir), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["identical"] for r in rows] == [True, True]
    assert all(r["compress_peak_rss_mb"] > 50 for r in rows)  # a real Python+torch process
    # Each step is reported on stderr as it finishes (a 1 MB file runs for an hour on a CPU).
    assert f"{big}: compress peak" in result.stderr and f"{big}: extract peak" in result.stderr


def test_bench_chunks_have_exactly_the_asked_length_for_any_length(tiny):
    # Regression: chunks were cut "evenly" and then filtered, so some lengths found none at all.
    from memzip.research.samples import bench_chunks

    for length in (7, 16, 64, 128):
        chunks = bench_chunks(tiny, "book", 3, length)
        assert len(chunks) == 3 and all(len(c) == length for c in chunks)


def test_bench_chunks_longer_than_the_sample_is_a_usage_error(tiny):
    import pytest

    from memzip.research.samples import bench_chunks
    from memzip.errors import UsageError

    with pytest.raises(UsageError, match="fewer than a chunk"):
        bench_chunks(tiny, "book", 1, 10**6)


def test_censored_median():
    from memzip.research.bench import censored_median

    assert censored_median([3, 5, None], 100) == (5, None)
    assert censored_median([3, None, None], 100) == (None, 100)
    assert censored_median([3, 5, 7, None], 100) == (6, None)
    assert censored_median([3, 5, None, None], 100) == (None, 100)
    assert censored_median([], 100) == (None, 100)

