"""What the exact engine's tests share: forwards whole and step by step, every implementation."""

from __future__ import annotations


import torch

from memzip.exact import products
from memzip.exact.compiled import CompiledLlama
from memzip.exact.model import ExactLlama
from memzip.exact.products import Choice


BACKENDS = products.available("cpu")


def every_engine(weights) -> list[tuple[str, ExactLlama]]:
    """The reference and the compiled path, each with every product backend that runs here."""
    return [(f"{cls.__name__}/{b}", cls(weights, "cpu", Choice.forced(b, "cpu")))
            for cls in (ExactLlama, CompiledLlama) for b in BACKENDS]


def token_ids(tiny, text: str, n: int) -> torch.Tensor:
    ids = tiny.tokenizer.backend_tokenizer.encode(text * 20, add_special_tokens=False).ids[:n]
    return torch.tensor([0] + ids)


def whole(model: ExactLlama, ids: torch.Tensor, window: int) -> torch.Tensor:
    """Logits [B, T, V] of batch `ids` [B, T] in one forward."""
    context = model.new_context(ids.shape[0], window, ids.shape[1] + window)
    hidden = model.forward(model.embed(ids), context, torch.arange(ids.shape[1]))
    return torch.stack([model.logits(h) for h in hidden])


def step_by_step(model: ExactLlama, ids: torch.Tensor, window: int, first: int = 1) -> torch.Tensor:
    """The same logits, decoding with the KV cache: `first` positions at once, then one at a time."""
    context = model.new_context(ids.shape[0], window)
    out = [model.logits(h) for h in model.forward(model.embed(ids[:, :first]), context,
                                                  torch.arange(first)).transpose(0, 1)]
    for p in range(first, ids.shape[1]):
        out.append(model.logits(model.forward(model.embed(ids[:, p:p + 1]), context)[:, 0]))
    return torch.stack(out, dim=1)
