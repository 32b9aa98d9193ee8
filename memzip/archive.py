"""Compress a file into a `.memz` archive and extract it back: the library API behind the CLI.

    compress:  bytes --TextCodec--> tokens --chunks--> fit [mem] vectors (optimize.py)
               --> round to storage dtype --> greedy decode with the true tokens (decoder.py)
               --> corrections --> Archive (container.py)
    extract:   Archive --> check model fingerprints --> greedy decode with corrections
               --> chunk digests --> TextCodec.decode --> SHA-256 --> bytes

Extraction is exact by construction: the corrections were computed by the very decode that
extraction runs, on the vectors exactly as stored.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from memzip import __version__, quantize
from memzip.chunking import even_chunks, information_chunks, token_costs
from memzip.container import VECTOR_DTYPES, Archive, DecodeSettings, Header, TextInfo, VectorLayout
from memzip.decoder import ChunkDecode, greedy_decode
from memzip.errors import ModelMismatchError, UsageError, VerificationError
from memzip.journal import GroupResult, Journal
from memzip.models import LoadedModel
from memzip.optimize import ChunkFit, Recipe, fit_chunks, get_recipe, sink_tokens
from memzip.textcodec import EncodedText, TextCodec



@dataclass
class CompressSettings:
    recipe: str = "default"
    max_steps: int | None = None  # overrides the recipe's step budget per chunk
    seed: int = 0
    chunk_tokens: int | None = None  # None: the model's registry default
    mem_vectors: int = 1
    # "information": cut chunks by the text's cross-entropy under the model (needs the model's
    # budget); "length": equal token counts; "auto": information unless chunk_tokens is given.
    chunking: str = "auto"
    vector_dtype: str = "float16"
    # Store each vector as a code of this many numbers in a fixed random subspace (quantize.py);
    # None stores whole vectors.
    code_dims: int | None = None
    batch_size: int = 8  # chunks optimized and decoded together
    # Force tokens whose greedy lead is below this (logits), so other hardware cannot flip them.
    force_margin: float = 0.5

    def check(self) -> None:
        if self.chunk_tokens is not None and self.chunk_tokens < 1:
            raise UsageError("--chunk-tokens must be at least 1")
        if not 1 <= self.mem_vectors <= 1024:
            raise UsageError("--mem-vectors must be between 1 and 1024")
        if self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if self.chunking not in ("auto", "information", "length"):
            raise UsageError(f"unknown chunking {self.chunking!r}", hint="Use auto, information or length.")
        if self.code_dims is not None and self.code_dims < 1:
            raise UsageError("--code-dims must be at least 1")
        if self.vector_dtype not in VECTOR_DTYPES:
            raise UsageError(f"unknown vector dtype {self.vector_dtype!r}",
                             hint="Use " + ", ".join(VECTOR_DTYPES) + ".")


@dataclass
class ChunkReport:
    index: int
    tokens: int
    steps: int
    corrections: int
    loss: float
    accuracy: float
    seconds: float


@dataclass
class CompressReport:
    chunks: list[ChunkReport] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Progress:
    """Callbacks a front end can implement; every one is optional."""

    on_start: Callable[[int, int], None] | None = None  # chunks, tokens
    on_step: Callable[[int, int, float, float], None] | None = None  # step, active, loss, accuracy
    on_chunk: Callable[[ChunkReport], None] | None = None  # a chunk was compressed
    on_decoded: Callable[[int], None] | None = None  # this many more chunks were extracted


def compress_bytes(data: bytes, loaded: LoadedModel, settings: CompressSettings,
                   progress: Progress | None = None, chunk_tokens_default: int = 64,
                   journal: Journal | None = None, nats_per_chunk: float | None = None,
                   ) -> tuple[Archive, CompressReport]:
    """Compress `data` with `loaded`. Returns the archive (not yet serialized) and a report.
    With a journal, finished groups are saved as they complete and reused when resuming."""
    settings.check()
    progress = progress or Progress()
    started = time.perf_counter()
    recipe = get_recipe(settings.recipe, settings.max_steps)
    codec = TextCodec(loaded.tokenizer)
    encoded = codec.encode(data)
    tokens = encoded.tokens.tolist()
    chunk_tokens = settings.chunk_tokens or chunk_tokens_default
    prefix = sink_tokens(loaded.tokenizer) if recipe.sink_prefix else []
    by_information = bool(nats_per_chunk) and (
        settings.chunking == "information" or (settings.chunking == "auto" and settings.chunk_tokens is None))
    if by_information:
        # Chunk length then adapts to the text: at most twice the model's default length.
        costs = token_costs(loaded.model, tokens, prefix)
        spans = information_chunks(costs, nats_per_chunk, max_tokens=2 * chunk_tokens)
    else:
        spans = even_chunks(len(tokens), chunk_tokens)
    chunks = [tokens[a:b] for a, b in spans]
    if progress.on_start:
        progress.on_start(len(chunks), len(tokens))

    report = CompressReport()
    finished = journal.load() if journal else {}
    if journal:
        journal.start(keep=bool(finished))
    results: list[GroupResult] = []
    for first in range(0, len(chunks), settings.batch_size):
        group = chunks[first:first + settings.batch_size]
        result = finished.get(first)
        if result is None or len(result.steps) != len(group):
            result = _compress_group(loaded, group, first, recipe, settings, progress, prefix)
            if journal:
                journal.append(result)
        results.append(result)
        for offset in range(len(group)):
            chunk = ChunkReport(first + offset, len(group[offset]), result.steps[offset],
                                len(result.corrections[offset]), result.losses[offset],
                                result.accuracies[offset], result.seconds)
            report.chunks.append(chunk)
            if progress.on_chunk:
                progress.on_chunk(chunk)

    header = Header(
        memzip_version=__version__,
        model=loaded.identity,
        decode=DecodeSettings(
            dtype=str(loaded.dtype).removeprefix("torch."),
            attn_implementation=str(getattr(loaded.model.config, "_attn_implementation", "eager")),
            batch_size=settings.batch_size,
            device=loaded.device.type,
            torch_version=torch.__version__,
            transformers_version=_transformers_version(),
            prefix_tokens=prefix,
        ),
        vectors=VectorLayout(mem_vectors=settings.mem_vectors, dtype=settings.vector_dtype,
                             code_dims=settings.code_dims),
        text=TextInfo(bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                      tokens=len(tokens), chunks=len(chunks)),
        encode={**recipe.to_header(), "seed": settings.seed, "chunk_tokens": chunk_tokens,
                "chunking": "information" if by_information else "length",
                "nats_per_chunk": nats_per_chunk, "force_margin": settings.force_margin},
    )
    arrays = _payload_arrays(settings, settings.code_dims or loaded.d_model, chunks, results, encoded)
    report.seconds = time.perf_counter() - started
    return Archive(header, arrays), report


@dataclass
class FittedGroup:
    """Chunks fitted together, their vectors as stored, and the greedy decode of those vectors."""

    fits: list[ChunkFit]
    packed: np.ndarray  # stored vectors
    scales: np.ndarray | None  # per-vector scales of integer storage
    decoded: list[ChunkDecode]  # corrections: what extraction must force (none = exact alone)


def fit_and_decode(loaded: LoadedModel, chunks: list[list[int]], recipe: Recipe, *, mem_vectors: int = 1,
                   seed: int = 0, storage: str = "float32", code_dims: int | None = None,
                   force_margin: float = 0.0, prefix: list[int] = (), on_step=None) -> FittedGroup:
    """The one path from chunks to verified vectors, used by compression, bench and capacity:
    fit (with the storage rounding in the loop), round to storage, then run the extraction
    decoder on the stored vectors with the true tokens beside it."""
    code_basis = quantize.basis(code_dims, loaded.d_model) if code_dims else None
    fits = fit_chunks(loaded.model, chunks, recipe, mem_vectors, seed=seed, on_step=on_step,
                      prefix=prefix, storage=storage, code_basis=code_basis)
    packed, scales = quantize.pack(torch.stack([f.vectors for f in fits]), storage)
    stored = quantize.expand(quantize.unpack(packed, scales, storage, code_dims or loaded.d_model), code_basis)
    decoded = greedy_decode(loaded.model, _to_model(stored, loaded), [len(c) for c in chunks],
                            targets=chunks, force_margin=force_margin, prefix=prefix)
    return FittedGroup(fits, packed, scales, decoded)


def _compress_group(loaded, group, first, recipe, settings, progress, prefix) -> GroupResult:
    """Fit one group's vectors and find the corrections the decoder needs."""
    started = time.perf_counter()
    done = fit_and_decode(loaded, group, recipe, mem_vectors=settings.mem_vectors, seed=settings.seed + first,
                          storage=settings.vector_dtype, code_dims=settings.code_dims,
                          force_margin=settings.force_margin, prefix=prefix, on_step=progress.on_step)
    fits = done.fits
    return GroupResult(first=first, packed=done.packed, scales=done.scales,
                       corrections=[d.corrections for d in done.decoded], steps=[f.steps for f in fits],
                       losses=[f.loss for f in fits], accuracies=[f.accuracy for f in fits],
                       seconds=(time.perf_counter() - started) / len(group))


