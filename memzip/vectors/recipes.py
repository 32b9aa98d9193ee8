"""Recipes: how [mem] vectors are fitted (memzip/vectors/optimize.py runs them). Plain settings, no torch.

`paper` is the authors' code (hidden_capacity) as it runs: their layout and scored tokens,
optimizer and stopping rule. `default` is memzip's. The others differ from one of those two in
one setting each, so `memzip bench` shows what each change buys on the same chunks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from memzip.errors import UsageError

LAYOUTS = ("sink", "authors")


@dataclass(frozen=True)
class Recipe:
    name: str
    lr: float
    betas: tuple[float, float] = (0.9, 0.9)
    weight_decay: float = 0.0
    max_steps: int = 5000
    patience: int = 2000  # give up on a chunk after this many evaluations without a better accuracy
    # A chunk is done when, teacher-forced, every scored token's logit leads the runner-up by at
    # least `margin`. 0 is the authors' criterion (argmax accuracy 1.0); a positive margin leaves
    # room for the small differences between training and KV-cache decoding.
    margin: float = 0.0
    warmup: int = 0  # linear warm-up steps
    schedule: str = "constant"  # or "cosine": decay to lr/10 at max_steps
    # "sink": the document-start token, then the vectors, then the text; every text token is
    # scored, the first one predicted by the last vector. "authors": the vectors first, then the
    # BOS if the tokenizer adds one; without a BOS the first text token is fed, not scored.
    layout: str = "sink"
    # Weight of a hinge term added to the cross-entropy: the mean over tokens of
    # max(0, margin - lead). Cross-entropy averages over the chunk, so one stubborn token near
    # capacity gets 1/L of the push; the hinge acts only on tokens that do not lead yet.
    hinge: float = 0.0
    # The authors' bookkeeping: keep the vector *after* the update that follows an evaluation
    # that gained accuracy (also the one that met the criterion), and count only accuracy gains,
    # instead of the vector that scored best (by accuracy, then margin).
    keep_after_update: bool = False
    # Progressive lengthening: over the first `curriculum` steps the scored part of each chunk
    # grows from its first quarter to all of it (a vector that holds the start is a warm start
    # for the whole). 0: every token is scored from the first step.
    curriculum: int = 0
    # "random": randn x std(embeddings), as the authors; "mean-embedding": the mean of the chunk's
    # token embeddings, plus half of that random start (so several vectors still differ).
    init: str = "random"

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
    # Kuratov et al. 2025 as their code (hidden_capacity, train.py, model.py) runs it: AdamW lr
    # 1e-2, betas (0.9, 0.9), weight decay 0.01, no schedule, up to 5000 steps, stop at
    # teacher-forced accuracy 1.0 or after 2000 evaluations without a gain; the vectors before
    # the tokens, the first token (BOS if the tokenizer adds one) fed and not scored; the vector
    # saved after the update that follows each gain.
    "paper": Recipe("paper", lr=1e-2, betas=(0.9, 0.9), weight_decay=0.01, max_steps=5000, patience=2000,
                    margin=0.0, layout="authors", keep_after_update=True),
    # memzip's: the sink layout is what makes the difference (docs/benchmarks.md §4, docs/history.md §11); with it
    # the highest learning rate tried (3e-1, betas 0.9/0.99) was the fastest; a margin of 1 logit
    # so that greedy decoding agrees with the teacher-forced result.
    "default": Recipe("default", lr=3e-1, betas=(0.9, 0.99), weight_decay=0.0, max_steps=400,
                      patience=200, margin=1.0, layout="sink"),
}
# From paper to default one change at a time, so `memzip bench` shows what each buys:
# the layout, then the optimizer, then memzip's stopping rule (a 1-logit margin, the vector that
# scored, a 400-step budget).
RECIPES["paper-sink"] = replace(RECIPES["paper"], name="paper-sink", layout="sink")
RECIPES["paper-sink-lr"] = replace(RECIPES["paper-sink"], name="paper-sink-lr", lr=3e-1, betas=(0.9, 0.99),
                                   weight_decay=0.0)
RECIPES["no-sink"] = replace(RECIPES["default"], name="no-sink", layout="authors")
# For long chunks (near a vector's capacity): the default's learning rate gets a chunk to ~99%
# of its tokens and then circles (measured: 95 of 96 book tokens, no gain in the last 200 of
# 929 steps); decaying it lets the last tokens settle. No early stop before the budget.
RECIPES["long"] = replace(RECIPES["default"], name="long", max_steps=2000, patience=2000, schedule="cosine")
# The hinge made a 96-token chunk that "long" left at 95/96 exact (docs/capacity.md).
RECIPES["long-hinge"] = replace(RECIPES["long"], name="long-hinge", hinge=1.0)
# Candidates for fitting near capacity faster (docs/capacity.md measures them against long-hinge).
RECIPES["long-hinge-curriculum"] = replace(RECIPES["long-hinge"], name="long-hinge-curriculum", curriculum=400)
RECIPES["long-hinge-mean-init"] = replace(RECIPES["long-hinge"], name="long-hinge-mean-init", init="mean-embedding")


def get_recipe(name: str, max_steps: int | None = None) -> Recipe:
    """The one lookup of a recipe by name, with an optional step budget."""
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}", hint="Choose one of: " + ", ".join(RECIPES))
    recipe = RECIPES[name]
    if max_steps is not None:
        if max_steps < 0:
            raise UsageError("--max-steps must be 0 or more")
        recipe = replace(recipe, max_steps=max_steps)
    return recipe


