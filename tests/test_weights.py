"""Rounding a model's weights (memzip/exact/weights.py): rows that fit their bits, the cache on
disk giving back the same integers, the architectures covered."""

from __future__ import annotations


import torch

from memzip.exact.integer import (exponent, pow2)
from memzip.exact.weights import ExactWeights, unsupported_reason, weight_integers




def test_weight_rows_fit_their_bits():
    """Power-of-two scales (formats 2-8): a row's largest integer lies between 64 and 127."""
    q, scale = weight_integers(torch.tensor([[1.0, -1.0, 0.999]], dtype=torch.float64), 8, peak=0)
    assert q.abs().max() <= 127 and torch.equal(scale, pow2(exponent(scale) - 1, torch.float64))
    q, _ = weight_integers(torch.tensor([[0.99999, 0.5]], dtype=torch.float64), 8, peak=0)
    assert q[0, 0] == 127  # rounding would reach 128, which int8 cannot hold
    q, _ = weight_integers(torch.tensor([[0.5, 0.26]], dtype=torch.float64), 8, peak=0)
    assert q.tolist() == [[64, 33]]  # half the range unused: 0.5 is just inside its binade


def test_peak_scales_use_every_integer_of_a_row():
    """Format 9: the scale is the row's max |w| over 127 (for 8 bits) in float32, so the largest
    weight is +-127 whatever its binade; a zero row keeps a scale of one."""
    rows = torch.tensor([[0.5, 0.26, -0.1], [-3.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    q, scale = weight_integers(rows, 8)
    assert q.tolist() == [[127, 66, -25], [-127, 42, 0], [0, 0, 0]]
    assert scale[:, 0].tolist() == [float(torch.tensor(0.5 / 127, dtype=torch.float32)),
                                    float(torch.tensor(3.0 / 127, dtype=torch.float32)), 1.0]


def test_rounded_weights_saved_and_loaded_are_the_same(weights, tmp_path):
    path = tmp_path / "weights.safetensors"
    weights.save(path)
    again = ExactWeights.load(path)
    assert again.shape == weights.shape and again.settings == weights.settings
    assert torch.equal(again.embedding, weights.embedding)
    for original, loaded in zip(weights.layers + [weights.head], again.layers + [again.head]):
        for name in (("qkv", "out", "gate_up", "down") if original is not weights.head else ("",)):
            a, b = (getattr(original, name), getattr(loaded, name)) if name else (original, loaded)
            assert torch.equal(a.slices, b.slices) and torch.equal(a.scale, b.scale) and a.bits == b.bits
        if original is not weights.head:
            assert torch.equal(original.key_scale, loaded.key_scale)
            assert torch.equal(original.value_scale, loaded.value_scale)
    for name, stacked in again.stacked_slices.items():  # the layers' slices are views of it
        assert all(layer_weight.slices.data_ptr() == stacked[i].data_ptr()
                   for i, layer_weight in enumerate(getattr(layer, name) for layer in again.layers))


def test_only_llama_models_are_covered(tiny):
    assert unsupported_reason(tiny.model.config, type(tiny.model).__name__) is None
    assert tiny.exact_unsupported is None
    from transformers import GPTNeoXConfig

    neox = GPTNeoXConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=50)
    assert "Llama" in unsupported_reason(neox, "GPTNeoXForCausalLM")
