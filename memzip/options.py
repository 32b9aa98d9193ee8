"""What a user can ask of compression, and what it reports while it works. Plain dataclasses,
no torch: the CLI and `memzip.api` build and check them before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from memzip.errors import UsageError
from memzip.format import vectors as storage
from memzip.format.header import MAX_BATCH, MAX_CHUNK_TOKENS, MAX_MARGIN, MAX_MEM_VECTORS, MAX_WINDOW
from memzip.vectors.recipes import get_recipe

# Choices tolerate logits that differ by less than margin / 2 from the compressing machine's.
# float32: 15x the largest difference measured between ways of computing the same logits on one
# CPU (6.6e-4, docs/history.md §9); half precisions round logits far more coarsely.
DEFAULT_MARGIN = {"float32": 0.01, "bfloat16": 0.5, "float16": 0.25}
# Tokens per chunk in model-only mode: each chunk is predicted from its own earlier tokens, so
# longer chunks code better (20 KB of alice29 at margin 0.01: 1.97 bits/byte at 512, 1.87 at
# 1024) but give fewer chunks to decode side by side (docs/history.md §4).
MODEL_ONLY_CHUNK_TOKENS = 1024
CHUNKINGS = ("auto", "information", "length")
# Chunks side by side on a CPU, where cores are the limit: {fitting vectors: 8, model-only: 32}.
# On a GPU the batch is planned from its free memory (memzip/planning.py, `auto_batch_size`).
CPU_BATCH_SIZE = {True: 8, False: 32}
ENGINES = ("auto", "exact", "float")
# The exact engine, model-only: attention sees the sink and the last EXACT_WINDOW positions, or
# ONE_STREAM_WINDOW where the whole file is one stream. Longer windows cost fewer bytes and more
# time, because attention, not the weights, dominates a small model's work at these lengths
# (docs/benchmarks.md §1): on 20 KB of alice29.txt (one stream) 4,096 positions code 0.7% fewer
# bytes than 2,048 for 9% slower compression and 15% slower extraction (2 threads, machine D:
# 13.1 -> 14.4 s and 38.2 -> 45.0 s); on the whole book (4 streams of ~9,800 tokens) 0.56% fewer
# for 35% slower compression (one thread, machine A). So a file of one stream (under 2 x
# SMALL_STREAM_TOKENS tokens, ~30 KB of English: seconds either way) gets 4,096, the implicit
# profile of format 9, and a file
# of several keeps 2,048 (one byte of settings); --window chooses either way (format 9's
# profiles 8-10: 4,096, 2,048, 8,192). A file is cut into streams decoded side by side: every stream
# after the first costs ~33 bytes (its start has no context) and makes extraction faster, so
# streams are at most STREAM_TOKENS long; a file of under 2 x SMALL_STREAM_TOKENS tokens (~30 KB
# of English) is one stream, and larger ones get up to SMALL_FILE_STREAMS streams of at least
# SMALL_STREAM_TOKENS.
# 12,288 rather than 8,192: whole alice29.txt in 4 streams instead of 6 (66 bytes, 0.003
# bits/byte, for a slower extraction at batch 4) and a 1 MB book in 28, one batch, instead of 42.
EXACT_WINDOW = 2048
ONE_STREAM_WINDOW = 4096
# --best: the whole file in one stream, and a window of BEST_WINDOW where the stream is longer
# than BEST_WINDOW, the files the defaults cut into streams (on the first 20 KB of alice29.txt,
# 5,129 tokens, 8,192 gave 2,708 B against 4,096's 2,706: too few positions gain to pay its byte
# of settings; ONE_STREAM_WINDOW is the implicit profile). On alice29.txt (machine E,
# docs/benchmarks.md §1): 19,648 B at the defaults (4 streams, 2,048), 19,557 in one stream at
# 2,048, 19,431 at 4,096, 19,360 at 8,192 (-1.5%), for 2.4x the compression time and 4.1x the
# extraction time (one stream, decoded alone).
BEST_WINDOW = 8192
STREAM_TOKENS = 12288
SMALL_FILE_STREAMS = 4
SMALL_STREAM_TOKENS = 4096
# Exact engine: streams extraction decodes side by side at most, when memory allows (~25 MB of
# int16 keys and values each for the embedded model): on 2 CPU cores a decoding step's cost per
# stream levels off well below this (docs/benchmarks.md §2).
MAX_STREAMS_AT_ONCE = 32
MAX_STREAMS = 1 << 16
CHECKS = ("digest", "sha256")


@dataclass
class CompressOptions:
    """How to compress; every field has a default a user can leave alone."""

    mem_vectors: int = 0  # [mem] vectors per chunk; 0 codes the text with the model alone
    chunk_tokens: int | None = None  # None: 1024 model-only (at most the model's context), registry length with vectors
    # With vectors: "information" cuts chunks by the text's cross-entropy under the model (the
    # paper's finding: a vector holds a fixed amount of information), "length" by token count,
    # "auto" = information unless chunk_tokens is given (and the model is in the registry).
    chunking: str = "auto"
    recipe: str = "default"  # how vectors are optimized (memzip/vectors/optimize.py)
    max_steps: int | None = None  # overrides the recipe's step budget per chunk
    seed: int = 0
    vector_dtype: str = "float16"  # storage of the vectors (memzip/format/vectors.py)
    code_dims: int | None = None  # store vectors as codes of this many numbers in a random subspace
    batch_size: int | None = None  # chunks decoded (and fitted) together; None: planned (memzip/planning.py)
    margin: float | None = None  # float engine: drift tolerance of the choices; None: DEFAULT_MARGIN of the dtype
    engine: str = "auto"  # auto (exact wherever it covers the model), exact, float
    window: int | None = None  # exact engine: positions attention sees besides the sink (EXACT_WINDOW)
    streams: int | None = None  # exact engine, model-only: streams to cut the file into (None: by STREAM_TOKENS)
    # Store the bytes as they are where that is smaller than the model's archive (or where a
    # sample shows the model will not beat zstd); False always writes the model's archive.
    store_fallback: bool = True
    # How extraction checks the original: "digest" (the first 8 bytes of its SHA-256, as xz's
    # CRC64 and zstd's XXH64 are 8 bytes) or "sha256" (all 32)
    checksum: str = "digest"
    # Code a file whose lines all end in CR LF as LF plus a flag (format 5; memzip/textcodec.py)
    line_endings: bool = True
    # Exact engine, model-only: learn a bias over the vocabulary as each stream is coded (format
    # 6; memzip/exact/adaptive.py); False codes with the model's frequencies alone
    adaptive_bias: bool = True
    # Exact engine, model-only: fewest bytes whatever the time (one stream, BEST_WINDOW), where
    # `streams` and `window` leave the choice open
    best: bool = False

    def check(self) -> None:
        """Refuse impossible options before any model is loaded."""
        if not 0 <= self.mem_vectors <= MAX_MEM_VECTORS:
            raise UsageError(f"--mem-vectors must be between 0 and {MAX_MEM_VECTORS}")
        if self.chunk_tokens is not None and not 1 <= self.chunk_tokens <= MAX_CHUNK_TOKENS // 2:
            raise UsageError(f"--chunk-tokens must be between 1 and {MAX_CHUNK_TOKENS // 2}")
        if self.batch_size is not None and not 1 <= self.batch_size <= MAX_BATCH:
            raise UsageError(f"--batch-size must be between 1 and {MAX_BATCH}")
        if self.chunking not in CHUNKINGS:
            raise UsageError(f"unknown chunking {self.chunking!r}", hint="Use " + ", ".join(CHUNKINGS) + ".")
        if self.code_dims is not None and self.code_dims < 1:
            raise UsageError("--code-dims must be at least 1")
        if self.vector_dtype not in storage.STORAGE_DTYPES:
            raise UsageError(f"unknown vector dtype {self.vector_dtype!r}",
                             hint="Use " + ", ".join(storage.STORAGE_DTYPES) + ".")
        if self.margin is not None and not 0 <= self.margin <= MAX_MARGIN:
            raise UsageError(f"--margin must be between 0 and {MAX_MARGIN:g} (logits)")
        if self.engine not in ENGINES:
            raise UsageError(f"unknown engine {self.engine!r}", hint="Use " + ", ".join(ENGINES) + ".")
        if self.window is not None and not 16 <= self.window <= MAX_WINDOW:
            raise UsageError(f"--window must be between 16 and {MAX_WINDOW}")
        if self.checksum not in CHECKS:
            raise UsageError(f"unknown --check {self.checksum!r}", hint="Use " + " or ".join(CHECKS) + ".")
        if self.streams is not None and not 1 <= self.streams <= MAX_STREAMS:
            raise UsageError(f"--streams must be between 1 and {MAX_STREAMS}")
        if self.best and (self.mem_vectors or self.engine == "float"):
            raise UsageError("--best chooses the streams and window of the exact engine's model-only coding",
                             hint="Drop --best, or drop --mem-vectors / --engine float.")
        get_recipe(self.recipe, self.max_steps)  # unknown recipe or negative steps


@dataclass
class ProgressEvent:
    """What a front end may show. `done`/`total` count tokens (of this process's share under
    torchrun); the optimizer fields are set while [mem] vectors are being fitted."""

    stage: str  # "compress", "extract", or "prepare" (one-time work on this machine: `message` says what)
    done: int
    total: int
    tokens: int = 0  # tokens in the whole file
    step: int | None = None
    active: int | None = None  # chunks still being fitted in the group
    loss: float | None = None
    accuracy: float | None = None
    message: str | None = None


ProgressCallback = Callable[[ProgressEvent], None]


def preparation_reporter(on_progress: ProgressCallback | None) -> Callable[[str], None] | None:
    """A callback for one-time work on this machine (a message: converting a model, compiling
    kernels, measuring products) that reaches `on_progress` as a "prepare" event."""
    if on_progress is None:
        return None
    return lambda message: on_progress(ProgressEvent("prepare", 0, 0, message=message))
