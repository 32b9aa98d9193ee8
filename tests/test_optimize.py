"""The optimizer: the paper recipe is the authors' exactly, and the vectors returned are the
ones that scored the reported loss (the authors' code saved them one step late)."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from memzip.optimize import RECIPES, fit_chunks, initial_vectors, sink_tokens


def test_paper_recipe_is_the_authors():
    paper = RECIPES["paper"]
    assert (paper.lr, paper.betas, paper.weight_decay) == (1e-2, (0.9, 0.9), 0.01)
    assert (paper.max_steps, paper.patience, paper.margin, paper.schedule) == (5000, 2000, 0.0, "constant")
    assert paper.sink_prefix is False


@pytest.mark.parametrize("recipe", ["default", "long-hinge"])
def test_returned_vectors_score_the_reported_loss(tiny, recipe):
    """The reported loss is the cross-entropy even when the objective adds a hinge term."""
    chunk = tiny.tokenizer.encode("The quick brown fox", add_special_tokens=False)
    prefix = sink_tokens(tiny.tokenizer)
    fit = fit_chunks(tiny.model, [chunk], replace(RECIPES[recipe], max_steps=60), prefix=prefix, seed=3)[0]
    embed = tiny.model.get_input_embeddings()
    with torch.no_grad():
        inputs = torch.cat([embed(torch.tensor(prefix)), fit.vectors, embed(torch.tensor(chunk))])[None]
        start = len(prefix) + fit.vectors.shape[0] - 1
        logits = tiny.model(inputs_embeds=inputs).logits[0, start:start + len(chunk)]
        loss = F.cross_entropy(logits, torch.tensor(chunk)).item()
    assert abs(loss - fit.loss) < 1e-4


def test_batched_fit_equals_separate_fits(tiny):
    """Summing per-chunk losses gives each chunk its own gradient: batching changes speed only."""
    a = tiny.tokenizer.encode("abc abc abc", add_special_tokens=False)
    b = tiny.tokenizer.encode("Lorem ipsum dolor", add_special_tokens=False)
    recipe = RECIPES["default"].__class__(**{**RECIPES["default"].__dict__, "max_steps": 5})
    start = initial_vectors(tiny.model, 2, 1, seed=0)
    together = fit_chunks(tiny.model, [a, b], recipe, init=start)
    alone = [fit_chunks(tiny.model, [c], recipe, init=start[i:i + 1])[0] for i, c in enumerate((a, b))]
    for t, s in zip(together, alone):
        assert torch.allclose(t.vectors, s.vectors, atol=1e-4)


def test_sink_tokens_prefers_endoftext(tiny):
    assert sink_tokens(tiny.tokenizer) == [tiny.tokenizer.convert_tokens_to_ids("<|endoftext|>")]


def test_the_last_evaluation_builds_no_autograd_graph(tiny):
    """Nothing is trained after the last evaluation, so it runs without a graph (with
    --max-steps 0 that graph was most of compression's peak memory)."""
    from dataclasses import replace

    model = tiny.model
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(torch.is_grad_enabled()))
    try:
        for steps in (0, 2):
            seen.clear()
            recipe = replace(RECIPES["default"], max_steps=steps, margin=float("inf"), patience=10)
            fit_chunks(model, [[5, 6, 7]], recipe)
            assert seen == [True] * steps + [False]
    finally:
        hook.remove()


def test_hinge_adds_the_mean_shortfall_below_the_margin(tiny):
    """objective = CE + hinge * mean(max(0, margin - lead)): tokens that lead by the margin add
    nothing, the others add their shortfall, and the term carries a gradient."""
    from memzip.optimize import _forward

    chunk = tiny.tokenizer.encode("The quick brown fox", add_special_tokens=False)
    embed = tiny.model.get_input_embeddings()
    ids = torch.tensor([chunk])
    mask = torch.ones_like(ids, dtype=torch.bool)
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
    objective, loss, accuracy, margin = _forward(tiny.model, [param], [0], tokens[0][:0], tokens, ids, mask,
                                                 "float32", None, torch.float32, recipe)
    assert abs((objective - loss).item() - 2.0 * expected) < 1e-4
    assert abs(margin.item() - lead.min().item()) < 1e-5
    assert abs(accuracy.item() - (lead > 0).float().mean().item()) < 1e-6
    objective.sum().backward()
    assert param.grad is not None and param.grad.abs().sum() > 0
