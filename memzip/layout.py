"""What each chunk's decoding starts from: fixed tokens around its [mem] vectors.

    [prefix tokens] [mem vectors] [infix tokens] text tokens...

- memzip's recipes put the model's *document-start* token in the prefix. Transformers park
  attention on position 0 (an "attention sink") and read little from its value, so a [mem]
  vector sitting there is hard to use; with a real token in that place the vector is an
  ordinary position (docs/benchmarks.md §4 and docs/history.md §11 measured the difference).
- The authors' code (hidden_capacity) puts nothing before the vectors, and for tokenizers that
  add a BOS token it puts the BOS right after them (the infix).
- Without vectors (model-only coding) the document-start token alone starts every chunk, as at
  the start of the documents the model was trained on.

The archive records both lists (`decode.prefix_tokens`, `decode.infix_tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    prefix: tuple[int, ...] = ()
    infix: tuple[int, ...] = ()


def document_start(tokenizer) -> list[int]:
    """The token a model saw at the start of its training documents: the BOS its tokenizer adds
    by default (Llama), else <|endoftext|> (GPT-2, Pythia, SmolLM2), else EOS; none if the
    tokenizer has none of these."""
    bos = added_bos(tokenizer)
    if bos is not None:
        return [bos]
    endoftext = tokenizer.backend_tokenizer.token_to_id("<|endoftext|>")
    if endoftext is not None:
        return [endoftext]
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def added_bos(tokenizer) -> int | None:
    """The BOS id if the tokenizer adds one by default (Llama-3, Gemma), else None (GPT-2, Pythia)."""
    backend = tokenizer.backend_tokenizer
    with_specials = backend.encode("a", add_special_tokens=True).ids
    plain = backend.encode("a", add_special_tokens=False).ids
    bos = tokenizer.bos_token_id
    return bos if bos is not None and with_specials[:1] == [bos] != plain[:1] else None


def model_only_layout(tokenizer) -> Layout:
    """Without vectors a chunk starts from the document-start token (or token 0 if the tokenizer
    has none: the decoder needs one position to predict the first token from)."""
    return Layout(prefix=tuple(document_start(tokenizer) or [0]))
