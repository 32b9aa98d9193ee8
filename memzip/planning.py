"""What compression decides once, up front: the options resolved against a model (`Plan`).

Two engines code the text (docs/format.md §4):

- `exact-llama-1` (memzip/exact/): the integer forward whose logits are
  the same on every machine, so the archive codes the model's full probabilities. Model-only, the
  file is a few long *streams* decoded side by side, each with a sliding window of context; with
  [mem] vectors, each chunk is a stream of its own, decoded from its vectors.
- `float-ranks` (memzip/ranks/): format 2's float forward, naming each token by its rank
  under a margin. The engine for models the exact one does not cover (Gemma 3, Pythia), or when
  asked for with `--engine float`.

How the tokens are cut (`chunk_spans`): exact model-only, into a few long streams; with [mem]
vectors, into chunks each held by one group of vectors, by length or by information
(memzip/vectors/chunking.py). And how many chunks go side by side (the section "memory").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace


from memzip.vectors.chunking import information_chunks, token_costs
from memzip.errors import UsageError
from memzip.exact.coding import coding_settings
from memzip.exact.weights import ENGINE
from memzip.format.header import FLOAT_RANKS
from memzip.layout import Layout, model_only_layout
from memzip.models import LoadedModel
from memzip.vectors.optimize import VectorSpace, recipe_layout
from memzip.options import (BEST_WINDOW, CPU_BATCH_SIZE, DEFAULT_MARGIN, EXACT_WINDOW, MODEL_ONLY_CHUNK_TOKENS,
                            ONE_STREAM_WINDOW, SMALL_FILE_STREAMS, SMALL_STREAM_TOKENS, STREAM_TOKENS, CompressOptions)
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

    @property
    def chunks_per_unit(self) -> int:
        """Chunks compressed together as one unit of work (journaled, shared out to torchrun
        ranks): the batch, or the streams that share an adaptive bias, else one."""
        if self.batch_size:
            return self.batch_size
        return coding_settings(self.options).bias_streams if self.exact else 1


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
    if not exact and (options.window is not None or options.streams is not None or options.best):
        raise UsageError("--window, --streams and --best are settings of the exact engine", hint="Drop them.")
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
    """--batch-size; else on a GPU as many chunks as its free memory holds (`auto_batch_size`);
    else the CPU defaults."""
    if options.batch_size:
        return options.batch_size
    free = free_bytes(loaded.device)
    if free is None:
        return CPU_BATCH_SIZE[fitting]
    shape = MemoryShape.of(loaded.model.config, loaded.dtype.itemsize)
    return auto_batch_size(shape, positions, fitting, free)


def chunk_spans(loaded: LoadedModel, job: Plan, tokens: list[int]) -> list[tuple[int, int]]:
    """Where the chunks (or, exact model-only, the streams) start and end."""
    if job.exact and not job.options.mem_vectors:
        count = job.options.streams or (1 if job.options.best else default_streams(len(tokens), job.chunk_tokens))
        return even_spans(len(tokens), max(1, -(-len(tokens) // count)))
    if job.nats_per_chunk:
        # Chunk length then adapts to the text: at most twice the model's default length.
        costs = token_costs(loaded.model, tokens, list(job.layout.prefix))
        return information_chunks(costs, job.nats_per_chunk, max_tokens=2 * job.chunk_tokens)
    return even_spans(len(tokens), job.chunk_tokens)


def with_stream_window(job: Plan, spans: list[tuple[int, int]]) -> Plan:
    """The plan with the exact engine's default window for these model-only streams, where the
    user chose none: ONE_STREAM_WINDOW for one stream (BEST_WINDOW with --best, where the stream
    would fill it), EXACT_WINDOW for several (memzip/options.py says why)."""
    if not job.exact or job.options.window is not None or job.options.mem_vectors:
        return job
    if len(spans) > 1:
        return replace(job, window=EXACT_WINDOW)
    longest = spans[0][1] - spans[0][0] if spans else 0
    return replace(job, window=BEST_WINDOW if job.options.best and longest > BEST_WINDOW else ONE_STREAM_WINDOW)


def even_spans(total: int, longest: int) -> list[tuple[int, int]]:
    """(start, end) spans of the fewest pieces of at most `longest` that cover `total` tokens, as
    even as possible, the longer ones first: 100 tokens at 32 give 25+25+25+25, not 32+32+32+4
    (a tiny last chunk wastes a whole vector; a short stream, a whole stream's start)."""
    if total == 0:
        return []
    count = -(-total // longest)
    base, extra = divmod(total, count)
    spans, start = [], 0
    for i in range(count):
        end = start + base + (1 if i < extra else 0)
        spans.append((start, end))
        start = end
    return spans


def default_streams(tokens: int, stream_tokens: int = STREAM_TOKENS) -> int:
    """Streams for a file of `tokens` tokens: none longer than `stream_tokens`, and up to
    SMALL_FILE_STREAMS for small files, none shorter than SMALL_STREAM_TOKENS."""
    return max(-(-tokens // stream_tokens), min(SMALL_FILE_STREAMS, tokens // SMALL_STREAM_TOKENS), 1)


def units(job: Plan, chunks: list[list[int]]) -> list[int]:
    """The first chunk of each unit of work (what the journal saves as it finishes):
    Plan.chunks_per_unit chunks or streams each."""
    return list(range(0, len(chunks), job.chunks_per_unit))


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


# --- memory: how many chunks side by side ------------------------------------------------------------
#
# How many chunks to decode (or fit) side by side: memory planned from the model's shape.
#
# On a GPU the batch decides the speed (a small model waits on kernel launches, so 8 chunks cost
# what 1 does, docs/history.md §10) and running out of memory loses the run. With no
# `--batch-size`, memzip estimates what one chunk costs from the model's config and takes as many
# chunks as fit in a share of the free memory. On a CPU the cores, not the memory, are the limit,
# and the fixed defaults of memzip/options.py apply.
#
# Per chunk of T tokens (start positions included), with L layers, width d, key/value width
# d_kv, MLP width f, vocabulary V and e bytes per number of the model's dtype:
#
# - decoding: the KV cache, 2·L·d_kv·T·e, and float32 rows of logits the choices are computed
#   from, a few copies of V·4 bytes;
# - fitting: the activations kept for the backward pass, about L·T·(16·d + 3·f)·e, attention
#   scores L·heads·T²·e, and the logits with their gradient, T·V·4·3 bytes.
#
# The estimate is deliberately generous: tests/test_planning.py counts the KV cache and the tensors
# autograd keeps in a real forward pass and checks that the estimate covers them.

MAX_AUTO_BATCH = 512
MEMORY_SHARE = 0.7  # of the free memory the batch may take


@dataclass(frozen=True)
class MemoryShape:
    layers: int
    width: int
    kv_width: int
    mlp_width: int
    heads: int
    vocab: int
    bytes_per_number: int

    @classmethod
    def of(cls, config, bytes_per_number: int) -> "MemoryShape":
        config = getattr(config, "text_config", None) or config
        width, heads = config.hidden_size, config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or width // heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        return cls(config.num_hidden_layers, width, kv_heads * head_dim,
                   getattr(config, "intermediate_size", None) or 4 * width, heads, config.vocab_size,
                   bytes_per_number)


def chunk_bytes(shape: MemoryShape, tokens: int, fitting: bool) -> int:
    """Memory one chunk of `tokens` positions needs on top of the model's weights."""
    e = shape.bytes_per_number
    decoding = 2 * shape.layers * shape.kv_width * tokens * e + 6 * shape.vocab * 4
    if not fitting:
        return decoding
    activations = shape.layers * tokens * (16 * shape.width + 3 * shape.mlp_width) * e
    attention = shape.layers * shape.heads * tokens * tokens * e
    logits = tokens * shape.vocab * 4 * 3
    return max(decoding, activations + attention + logits)


def free_bytes(device) -> int | None:
    """Free memory on a CUDA device (None elsewhere: the fixed defaults apply)."""
    if getattr(device, "type", "cpu") != "cuda":
        return None
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return free


def host_available_bytes() -> int | None:
    """Memory the operating system says is available now (Linux, macOS); None where unknown."""
    import os

    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def stream_batch(streams: int, per_stream: int, free: int | None, cap: int = MAX_AUTO_BATCH) -> int:
    """How many of `streams` to decode side by side: as many as fit in MEMORY_SHARE of `free`
    bytes (up to `cap`), then evened out, so that 40 streams under a cap of 32 run as 2 x 20
    rather than 32 and then a slow tail of 8."""
    if streams <= 0:
        return 1
    fit = cap if free is None else max(1, min(cap, int(MEMORY_SHARE * free) // max(per_stream, 1)))
    rounds = -(-streams // fit)
    return -(-streams // rounds)


def auto_batch_size(shape: MemoryShape, tokens: int, fitting: bool, free: int) -> int:
    """As many chunks as fit in MEMORY_SHARE of `free` bytes, 1 to MAX_AUTO_BATCH."""
    return max(1, min(MAX_AUTO_BATCH, int(MEMORY_SHARE * free) // chunk_bytes(shape, tokens, fitting)))
