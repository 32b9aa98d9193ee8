"""The texts memzip measures on: book text and random words, as in the paper.

- "book": Alice's Adventures in Wonderland, chapter 1 (public domain), shipped in memzip/data.
- "random": words drawn uniformly from a 4000-word sample of the authors' vocabulary
  (vocab_100k), shipped in memzip/data: text a model cannot predict from its own knowledge.
"""

from __future__ import annotations

import random
from importlib import resources

from memzip.errors import UsageError
from memzip.textcodec import TextCodec

TEXT_SETS = ("book", "random")


def sample_text(kind: str, seed: int = 0, words: int = 2000) -> str:
    """Book text (Alice in Wonderland, ch. 1) or random words drawn uniformly from the authors'
    vocabulary (a 4000-word sample of vocab_100k shipped with memzip), like the paper's."""
    data = resources.files("memzip") / "data"
    if kind == "book":
        return (data / "book.txt").read_text(encoding="utf-8")
    if kind == "random":
        vocabulary = (data / "words.txt").read_text(encoding="utf-8").split()
        rng = random.Random(seed)
        return " ".join(rng.choice(vocabulary) for _ in range(words))
    raise ValueError(kind)


def bench_chunks(loaded, kind: str, count: int, chunk_tokens: int, seed: int = 0) -> list[list[int]]:
    """`count` chunks of exactly `chunk_tokens` tokens, picked at random (seeded) among the
    back-to-back spans of the sample text."""
    tokens = TextCodec(loaded.tokenizer).tokenize(sample_text(kind, seed))
    if chunk_tokens > len(tokens):
        raise UsageError(f"the {kind} sample text has {len(tokens)} tokens, fewer than a chunk of {chunk_tokens}",
                         hint=f"Use lengths (times vectors) of at most {len(tokens)}.")
    spans = [(start, start + chunk_tokens) for start in range(0, len(tokens) - chunk_tokens + 1, chunk_tokens)]
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(len(spans)), min(count, len(spans))))
    return [tokens[spans[i][0]:spans[i][1]] for i in picked]


def check_text_sets(names: list[str]) -> None:
    for name in names:
        if name not in TEXT_SETS:
            raise UsageError(f"unknown text set {name!r}", hint="Use " + " and/or ".join(TEXT_SETS) + ".")
