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
