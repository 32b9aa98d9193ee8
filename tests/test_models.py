"""Models: the registry, resolving -m, dtype choice, fingerprints. No network, no download."""

import json

import pytest
import torch

from memzip.errors import ModelNotFoundError, UsageError
from memzip.models import (REGISTRY, _config_parameters, available_models, choose_dtype, pick_device, resolve_model,
                           tokenizer_fingerprint, weights_fingerprint)


def test_registry_entries_are_complete():
    for alias, entry in REGISTRY.items():
        assert entry.alias == alias and entry.d_model > 0 and entry.vocab_size > 0
        assert entry.chunk_tokens > 0 and entry.nats_per_chunk > 0
    rows = {row["alias"]: row for row in available_models()}
    assert set(rows) == set(REGISTRY)


@pytest.mark.parametrize("name, phrase", [
    ("no-such-alias", "unknown model"), ("/no/such/file.gguf", "GGUF file not found"),
    ("nobody/no-such-repo", "not in the local Hugging Face cache"),
])
def test_unknown_models_are_refused_with_a_hint(name, phrase, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match=phrase) as error:
        resolve_model(name)
    assert error.value.hint


def test_a_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve_model(str(tmp_path))


def test_local_directories_resolve(tiny_dir):
    location = resolve_model(str(tiny_dir))
    assert location.source == "dir" and location.path == tiny_dir.resolve()


def test_auto_dtype_is_bfloat16_only_for_large_models_on_a_gpu():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert choose_dtype(cuda, 8_000_000_000) == "bfloat16"
    assert choose_dtype(cuda, 135_000_000) == "float32"
    assert choose_dtype(cpu, 8_000_000_000) == "float32"
    assert choose_dtype(cuda, None) == "float32"


def test_parameters_are_estimated_from_the_config(tmp_path):
    # Llama-3.1-8B's published shape: 8.03 B parameters
    config = {"hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 14336, "vocab_size": 128256}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert 7.0e9 < _config_parameters(tmp_path) < 8.5e9
    assert _config_parameters(tmp_path / "missing") is None


def test_unknown_device_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown device"):
        pick_device("tpu")


def test_fingerprints_identify_weights_and_tokenizer(tiny):
    from tiny import tiny_model

    assert weights_fingerprint(tiny.model) == tiny.identity.weights_sha256
    assert weights_fingerprint(tiny_model(seed=1).model) != tiny.identity.weights_sha256
    assert tokenizer_fingerprint(tiny.tokenizer) == tiny.identity.tokenizer_sha256
