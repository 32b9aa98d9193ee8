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


def test_a_model_loaded_once_comes_back_from_its_card_without_transformers(tiny_dir, tmp_path, monkeypatch):
    """The first load writes a card (identity, details, the tokenizer transformers built); the next
    takes those from it and loads the transformers model only when asked for it."""
    from memzip.models import load_model

    monkeypatch.setenv("MEMZIP_CACHE", str(tmp_path))
    location = resolve_model(str(tiny_dir))
    first = load_model(location, device="cpu")
    assert first.model_loaded
    again = load_model(location, device="cpu")
    assert not again.model_loaded  # from the card
    assert again.identity == first.identity and again.details == first.details
    assert again.exact_unsupported is None and again.details["attn_implementation"]
    text = "Ünïcödé 🎉 and the quick brown fox"
    assert (again.tokenizer.backend_tokenizer.encode(text).ids == first.tokenizer.backend_tokenizer.encode(text).ids)
    assert (again.tokenizer.bos_token_id, again.tokenizer.eos_token_id) == (first.tokenizer.bos_token_id,
                                                                            first.tokenizer.eos_token_id)
    assert tokenizer_fingerprint(again.tokenizer) == again.identity.tokenizer_sha256
    assert weights_fingerprint(again.model) == again.identity.weights_sha256  # loaded now, on first use
    (tiny_dir / "config.json").touch()  # the model's files changed: a new card
    assert load_model(location, device="cpu").model_loaded


_WARM_RUN = """
import sys
from memzip.cli import main
sys.argv = ["memzip", "compress", sys.argv[1], "-m", sys.argv[2], "-o", sys.argv[3], "--force", "--no-store"]
try:
    main()
except SystemExit as exit:
    assert not exit.code, exit.code
print("transformers" in sys.modules)
"""


@pytest.mark.slow
def test_a_warm_run_of_the_exact_engine_does_not_import_transformers(tiny_dir, tmp_path):
    """The second compression with a model (its card and rounded weights cached) runs without
    importing transformers (seconds of start-up); the first says what it prepares, once."""
    import os
    import subprocess
    import sys

    source = tmp_path / "note.txt"
    source.write_bytes(b"The quick brown fox jumps over the lazy dog. " * 20)
    env = {**os.environ, "MEMZIP_CACHE": str(tmp_path / "cache")}
    outputs = []
    for run in range(2):
        done = subprocess.run([sys.executable, "-c", _WARM_RUN, str(source), str(tiny_dir), str(tmp_path / f"{run}.memz")],
                              capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr
        outputs.append(done)
    assert outputs[0].stdout.strip() == "True" and outputs[1].stdout.strip() == "False"
    assert "rounding the model's weights for the exact engine (once)" in outputs[0].stderr
    assert "measuring this machine's exact products (once)" in outputs[0].stderr
    assert "(once)" not in outputs[1].stderr
    assert (tmp_path / "0.memz").read_bytes() == (tmp_path / "1.memz").read_bytes()