def job_identity(data: bytes, loaded: LoadedModel, settings: CompressSettings, chunk_tokens: int,
                 nats_per_chunk: float | None = None) -> dict:
    """What must match for a journal to be resumed: same input, model, settings and device."""
    from dataclasses import asdict

    return {"input_sha256": hashlib.sha256(data).hexdigest(), "weights": loaded.identity.weights_sha256,
            "tokenizer": loaded.identity.tokenizer_sha256, "settings": asdict(settings),
            "chunk_tokens": chunk_tokens, "nats_per_chunk": nats_per_chunk, "dtype": str(loaded.dtype), "device": loaded.device.type,
            "torch": torch.__version__, "memzip": __version__}


def extract_archive(archive: Archive, loaded: LoadedModel, force: bool = False,
                    progress: Progress | None = None) -> bytes:
    """Decode an archive back to the original bytes, verifying every chunk and the whole."""
    progress = progress or Progress()
    header, arrays = archive.header, archive.arrays
    problems = model_differences(header, loaded)
    if problems and not force:
        raise ModelMismatchError("the model differs from the one this archive was made with: " + "; ".join(problems))

    lengths = arrays["chunk_tokens"].tolist()
    offsets = arrays["correction_offsets"].tolist()
    positions, forced = arrays["correction_positions"].tolist(), arrays["correction_tokens"].tolist()
    corrections = [dict(zip(positions[offsets[i]:offsets[i + 1]], forced[offsets[i]:offsets[i + 1]]))
                   for i in range(len(lengths))]
    layout, d_model = header.vectors, header.model.d_model
    code_basis = quantize.basis(layout.code_dims, d_model) if layout.code_dims else None
    vectors = quantize.expand(quantize.unpack(arrays["vectors"], arrays.get("vector_scales"), layout.dtype,
                                              layout.stored_dims(d_model)), code_basis)
    if progress.on_start:
        progress.on_start(len(lengths), sum(lengths))

    tokens: list[int] = []
    batch = header.decode.batch_size
    for first in range(0, len(lengths), batch):
        last = min(first + batch, len(lengths))
        decoded = greedy_decode(loaded.model, _to_model(vectors[first:last], loaded), lengths[first:last],
                                corrections=corrections[first:last], prefix=header.decode.prefix_tokens)
        for index, result in zip(range(first, last), decoded):
            if chunk_digest(result.tokens) != arrays["chunk_digests"][index].tobytes():
                raise VerificationError(
                    f"chunk {index} of {len(lengths)} decoded differently than when it was compressed",
                    hint=_mismatch_hint(header, loaded, problems))
            tokens.extend(result.tokens)
        if progress.on_decoded:
            progress.on_decoded(last - first)

    encoded = EncodedText(np.asarray(tokens, dtype=np.int32), arrays["escape_positions"],
                          arrays["escape_bytes"], arrays["patch_ops"], arrays["patch_text"])
    data = TextCodec(loaded.tokenizer).decode(encoded)
    if len(data) != header.text.bytes or hashlib.sha256(data).hexdigest() != header.text.sha256:
        raise VerificationError("the extracted text does not match the archive's SHA-256",
                                hint=_mismatch_hint(header, loaded, problems))
    return data


