"""Optimizing [mem] vectors so that a frozen model reproduces each chunk of text.

The trainable parameter of a chunk is `mem_vectors` vectors of size d_model, placed before the
chunk's token embeddings. The logits at the last [mem] position predict the first token; the
loss is the mean cross-entropy over the chunk's tokens (nats). The model is frozen.

Chunks are optimized in batches: one forward/backward for every chunk still in work, each
chunk with its own parameter and its own optimizer state, and a chunk leaves the batch as soon
as it is done. The loss is the *sum* of per-chunk mean losses, so every chunk gets exactly the
gradient it would get alone; batching changes the speed, not the method.

A `Recipe` says how to optimize. `paper` is the authors' recipe exactly; `default` is memzip's.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F

from memzip.quantize import expand, fake_quantize


@dataclass(frozen=True)
class Recipe:
    name: str
    lr: float
    betas: tuple[float, float] = (0.9, 0.9)
    weight_decay: float = 0.0
    max_steps: int = 5000
    patience: int = 2000  # give up on a chunk after this many steps without a better accuracy
    # A chunk is done when, teacher-forced, every true token's logit leads the runner-up by at
    # least `margin`. 0 is the authors' criterion (argmax accuracy 1.0); a positive margin leaves
    # room for the small differences between training and KV-cache decoding.
    margin: float = 0.0
    warmup: int = 0  # linear warm-up steps
    schedule: str = "constant"  # or "cosine": decay to lr/10 at max_steps
    # Put the model's document-start token before the [mem] vectors. Models dump attention on
    # position 0 (an "attention sink") whose values carry little; a [mem] vector sitting there
    # is read poorly by later tokens. With a real token as the sink, it is an ordinary position.
    sink_prefix: bool = False
    # Weight of a hinge term added to the cross-entropy: the mean over tokens of
    # max(0, margin - lead). Cross-entropy averages over the chunk, so one stubborn token near
    # capacity gets 1/L of the push; the hinge acts only on tokens that do not lead yet.
    hinge: float = 0.0

    def to_header(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def lr_at(self, step: int) -> float:
        lr = self.lr
        if self.warmup and step < self.warmup:
            lr *= (step + 1) / self.warmup
        if self.schedule == "cosine":
            progress = min(1.0, step / max(1, self.max_steps))
            lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
        return lr


RECIPES: dict[str, Recipe] = {
    # Kuratov et al. 2025, as their code runs it: AdamW lr 1e-2, betas (0.9, 0.9), weight decay
    # 0.01, no schedule, up to 5000 steps, stop at accuracy 1.0 or after 2000 steps without gain.
    "paper": Recipe("paper", lr=1e-2, betas=(0.9, 0.9), weight_decay=0.01, max_steps=5000,
                    patience=2000, margin=0.0, sink_prefix=False),
    # memzip's default; docs/benchmarks.md has the measurements behind each setting.
    # docs/benchmarks.md has the measurements: the sink prefix is what makes the difference
    # (no 16-token chunk converged in 300 steps without it); with it, the highest learning rate
    # tried (3e-1, betas 0.9/0.99) was the fastest; a margin of 1 logit so that greedy decoding
    # agrees with the teacher-forced result.
    "default": Recipe("default", lr=3e-1, betas=(0.9, 0.99), weight_decay=0.0, max_steps=400,
                      patience=200, margin=1.0, sink_prefix=True),
}


# Variants kept so that `memzip bench --recipes ...` reproduces the measurements behind the
# default (docs/benchmarks.md): each differs from a main recipe in one setting.
RECIPES["no-sink"] = replace(RECIPES["default"], name="no-sink", sink_prefix=False)
RECIPES["paper-sink"] = replace(RECIPES["paper"], name="paper-sink", sink_prefix=True)
# For long chunks (near a vector's capacity): the default's learning rate gets a chunk to ~99%
# of its tokens and then circles (measured: 95 of 96 book tokens, no gain in the last 200 of
# 929 steps); decaying it lets the last tokens settle. No early stop before the budget.
RECIPES["long"] = replace(RECIPES["default"], name="long", max_steps=2000, patience=2000, schedule="cosine")
# The hinge made the 96-token chunk that "long" left at 95/96 exact, margin reached at step
# 1713 (machine A, docs/capacity.md); one chunk, so not yet the default.
RECIPES["long-hinge"] = replace(RECIPES["long"], name="long-hinge", hinge=1.0)


def get_recipe(name: str, max_steps: int | None = None) -> Recipe:
    from memzip.errors import UsageError

    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}", hint="Choose one of: " + ", ".join(RECIPES))
    recipe = RECIPES[name]
    if max_steps is not None:
        if max_steps < 0:
            raise UsageError("--max-steps must be 0 or more")
        recipe = replace(recipe, max_steps=max_steps)
    return recipe


@dataclass
class ChunkFit:
    vectors: torch.Tensor  # [M, D] float32 on the CPU (the codes [M, k] when fitted in a subspace)
    steps: int  # optimizer steps taken for this chunk
    loss: float  # teacher-forced mean cross-entropy (nats/token) of the returned vectors
    accuracy: float  # teacher-forced argmax accuracy of the returned vectors
    margin: float  # smallest lead of a true token over the runner-up, teacher-forced
    converged: bool  # reached the recipe's margin


StepCallback = Callable[[int, int, float, float], None]  # step, chunks active, mean loss, mean accuracy


def initial_vectors(model, count: int, mem_vectors: int, seed: int, dims: int | None = None) -> torch.Tensor:
    """randn * std(input embedding matrix), as the authors do; seeded, generated on the CPU so
    the same seed gives the same start on every device. `dims`: code size (default d_model)."""
    weight = model.get_input_embeddings().weight
    std = float(weight.float().std())
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, mem_vectors, dims or weight.shape[1], generator=generator) * std


def fit_chunks(
    model,
    chunks: list[list[int]],
    recipe: Recipe,
    mem_vectors: int = 1,
    seed: int = 0,
    on_step: StepCallback | None = None,
    init: torch.Tensor | None = None,
    prefix: list[int] = (),
    storage: str = "float32",
    code_basis: torch.Tensor | None = None,
) -> list[ChunkFit]:
    """Optimize one group of chunks together. Returns the best vectors found for each.
    `prefix`: fixed token ids placed before the [mem] vectors (see Recipe.sink_prefix).
    `storage`: the dtype the vectors will be stored in; the forward pass sees them rounded to
    it (memzip/quantize.py), so the returned scores are those of the stored vectors.
    `code_basis`: fit codes z [M, k] whose vectors are z @ code_basis (quantize.basis); the
    returned `vectors` are then the codes."""
    if not chunks:
        return []
    device = model.get_input_embeddings().weight.device
    dtype = model.get_input_embeddings().weight.dtype
    count, longest = len(chunks), max(len(c) for c in chunks)
    ids = torch.zeros(count, longest, dtype=torch.long)
    mask = torch.zeros(count, longest, dtype=torch.bool)
    for i, chunk in enumerate(chunks):
        ids[i, :len(chunk)] = torch.tensor(chunk)
        mask[i, :len(chunk)] = True
    ids, mask = ids.to(device), mask.to(device)
    with torch.no_grad():
        token_embeds = model.get_input_embeddings()(ids)
        prefix_embeds = model.get_input_embeddings()(torch.tensor(list(prefix), dtype=torch.long, device=device))

    dims = None if code_basis is None else code_basis.shape[0]
    start = init if init is not None else initial_vectors(model, count, mem_vectors, seed, dims)
    code_basis = None if code_basis is None else code_basis.to(device)
    params = [torch.nn.Parameter(start[i].to(device=device, dtype=torch.float32).clone()) for i in range(count)]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)

    best = [_Best(params[i].detach().clone()) for i in range(count)]
    done = [False] * count
    steps = [0] * count
    with _fast_float32_matmul(device):
        _optimize(model, chunks, recipe, params, optimizer, best, done, steps, prefix_embeds, token_embeds,
                  ids, mask, storage, code_basis, dtype, on_step)
    return [ChunkFit(b.vectors.cpu(), steps[i], b.loss, b.accuracy, b.margin,
                     b.margin >= recipe.margin and b.accuracy == 1.0)
            for i, b in enumerate(best)]


@contextlib.contextmanager
def _fast_float32_matmul(device: torch.device):
    """TF32 matrix products while fitting on a CUDA GPU (several times faster in float32).
    Fitting only searches for vectors: whether they decode is decided afterwards by the
    extraction decoder in full float32, so this rounding cannot reach an archive."""
    if device.type != "cuda":
        yield
        return
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def _optimize(model, chunks, recipe, params, optimizer, best, done, steps, prefix_embeds, token_embeds,
              ids, mask, storage, code_basis, dtype, on_step) -> None:
    count = len(chunks)
    for step in range(recipe.max_steps + 1):
        active = [i for i in range(count) if not done[i]]
        if not active:
            break
        # The last evaluation is never followed by a backward pass: no autograd graph for it
        # (with --max-steps 0 that graph would be most of the memory).
        with torch.set_grad_enabled(step < recipe.max_steps):
            objective, loss, accuracy, margin = _forward(model, params, active, prefix_embeds, token_embeds,
                                                         ids, mask, storage, code_basis, dtype, recipe)
        # One device-to-host copy per step rather than three per chunk (each one a GPU sync).
        scores = torch.stack([loss.detach(), accuracy.float(), margin.float()]).tolist()
        for slot, i in enumerate(active):
            chunk_loss, chunk_accuracy, chunk_margin = (row[slot] for row in scores)
            # Recorded *before* this step's update: these are the parameters that scored it.
            best[i].offer(params[i], chunk_loss, chunk_accuracy, chunk_margin, step)
            if chunk_margin >= recipe.margin and chunk_accuracy == 1.0:
                done[i] = True
            elif step == recipe.max_steps or step - best[i].step > recipe.patience:
                done[i] = True
            else:
                steps[i] = step + 1
        if on_step is not None:
            on_step(step, len(active), sum(scores[0]) / len(active), sum(scores[1]) / len(active))
        still = [slot for slot, i in enumerate(active) if not done[i]]
        if not still:
            break
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr_at(step)
        objective[still].sum().backward()
        # Chunks that just finished must not move: their gradients are dropped.
        for slot, i in enumerate(active):
            if done[i]:
                params[i].grad = None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _forward(model, params, active, prefix_embeds, token_embeds, ids, mask, storage, code_basis, dtype, recipe):
    """Teacher-forced forward for the active chunks: per-chunk objective (what is minimized),
    mean cross-entropy, accuracy and min margin."""
    mem = expand(fake_quantize(torch.stack([params[i] for i in active]), storage), code_basis).to(dtype)
    prefix = prefix_embeds[None].expand(len(active), -1, -1)
    inputs = torch.cat([prefix, mem, token_embeds[active]], dim=1)
    longest = ids.shape[1]
    # The last [mem] position predicts token 0, and so on; right padding is harmless (causal).
    # Exactly the positions that predict the chunk, so the logits come out contiguous and the
    # cross-entropy below reads them in place. The [batch, vocab, length] transposed view used
    # before made cross_entropy copy them: peak 11.3 GB -> 7.2 GB for 256 chunks of 64 tokens
    # (benchmarks §4).
    positions = torch.arange(inputs.shape[1] - longest - 1, inputs.shape[1] - 1, device=inputs.device)
    logits = model(inputs_embeds=inputs, logits_to_keep=positions).logits.float()
    target, valid = ids[active], mask[active]
    ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view_as(target)
    counts = valid.sum(dim=1)
    loss = (ce * valid).sum(dim=1) / counts
    with torch.set_grad_enabled(torch.is_grad_enabled() and recipe.hinge > 0):
        true = logits.gather(2, target[..., None])[..., 0]
        # The best other token is the runner-up when the target is on top. topk(2) reads the
        # logits once instead of masking the target out of a logits-sized copy (the peak did not
        # move measurably, benchmarks §4, but it is the simpler statement of "best other token").
        # On a tie the target may come second; the lead is 0 either way.
        top = logits.topk(2, dim=2)
        others = torch.where(top.indices[..., 0] == target, top.values[..., 1], top.values[..., 0])
        lead = true - others
    objective = loss
    if recipe.hinge > 0:
        shortfall = (recipe.margin - lead).clamp(min=0) * valid
        objective = loss + recipe.hinge * shortfall.sum(dim=1) / counts
    lead = lead.detach().masked_fill(~valid, float("inf"))
    margin = lead.min(dim=1).values
    accuracy = ((lead > 0) & valid).sum(dim=1) / counts
    return objective, loss.detach(), accuracy, margin


def sink_tokens(tokenizer) -> list[int]:
    """The token a model saw at the start of its training documents, to sit before [mem]:
    the BOS its tokenizer adds by default (Llama), else <|endoftext|> (GPT-2, Pythia, SmolLM2),
    else EOS; none if the tokenizer has none of these."""
    backend = tokenizer.backend_tokenizer
    with_specials = backend.encode("a", add_special_tokens=True).ids
    plain = backend.encode("a", add_special_tokens=False).ids
    if tokenizer.bos_token_id is not None and with_specials[:1] == [tokenizer.bos_token_id] != plain[:1]:
        return [tokenizer.bos_token_id]
    endoftext = backend.token_to_id("<|endoftext|>")
    if endoftext is not None:
        return [endoftext]
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


class _Best:
    """Best parameters seen for one chunk: higher accuracy wins, then larger margin."""

    def __init__(self, vectors: torch.Tensor):
        self.vectors, self.loss, self.accuracy, self.margin, self.step = vectors, math.inf, -1.0, -math.inf, 0

    def offer(self, param, loss, accuracy, margin, step):
        if (accuracy, margin) > (self.accuracy, self.margin):
            self.vectors = param.detach().clone()
            if accuracy > self.accuracy:
                self.step = step  # patience counts from the last accuracy gain
            self.loss, self.accuracy, self.margin = loss, accuracy, margin

