"""Compression and extraction of bytes in memory: the pipeline behind memzip.api.

    compress:  bytes --TextCodec--> tokens --chunks or streams--> units of work, each compressed
               by the engine and journaled --> payload --> Archive (header + payload); or, where
               the model would not beat it, the bytes stored as they are
    extract:   Archive --> check the model's fingerprints --> decode the units --> TextCodec.decode
               --> SHA-256

The engine (`exact-llama-1` or `float-ranks`, memzip/engines.py) is met only through its
interface; this module owns what they share: the loop over units with its journal, torchrun and
progress, the header, the stored fallback, and the final verification.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict
from typing import Callable

import numpy as np
import torch

from memzip import __version__
from memzip.distributed import SINGLE, World
from memzip.engines import Engine, UnitResult, engine_named
from memzip.errors import ModelMismatchError, VerificationError
from memzip.format import vectors as storage
from memzip.format.container import Archive, encode_archive
from memzip.format.header import DecodeSettings, Header, TextInfo, VectorLayout
from memzip.journal import Journal
from memzip.models import LoadedModel
from memzip.options import CompressOptions, ProgressCallback, ProgressEvent, preparation_reporter
from memzip.vectors.chunking import token_costs
from memzip.layout import model_only_layout
from memzip.planning import (ChunkReport, CompressReport, Plan, chunk_spans, model_only_chunk_tokens, plan, units,
                             with_stream_window)
from memzip.format.stats import baselines
from memzip.textcodec import EncodedText, TextCodec, crlf_as_lf, lf_as_crlf

__all__ = ["compress_bytes", "extract_bytes", "stored_archive", "plan", "job_identity", "model_differences"]

# Text whose bytes are mostly not UTF-8 is not worth a model's time: stored at once.
ESCAPED_SHARE_TO_STORE = 0.2
# Larger inputs are first tried on a sample of this many tokens: where the model codes the sample
# in more bits than zstd -19 needs for it (zstd only gains on the whole file, the model does not),
# the file is stored at once rather than after hours of work.
SAMPLE_TOKENS = 512


def _silent(event: ProgressEvent) -> None:
    pass


class Progress:
    """Counts tokens done for the progress callback; the engines call `tokens` and `step`."""

    def __init__(self, stage: str, total: int, file_tokens: int, on_progress: ProgressCallback):
        self.stage, self.total, self.file_tokens, self.done = stage, total, file_tokens, 0
        self._on_progress = on_progress
        on_progress(ProgressEvent(stage, 0, total, file_tokens))

    def tokens(self, count: int) -> None:
        self.done += count
        self._on_progress(ProgressEvent(self.stage, self.done, self.total, self.file_tokens))

    def step(self, step: int, active: int, loss: float, accuracy: float) -> None:
        self._on_progress(ProgressEvent(self.stage, self.done, self.total, self.file_tokens, step, active, loss,
                                        accuracy))


# --- compression --------------------------------------------------------------------------------


def compress_bytes(data: bytes, loaded: LoadedModel, options: CompressOptions | None = None, *,
                   name: str | None = None, permissions: int | None = None, mtime_ns: int | None = None,
                   journal: Journal | None = None, resume: bool = False, on_progress: ProgressCallback | None = None,
                   world: World = SINGLE) -> tuple[Archive | None, CompressReport]:
    """Compress `data` with `loaded`: the archive (not yet serialized) and a report. With a
    journal, finished units are saved as they complete and reused by a later run of the same job
    (`resume=True` insists that the journal belongs to this job). Under torchrun each rank
    compresses its share of the units (memzip/distributed.py) and only rank 0 gets the archive.
    The archive is the model's, or (unless options.store_fallback is False) the stored bytes
    where those are smaller."""
    report = CompressReport()
    job = plan(options or CompressOptions(), loaded)
    store_if_smaller = job.options.store_fallback
    on_progress = on_progress or _silent
    digest = hashlib.sha256(data).hexdigest()  # whole with --check sha256, else its first 8 bytes
    text = TextInfo(bytes=len(data), sha256=digest if job.options.checksum == "sha256" else digest[:16], tokens=0,
                    chunks=0, name=name, permissions=permissions, mtime_ns=mtime_ns)
    coded = crlf_as_lf(data) if job.options.line_endings else None  # the text the model codes
    text.line_endings = None if coded is None else "crlf"
    encoded = TextCodec(loaded.tokenizer).encode(data if coded is None else coded)
    if store_if_smaller and (encoded.escape_bytes.size > ESCAPED_SHARE_TO_STORE * len(data) or not data):
        reason = "empty" if not data else "mostly not UTF-8 text"
        return (stored_archive(data, text, {"stored_because": reason}) if world.is_main else None), _finished(report)
    tokens = encoded.tokens.tolist()
    engine = engine_named(job.engine)
    engine.prepare(loaded, on_prepare=preparation_reporter(on_progress))  # before the progress bar
    base = baselines(data) if world.is_main else {}
    if store_if_smaller and len(tokens) > 4 * SAMPLE_TOKENS and world.is_main:
        reason = engine.not_worth_it(loaded, job, tokens[:SAMPLE_TOKENS], len(data), base["zstd_bytes"])
        if reason:
            return stored_archive(data, text, {"stored_because": reason}, base), _finished(report)
    spans = world.broadcast(chunk_spans(loaded, job, tokens) if world.is_main else None)
    job = with_stream_window(job, spans)
    chunks = [tokens[a:b] for a, b in spans]
    firsts = units(job, chunks)
    mine = [firsts[g] for g in world.mine(len(firsts))]
    step = job.chunks_per_unit

    finished = journal.open(job_identity(data, loaded, job, world), require_match=resume) if journal else {}
    if journal:
        journal.total_units = len(mine)
        journal.saved_tokens = sum(len(c) for f in mine if f in finished for c in chunks[f:f + step])
    progress = Progress("compress", sum(len(c) for f in mine for c in chunks[f:f + step]), len(tokens), on_progress)
    results: list[UnitResult] = []
    for first in mine:
        unit = chunks[first:first + step]
        result = finished.get(first)
        if result is None or len(result.misses) != len(unit):
            result = engine.compress_unit(loaded, job, first, unit, progress)
            if journal:
                journal.append(result, sum(len(c) for c in unit))
        else:
            progress.tokens(sum(len(c) for c in unit))
        results.append(result)

    gathered = world.gather(results)
    if not world.is_main:
        return None, _finished(report)
    results = sorted((r for share in gathered for r in share), key=lambda r: r.first)
    report.chunks = [ChunkReport(r.first + i, len(chunks[r.first + i]), r.misses[i],
                                 *((r.steps[i], r.losses[i], r.accuracies[i]) if r.steps else ()))
                     for r in results for i in range(len(r.misses))]
    text.tokens, text.chunks = len(tokens), len(chunks)
    header = Header(memzip_version=__version__, model=loaded.identity,
                    decode=_decode_settings(job, loaded, engine.decode_settings(job, loaded)),
                    vectors=VectorLayout(mem_vectors=job.options.mem_vectors, dtype=job.options.vector_dtype,
                                         code_dims=job.options.code_dims),
                    text=text, encode=_encode_info(job, engine, loaded, results, base, tokens))
    archive = Archive(header, {**engine.payload(job, loaded, chunks, results), **_vector_arrays(job, loaded, results),
                               **_text_arrays(encoded)})
    return (_smaller(archive, data, text) if store_if_smaller else archive), _finished(report)


def _finished(report: CompressReport) -> CompressReport:
    report.seconds = time.perf_counter() - report.started
    return report


def _decode_settings(job: Plan, loaded: LoadedModel, settings: DecodeSettings) -> DecodeSettings:
    """The engine's settings plus what every archive records: layout, dtype, where it was made."""
    from importlib.metadata import version

    settings.dtype = loaded.dtype_name
    settings.attn_implementation = loaded.details["attn_implementation"]
    settings.prefix_tokens, settings.infix_tokens = list(job.layout.prefix), list(job.layout.infix)
    settings.device, settings.torch_version = loaded.device.type, torch.__version__
    settings.transformers_version = version("transformers")
    return settings


