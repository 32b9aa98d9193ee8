"""The card's models through memzip without their weights: Llama-3.2-1B and Llama-3.1-8B configs as
published (vocabulary, rope scaling, grouped-query attention, tied or untied embeddings),
randomly initialized and scaled down to one narrow layer so they run on a CPU in seconds,
in bfloat16 as memzip runs large models on a GPU. Full-size runs need a GPU (docs/benchmarks.md)."""

import dataclasses

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from inputs import INPUTS
from memzip.pipeline import compress_bytes, extract_bytes
from memzip.exact.model import ENGINE
from memzip.format.container import decode_archive, encode_archive
from memzip.models import wrap_model
from memzip.options import CompressOptions

LLAMA_3 = dict(vocab_size=128256, rope_theta=500000.0, max_position_embeddings=131072, rms_norm_eps=1e-5,
               bos_token_id=128000, eos_token_id=128001, hidden_act="silu",
               rope_scaling={"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"})
PUBLISHED = {
    # hidden, intermediate, layers, heads, kv heads, tied embeddings (config.json of each model)
    "llama-3.2-1b": dict(LLAMA_3, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=True),
    "llama-3.1-8b": dict(LLAMA_3, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False,
                         rope_scaling={**LLAMA_3["rope_scaling"], "factor": 8.0}),
}


def scaled_down(name: str) -> LlamaConfig:
    """Everything as published but the size: 1 layer of width 64 with 8 heads, grouped 4 to 1
    for keys and values as in the published 32 to 8."""
    published = PUBLISHED[name]
    ratio = published["num_attention_heads"] // published["num_key_value_heads"]
    return LlamaConfig(**{**published, "hidden_size": 64, "intermediate_size": 224, "num_hidden_layers": 1,
                          "num_attention_heads": 8, "num_key_value_heads": 8 // ratio})


@pytest.fixture(scope="module", params=sorted(PUBLISHED))
def big(request, llama_style_tokenizer):
    torch.manual_seed(0)
    model = LlamaForCausalLM(scaled_down(request.param)).to(torch.bfloat16)
    return wrap_model(model, llama_style_tokenizer, name=request.param)


OPTIONS = [CompressOptions(streams=2, store_fallback=False),
           CompressOptions(mem_vectors=1, chunk_tokens=16, max_steps=2, vector_dtype="int8", store_fallback=False),
           CompressOptions(mem_vectors=2, chunk_tokens=16, max_steps=2, recipe="paper", store_fallback=False)]


@pytest.mark.parametrize("options", OPTIONS, ids=["model-only", "vectors", "paper"])
def test_round_trip_on_the_exact_engine(big, options):
    """The exact engine covers the Llama 3 configs (llama3 RoPE scaling, 4:1 grouped keys), from
    their bfloat16 weights."""
    data = INPUTS["emoji_multilingual"]
    archive, _ = compress_bytes(data, big, options)
    header = decode_archive(encode_archive(archive)).header
    assert header.decode.engine == ENGINE and header.decode.dtype == "bfloat16" and header.decode.margin is None
    assert header.model.vocab_size == 128256
    assert extract_bytes(archive, big) == data


@pytest.mark.parametrize("options", OPTIONS, ids=["model-only", "vectors", "paper"])
def test_round_trip_in_bfloat16_on_the_float_engine(big, options):
    data = INPUTS["emoji_multilingual"]
    options = dataclasses.replace(options, engine="float", streams=None, chunk_tokens=options.chunk_tokens or 24)
    archive, _ = compress_bytes(data, big, options)
    header = decode_archive(encode_archive(archive)).header
    assert header.decode.dtype == "bfloat16" and header.decode.margin == 0.5  # the half-precision default
    assert extract_bytes(archive, big) == data


def test_the_configs_keep_what_matters(big):
    config = big.model.config
    assert config.vocab_size == 128256 and config.rope_scaling["rope_type"] == "llama3"
    assert config.num_attention_heads // config.num_key_value_heads == 4  # as published: 32 / 8
    assert big.dtype == torch.bfloat16


def test_llama_style_start_is_the_bos(big):
    archive, _ = compress_bytes(b"hi", big, CompressOptions(store_fallback=False))
    assert archive.header.decode.prefix_tokens == [big.tokenizer.bos_token_id]
