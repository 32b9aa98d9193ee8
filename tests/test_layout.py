"""The tokens around the vectors, from the tokenizer."""

from memzip.layout import Layout, added_bos, document_start, model_only_layout
from memzip.vectors.optimize import recipe_layout
from memzip.vectors.recipes import RECIPES


def test_a_tokenizer_without_bos_starts_documents_with_endoftext(tiny):
    endoftext = tiny.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert added_bos(tiny.tokenizer) is None
    assert document_start(tiny.tokenizer) == [endoftext]
    assert model_only_layout(tiny.tokenizer) == Layout(prefix=(endoftext,))


def test_recipes_place_the_document_start_before_or_nothing(tiny):
    endoftext = tiny.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert recipe_layout(RECIPES["default"], tiny.tokenizer) == Layout(prefix=(endoftext,))
    assert recipe_layout(RECIPES["paper"], tiny.tokenizer) == Layout()  # no BOS: nothing around the vectors


def test_a_tokenizer_that_adds_bos(llama_style_tokenizer):
    bos = llama_style_tokenizer.bos_token_id
    assert added_bos(llama_style_tokenizer) == bos
    assert document_start(llama_style_tokenizer) == [bos]
    assert recipe_layout(RECIPES["paper"], llama_style_tokenizer) == Layout(infix=(bos,))
    assert recipe_layout(RECIPES["default"], llama_style_tokenizer) == Layout(prefix=(bos,))