def _encode_info(job: Plan, engine: Engine, loaded: LoadedModel, results: list[UnitResult], base: dict,
                 tokens: list[int]) -> dict:
    """How the archive was made and what the text costs (informational; `memzip stats` shows it)."""
    info = {"chunk_tokens": job.chunk_tokens, "chunking": "information" if job.nats_per_chunk else "length",
            "nats_per_chunk": job.nats_per_chunk, "seed": job.options.seed,
            "recipe": job.recipe.to_header() if job.recipe else None,
            "baselines": base, **engine.statistics(results)}
    misses = [m for r in results for m in r.misses]
    info["misses"], info["chunks_exact"] = sum(misses), sum(m == 0 for m in misses)
    if job.recipe is None:
        info["model_only_ce_bits"] = round(sum(b for r in results for b in r.model_bits), 1)
    else:
        info["ce_with_vectors_bits"] = round(sum(b for r in results for b in r.coded_bits), 1)
        info["ce_without_vectors_bits"] = round(sum(b for r in results for b in r.ce_without_vectors_bits), 1)
        info["model_only_ce_bits"] = model_only_ce_bits(loaded, tokens)
    return info


def model_only_ce_bits(loaded: LoadedModel, tokens: list[int]) -> float:
    """The float model's cross-entropy on the text alone in chunks of its model-only length: the
    ideal beside which [mem] vectors are priced."""
    layout = model_only_layout(loaded.tokenizer)
    window = model_only_chunk_tokens(loaded, layout)
    return round(sum(token_costs(loaded.model, tokens, list(layout.prefix), window=window)) / np.log(2), 1)


