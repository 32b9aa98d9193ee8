"""Fitting [mem] vectors so that a frozen model reproduces each chunk of text.

The trainable parameter of a chunk is `mem_vectors` vectors of size d_model, fed with the
chunk's layout tokens (memzip/layout.py) before the chunk's token embeddings. The loss is the
mean cross-entropy (nats) over the chunk's *scored* tokens; the model is frozen.

Chunks are fitted in batches: one forward/backward for every chunk still in work, each chunk
with its own parameter and its own optimizer state, and a chunk leaves the batch as soon as it
is done. The loss is the *sum* of per-chunk mean losses, so every chunk gets exactly the
gradient it would get alone; batching changes the speed, not the method.

A `Recipe` (memzip/vectors/recipes.py) says how to fit.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from memzip.layout import Layout, added_bos, document_start
from memzip.vectors.rounding import expand, as_stored
from memzip.vectors.recipes import Recipe

def recipe_layout(recipe: Recipe, tokenizer) -> Layout:
    """The tokens around the vectors for this recipe and tokenizer (memzip/layout.py)."""
    if recipe.layout == "sink":
        return Layout(prefix=tuple(document_start(tokenizer)))
    bos = added_bos(tokenizer)
    return Layout(infix=(bos,) if bos is not None else ())


def scores_first_token(recipe: Recipe, layout: Layout) -> bool:
    """Whether the first text token is a training target. The authors feed it, unscored, when
    no BOS follows the vectors; the decoder then takes it from the residual."""
    return not (recipe.layout == "authors" and not layout.infix)


@dataclass(frozen=True)
class VectorSpace:
    """What is fitted for each chunk: `mem_vectors` vectors, seen through their storage."""

    mem_vectors: int = 1
    storage: str = "float32"  # the dtype the vectors will be stored in (memzip/format/vectors.py)
    code_dims: int | None = None  # fit codes in a random subspace of this size instead


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
    """randn * std(input embedding matrix), as the authors do. Chunk i starts from a generator
    seeded with seed + i, on the CPU: the same start on every device, whatever the batch it is
    fitted in (and the start `torch.manual_seed(seed + i); torch.randn(M, d)` gives in the
    authors' code). `dims`: code size (default d_model)."""
    weight = model.get_input_embeddings().weight
    std = float(weight.float().std())
    size = (mem_vectors, dims or weight.shape[1])
    return torch.stack([torch.randn(size, generator=torch.Generator().manual_seed(seed + i)) for i in range(count)]) * std


@dataclass
class _Inputs:
    """A group's fixed, teacher-forced inputs."""

    ids: torch.Tensor  # [n, L] chunk tokens, right-padded
    lengths: torch.Tensor  # [n] tokens of each chunk
    scored: torch.Tensor  # [n, L] bool: tokens that are training targets
    token_embeds: torch.Tensor  # [n, L, d]
    layout_embeds: tuple[torch.Tensor, torch.Tensor]  # prefix [P, d], infix [I, d]
    basis: torch.Tensor | None  # code basis (quantize.code_basis) on the device
    storage: str
    dtype: torch.dtype  # the model's


def prepare_inputs(model, chunks: list[list[int]], recipe: Recipe, space: VectorSpace, layout: Layout) -> _Inputs:
    """The fixed, teacher-forced inputs of a group of chunks, on the model's device."""
    from memzip.vectors.rounding import code_basis

    embed = model.get_input_embeddings()
    device, dtype = embed.weight.device, embed.weight.dtype
    count, longest = len(chunks), max(len(c) for c in chunks)
    ids = torch.zeros(count, longest, dtype=torch.long)
    scored = torch.zeros(count, longest, dtype=torch.bool)
    for i, chunk in enumerate(chunks):
        ids[i, :len(chunk)] = torch.tensor(chunk)
        scored[i, :len(chunk)] = True
    if not scores_first_token(recipe, layout):  # the first token is fed, not predicted
        scored[:, 0] = False
    ids, scored = ids.to(device), scored.to(device)
    with torch.no_grad():
        layout_embeds = tuple(embed(torch.tensor(list(t), dtype=torch.long, device=device))
                              for t in (layout.prefix, layout.infix))
        inputs = _Inputs(ids, torch.tensor([len(c) for c in chunks], device=device), scored, embed(ids),
                         layout_embeds,
                         None if space.code_dims is None else code_basis(space.code_dims, embed.weight.shape[1]).to(device),
                         space.storage, dtype)
    return inputs


def trainable_vectors(start: torch.Tensor, device: torch.device) -> list[torch.nn.Parameter]:
    """One float32 parameter per chunk [M, D] from the starts [C, M, D], on `device`: each chunk
    has its own, so that its optimizer state and its steps are its own."""
    return [torch.nn.Parameter(row.to(device=device, dtype=torch.float32).clone()) for row in start]


def fit_chunks(model, chunks: list[list[int]], recipe: Recipe, space: VectorSpace = VectorSpace(),
               layout: Layout = Layout(), *, seed: int = 0, init: torch.Tensor | None = None,
               on_step: StepCallback | None = None) -> list[ChunkFit]:
    """Fit one group of chunks together. Returns the best vectors found for each, scored as they
    will be stored (the forward pass sees them rounded to `space.storage`)."""
    if not chunks:
        return []
    inputs = prepare_inputs(model, chunks, recipe, space, layout)
    start = init if init is not None else initial_vectors(model, len(chunks), space.mem_vectors, seed, space.code_dims)
    if init is None and recipe.init == "mean-embedding":
        start = _mean_embedding_start(inputs, start, space)
    params = trainable_vectors(start, inputs.ids.device)
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    best = [_Best(p.detach().clone()) for p in params]
    steps = [0] * len(chunks)
    with fast_float32_matmul(inputs.ids.device):
        _optimize(model, inputs, recipe, params, optimizer, best, steps, on_step)
    return [ChunkFit(b.vectors.cpu(), steps[i], b.loss, b.accuracy, b.margin,
                     b.margin >= recipe.margin and b.accuracy == 1.0)
            for i, b in enumerate(best)]


def _mean_embedding_start(inputs: _Inputs, start: torch.Tensor, space: VectorSpace) -> torch.Tensor:
    """The mean of each chunk's token embeddings, plus half the random start."""
    means = torch.stack([inputs.token_embeds[i, :n].float().mean(dim=0) for i, n in enumerate(inputs.lengths.tolist())])
    if space.code_dims:  # the code whose vector is nearest the mean
        means = torch.linalg.lstsq(inputs.basis.T.float(), means.T).solution.T
    return means.cpu()[:, None, :] + 0.5 * start


@contextlib.contextmanager
def fast_float32_matmul(device: torch.device):
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


def _optimize(model, inputs: _Inputs, recipe: Recipe, params, optimizer, best, steps, on_step) -> None:
    count = len(params)
    done = [False] * count
    for step in range(recipe.max_steps + 1):
        active = [i for i in range(count) if not done[i]]
        if not active:
            break
        # The last evaluation is never followed by a backward pass: no autograd graph for it
        # (with --max-steps 0 that graph would be most of the memory).
        with torch.set_grad_enabled(step < recipe.max_steps):
            objective, loss, accuracy, margin, _ = forward(model, inputs, recipe, params, active, step)
        # During a curriculum the scores are of part of each chunk: nothing is kept or judged yet.
        warming = step < recipe.curriculum and step < recipe.max_steps
        # One device-to-host copy per step rather than three per chunk (each one a GPU sync).
        scores = torch.stack([loss.detach(), accuracy.float(), margin.float()]).tolist()
        improved = []
        for slot, i in enumerate(active):
            chunk_loss, chunk_accuracy, chunk_margin = (row[slot] for row in scores)
            if warming:
                steps[i] = step + 1
                best[i].step = step  # patience counts from the end of the curriculum
                continue
            # Recorded *before* this step's update: these are the parameters that scored it.
            if best[i].offer(params[i], chunk_loss, chunk_accuracy, chunk_margin, step,
                             accuracy_only=recipe.keep_after_update):
                improved.append(i)
            if chunk_margin >= recipe.margin and chunk_accuracy == 1.0:
                done[i] = True
            elif step == recipe.max_steps or step - best[i].step >= recipe.patience:
                done[i] = True
            else:
                steps[i] = step + 1
        if on_step is not None:
            on_step(step, len(active), sum(scores[0]) / len(active), sum(scores[1]) / len(active))
        # The authors' loop updates after every evaluation and saves the updated vector when the
        # evaluation was a gain, also the one that met the criterion; those chunks are updated too.
        kept_after = improved if recipe.keep_after_update else []
        update = [slot for slot, i in enumerate(active) if not done[i] or i in kept_after]
        if not update or step == recipe.max_steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr_at(step)
        objective[update].sum().backward()
        for slot, i in enumerate(active):  # chunks that are done (and not kept after) must not move
            if slot not in update:
                params[i].grad = None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for i in kept_after:
            best[i].vectors = params[i].detach().clone()
            steps[i] = step + 1


def forward(model, inputs: _Inputs, recipe: Recipe, params, active, step: int = 0, margins: torch.Tensor | None = None):
    """Teacher-forced forward for the active chunks: per-chunk objective (what is minimized),
    mean cross-entropy, accuracy and smallest lead, over the scored tokens (during a curriculum,
    over the part of each chunk scored so far), and each token's lead [n, L] (inf where not scored).
    `margins` [n, L]: the hinge's margin per token instead of the recipe's."""
    mem = expand(as_stored(torch.stack([params[i] for i in active]), inputs.storage), inputs.basis).to(inputs.dtype)
    n = len(active)
    prefix, infix = (e[None].expand(n, -1, -1) for e in inputs.layout_embeds)
    embeds = torch.cat([prefix, mem, infix, inputs.token_embeds[active]], dim=1)
    longest = inputs.ids.shape[1]
    # The position before each text token predicts it. Exactly those positions are asked for,
    # so the logits come out contiguous and cross_entropy reads them in place (a transposed view
    # made it copy them: 11.3 GB -> 7.2 GB peak for 256 chunks of 64 tokens, docs/history.md §8).
    positions = torch.arange(embeds.shape[1] - longest - 1, embeds.shape[1] - 1, device=embeds.device)
    logits = model(inputs_embeds=embeds, logits_to_keep=positions).logits.float()
    target, valid = inputs.ids[active], inputs.scored[active]
    if recipe.curriculum and step < recipe.curriculum:
        share = 0.25 + 0.75 * step / recipe.curriculum
        seen = torch.ceil(inputs.lengths[active] * share)
        valid = valid & (torch.arange(longest, device=valid.device)[None] < seen[:, None])
    ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view_as(target)
    counts = valid.sum(dim=1).clamp(min=1)
    loss = (ce * valid).sum(dim=1) / counts
    with torch.set_grad_enabled(torch.is_grad_enabled() and recipe.hinge > 0):
        true = logits.gather(2, target[..., None])[..., 0]
        # The best other token is the runner-up when the target is on top; on a tie the target
        # may come second, and the lead is 0 either way.
        top = logits.topk(2, dim=2)
        others = torch.where(top.indices[..., 0] == target, top.values[..., 1], top.values[..., 0])
        lead = true - others
    objective = loss
    if recipe.hinge > 0:
        shortfall = ((recipe.margin if margins is None else margins) - lead).clamp(min=0) * valid
        objective = loss + recipe.hinge * shortfall.sum(dim=1) / counts
    lead = lead.detach().masked_fill(~valid, float("inf"))
    margin = lead.min(dim=1).values
    # A chunk with no scored token (one token, fed in the authors' layout) is trivially done.
    accuracy = torch.where(valid.any(dim=1), ((lead > 0) & valid).sum(dim=1) / counts, 1.0)
    return objective, loss.detach(), accuracy, margin, lead


class _Best:
    """Best parameters seen for one chunk: higher accuracy wins, then (unless accuracy_only, as
    in the authors' loop) a larger margin."""

    def __init__(self, vectors: torch.Tensor):
        self.vectors, self.loss, self.accuracy, self.margin, self.step = vectors, math.inf, -1.0, -math.inf, 0

    def offer(self, param, loss, accuracy, margin, step, accuracy_only: bool = False) -> bool:
        """Keep `param` if it is better; True when it was."""
        better = accuracy > self.accuracy if accuracy_only else (accuracy, margin) > (self.accuracy, self.margin)
        if not better:
            return False
        self.vectors = param.detach().clone()
        if accuracy > self.accuracy:
            self.step = step  # patience counts from the last accuracy gain
        self.loss, self.accuracy, self.margin = loss, accuracy, margin
        return True
