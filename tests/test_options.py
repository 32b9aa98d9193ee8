"""Options are checked before any model loads, with the flag to fix named."""

import pytest

from memzip.errors import UsageError
from memzip.options import CompressOptions


def test_defaults_are_valid():
    CompressOptions().check()
    CompressOptions(mem_vectors=1, vector_dtype="int4", code_dims=64, recipe="paper", margin=0.0).check()


@pytest.mark.parametrize("field, value, flag", [
    ("mem_vectors", -1, "--mem-vectors"), ("mem_vectors", 1025, "--mem-vectors"),
    ("chunk_tokens", 0, "--chunk-tokens"), ("batch_size", 0, "--batch-size"),
    ("chunking", "words", "chunking"), ("code_dims", 0, "--code-dims"),
    ("vector_dtype", "int1", "vector dtype"), ("margin", -0.1, "--margin"), ("margin", float("nan"), "--margin"),
    ("recipe", "magic", "unknown recipe"), ("max_steps", -1, "--max-steps"),
])
def test_each_bad_option_is_named(field, value, flag):
    with pytest.raises(UsageError, match=flag):
        CompressOptions(**{field: value}).check()
