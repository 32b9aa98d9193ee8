"""`memzip capacity` on the tiny model: the protocol's arithmetic and the report's shape."""

import json
import math

from typer.testing import CliRunner

from memzip.research.capacity import decoding_capacity, run_capacity, theoretical_capacity
from memzip.cli import app


def test_eq1_matches_the_paper():
    # Pythia-160M: d=768, |V|=50304 -> 787 tokens (the paper's Table / DESIGN.md)
    assert round(theoretical_capacity(768, 50304)) == 787
    assert round(theoretical_capacity(4096, 128256)) == 3862


def test_decoding_capacity_is_the_largest_length_at_99_percent():
    rows = [{"texts": "book", "mem_vectors": 1, "tokens": t, "acc": a}
            for t, a in ((8, 1.0), (16, 0.995), (32, 0.9))]
    assert decoding_capacity(rows, "acc") == {"book/1": 16}


def test_report_rows_are_consistent(tiny):
    report = run_capacity(tiny, ["book", "random"], [4, 8], 2, [1, 2], max_steps=3)
    assert len(report["rows"]) == 2 * 2 * 2
    for row in report["rows"]:
        assert math.isclose(row["information_gain_nats"], row["ce_without_nats"] - row["ce_with_nats"], abs_tol=0.02)
        assert math.isclose(row["information_gain_bits"], row["information_gain_nats"] / math.log(2), abs_tol=0.02)
        assert 0 <= row["exact_greedy"] <= row["samples"] == 2
        assert 0 <= row["greedy_accuracy"] <= 1
    assert len(report["points"]) == 2 * 2 * 2 * 2
    # lengths are per vector: two vectors measure chunks twice as long
    assert sorted({(r["mem_vectors"], r["tokens"]) for r in report["rows"]}) == [(1, 4), (1, 8), (2, 8), (2, 16)]


def test_rows_price_the_storage_dtype(tiny):
    report = run_capacity(tiny, ["book"], [8], 1, [1], max_steps=2, vector_dtype="int4")
    row = report["rows"][0]
    assert row["vector_dtype"] == "int4" and row["vector_bytes"] == 64 * 4 // 8 + 4
    assert math.isclose(row["text_bytes_per_vector_byte"], row["text_bytes"] / row["vector_bytes"], rel_tol=0.01)
    coded = run_capacity(tiny, ["book"], [8], 1, [1], max_steps=2, vector_dtype="int4", code_dims=10)["rows"][0]
    assert coded["code_dims"] == 10 and coded["vector_bytes"] == 5 + 4


def test_capacity_cli_json_and_plot(tiny_dir, tmp_path):
    png = tmp_path / "cap.png"
    result = CliRunner().invoke(app, ["capacity", "-m", str(tiny_dir), "--lengths", "4", "--samples", "1",
                                      "--vectors", "1", "--max-steps", "2", "--texts", "book", "--json",
                                      "--plot", str(png)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"][0]["tokens"] == 4
    import importlib.util

    if importlib.util.find_spec("matplotlib"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "matplotlib is not installed" in result.stderr


def test_rows_price_vectors_and_residual_against_the_model_alone(tiny):
    report = run_capacity(tiny, ["book"], [8], 2, [1], max_steps=2, vector_dtype="int8")
    row = report["rows"][0]
    assert row["residual_bytes"] > 0
    assert math.isclose(row["total_bits_per_byte"], 8 * (row["vector_bytes"] + row["residual_bytes"]) / row["text_bytes"],
                        rel_tol=0.01)
    assert row["model_only_bits_per_byte"] > 0


def test_headline_capacity_is_one_figure_and_says_when_it_is_censored(tiny):
    report = run_capacity(tiny, ["book"], [2, 4], 1, [1], max_steps=1)
    greedy = report["decoding_capacity_greedy"]["book/1"]
    assert report["decoding_capacity"] == greedy and report["decoding_capacity_texts"] == "book"
    assert report["decoding_capacity_censored"] == (greedy == 4)
    assert report["capacity_teacher_forced"] == report["decoding_capacity_teacher_forced"]["book/1"]
    assert run_capacity(tiny, ["book"], [2], 1, [2], max_steps=1)["decoding_capacity"] is None  # no single vector
