"""A tiny random-initialized Llama and an in-process BPE tokenizer: no download, ~1 s to build."""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from memzip.models import wrap_model

TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog. " * 4,
    "Alice was beginning to get very tired of sitting by her sister on the bank.",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. Ünïcödé 🎉 日本語のテキスト",
    "def main():\n    return 0\n\r\n\t tabs and  spaces  ",
]


def _bpe(special_tokens: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer)
    return tokenizer


@functools.lru_cache(maxsize=None)
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2 style: no BOS, <|endoftext|> between documents (like SmolLM2 and Pythia)."""
    return PreTrainedTokenizerFast(tokenizer_object=_bpe(["<|endoftext|>"]), eos_token="<|endoftext|>")


@functools.lru_cache(maxsize=None)
def bos_tokenizer() -> PreTrainedTokenizerFast:
    """Llama style: adds <|begin_of_text|> in front of every encoding by default."""
    tokenizer = _bpe(["<|begin_of_text|>", "<|end_of_text|>"])
    bos = tokenizer.token_to_id("<|begin_of_text|>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                             special_tokens=[("<|begin_of_text|>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>")


@functools.lru_cache(maxsize=None)
def tiny_model(seed: int = 0, hidden: int = 64, layers: int = 2, bos: bool = False):
    tokenizer = bos_tokenizer() if bos else tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    return wrap_model(model, tokenizer, name="tiny-random-llama" + ("-bos" if bos else ""))
