"""Compression and extraction of bytes in memory: the pipeline behind memzip.api.

    compress:  bytes --TextCodec--> tokens --chunks--> [fit [mem] vectors, store them rounded]
               --> decode each group, naming every true token (choices) --> residual stream
               --> Archive (header + payload)
    extract:   Archive --> check the model's fingerprints --> decode each group, taking the
               tokens the choices name --> group digests --> TextCodec.decode --> SHA-256

Two modes share every step but the fitting:

- **model-only** (`mem_vectors = 0`, the default): the model predicts each chunk of up to
  `chunk_tokens` tokens from its own earlier tokens; the residual stores where the text departs
  from the model's first choice. The paper's "cross-entropy without any conditioning" as a codec.
- **[mem] vectors** (`mem_vectors >= 1`): each chunk also gets trainable input vectors fitted so
  that the model decodes the chunk by itself (Kuratov et al. 2025); the residual stores what the
  vectors did not get right.

Extraction is exact by construction: the choices were computed by the very decoder extraction
runs, on the vectors exactly as stored, in the same batch shapes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from memzip import __version__, memory, quantize
from memzip.chunking import even_chunks, information_chunks, token_costs
from memzip.decoder import GroupDecode, decode_group
from memzip.distributed import SINGLE, World
from memzip.errors import ModelMismatchError, UsageError, VerificationError
from memzip.format import vectors as storage
from memzip.format.container import Archive
from memzip.format.header import DecodeSettings, Header, TextInfo, VectorLayout
from memzip.format.residual import decode_choices, encode_choices
from memzip.journal import GroupResult, Journal
from memzip.layout import Layout, model_only_layout
from memzip.models import LoadedModel
from memzip.optimize import ChunkFit, VectorSpace, fit_chunks, recipe_layout
from memzip.options import (CPU_BATCH_SIZE, DEFAULT_MARGIN, MODEL_ONLY_CHUNK_TOKENS, CompressOptions, ProgressCallback,
                            ProgressEvent)
from memzip.recipes import Recipe, get_recipe
from memzip.stats import baselines
from memzip.textcodec import EncodedText, TextCodec

@dataclass(frozen=True)
class Plan:
    """The options resolved against a model: everything compression decides once, up front."""

    options: CompressOptions
    chunk_tokens: int
    batch_size: int
    margin: float
    layout: Layout
    recipe: Recipe | None  # None in model-only mode
    nats_per_chunk: float | None  # set when chunks are cut by information

    @property
    def space(self) -> VectorSpace:
        o = self.options
        return VectorSpace(o.mem_vectors, o.vector_dtype, o.code_dims)


def model_only_chunk_tokens(loaded: LoadedModel, layout: Layout) -> int:
    """MODEL_ONLY_CHUNK_TOKENS, or less for a model with a shorter context window."""
    context = getattr(loaded.model.config, "max_position_embeddings", None) or MODEL_ONLY_CHUNK_TOKENS
    return max(1, min(MODEL_ONLY_CHUNK_TOKENS, context - len(layout.prefix)))


def plan(options: CompressOptions, loaded: LoadedModel) -> Plan:
    options.check()
    margin = DEFAULT_MARGIN[loaded.dtype_name] if options.margin is None else options.margin
    entry = loaded.entry
    if not options.mem_vectors:
        layout = model_only_layout(loaded.tokenizer)
        chunk_tokens = options.chunk_tokens or model_only_chunk_tokens(loaded, layout)
        return Plan(options, chunk_tokens, _batch_size(loaded, options, chunk_tokens + len(layout.prefix), False),
                    margin, layout, None, None)
    recipe = get_recipe(options.recipe, options.max_steps)
    by_information = entry is not None and (options.chunking == "information" or (
        options.chunking == "auto" and options.chunk_tokens is None))
    if options.chunking == "information" and entry is None:
        raise UsageError("--chunking information needs a model from the registry (its information "
                         "budget per vector is calibrated)", hint="Use --chunking length.")
    chunk_tokens = options.chunk_tokens or (entry.chunk_tokens if entry else 64)
    layout = recipe_layout(recipe, loaded.tokenizer)
    # information chunks are at most twice chunk_tokens long
    longest = (2 if by_information else 1) * chunk_tokens + options.mem_vectors + len(layout.prefix + layout.infix)
    return Plan(options, chunk_tokens, _batch_size(loaded, options, longest, True), margin, layout, recipe,
                entry.nats_per_chunk if by_information else None)


def _batch_size(loaded: LoadedModel, options: CompressOptions, positions: int, fitting: bool) -> int:
    """--batch-size; else on a GPU as many chunks as its free memory holds (memzip/memory.py);
    else the CPU defaults."""
    if options.batch_size:
        return options.batch_size
    free = memory.free_bytes(loaded.device)
    if free is None:
        return CPU_BATCH_SIZE[fitting]
    shape = memory.Shape.of(loaded.model.config, loaded.dtype.itemsize)
    return memory.auto_batch_size(shape, positions, fitting, free)


def _silent(event: ProgressEvent) -> None:
    pass


# --- compression --------------------------------------------------------------------------------


@dataclass
class ChunkReport:
    index: int
    tokens: int
    misses: int  # tokens greedy decoding would have got wrong (rank > 0 in the residual)
    steps: int = 0  # optimizer steps (vectors only)
    loss: float = 0.0  # teacher-forced nats/token with the vectors
    accuracy: float = 0.0


@dataclass
class CompressReport:
    chunks: list[ChunkReport] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class FittedGroup:
    """Chunks fitted together, their vectors as stored, and the decode of those vectors."""

    fits: list[ChunkFit]
    packed: np.ndarray  # stored vectors
    scales: np.ndarray | None  # per-vector scales of integer storage
    decoded: GroupDecode


def fit_and_decode(loaded: LoadedModel, chunks: list[list[int]], recipe: Recipe, space: VectorSpace, layout: Layout,
                   margin: float, seed: int = 0, on_step=None) -> FittedGroup:
    """The one path from chunks to stored vectors and their residual, used by compression, bench
    and capacity: fit (with the storage rounding in the loop), round to storage, then run the
    extraction decoder on the stored vectors, naming the true tokens."""
    fits = fit_chunks(loaded.model, chunks, recipe, space, layout, seed=seed, on_step=on_step)
    packed, scales = storage.pack(np.stack([f.vectors.numpy() for f in fits]), space.storage)
    vectors = quantize.stored_vectors(packed, scales, space.storage, space.code_dims, loaded.d_model)
    decoded = decode_group(loaded.model, [len(c) for c in chunks], layout, margin,
                           vectors=vectors, targets=chunks)
    return FittedGroup(fits, packed, scales, decoded)


def compress_bytes(data: bytes, loaded: LoadedModel, options: CompressOptions | None = None, *,
                   name: str | None = None, journal: Journal | None = None, resume: bool = False,
                   on_progress: ProgressCallback | None = None,
                   world: World = SINGLE) -> tuple[Archive | None, CompressReport]:
    """Compress `data` with `loaded`: the archive (not yet serialized) and a report. With a
    journal, finished groups are saved as they complete and reused by a later run of the same
    job (`resume=True` insists that the journal belongs to this job). Under torchrun each rank
    compresses its share of the groups (memzip/distributed.py) and only rank 0 gets the archive."""
    started = time.perf_counter()
    job = plan(options or CompressOptions(), loaded)
    on_progress = on_progress or _silent
    encoded = TextCodec(loaded.tokenizer).encode(data)
    tokens = encoded.tokens.tolist()
    spans = world.broadcast(_spans(loaded, job, tokens) if world.is_main else None)
    chunks = [tokens[a:b] for a, b in spans]
    firsts = list(range(0, len(chunks), job.batch_size))
    mine = [firsts[g] for g in world.mine(len(firsts))]
    work = sum(len(chunks[first:first + job.batch_size]) for first in mine)

    finished = journal.open(job_identity(data, loaded, job, world), require_match=resume) if journal else {}
    results: list[GroupResult] = []
    done = 0
    for first in mine:
        group = chunks[first:first + job.batch_size]
        result = finished.get(first)
        if result is None or len(result.misses) != len(group):
            on_progress(ProgressEvent("compress", done, work, len(tokens)))
            result = _compress_group(loaded, job, group, first, done, work, len(tokens), on_progress)
            if journal:
                journal.append(result)
        results.append(result)
        done += len(group)
        on_progress(ProgressEvent("compress", done, work, len(tokens)))

    gathered = world.gather(results)
    if not world.is_main:
        return None, CompressReport(seconds=time.perf_counter() - started)
    results = sorted((r for share in gathered for r in share), key=lambda r: r.first)
    report = CompressReport([ChunkReport(r.first + i, len(chunks[r.first + i]), r.misses[i],
                                         *((r.steps[i], r.losses[i], r.accuracies[i]) if r.steps else ()))
                             for r in results for i in range(len(r.misses))])
    encode_info = _encode_info(job, loaded, tokens, results, data)
    header = _header(data, name, loaded, job, len(tokens), len(chunks), encode_info)
    report.seconds = time.perf_counter() - started
    return Archive(header, _payload(job, loaded, chunks, results, encoded)), report


def _spans(loaded: LoadedModel, job: Plan, tokens: list[int]) -> list[tuple[int, int]]:
    """Where the chunks start and end."""
    if job.nats_per_chunk:
        # Chunk length then adapts to the text: at most twice the model's default length.
        costs = token_costs(loaded.model, tokens, list(job.layout.prefix))
        return information_chunks(costs, job.nats_per_chunk, max_tokens=2 * job.chunk_tokens)
    return even_chunks(len(tokens), job.chunk_tokens)


def _compress_group(loaded, job: Plan, group, first, done, total_chunks, total_tokens, on_progress) -> GroupResult:
    """Fit one group's vectors (if any) and name its tokens."""
    started = time.perf_counter()
    vocab = loaded.identity.vocab_size
    if job.recipe is None:
        decoded = decode_group(loaded.model, [len(c) for c in group], job.layout, job.margin, targets=group,
                               where=f"chunks {first}-{first + len(group) - 1}")
        return GroupResult(first, encode_choices(decoded.choices, vocab), group_digest(decoded.tokens),
                           decoded.misses, decoded.ce_bits, seconds=time.perf_counter() - started)

    def on_step(step, active, loss, accuracy):
        on_progress(ProgressEvent("compress", done, total_chunks, total_tokens, step, active, loss, accuracy))

    fitted = fit_and_decode(loaded, group, job.recipe, job.space, job.layout, job.margin,
                            seed=job.options.seed + first, on_step=on_step)
    decoded = fitted.decoded
    # What each chunk costs from the same start without its vectors: what the vectors saved.
    start = list(job.layout.prefix + job.layout.infix)
    alone = [sum(token_costs(loaded.model, chunk, start, window=len(chunk))) / np.log(2) for chunk in group]
    return GroupResult(first, encode_choices(decoded.choices, vocab), group_digest(decoded.tokens), decoded.misses,
                       decoded.ce_bits, alone, fitted.packed, fitted.scales, steps=[f.steps for f in fitted.fits],
                       losses=[f.loss for f in fitted.fits], accuracies=[f.accuracy for f in fitted.fits],
                       seconds=time.perf_counter() - started)


