"""The tables exp, sigmoid and RoPE come from (memzip/exact/tables.py): the functions they
tabulate, pinned (they are part of the format), and transformers' frequency scaling."""

from __future__ import annotations

import hashlib
import math

import numpy as np

from memzip.exact import tables




def test_tables_are_the_functions_they_tabulate():
    table = tables.exp_table(20, 8)
    i = np.arange(len(table) - 1)
    assert np.allclose(table[:-1] / 2 ** 20, np.exp(-(i + 0.5) / 256), atol=1e-6)
    assert table[-1] == 0 and table[-2] >= 1
    floor = tables.exp_table(28, 10, floor=1)
    assert floor.min() == 1 and floor[0] == round(2 ** 28 * math.exp(-0.5 / 1024))
    sigmoid = tables.sigmoid_table(11, 16)
    x = (np.arange(len(sigmoid)) - 16 * 2048) / 2048
    assert np.abs(sigmoid - 1 / (1 + np.exp(-x))).max() < 1e-15
    cos, sin = tables.rope_tables(64, 100000.0, 300)
    f = np.array([float(v) for v in tables.inverse_frequencies(64, 100000.0)])
    assert np.abs(cos - np.cos(np.arange(300)[:, None] * f)).max() < 1e-13
    assert np.abs(cos ** 2 + sin ** 2 - 1).max() < 1e-15


def test_tables_are_pinned():
    """The tables are part of the format: a change to how they are built must change the engine's
    name (memzip/exact/model.py ENGINE), and this pin with it."""
    digest = hashlib.sha256()
    for array in (tables.exp_table(20, 8), tables.exp_table(28, 10, 1), tables.sigmoid_table(11, 16),
                  *tables.rope_tables(64, 100000.0, 4096), *tables.rope_coarse_tables(64, 100000.0, 8)):
        digest.update(np.ascontiguousarray(array).tobytes())
    assert digest.hexdigest()[:16] == "648ac6d866814cf5"


def test_llama3_frequency_scaling_follows_transformers():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers import LlamaConfig

    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192, "rope_theta": 500000.0}
    config = LlamaConfig(hidden_size=1024, num_attention_heads=8, rope_parameters=rope)
    theirs, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    ours = [float(f) for f in tables.inverse_frequencies(128, 500000.0, rope)]
    assert np.allclose(ours, theirs.double().numpy(), rtol=1e-6)
