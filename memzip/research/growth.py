"""`memzip capacity --search --strategy grow`: one fit per text whose scored part follows what the
vectors already hold.

Greedy decoding reproduces a text up to its first miss, and teacher-forced, the tokens before the
first miss are exactly the ones greedy decoding would produce. So one teacher-forced forward of
the whole text tells how long a prefix the current vectors hold, and one pass of the exact engine
over the whole text tells it as an archive would decode it. No length has to be fixed in advance
or tried and failed (the doubling-and-bisection search of memzip/research/search.py spends a whole
fit on every length that fails, and restarts from the last success).

Each step scores the text up to `lookahead` tokens past the prefix the float model already gets
right (cross-entropy plus a hinge on leads below the recipe's margin, as the recipe says), so the
scored part grows as fast as the vectors learn it. When the prefix has not grown for `patience`
steps the text's learning rate halves; after `decays` halvings without growth the text is done.
Every `check_every` steps, and when a text is done, the vectors of its longest float prefix so far
are rounded to their storage and decoded by the exact engine; the longest prefix the exact engine
reproduces is the text's result.

Repeatable: seeded starts, and the batch of texts still growing is the same on every run, so the
same command at the same thread count gives the same lengths (tests/test_capacity.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch

from memzip.layout import Layout
from memzip.research.search import TextSearch, greedy_prefix
from memzip.vectors.fitting import cost_without_vectors
from memzip.vectors.optimize import (VectorSpace, fast_float32_matmul, fit_chunks, forward, initial_vectors,
                                     prepare_inputs, scores_first_token, trainable_vectors)
from memzip.vectors.recipes import Recipe


# The step budget of a text when --max-steps is not given: the whole search, not one fit.
GROW_STEPS = 3000


@dataclass(frozen=True)
class Growth:
    """How the scored part grows and when a text stops (the step budget is the recipe's)."""

    lookahead: int = 16  # tokens scored past the prefix the float model holds
    patience: int = 100  # steps without a longer prefix before the text's learning rate halves
    decays: int = 3  # halvings without growth before the text is done
    check_every: int = 25  # steps between checks on the exact engine
    # A token the exact engine misses although the float model leads by its margin gets this many
    # times that margin from then on (at most `most_margin`): the two models differ by rounding,
    # and the tokens they disagree on are the ones whose lead is small for that rounding.
    raise_by: float = 2.0
    most_margin: float = 8.0


@dataclass
class _Text:
    """One text's growth in progress."""

    search: TextSearch
    lr: float
    margins: torch.Tensor  # [len(text)] the lead each token needs to count as held (the hinge's margin)
    prefix: int = 0  # the prefix the float model holds (every token ahead by the margin) at the last step
    best: tuple[int, float] = (-1, -math.inf)  # (prefix, smallest lead in it) of `candidate`
    candidate: torch.Tensor | None = None  # the vectors that scored `best`
    checked: bool = True  # `candidate` has been decoded by the exact engine
    grew_at: int = 0  # the last step the prefix grew (or the learning rate halved)
    decays: int = 0
    done: bool = False


def grow_capacity(loaded, texts: list[list[int]], recipe: Recipe, space: VectorSpace, layout: Layout, *,
                  growth: Growth = Growth(), seed: int = 0, on_check=None) -> list[TextSearch]:
    """Grow every text (token lists) in one batch; each text gets at most `recipe.max_steps` steps.
    Interrupted (Ctrl-C), it returns what the checks so far found (those texts `done` False)."""
    model = loaded.model
    # The hinge pushes every scored token to the margin that counts it as held; cross-entropy alone
    # leaves the last ones just ahead (docs/capacity.md, `long-hinge`)
    recipe = replace(recipe, hinge=recipe.hinge or 1.0)
    inputs = prepare_inputs(model, texts, recipe, space, layout)
    start = initial_vectors(model, len(texts), space.mem_vectors, seed, space.code_dims)
    params = trainable_vectors(start, inputs.ids.device)
    optimizer = torch.optim.AdamW([{"params": [p]} for p in params], lr=recipe.lr, betas=recipe.betas,
                                  weight_decay=recipe.weight_decay)
    state = [_Text(TextSearch(list(t), i), recipe.lr, torch.full((len(t),), float(recipe.margin), device=inputs.ids.device))
             for i, t in enumerate(texts)]
    positions = torch.arange(inputs.ids.shape[1], device=inputs.ids.device)
    began = time.perf_counter()
    try:
        with fast_float32_matmul(inputs.ids.device):
            for step in range(recipe.max_steps + 1):
                active = [i for i, t in enumerate(state) if not t.done]
                if not active:
                    break
                _grow_step(model, inputs, recipe, params, optimizer, state, active, positions, step, growth)
                finishing = [i for i in active if state[i].done]
                if step % growth.check_every == 0 or finishing:
                    _check(loaded, layout, space, state, active if step % growth.check_every == 0 else finishing, growth)
                    for i in finishing:  # the float model held all of it and the exact engine did not
                        t = state[i]
                        if t.search.exact < len(t.search.text) and t.decays <= growth.decays and step < recipe.max_steps:
                            t.done = t.search.done = False
                    if on_check:
                        on_check([t.search for t in state])
                elapsed = time.perf_counter() - began
                for i in active:  # the batch's time, split evenly among the texts in it
                    state[i].search.seconds += elapsed / len(active)
                began = time.perf_counter()
    except KeyboardInterrupt:  # an hour of fitting is not thrown away: the checks so far stand
        pass
    for t in state:
        _information_gain(loaded, recipe, space, layout, t.search)
    return [t.search for t in state]


def _grow_step(model, inputs, recipe: Recipe, params, optimizer, state: list[_Text], active: list[int],
               positions: torch.Tensor, step: int, growth: Growth) -> None:
    """One teacher-forced forward of the active texts up to their scored ends, then one update."""
    ends = [min(len(state[i].search.text), state[i].prefix + growth.lookahead) for i in active]
    longest = max(ends)
    scored = inputs.scored[:, :longest].clone()
    scored[active] &= positions[:longest][None] < torch.tensor(ends, device=scored.device)[:, None]
    part = replace(inputs, ids=inputs.ids[:, :longest], scored=scored, token_embeds=inputs.token_embeds[:, :longest])
    margins = torch.zeros(len(active), longest, device=scored.device)
    for slot, i in enumerate(active):
        n = min(longest, len(state[i].margins))
        margins[slot, :n] = state[i].margins[:n]
    last = step == recipe.max_steps
    with torch.set_grad_enabled(not last):
        objective, _, _, _, lead = forward(model, part, recipe, params, active, margins=margins)
    # A prefix counts as held when each of its tokens leads by its margin: the exact engine rounds,
    # and with leads just above 0 it missed one of the first tokens of a 51-token float prefix
    # (docs/capacity.md). Unscored positions (a fed first token, the padding past the end) lead by
    # inf; the prefix is cut at the scored end.
    right = (lead >= margins).int().cumprod(dim=1).sum(dim=1).tolist()
    for slot, i in enumerate(active):
        t = state[i]
        t.prefix = min(right[slot], ends[slot])
        held = lead[slot, :t.prefix]
        score = (t.prefix, float(held.min()) if t.prefix else math.inf)
        if score > t.best:
            if t.prefix > t.best[0]:
                t.grew_at = step
            t.best, t.candidate, t.checked = score, params[i].detach().clone(), False
        if t.prefix == len(t.search.text):
            t.done = True  # all of it: the exact check decides
        elif step - t.grew_at >= growth.patience:
            t.decays += 1
            t.lr /= 2
            t.grew_at = step
            t.done = t.decays > growth.decays
        t.done = t.done or last
        t.search.steps, t.search.done = step + (not t.done), t.done
    update = [slot for slot, i in enumerate(active) if not state[i].done]
    if not update:
        return
    for i in active:
        optimizer.param_groups[i]["lr"] = state[i].lr
    objective[update].sum().backward()
    for slot, i in enumerate(active):  # texts that are done must not move
        if slot not in update:
            params[i].grad = None
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _check(loaded, layout: Layout, space: VectorSpace, state: list[_Text], which: list[int], growth: Growth) -> None:
    """Decode the unchecked candidates of `which` on the exact engine; keep the longest prefix."""
    for i in which:
        t = state[i]
        if t.checked or t.best[0] <= t.search.exact:
            continue  # nothing new, or the float model holds no more than the exact engine already did
        t.checked = True
        # The exact engine rarely holds more than a few tokens past the float model: decoding the
        # whole text at every check would cost more than the fit
        held = greedy_prefix(loaded, layout, space, t.candidate.cpu(), t.search.text[:t.best[0] + growth.lookahead])
        t.search.checks.append((t.search.steps, t.best[0], held))
        if held > t.search.exact:
            t.search.exact, t.search.vectors = held, t.candidate.cpu()
        if held < t.best[0] and t.margins[held] < growth.most_margin:
            # the float model held a token the exact engine missed: ask more of that token, and
            # judge the float prefix again under the new margin
            t.margins[held] = min(growth.most_margin, max(1.0, float(t.margins[held]) * growth.raise_by))
            t.best, t.candidate, t.checked = (-1, -math.inf), None, True


def _information_gain(loaded, recipe: Recipe, space: VectorSpace, layout: Layout, s: TextSearch) -> None:
    """Bits the vectors save on the prefix they hold (cross-entropy without them minus with them)."""
    if not s.exact:
        return
    prefix = s.text[:s.exact]
    fit = fit_chunks(loaded.model, [prefix], replace(recipe, max_steps=0), space, layout, init=s.vectors[None])[0]
    scored = s.exact if scores_first_token(recipe, layout) else s.exact - 1
    s.info_gain_bits = cost_without_vectors(loaded, layout, [prefix])[0] - fit.loss * scored / math.log(2)
