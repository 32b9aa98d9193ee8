"""The exact engine: a Llama whose logits are the same bits on every machine, and its coder.

    weights.py    the float weights rounded once to integers (`ExactWeights`), cached on disk
    model.py      the reference forward in torch (`ExactLlama`, `Context`): the definition
    compiled.py   the same bits in compiled CPU loops (`CompiledLlama`), kernels.py and simd.py
    products.py   exact integer products by four backends, the fastest measured per machine
    integer.py    quantizing and the arguments for exactness; tables.py: exp, sigmoid, RoPE
    coding.py     integer frequencies from logits, arithmetic coding; streams.py: coding streams

`build_engine` picks the implementation once, when the engine is built.
"""

from __future__ import annotations

import torch

from memzip.exact import products
from memzip.exact.model import ExactLlama
from memzip.exact.weights import ENGINE, ExactSettings, ExactWeights

__all__ = ["ENGINE", "ExactLlama", "ExactSettings", "ExactWeights", "build_engine"]

# Keys a query block sees at the default window (options.EXACT_WINDOW): the attention shape measured.
_MEASURED_KEYS = 1024 + ExactLlama.query_block


def build_engine(weights: ExactWeights, device="cpu", backend: str | None = None, reference: bool = False,
                 on_prepare=None) -> ExactLlama:
    """The exact engine for these weights on `device`: memzip/exact/compiled.py's CompiledLlama on
    CPUs where numba runs, else the torch reference (also with `reference=True`). Products use
    the backends measured fastest here, or `backend` (else MEMZIP_BACKEND) for all of them.
    One-time work on a new machine (measuring the backends, compiling the CPU kernels) is
    announced to `on_prepare(message)` first."""
    from memzip.exact.compiled import CompiledLlama, compile_kernels, runs_here

    device = torch.device(device)
    shape = weights.shape
    group = shape.heads // shape.kv_heads
    attention = (ExactLlama.query_block * group, _MEASURED_KEYS, shape.head_dim)
    if not reference and runs_here(weights, device):
        compile_kernels(on_prepare)  # before measuring: the vector loops are among the backends
        choice = products.choose(shape.product_shapes(weights.settings), attention, device, backend, on_prepare)
        compile_kernels(on_prepare, tuple(sorted(set(choice.roles.values()) | {choice.attention})))
        return CompiledLlama(weights, device, choice)
    choice = products.choose(shape.product_shapes(weights.settings), attention, device, backend, on_prepare)
    return ExactLlama(weights, device, choice)