def model_differences(header: Header, loaded: LoadedModel) -> list[str]:
    """What differs between the archive's recorded model/decode settings and the loaded model."""
    recorded, current = header.model, loaded.identity
    problems = []
    if recorded.weights_sha256 != current.weights_sha256:
        problems.append(f"weights fingerprint {current.weights_sha256[:12]} != recorded {recorded.weights_sha256[:12]}")
    if recorded.tokenizer_sha256 != current.tokenizer_sha256:
        problems.append(f"tokenizer fingerprint {current.tokenizer_sha256[:12]} != recorded {recorded.tokenizer_sha256[:12]}")
    if recorded.d_model != current.d_model:
        problems.append(f"d_model {current.d_model} != recorded {recorded.d_model}")
    dtype = str(loaded.dtype).removeprefix("torch.")
    if dtype != header.decode.dtype:
        problems.append(f"dtype {dtype} != recorded {header.decode.dtype}")
    return problems


def _mismatch_hint(header: Header, loaded: LoadedModel, problems: list[str]) -> str:
    if problems:
        return "Forced extraction with a different model failed: " + "; ".join(problems)
    here = loaded.device.type
    return (f"The archive was made on {header.decode.device} with torch {header.decode.torch_version}; "
            f"decoding here ({here}, torch {torch.__version__}) rounds differently. "
            f"Extract with --device {header.decode.device} and the same dtype ({header.decode.dtype}).")


