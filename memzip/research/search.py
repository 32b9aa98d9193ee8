"""`memzip capacity --search`: per text, the longest prefix that N [mem] vectors make the exact
engine greedy-decode with no correction at all.

The paper's headline counts teacher-forced accuracy at lengths fixed in advance; what an archive
needs is that real greedy decoding reproduces the text. So each text is searched for its own
length, judged the way compression judges vectors: fitted with the storage rounding in the loop,
rounded to storage, and decoded by the exact engine (memzip/exact/streams.py), where a miss is any
token that is not the model's first choice.

Two strategies. `grow` (memzip/research/growth.py, the default) fits each text once, scoring it a
little past the prefix its vectors already hold. `bisect`, here, fits one length at a time:
lengths double from `start` while the prefix decodes exactly, then bisect between the longest
exact and the shortest failed length. Every fit after the first starts from the vectors of the
longest exact prefix so far (a warm start: those already hold its first tokens). The texts still
searching are fitted together, one batch per round. A fit that met the recipe's margin on the
float model but misses on the exact engine is fitted on with the margin doubled (twice at most)
before its length counts as failed. One fit can succeed at a length where a shorter one failed
(fitting is not monotone in the length); the search reports the longest length it saw decode
exactly, and every length it tried.

Repeatable: the random starts are seeded per text, and a fixed batch composition and thread
count give the same float sums, so the same command on the same machine gives the same lengths.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from memzip.exact.coding import CODING_SETTINGS, Distribution
from memzip.exact.engine import _layout_rows, exact_model, exact_vectors
from memzip.exact.streams import compress_stream
from memzip.format import vectors as storage
from memzip.layout import Layout
from memzip.options import EXACT_WINDOW
from memzip.vectors.fitting import cost_without_vectors
from memzip.vectors.optimize import VectorSpace, fit_chunks, initial_vectors, scores_first_token
from memzip.vectors.recipes import Recipe


# How many times a fit that converged on the float model but missed on the exact engine is fitted
# on with its margin doubled (docs/capacity.md: most failed fits of the first search were such).
MARGIN_RAISES = 2


@dataclass
class TextSearch:
    """One text's search: what it found, what it cost, and every length tried."""

    text: list[int]
    index: int  # the text's place in the input (its random start is seeded with seed + index)
    exact: int = 0  # the longest prefix decoded exactly so far
    failed: int | None = None  # the shortest prefix that failed after the last success below it
    vectors: torch.Tensor | None = None  # of the longest exact prefix, as fitted [M, D]
    steps: int = 0
    seconds: float = 0.0
    info_gain_bits: float = 0.0  # at the longest exact prefix: CE without the vectors minus with
    tried: list[tuple[int, bool, int]] = field(default_factory=list)  # (length, exact, steps)
    # --strategy grow: (step, float prefix, exact prefix) of each check on the exact engine
    checks: list[tuple[int, int, int]] = field(default_factory=list)
    done: bool = False  # False: interrupted while still searching, `exact` a lower bound

    def next_length(self, start: int) -> int | None:
        """The next length to try, or None when the search is over."""
        longest = len(self.text)
        if self.failed is None:
            if self.exact >= longest:
                return None
            return min(longest, max(start, 2 * self.exact))
        if self.failed - self.exact <= 1:
            return None
        return (self.exact + self.failed) // 2


def greedy_prefix(loaded, layout: Layout, space: VectorSpace, vectors: torch.Tensor, tokens: list[int]) -> int:
    """How many of `tokens` the exact engine, started from the layout and `vectors` [M, D] rounded
    to their storage, greedy-decodes before its first miss (as compression codes a chunk with
    vectors): all of them when the vectors hold the text exactly."""
    model = exact_model(loaded)
    packed, scales = storage.pack(vectors.numpy()[None], space.storage)
    rows = exact_vectors(packed, scales, space.storage, space.code_dims, loaded.d_model)[0]
    start = torch.cat([_layout_rows(model, layout.prefix), rows.to(model.device), _layout_rows(model, layout.infix)])
    distribution = Distribution(CODING_SETTINGS, model.shape.vocab, model.device)
    coded = compress_stream(model, distribution, start, tokens, EXACT_WINDOW, "greedy")
    return len(tokens) if coded.first_miss is None else coded.first_miss


def greedy_exact(loaded, layout: Layout, space: VectorSpace, vectors: torch.Tensor, tokens: list[int]) -> bool:
    """Whether the exact engine greedy-decodes all of `tokens` from `vectors` (greedy_prefix)."""
    return greedy_prefix(loaded, layout, space, vectors, tokens) == len(tokens)