def _vector_arrays(job: Plan, loaded: LoadedModel, results: list[UnitResult]) -> dict:
    """The stored [mem] vectors of every chunk (and their scales), when there are any."""
    space = job.space
    if not space.mem_vectors:
        return {}
    width = storage.stored_width(space.storage, space.code_dims or loaded.d_model)
    packed = [r.packed for r in results]
    arrays = {"vectors": np.concatenate(packed) if packed else
              np.zeros((0, space.mem_vectors, width), dtype=storage.numpy_dtype(space.storage))}
    if storage.has_scales(space.storage):
        scales = [r.scales for r in results]
        arrays["vector_scales"] = np.concatenate(scales) if scales else np.zeros((0, space.mem_vectors),
                                                                                 dtype=np.float32)
    return arrays


def _text_arrays(encoded: EncodedText) -> dict:
    return {"escape_positions": encoded.escape_positions, "escape_bytes": encoded.escape_bytes,
            "patch_ops": encoded.patch_ops, "patch_text": encoded.patch_text}


def stored_archive(data: bytes, text: TextInfo, encode: dict | None = None, base: dict | None = None) -> Archive:
    """The bytes as they are, in the payload's zstd frame: no model needed to extract."""
    text = TextInfo(**{**asdict(text), "tokens": 0, "chunks": 0, "line_endings": None})
    header = Header(memzip_version=__version__, model=None, decode=None, vectors=VectorLayout(), text=text,
                    encode={"baselines": base or baselines(data), **(encode or {})}, mode="stored")
    return Archive(header, {"stored": np.frombuffer(data, dtype=np.uint8)})


def _smaller(archive: Archive, data: bytes, text: TextInfo) -> Archive:
    """The model's archive, or the stored one if that is smaller (memzip never expands text
    beyond what zstd -19 would make of it, plus a header)."""
    stored = stored_archive(data, text, {"stored_because": "smaller than the model's archive"},
                            archive.header.encode["baselines"])
    if len(encode_archive(stored)) < len(encode_archive(archive)):
        stored.header.encode["model_archive_bytes"] = len(encode_archive(archive))
        return stored
    return archive


def job_identity(data: bytes, loaded: LoadedModel, job: Plan, world: World = SINGLE) -> dict:
    """What must match for a journal to be resumed: the same input, model, settings and machine
    (and, under torchrun, the same rank of the same number of processes)."""
    return {"input_sha256": hashlib.sha256(data).hexdigest(), "weights": loaded.identity.weights_sha256,
            "rank": world.rank, "world_size": world.size,
            "tokenizer": loaded.identity.tokenizer_sha256, "options": asdict(job.options), "engine": job.engine,
            "window": job.window, "chunk_tokens": job.chunk_tokens, "batch_size": job.batch_size,
            "margin": job.margin, "nats_per_chunk": job.nats_per_chunk, "dtype": str(loaded.dtype),
            "device": loaded.device.type, "torch": torch.__version__, "memzip": __version__}