def job_identity(data: bytes, loaded: LoadedModel, job: Plan, world: World = SINGLE) -> dict:
    """What must match for a journal to be resumed: the same input, model, settings and machine
    (and, under torchrun, the same rank of the same number of processes)."""
    return {"input_sha256": hashlib.sha256(data).hexdigest(), "weights": loaded.identity.weights_sha256,
            "rank": world.rank, "world_size": world.size,
            "tokenizer": loaded.identity.tokenizer_sha256, "options": asdict(job.options),
            "chunk_tokens": job.chunk_tokens, "batch_size": job.batch_size, "margin": job.margin,
            "nats_per_chunk": job.nats_per_chunk, "dtype": str(loaded.dtype), "device": loaded.device.type,
            "torch": torch.__version__, "memzip": __version__}


def _header(data, name, loaded, job: Plan, tokens, chunks, encode_info) -> Header:
    """The one place a header is assembled."""
    import transformers

    options = job.options
    return Header(
        memzip_version=__version__,
        model=loaded.identity,
        decode=DecodeSettings(
            dtype=loaded.dtype_name,
            attn_implementation=str(getattr(loaded.model.config, "_attn_implementation", "eager")),
            batch_size=job.batch_size, margin=job.margin,
            prefix_tokens=list(job.layout.prefix), infix_tokens=list(job.layout.infix),
            device=loaded.device.type, torch_version=torch.__version__,
            transformers_version=transformers.__version__),
        vectors=VectorLayout(mem_vectors=options.mem_vectors, dtype=options.vector_dtype, code_dims=options.code_dims),
        text=TextInfo(bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), tokens=tokens, chunks=chunks,
                      name=name),
        encode=encode_info,
    )


