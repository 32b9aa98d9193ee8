"""Recipes: `paper` is pinned to the authors' settings; the variants differ in one setting each."""

from dataclasses import asdict

import pytest

from memzip.errors import UsageError
from memzip.vectors.recipes import RECIPES, get_recipe


def test_paper_recipe_is_the_authors():
    paper = RECIPES["paper"]
    assert (paper.lr, paper.betas, paper.weight_decay) == (1e-2, (0.9, 0.9), 0.01)
    assert (paper.max_steps, paper.patience, paper.margin, paper.schedule) == (5000, 2000, 0.0, "constant")
    assert (paper.layout, paper.keep_after_update, paper.hinge) == ("authors", True, 0.0)


@pytest.mark.parametrize("variant, base, differing", [
    ("paper-sink", "paper", {"layout"}),
    ("paper-sink-lr", "paper-sink", {"lr", "betas", "weight_decay"}),
    ("default", "paper-sink-lr", {"margin", "keep_after_update", "max_steps", "patience"}),
    ("no-sink", "default", {"layout"}),
    ("long", "default", {"max_steps", "patience", "schedule"}),
    ("long-hinge", "long", {"hinge"}),
])
def test_variants_differ_from_their_base_as_documented(variant, base, differing):
    a, b = asdict(RECIPES[variant]), asdict(RECIPES[base])
    assert {k for k in a if a[k] != b[k]} == differing | {"name"}


def test_get_recipe_overrides_the_budget_and_refuses_bad_requests():
    assert get_recipe("default", 7).max_steps == 7
    assert get_recipe("default").max_steps == RECIPES["default"].max_steps
    with pytest.raises(UsageError, match="unknown recipe"):
        get_recipe("fastest")
    with pytest.raises(UsageError, match="max-steps"):
        get_recipe("default", -1)


def test_cosine_schedule_decays_to_a_tenth():
    long = RECIPES["long"]
    assert long.lr_at(0) == pytest.approx(long.lr)
    assert long.lr_at(long.max_steps) == pytest.approx(long.lr / 10)
