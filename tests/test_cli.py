"""The command line, through typer's CliRunner, on the tiny model saved as a directory."""

import json
import re

import pytest
from typer.testing import CliRunner

from memzip.cli import app

runner = CliRunner()
FAST = ["--chunk-tokens", "16", "--quiet"]
VECTORS = ["--mem-vectors", "1", "--max-steps", "5", "--chunk-tokens", "16", "--quiet"]


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
    archive = sample.with_suffix(".memz")
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
    assert header["text"]["name"] == "sample.txt"
    assert header["model"]["architecture"] == "LlamaForCausalLM"

    result = run("stats", archive)
    assert "zstd -19" in result.stdout and "model's ideal" in result.stdout and "model-only" in result.stdout


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


def test_extract_defaults_to_original_name_and_never_overwrites(sample, tiny_dir, tmp_path):
    run("compress", sample, "-m", tiny_dir, *FAST)
    archive = sample.with_suffix(".memz")
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "a.memz").write_bytes(archive.read_bytes())
    assert run("extract", moved / "a.memz", "-q").exit_code == 0
    assert (moved / "sample.txt").read_bytes() == sample.read_bytes()

    (moved / "sample.txt").write_bytes(b"precious")
    result = run("extract", moved / "a.memz")
    assert result.exit_code == 3
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert (moved / "sample.txt").read_bytes() == b"precious"
    assert run("extract", moved / "a.memz", "--force", "-q").exit_code == 0
    assert (moved / "sample.txt").read_bytes() == sample.read_bytes()


def test_compress_refuses_to_overwrite_before_any_work(sample, tiny_dir):
    archive = sample.with_suffix(".memz")
    archive.write_bytes(b"an older archive")
    result = run("compress", sample, "-m", tiny_dir, *FAST)
    assert result.exit_code == 3
    assert archive.read_bytes() == b"an older archive"


def test_extract_to_stdout_and_json(sample, tiny_dir):
    run("compress", sample, "-m", tiny_dir, *FAST)
    result = run("extract", sample.with_suffix(".memz"), "--stdout", "-q")
    assert result.exit_code == 0
    assert result.stdout_bytes == sample.read_bytes()


def test_compress_json_reports_the_numbers(sample, tiny_dir, tmp_path):
    result = run("compress", sample, "-m", tiny_dir, "-o", tmp_path / "x.memz", "--json", *FAST)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["output"].endswith("x.memz") and summary["tokens"] > 0 and summary["chunks"] >= 1


@pytest.mark.parametrize("args, code, phrase", [
    (["compress", "/no/such/file.txt"], 2, "not found"),
    (["compress", "{tmp}"], 2, "is a directory"),
    (["compress", "-", "-m", "x"], 2, "needs an output"),
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
    data = bytearray(sample.with_suffix(".memz").read_bytes())
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
    aliases = {row["alias"] for row in json.loads(result.stdout)}
    assert {"embedded", "llama-3.1-8b", "llama-3.2-1b", "llama-3.2-3b", "pythia-160m", "pythia-410m",
            "pythia-1.4b", "smollm2-135m"} <= aliases


def test_help_has_examples():
    result = run("compress", "--help")
    assert result.exit_code == 0 and "Examples" in result.stdout
    assert run("--version").stdout.startswith("memzip ")


def test_recipe_help_names_every_recipe():
    from memzip.cli import RECIPE_HELP
    from memzip.recipes import RECIPES
    named = set(re.findall(r"[a-z][a-z-]+", RECIPE_HELP))
    assert set(RECIPES) <= named, set(RECIPES) - named


def test_extract_finds_a_local_model_from_another_directory(tiny_dir, tmp_path, monkeypatch):
    """-m was relative at compression; extraction elsewhere uses the recorded absolute path."""
    source = tmp_path / "a.txt"
    source.write_bytes(b"relative model path")
    monkeypatch.chdir(tiny_dir.parent)
    assert run("compress", source, "-m", tiny_dir.name, *FAST).exit_code == 0
    monkeypatch.chdir(tmp_path)
    result = run("extract", tmp_path / "a.memz", "-o", tmp_path / "b.txt", "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b.txt").read_bytes() == b"relative model path"