def chunk_digest(tokens: list[int]) -> bytes:
    return hashlib.sha256(np.asarray(tokens, dtype="<i4").tobytes()).digest()[:8]


def _to_model(vectors: torch.Tensor, loaded: LoadedModel) -> torch.Tensor:
    return vectors.to(device=loaded.device, dtype=loaded.dtype)


def _payload_arrays(settings, stored_dims, chunks, results: list[GroupResult], encoded: EncodedText) -> dict:
    count = len(chunks)
    stored = [r.packed for r in results]
    scales = [r.scales for r in results if r.scales is not None]
    corrections = [c for r in results for c in r.corrections]
    dtype = settings.vector_dtype
    vectors = (np.concatenate(stored) if stored else np.zeros(
        (0, settings.mem_vectors, quantize.stored_width(dtype, stored_dims)), dtype=quantize.numpy_dtype(dtype)))
    offsets = np.zeros(count + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(c) for c in corrections]) if count else []
    ordered = [sorted(c.items()) for c in corrections]
    arrays = {
        "vectors": vectors,
        "chunk_tokens": np.asarray([len(c) for c in chunks], dtype=np.int32),
        "chunk_digests": np.asarray([np.frombuffer(chunk_digest(c), dtype=np.uint8) for c in chunks],
                                    dtype=np.uint8).reshape(count, 8),
        "correction_offsets": offsets,
        "correction_positions": np.asarray([p for c in ordered for p, _ in c], dtype=np.int32),
        "correction_tokens": np.asarray([t for c in ordered for _, t in c], dtype=np.int32),
        "escape_positions": encoded.escape_positions,
        "escape_bytes": encoded.escape_bytes,
        "patch_ops": encoded.patch_ops,
        "patch_text": encoded.patch_text,
    }
    if quantize.has_scales(dtype):
        arrays["vector_scales"] = (np.concatenate(scales) if scales
                                   else np.zeros((0, settings.mem_vectors), dtype=np.float32))
    return arrays


def _transformers_version() -> str:
    import transformers

    return transformers.__version__