def _encode_info(job: Plan, loaded, tokens, results: list[GroupResult], data: bytes) -> dict:
    """How the archive was made and what the text costs (informational; `memzip stats` shows it)."""
    info = {"chunk_tokens": job.chunk_tokens, "chunking": "information" if job.nats_per_chunk else "length",
            "nats_per_chunk": job.nats_per_chunk, "seed": job.options.seed,
            "recipe": job.recipe.to_header() if job.recipe else None,
            "baselines": baselines(data)}
    misses = [m for r in results for m in r.misses]
    info["misses"], info["chunks_exact"] = sum(misses), sum(m == 0 for m in misses)
    decoded_bits = round(sum(b for r in results for b in r.ce_bits), 1)
    if job.recipe is None:
        info["model_only_ce_bits"] = decoded_bits
    else:
        info["ce_with_vectors_bits"] = decoded_bits
        info["ce_without_vectors_bits"] = round(sum(b for r in results for b in r.ce_without_vectors_bits), 1)
        model_only = model_only_layout(loaded.tokenizer)
        info["model_only_ce_bits"] = round(sum(token_costs(loaded.model, tokens, list(model_only.prefix),
                                                           window=model_only_chunk_tokens(loaded, model_only))) / np.log(2), 1)
    return info


def _payload(job: Plan, loaded, chunks, results: list[GroupResult], encoded: EncodedText) -> dict:
    residuals = [r.residual for r in results]
    offsets = np.zeros(len(results) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in residuals])
    arrays = {
        "chunk_tokens": np.asarray([len(c) for c in chunks], dtype=np.int32),
        "group_digests": np.frombuffer(b"".join(r.digest for r in results), dtype=np.uint8).reshape(len(results), 8),
        "residual": np.frombuffer(b"".join(residuals), dtype=np.uint8),
        "residual_offsets": offsets,
        "escape_positions": encoded.escape_positions,
        "escape_bytes": encoded.escape_bytes,
        "patch_ops": encoded.patch_ops,
        "patch_text": encoded.patch_text,
    }
    space = job.space
    if space.mem_vectors:
        width = storage.stored_width(space.storage, space.code_dims or loaded.d_model)
        packed = [r.packed for r in results]
        arrays["vectors"] = (np.concatenate(packed) if packed else
                             np.zeros((0, space.mem_vectors, width), dtype=storage.numpy_dtype(space.storage)))
        if storage.has_scales(space.storage):
            scales = [r.scales for r in results]
            arrays["vector_scales"] = (np.concatenate(scales) if scales
                                       else np.zeros((0, space.mem_vectors), dtype=np.float32))
    return arrays


