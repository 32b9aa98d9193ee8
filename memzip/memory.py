"""How many chunks to decode (or fit) side by side: memory planned from the model's shape.

On a GPU the batch decides the speed (a small model waits on kernel launches, so 8 chunks cost
what 1 does, docs/benchmarks.md §10) and running out of memory loses the run. With no
`--batch-size`, memzip estimates what one chunk costs from the model's config and takes as many
chunks as fit in a share of the free memory. On a CPU the cores, not the memory, are the limit,
and the fixed defaults of memzip/options.py apply.

Per chunk of T tokens (start positions included), with L layers, width d, key/value width
d_kv, MLP width f, vocabulary V and e bytes per number of the model's dtype:

- decoding: the KV cache, 2·L·d_kv·T·e, and float32 rows of logits the choices are computed
  from, a few copies of V·4 bytes;
- fitting: the activations kept for the backward pass, about L·T·(16·d + 3·f)·e, attention
  scores L·heads·T²·e, and the logits with their gradient, T·V·4·3 bytes.

The estimate is deliberately generous: tests/test_memory.py counts the KV cache and the tensors
autograd keeps in a real forward pass and checks that the estimate covers them.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_AUTO_BATCH = 512
MEMORY_SHARE = 0.7  # of the free memory the batch may take


@dataclass(frozen=True)
class Shape:
    layers: int
    width: int
    kv_width: int
    mlp_width: int
    heads: int
    vocab: int
    bytes_per_number: int

    @classmethod
    def of(cls, config, bytes_per_number: int) -> Shape:
        config = getattr(config, "text_config", None) or config
        width, heads = config.hidden_size, config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or width // heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        return cls(config.num_hidden_layers, width, kv_heads * head_dim,
                   getattr(config, "intermediate_size", None) or 4 * width, heads, config.vocab_size,
                   bytes_per_number)


def chunk_bytes(shape: Shape, tokens: int, fitting: bool) -> int:
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


def auto_batch_size(shape: Shape, tokens: int, fitting: bool, free: int) -> int:
    """As many chunks as fit in MEMORY_SHARE of `free` bytes, 1 to MAX_AUTO_BATCH."""
    return max(1, min(MAX_AUTO_BATCH, int(MEMORY_SHARE * free) // chunk_bytes(shape, tokens, fitting)))