# --- extraction ---------------------------------------------------------------------------------


def extract_bytes(archive: Archive, loaded: LoadedModel | None, force: bool = False,
                  on_progress: ProgressCallback | None = None, world: World = SINGLE,
                  batch_size: int | None = None) -> bytes | None:
    """Decode an archive back to the original bytes, verifying them. Under torchrun each rank
    decodes its share of the units and rank 0 assembles (the others get None). Stored archives
    need no model (`loaded` may be None)."""
    header = archive.header
    if header.mode == "stored":
        return _verified(archive.arrays["stored"].tobytes(), header, lambda: "The archive is damaged.")
    on_progress = on_progress or _silent
    problems = model_differences(header, loaded)
    if problems and not force:
        raise ModelMismatchError("the model differs from the one this archive was made with: " + "; ".join(problems))
    engine = engine_named(header.decode.engine)

    def hint() -> str:
        if problems:
            return "Forced extraction with a different model failed: " + "; ".join(problems)
        return engine.failure_hint(header, loaded)

    lengths = archive.arrays["chunk_tokens"].tolist()
    mine = world.mine(header.units)
    engine.prepare(loaded, header, on_prepare=preparation_reporter(on_progress))
    step = header.chunks_per_unit
    progress = Progress("extract", sum(sum(lengths[g * step:(g + 1) * step]) for g in mine), header.text.tokens,
                        on_progress)
    decoded = engine.extract_units(archive, loaded, mine, progress, batch_size, hint)
    gathered = world.gather(decoded)
    if not world.is_main:
        return None
    by_unit = {g: chunks for share in gathered for g, chunks in share.items()}
    tokens = [t for g in range(header.units) for chunk in by_unit[g] for t in chunk]
    encoded = EncodedText(np.asarray(tokens, dtype=np.int32), *(archive.array(n) for n in (
        "escape_positions", "escape_bytes", "patch_ops", "patch_text")))
    data = TextCodec(loaded.tokenizer).decode(encoded)
    return _verified(lf_as_crlf(data) if header.text.line_endings == "crlf" else data, header, hint)


def _verified(data: bytes, header: Header, hint: Callable[[], str]) -> bytes:
    recorded = header.text.sha256  # the whole SHA-256, or its first 8 bytes (format 5's default)
    if len(data) != header.text.bytes or hashlib.sha256(data).hexdigest()[:len(recorded)] != recorded:
        raise VerificationError("the extracted text does not match the archive's SHA-256", hint=hint())
    return data


def model_differences(header: Header, loaded: LoadedModel) -> list[str]:
    """What differs between the archive's recorded model and decode settings and the loaded model."""
    recorded, current = header.model, loaded.identity
    problems = []
    if recorded.fingerprint64 and not recorded.weights_sha256:  # format 5: one 64-bit fingerprint of both
        from memzip.format.compact import model_fingerprint

        fingerprint = model_fingerprint(current).hex()
        if fingerprint != recorded.fingerprint64:
            problems.append(f"model fingerprint {fingerprint} != recorded {recorded.fingerprint64}")
        if loaded.dtype_name != header.decode.dtype:
            problems.append(f"dtype {loaded.dtype_name} != recorded {header.decode.dtype}")
        return problems
    if recorded.weights_sha256 != current.weights_sha256:
        problems.append(f"weights fingerprint {current.weights_sha256[:12]} != recorded {recorded.weights_sha256[:12]}")
    if recorded.tokenizer_sha256 != current.tokenizer_sha256:
        problems.append(f"tokenizer fingerprint {current.tokenizer_sha256[:12]} != recorded "
                        f"{recorded.tokenizer_sha256[:12]}")
    if recorded.d_model != current.d_model:
        problems.append(f"d_model {current.d_model} != recorded {recorded.d_model}")
    if recorded.vocab_size != current.vocab_size:
        problems.append(f"vocabulary {current.vocab_size} != recorded {recorded.vocab_size}")
    if loaded.dtype_name != header.decode.dtype:
        problems.append(f"dtype {loaded.dtype_name} != recorded {header.decode.dtype}")
    return problems
