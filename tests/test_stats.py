"""The report of an archive adds up, and never passes tokens per vector off as a byte ratio."""

import dataclasses

from memzip.pipeline import compress_bytes
from memzip.format.container import encode_archive
from memzip.options import CompressOptions
from memzip.format.stats import archive_stats, baselines

TEXT = b"The quick brown fox jumps over the lazy dog. " * 8


def test_bytes_add_up_and_ratios_are_bytes(tiny):
    archive, _ = compress_bytes(TEXT, tiny, CompressOptions(streams=2, store_fallback=False))
    raw = encode_archive(archive)
    report = archive_stats(archive, len(raw))
    sizes = report["bytes"]
    assert sizes["header"] + sizes["payload"] + sizes["framing"] == len(raw) == report["memz_bytes"]
    assert report["byte_ratio"] == round(len(TEXT) / len(raw), 3)
    assert report["bits_per_byte"] == round(8 * len(raw) / len(TEXT), 3)
    assert report["xz_bytes"] == baselines(TEXT)["xz_bytes"]
    assert report["mode"] == "model-only" and report["tokens_per_vector"] is None
    assert report["residual_bits_per_byte"] == round(8 * sizes["residual_raw"] / len(TEXT), 3)
    assert report["model_only_ideal_bits_per_byte"] > 0 and report["engine"] == "exact-llama-1"
    assert report["model_ce_bits_per_byte"] == round(archive.header.encode["model_ce_bits"] / len(TEXT), 3)


def test_vectors_are_priced(tiny):
    options = CompressOptions(mem_vectors=2, chunk_tokens=16, max_steps=3, vector_dtype="int4", store_fallback=False)
    archive, _ = compress_bytes(TEXT, tiny, options)
    report = archive_stats(archive, len(encode_archive(archive)))
    assert report["vectors"] == 2 * report["chunks"]
    assert report["tokens_per_vector"] == round(report["tokens"] / report["vectors"], 2)
    assert report["bytes_per_vector"] == 64 * 4 // 8 + 4
    assert report["stored_bits_per_vector"] == 8 * report["bytes_per_vector"]
    assert report["bytes"]["vectors_raw"] == report["vectors"] * report["bytes_per_vector"]
    encode = archive.header.encode
    assert report["saved_bits_per_vector"] == round(
        (encode["ce_without_vectors_bits"] - encode["ce_with_vectors_bits"]) / report["vectors"], 1)


def test_an_empty_file_has_no_ratios(tiny):
    archive, _ = compress_bytes(b"", tiny)
    report = archive_stats(dataclasses.replace(archive), len(encode_archive(archive)))
    assert report["bits_per_byte"] is None and report["chunks"] == 0 and report["mode"] == "stored"
    model, _ = compress_bytes(b"", tiny, CompressOptions(store_fallback=False))
    report = archive_stats(model, len(encode_archive(model)))
    assert report["bits_per_byte"] is None and report["chunks"] == 0 and report["corrections"] == 0


def test_a_stored_archive_says_so(tiny):
    data = bytes(range(256)) * 4
    archive, _ = compress_bytes(data, tiny)
    report = archive_stats(archive, len(encode_archive(archive)))
    assert report["mode"] == "stored" and report["model"] is None and report["engine"] is None
    assert report["stored_because"] == "mostly not UTF-8 text" and report["tokens"] == 0
