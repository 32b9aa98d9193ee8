"""What compression decides once, up front: the options resolved against a model (`Plan`).

Two engines code the text (docs/format.md §4):

- `exact-llama-1` (memzip/streamed.py over memzip/exact/): the integer forward whose logits are
  the same on every machine, so the archive codes the model's full probabilities. Model-only, the
  file is a few long *streams* decoded side by side, each with a sliding window of context; with
  [mem] vectors, each chunk is a stream of its own, decoded from its vectors.
- `float-ranks` (memzip/ranked.py): format 2's float forward, naming each token by its rank
  under a margin. The engine for models the exact one does not cover (Gemma 3, Pythia), or when
  asked for with `--engine float`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from memzip import memory
from memzip.vectors.chunking import even_chunks, information_chunks, token_costs
from memzip.errors import UsageError
from memzip.exact.weights import ENGINE
from memzip.format import vectors as storage
from memzip.format.header import FLOAT_RANKS
from memzip.layout import Layout, model_only_layout
from memzip.models import LoadedModel
from memzip.vectors.optimize import ChunkFit, VectorSpace, fit_chunks, recipe_layout
from memzip.options import (CPU_BATCH_SIZE, DEFAULT_MARGIN, EXACT_WINDOW, MODEL_ONLY_CHUNK_TOKENS, SMALL_FILE_STREAMS,
                            SMALL_STREAM_TOKENS, STREAM_TOKENS, CompressOptions)
from memzip.vectors.recipes import Recipe, get_recipe


@dataclass(frozen=True)
class Plan:
    """The options resolved against a model."""

    options: CompressOptions
    engine: str  # ENGINE (exact) or FLOAT_RANKS
    chunk_tokens: int  # tokens per chunk; exact model-only: the longest stream
    batch_size: int | None  # chunks decoded (float-ranks) or fitted (vectors) together; None otherwise
    margin: float | None  # float-ranks only
    layout: Layout
    recipe: Recipe | None  # None in model-only mode
    nats_per_chunk: float | None  # set when chunks are cut by information
    window: int | None = None  # exact only: positions attention sees besides the sink

    @property
    def space(self) -> VectorSpace:
        o = self.options
        return VectorSpace(o.mem_vectors, o.vector_dtype, o.code_dims)

    @property
    def exact(self) -> bool:
        return self.engine != FLOAT_RANKS


def choose_engine(options: CompressOptions, loaded: LoadedModel) -> str:
    """--engine auto: the exact engine wherever it covers the model."""
    reason = loaded.exact_unsupported
    if options.engine == "float" or (options.engine == "auto" and reason):
        return FLOAT_RANKS
    if reason:
        raise UsageError(f"--engine exact: {reason}", hint="Use --engine float (or auto) for this model.")
    return ENGINE


def plan(options: CompressOptions, loaded: LoadedModel) -> Plan:
    options.check()
    engine = choose_engine(options, loaded)
    exact = engine != FLOAT_RANKS
    if exact and options.margin is not None:
        raise UsageError("--margin is a setting of the float engine; the exact engine needs none",
                         hint="Drop --margin, or add --engine float.")
    if not exact and (options.window is not None or options.streams is not None):
        raise UsageError("--window and --streams are settings of the exact engine", hint="Drop them.")
    margin = None if exact else (DEFAULT_MARGIN[loaded.dtype_name] if options.margin is None else options.margin)
    window = (options.window or EXACT_WINDOW) if exact else None
    entry = loaded.entry
    if not options.mem_vectors:
        layout = model_only_layout(loaded.tokenizer)
        if exact:
            return Plan(options, engine, options.chunk_tokens or STREAM_TOKENS, None, None, layout, None, None, window)
        chunk_tokens = options.chunk_tokens or model_only_chunk_tokens(loaded, layout)
        return Plan(options, engine, chunk_tokens, _batch_size(loaded, options, chunk_tokens + len(layout.prefix), False),
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
    if exact and longest > window:
        raise UsageError(f"chunks of up to {longest} positions do not fit a window of {window}",
                         hint="Use a larger --window or smaller --chunk-tokens.")
    return Plan(options, engine, chunk_tokens, _batch_size(loaded, options, longest, True), margin, layout, recipe,
                entry.nats_per_chunk if by_information else None, window)


def model_only_chunk_tokens(loaded: LoadedModel, layout: Layout) -> int:
    """float-ranks: MODEL_ONLY_CHUNK_TOKENS, or less for a model with a shorter context window."""
    context = getattr(loaded.model.config, "max_position_embeddings", None) or MODEL_ONLY_CHUNK_TOKENS
    return max(1, min(MODEL_ONLY_CHUNK_TOKENS, context - len(layout.prefix)))


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


def chunk_spans(loaded: LoadedModel, job: Plan, tokens: list[int]) -> list[tuple[int, int]]:
    """Where the chunks (or, exact model-only, the streams) start and end."""
    if job.exact and not job.options.mem_vectors:
        from memzip.exact.streams import split_streams

        count = job.options.streams or default_streams(len(tokens), job.chunk_tokens)
        lengths = split_streams(len(tokens), max(1, -(-len(tokens) // count)))
        ends = np.cumsum([0] + lengths).tolist()
        return list(zip(ends[:-1], ends[1:]))
    if job.nats_per_chunk:
        # Chunk length then adapts to the text: at most twice the model's default length.
        costs = token_costs(loaded.model, tokens, list(job.layout.prefix))
        return information_chunks(costs, job.nats_per_chunk, max_tokens=2 * job.chunk_tokens)
    return even_chunks(len(tokens), job.chunk_tokens)


def default_streams(tokens: int, stream_tokens: int = STREAM_TOKENS) -> int:
    """Streams for a file of `tokens` tokens: none longer than `stream_tokens`, and up to
    SMALL_FILE_STREAMS for small files, none shorter than SMALL_STREAM_TOKENS."""
    return max(-(-tokens // stream_tokens), min(SMALL_FILE_STREAMS, tokens // SMALL_STREAM_TOKENS), 1)


def units(job: Plan, chunks: list[list[int]]) -> list[int]:
    """The first chunk of each unit of work (what the journal saves as it finishes): a group of
    batch_size chunks, or one stream."""
    step = job.batch_size or 1
    return list(range(0, len(chunks), step))


@dataclass
class StoredFit:
    """Chunks fitted together and their vectors as stored."""

    fits: list[ChunkFit]
    packed: np.ndarray  # stored vectors [n, M, width]
    scales: np.ndarray | None  # per-vector scales of integer storage


def fit_and_store(loaded: LoadedModel, chunks: list[list[int]], recipe: Recipe, space: VectorSpace, layout: Layout,
                  seed: int = 0, on_step=None) -> StoredFit:
    """Fit [mem] vectors (with the storage rounding in the loop) and round them to storage."""
    fits = fit_chunks(loaded.model, chunks, recipe, space, layout, seed=seed, on_step=on_step)
    packed, scales = storage.pack(np.stack([f.vectors.numpy() for f in fits]), space.storage)
    return StoredFit(fits, packed, scales)


def cost_without_vectors(loaded: LoadedModel, layout: Layout, chunks: list[list[int]]) -> list[float]:
    """What each chunk costs (bits) from the same start without its vectors: what they saved."""
    start = list(layout.prefix + layout.infix)
    return [sum(token_costs(loaded.model, chunk, start, window=len(chunk))) / np.log(2) for chunk in chunks]


@dataclass
class ChunkReport:
    index: int
    tokens: int
    misses: int  # tokens that were not the model's first choice
    steps: int = 0  # optimizer steps (vectors only)
    loss: float = 0.0  # teacher-forced nats/token with the vectors
    accuracy: float = 0.0


@dataclass
class CompressReport:
    chunks: list[ChunkReport] = field(default_factory=list)
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
