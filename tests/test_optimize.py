"""Fitting [mem] vectors: the vectors returned score the reported loss, batching changes speed
only, the authors' layout scores the tokens they score, and the hinge adds what it says."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from memzip.layout import Layout
from memzip.vectors.optimize import VectorSpace, _Inputs, forward, fit_chunks, initial_vectors, recipe_layout
from memzip.vectors.recipes import RECIPES


def teacher_forced_loss(tiny, layout, vectors, chunk, skip_first=False):
    embed = tiny.model.get_input_embeddings()
    with torch.no_grad():
        parts = [embed(torch.tensor(list(layout.prefix), dtype=torch.long)), vectors,
                 embed(torch.tensor(list(layout.infix), dtype=torch.long)), embed(torch.tensor(chunk))]
        inputs = torch.cat(parts)[None]
        start = len(layout.prefix) + vectors.shape[0] + len(layout.infix) - 1
        logits = tiny.model(inputs_embeds=inputs).logits[0, start:start + len(chunk)]
    first = 1 if skip_first else 0
    return F.cross_entropy(logits[first:], torch.tensor(chunk[first:])).item()


@pytest.mark.parametrize("recipe", ["default", "long-hinge"])
def test_returned_vectors_score_the_reported_loss(tiny, recipe):
    """The reported loss is the cross-entropy even when the objective adds a hinge term."""
    chunk = tiny.tokenizer.encode("The quick brown fox", add_special_tokens=False)
    layout = recipe_layout(RECIPES[recipe], tiny.tokenizer)
    fit = fit_chunks(tiny.model, [chunk], replace(RECIPES[recipe], max_steps=60), layout=layout, seed=3)[0]
    assert abs(teacher_forced_loss(tiny, layout, fit.vectors, chunk) - fit.loss) < 1e-4


def test_the_authors_layout_without_bos_feeds_the_first_token_unscored(tiny):
    """[mem, t1..tN], loss on t2..tN, as hidden_capacity does for tokenizers without a BOS."""
    chunk = tiny.tokenizer.encode("Lorem ipsum dolor", add_special_tokens=False)
    recipe = replace(RECIPES["paper"], max_steps=30, keep_after_update=False)
    layout = recipe_layout(recipe, tiny.tokenizer)
    assert layout == Layout()
    fit = fit_chunks(tiny.model, [chunk], recipe, layout=layout, seed=1)[0]
    assert abs(teacher_forced_loss(tiny, layout, fit.vectors, chunk, skip_first=True) - fit.loss) < 1e-4


def test_the_authors_layout_with_bos_scores_every_token(tiny_bos):
    """[mem, BOS, t1..tN], loss on t1..tN for tokenizers that add a BOS (Llama)."""
    chunk = tiny_bos.tokenizer.encode("Lorem ipsum dolor", add_special_tokens=False)
    recipe = replace(RECIPES["paper"], max_steps=30, keep_after_update=False)
    layout = recipe_layout(recipe, tiny_bos.tokenizer)
    assert layout == Layout(infix=(tiny_bos.tokenizer.bos_token_id,))
    fit = fit_chunks(tiny_bos.model, [chunk], recipe, layout=layout, seed=1)[0]
    assert abs(teacher_forced_loss(tiny_bos, layout, fit.vectors, chunk) - fit.loss) < 1e-4


def test_keep_after_update_returns_the_vector_one_update_later(tiny):
    """The authors' loop meets the criterion, updates once more and saves that vector."""
    chunk = [5]  # the authors feed the only token: nothing to score, the criterion is met at once
    recipe = replace(RECIPES["paper"], max_steps=50)
    start = initial_vectors(tiny.model, 1, 1, seed=0)
    kept = fit_chunks(tiny.model, [chunk], recipe, init=start)[0]
    scored = fit_chunks(tiny.model, [chunk], replace(recipe, keep_after_update=False), init=start)[0]
    assert (kept.steps, scored.steps) == (1, 0)
    assert torch.equal(scored.vectors, start[0]) and not torch.equal(kept.vectors, start[0])


def test_batched_fit_equals_separate_fits(tiny):
    """Summing per-chunk losses gives each chunk its own gradient: batching changes speed only."""
    a = tiny.tokenizer.encode("abc abc abc", add_special_tokens=False)
    b = tiny.tokenizer.encode("Lorem ipsum dolor", add_special_tokens=False)
    recipe = replace(RECIPES["default"], max_steps=5)
    start = initial_vectors(tiny.model, 2, 1, seed=0)
    together = fit_chunks(tiny.model, [a, b], recipe, init=start)
    alone = [fit_chunks(tiny.model, [c], recipe, init=start[i:i + 1])[0] for i, c in enumerate((a, b))]
    for t, s in zip(together, alone):
        assert torch.allclose(t.vectors, s.vectors, atol=1e-4)


