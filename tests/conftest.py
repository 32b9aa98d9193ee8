import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Tests never write into the user's ~/.cache, except for the embedded model's dequantized
    weights, which are shared (read-only use) to keep the slow tests fast."""
    if "MEMZIP_CACHE" not in os.environ:
        os.environ["MEMZIP_CACHE"] = str(tmp_path_factory.mktemp("memzip-cache"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield


@pytest.fixture(scope="session")
def tiny():
    from tiny import tiny_model

    return tiny_model()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tiny):
    """The tiny model saved as a local model directory, for CLI tests (-m DIR)."""
    path = tmp_path_factory.mktemp("tiny-model")
    tiny.model.save_pretrained(path)
    tiny.tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def llama_style_tokenizer():
    from tiny import bos_tokenizer

    return bos_tokenizer()


@pytest.fixture(scope="session")
def tiny_bos():
    """The tiny model with a tokenizer that adds a BOS (Llama style)."""
    from tiny import tiny_model

    return tiny_model(bos=True)


# --- the exact engine on the tiny model (tests/test_exact.py and the files beside it) -------------

@pytest.fixture(scope="session")
def weights(tiny):
    """The tiny model's weights rounded for the exact engine."""
    from memzip.exact.weights import ExactWeights

    return ExactWeights.from_transformers(tiny.model)


@pytest.fixture(scope="session")
def reference(weights):
    """The torch reference, its products in float64 (the definition every other way is checked against)."""
    from memzip.exact.model import ExactLlama
    from memzip.exact.products import Choice

    return ExactLlama(weights, "cpu", Choice.forced("float64", "cpu"))


@pytest.fixture(scope="session")
def compiled(weights):
    """The compiled CPU path, its block products by int8 GEMMs."""
    from memzip.exact.compiled import CompiledLlama
    from memzip.exact.products import Choice

    return CompiledLlama(weights, "cpu", Choice.forced("int8", "cpu"))