def _fit_until_exact(loaded, texts: list[list[int]], init: torch.Tensor, recipe: Recipe, space: VectorSpace,
                     layout: Layout) -> list[tuple]:
    """(fit, greedy-exact?, steps) of each text, fitted together from `init`. A fit that met the
    recipe's margin on the float model and still missed on the exact engine is fitted on from
    where it stopped with the margin doubled, up to MARGIN_RAISES times: the two models differ
    by rounding (weights, activations, the vectors' storage), and the tokens they disagree on
    are those the float model leads by little."""
    fits = fit_chunks(loaded.model, texts, recipe, space, layout, init=init)
    outcomes = [(fit, greedy_exact(loaded, layout, space, fit.vectors, text), fit.steps) for fit, text in zip(fits, texts)]
    margin = recipe.margin or 0.5
    for _ in range(MARGIN_RAISES):
        again = [i for i, (fit, exact, _) in enumerate(outcomes) if not exact and fit.converged]
        if not again:
            break
        margin *= 2
        refits = fit_chunks(loaded.model, [texts[i] for i in again], replace(recipe, margin=margin), space, layout,
                            init=torch.stack([outcomes[i][0].vectors for i in again]))
        for i, fit in zip(again, refits):
            outcomes[i] = (fit, greedy_exact(loaded, layout, space, fit.vectors, texts[i]), outcomes[i][2] + fit.steps)
    return outcomes


def search_capacity(loaded, texts: list[list[int]], recipe: Recipe, space: VectorSpace, layout: Layout, *,
                    start: int = 16, seed: int = 0, on_round=None) -> list[TextSearch]:
    """Search every text (token lists; each at most the window less the layout and vectors).
    Interrupted (Ctrl-C), it returns what the finished rounds found: a text whose
    `next_length(start)` is not None was still searching, its length a lower bound."""
    limit = EXACT_WINDOW - len(layout.prefix) - len(layout.infix) - space.mem_vectors
    if any(len(t) > limit for t in texts):
        raise ValueError(f"texts of at most {limit} tokens fit the exact engine's window")
    searches = [TextSearch(list(t), i) for i, t in enumerate(texts)]
    try:
        _search_rounds(loaded, searches, recipe, space, layout, start, seed, on_round)
    except KeyboardInterrupt:  # the rounds so far are kept: an hour of fitting is not thrown away
        pass
    return searches


def _search_rounds(loaded, searches: list[TextSearch], recipe: Recipe, space: VectorSpace, layout: Layout,
                   start: int, seed: int, on_round) -> None:
    while True:
        todo = [(s, s.next_length(start)) for s in searches]
        todo = [(s, n) for s, n in todo if n is not None]
        if not todo:
            return
        began = time.perf_counter()
        init = torch.stack([s.vectors if s.vectors is not None
                            else initial_vectors(loaded.model, 1, space.mem_vectors, seed + s.index, space.code_dims)[0]
                            for s, _ in todo])
        outcomes = _fit_until_exact(loaded, [s.text[:n] for s, n in todo], init, recipe, space, layout)
        share = (time.perf_counter() - began) / len(todo)  # the round's time, split evenly
        for (s, n), (fit, exact, steps) in zip(todo, outcomes):
            s.steps += steps
            s.tried.append((n, exact, steps))
            if exact:
                s.exact, s.vectors = n, fit.vectors
                if s.failed is not None and s.failed <= n:
                    s.failed = None  # a longer success than a failure: search above it again
                scored = n if scores_first_token(recipe, layout) else n - 1
                s.info_gain_bits = cost_without_vectors(loaded, layout, [s.text[:n]])[0] - fit.loss * scored / math.log(2)
            else:
                s.failed = n if s.failed is None else min(s.failed, n)
            s.seconds += share
            s.done = s.next_length(start) is None
        if on_round:
            on_round(searches)


def search_report(loaded, searches: list[TextSearch], kinds: list[str], space: VectorSpace) -> dict:
    """The JSON of `memzip capacity --search`. `interrupted`: some text was still searching (its
    `searching` true, its length a lower bound: censored)."""
    d = loaded.d_model
    rows = [{
        "texts": kind, "index": s.index, "greedy_exact_tokens": s.exact, "searching": not s.done,
        "steps": s.steps,
        "seconds": round(s.seconds, 1), "info_gain_bits": round(s.info_gain_bits, 1),
        "vector_bytes_float16": storage.bytes_per_vector("float16", space.code_dims or d) * space.mem_vectors,
        "vector_bytes_int8": storage.bytes_per_vector("int8", space.code_dims or d) * space.mem_vectors,
        "tried": [{"tokens": n, "exact": e, "steps": k} for n, e, k in s.tried],
        "checks": [{"step": k, "float_prefix": f, "greedy_exact_tokens": n} for k, f, n in s.checks],
    } for s, kind in zip(searches, kinds)]
    lengths = [s.exact for s in searches]
    report = {"mem_vectors": space.mem_vectors, "vector_dtype": space.storage, "threads": torch.get_num_threads(),
              "interrupted": any(row["searching"] for row in rows), "texts": rows, "mean_greedy_exact_tokens": round(statistics.mean(lengths), 2) if lengths else None,
              "std_greedy_exact_tokens": round(statistics.pstdev(lengths), 2) if lengths else None}
    for kind in dict.fromkeys(kinds):
        mine = [s.exact for s, k in zip(searches, kinds) if k == kind]
        report[f"mean_greedy_exact_tokens_{kind}"] = round(float(np.mean(mine)), 2)
    return report