def test_codes_are_fitted_in_the_subspace(tiny):
    fit = fit_chunks(tiny.model, [[5, 6, 7]], replace(RECIPES["default"], max_steps=3),
                     VectorSpace(mem_vectors=2, storage="int4", code_dims=8))[0]
    assert fit.vectors.shape == (2, 8)


def test_the_last_evaluation_builds_no_autograd_graph(tiny):
    """Nothing is trained after the last evaluation, so it runs without a graph (with
    --max-steps 0 that graph was most of compression's peak memory)."""
    seen = []
    hook = tiny.model.register_forward_pre_hook(lambda module, args: seen.append(torch.is_grad_enabled()))
    try:
        for steps in (0, 2):
            seen.clear()
            recipe = replace(RECIPES["default"], max_steps=steps, margin=float("inf"), patience=10)
            fit_chunks(tiny.model, [[5, 6, 7]], recipe)
            assert seen == [True] * steps + [False]
    finally:
        hook.remove()


def test_hinge_adds_the_mean_shortfall_below_the_margin(tiny):
    """objective = CE + hinge * mean(max(0, margin - lead)): tokens that lead by the margin add
    nothing, the others add their shortfall, and the term carries a gradient."""
    chunk = tiny.tokenizer.encode("The quick brown fox", add_special_tokens=False)
    embed = tiny.model.get_input_embeddings()
    ids = torch.tensor([chunk])
    param = initial_vectors(tiny.model, 1, 1, seed=0)[0].requires_grad_()
    recipe = replace(RECIPES["long-hinge"], margin=3.0, hinge=2.0)
    with torch.no_grad():
        tokens = embed(ids)
        logits = tiny.model(inputs_embeds=torch.cat([param[None], tokens], dim=1)).logits[0, :len(chunk)]
        true = logits[torch.arange(len(chunk)), ids[0]]
        others = logits.scatter(1, ids[0][:, None], float("-inf")).max(dim=1).values
        lead = true - others
        expected = (3.0 - lead).clamp(min=0).mean().item()
    assert expected > 0  # an untrained vector leaves tokens short of a 3-logit lead
    empty = tokens[0][:0]
    inputs = _Inputs(ids, torch.tensor([len(chunk)]), torch.ones_like(ids, dtype=torch.bool), tokens, (empty, empty), None,
                     "float32", torch.float32)
    objective, loss, accuracy, margin, _ = forward(tiny.model, inputs, recipe, [param], [0])
    assert abs((objective - loss).item() - 2.0 * expected) < 1e-4
    assert abs(margin.item() - lead.min().item()) < 1e-5
    assert abs(accuracy.item() - (lead > 0).float().mean().item()) < 1e-6
    objective.sum().backward()
    assert param.grad is not None and param.grad.abs().sum() > 0


def test_a_chunk_starts_from_the_same_vector_in_any_batch(tiny):
    together = initial_vectors(tiny.model, 3, 2, seed=10)
    assert torch.equal(together[2], initial_vectors(tiny.model, 1, 2, seed=12)[0])
    torch.manual_seed(11)  # the authors' code draws torch.randn(M, d) after seeding the global generator
    std = float(tiny.model.get_input_embeddings().weight.std())
    assert torch.allclose(together[1], torch.randn(2, tiny.d_model) * std)


def test_curriculum_judges_only_on_the_whole_chunk(tiny):
    """Until the curriculum ends only part of the chunk is scored, so nothing is kept or judged;
    what is returned was judged on the whole chunk."""
    chunk = list(range(5, 21))
    steps = []
    recipe = replace(RECIPES["long-hinge-curriculum"], curriculum=10, max_steps=12, margin=float("inf"))
    fit = fit_chunks(tiny.model, [chunk], recipe, layout=Layout(prefix=(0,)), on_step=lambda *a: steps.append(a[0]))[0]
    assert steps == list(range(13)) and fit.steps == 12
    assert fit.loss == pytest.approx(teacher_forced_loss(tiny, Layout(prefix=(0,)), fit.vectors, chunk), abs=1e-4)


def test_mean_embedding_start(tiny):
    chunk = [5, 6, 7, 8]
    recipe = replace(RECIPES["long-hinge-mean-init"], max_steps=0)
    fit = fit_chunks(tiny.model, [chunk], recipe, seed=4)[0]
    embed = tiny.model.get_input_embeddings().weight
    expected = embed[chunk].mean(dim=0) + 0.5 * initial_vectors(tiny.model, 1, 1, seed=4)[0, 0]
    assert torch.allclose(fit.vectors[0], expected, atol=1e-6)