def group_digest(chunks: list[list[int]]) -> bytes:
    """First 8 bytes of SHA-256 over the group's token ids, int32 little-endian, chunk after chunk."""
    return hashlib.sha256(np.asarray([t for c in chunks for t in c], dtype="<i4").tobytes()).digest()[:8]


# --- extraction ---------------------------------------------------------------------------------


def extract_bytes(archive: Archive, loaded: LoadedModel, force: bool = False,
                  on_progress: ProgressCallback | None = None, world: World = SINGLE) -> bytes | None:
    """Decode an archive back to the original bytes, verifying every group and the whole. Under
    torchrun each rank decodes its share of the groups and rank 0 assembles (others get None)."""
    on_progress = on_progress or _silent
    header = archive.header
    problems = model_differences(header, loaded)
    if problems and not force:
        raise ModelMismatchError("the model differs from the one this archive was made with: " + "; ".join(problems))
    decode = header.decode
    layout = Layout(tuple(decode.prefix_tokens), tuple(decode.infix_tokens))
    lengths = archive.arrays["chunk_tokens"].tolist()
    offsets = archive.arrays["residual_offsets"].tolist()
    residual = archive.arrays["residual"].tobytes()
    vectors = None
    if header.vectors.mem_vectors:
        v = header.vectors
        vectors = quantize.stored_vectors(archive.arrays["vectors"], archive.arrays.get("vector_scales"), v.dtype,
                                          v.code_dims, header.model.d_model)
    mine = world.mine(header.groups)
    work = sum(len(lengths[g * decode.batch_size:(g + 1) * decode.batch_size]) for g in mine)
    on_progress(ProgressEvent("extract", 0, work, header.text.tokens))
    decoded_groups: dict[int, list[list[int]]] = {}
    done = 0
    for group in mine:
        first = group * decode.batch_size
        last = min(first + decode.batch_size, len(lengths))
        where = f"chunks {first}-{last - 1} of {len(lengths)}"
        choices = decode_choices(residual[offsets[group]:offsets[group + 1]], sum(lengths[first:last]),
                                 header.model.vocab_size, where=f"residual of {where}")
        decoded = decode_group(loaded.model, lengths[first:last], layout, decode.margin,
                               vectors=None if vectors is None else vectors[first:last], choices=choices, where=where)
        if group_digest(decoded.tokens) != archive.arrays["group_digests"][group].tobytes():
            raise VerificationError(f"{where} decoded differently than when they were compressed",
                                    hint=_mismatch_hint(header, loaded, problems))
        decoded_groups[group] = decoded.tokens
        done += last - first
        on_progress(ProgressEvent("extract", done, work, header.text.tokens))

    gathered = world.gather(decoded_groups)
    if not world.is_main:
        return None
    by_group = {g: chunks for share in gathered for g, chunks in share.items()}
    tokens = [t for g in range(header.groups) for chunk in by_group[g] for t in chunk]
    encoded = EncodedText(np.asarray(tokens, dtype=np.int32), *(archive.array(n) for n in (
        "escape_positions", "escape_bytes", "patch_ops", "patch_text")))
    data = TextCodec(loaded.tokenizer).decode(encoded)
    if len(data) != header.text.bytes or hashlib.sha256(data).hexdigest() != header.text.sha256:
        raise VerificationError("the extracted text does not match the archive's SHA-256",
                                hint=_mismatch_hint(header, loaded, problems))
    return data


def model_differences(header: Header, loaded: LoadedModel) -> list[str]:
    """What differs between the archive's recorded model and decode settings and the loaded model."""
    recorded, current = header.model, loaded.identity
    problems = []
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


def _mismatch_hint(header: Header, loaded: LoadedModel, problems: list[str]) -> str:
    if problems:
        return "Forced extraction with a different model failed: " + "; ".join(problems)
    return (f"The archive was made on {header.decode.device} with torch {header.decode.torch_version}; "
            f"this machine ({loaded.device.type}, torch {torch.__version__}) computes logits that differ by "
            f"more than its margin ({header.decode.margin:g}). Extract with --device {header.decode.device}, "
            f"or compress with a larger --margin.")
