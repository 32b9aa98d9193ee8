"""`memzip capacity` on the tiny model: the protocol's arithmetic and the report's shape."""

import json
import math

from typer.testing import CliRunner

from memzip.research.capacity import decoding_capacity, run_capacity, theoretical_capacity
from memzip.cli import app


def test_eq1_matches_the_paper():
    # Pythia-160M: d=768, |V|=50304 -> 787 tokens (the paper's Table / DESIGN.md)
    assert round(theoretical_capacity(768, 50304)) == 787
    assert round(theoretical_capacity(4096, 128256)) == 3862


def test_decoding_capacity_is_the_largest_length_at_99_percent():
    rows = [{"texts": "book", "mem_vectors": 1, "tokens": t, "acc": a}
            for t, a in ((8, 1.0), (16, 0.995), (32, 0.9))]
    assert decoding_capacity(rows, "acc") == {"book/1": 16}


def test_report_rows_are_consistent(tiny):
    report = run_capacity(tiny, ["book", "random"], [4, 8], 2, [1, 2], max_steps=3)
    assert len(report["rows"]) == 2 * 2 * 2
    for row in report["rows"]:
        assert math.isclose(row["information_gain_nats"], row["ce_without_nats"] - row["ce_with_nats"], abs_tol=0.02)
        assert math.isclose(row["information_gain_bits"], row["information_gain_nats"] / math.log(2), abs_tol=0.02)
        assert 0 <= row["exact_greedy"] <= row["samples"] == 2
        assert 0 <= row["greedy_accuracy"] <= 1
    assert len(report["points"]) == 2 * 2 * 2 * 2
    # lengths are per vector: two vectors measure chunks twice as long
    assert sorted({(r["mem_vectors"], r["tokens"]) for r in report["rows"]}) == [(1, 4), (1, 8), (2, 8), (2, 16)]


def test_rows_price_the_storage_dtype(tiny):
    report = run_capacity(tiny, ["book"], [8], 1, [1], max_steps=2, vector_dtype="int4")
    row = report["rows"][0]
    assert row["vector_dtype"] == "int4" and row["vector_bytes"] == 64 * 4 // 8 + 4
    assert math.isclose(row["text_bytes_per_vector_byte"], row["text_bytes"] / row["vector_bytes"], rel_tol=0.01)
    coded = run_capacity(tiny, ["book"], [8], 1, [1], max_steps=2, vector_dtype="int4", code_dims=10)["rows"][0]
    assert coded["code_dims"] == 10 and coded["vector_bytes"] == 5 + 4


def test_capacity_cli_json_and_plot(tiny_dir, tmp_path):
    png = tmp_path / "cap.png"
    result = CliRunner().invoke(app, ["capacity", "-m", str(tiny_dir), "--lengths", "4", "--samples", "1",
                                      "--vectors", "1", "--max-steps", "2", "--texts", "book", "--json",
                                      "--plot", str(png)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"][0]["tokens"] == 4
    import importlib.util

    if importlib.util.find_spec("matplotlib"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "matplotlib is not installed" in result.stderr


def test_rows_price_vectors_and_residual_against_the_model_alone(tiny):
    report = run_capacity(tiny, ["book"], [8], 2, [1], max_steps=2, vector_dtype="int8")
    row = report["rows"][0]
    assert row["residual_bytes"] > 0
    assert math.isclose(row["total_bits_per_byte"], 8 * (row["vector_bytes"] + row["residual_bytes"]) / row["text_bytes"],
                        rel_tol=0.01)
    assert row["model_only_bits_per_byte"] > 0


def test_headline_capacity_is_one_figure_and_says_when_it_is_censored(tiny):
    report = run_capacity(tiny, ["book"], [2, 4], 1, [1], max_steps=1)
    greedy = report["decoding_capacity_greedy"]["book/1"]
    assert report["decoding_capacity"] == greedy and report["decoding_capacity_texts"] == "book"
    assert report["decoding_capacity_censored"] == (greedy == 4)
    assert report["capacity_teacher_forced"] == report["decoding_capacity_teacher_forced"]["book/1"]
    assert run_capacity(tiny, ["book"], [2], 1, [2], max_steps=1)["decoding_capacity"] is None  # no single vector


# --- the greedy-exact search (memzip/research/search.py) ------------------------------------------


def test_a_fit_the_exact_engine_rejects_is_fitted_on_with_a_doubled_margin(monkeypatch):
    """_fit_until_exact: only fits that met the margin on the float model and missed on the exact
    engine are fitted on, from their own vectors, with the margin doubled each time (at most
    MARGIN_RAISES times); their steps add up."""
    import torch

    from memzip.research import search
    from memzip.vectors.optimize import ChunkFit, VectorSpace
    from memzip.vectors.recipes import get_recipe

    calls = []

    def fake_fit(model, texts, recipe, space, layout, init):
        calls.append((len(texts), recipe.margin, init[:, 0, 0].tolist()))
        # text 0 converges on float every time; text 1 never does; text 2 converges
        return [ChunkFit(init[i] + 1, 10, 0.1, 1.0, recipe.margin, texts[i][0] != 1) for i in range(len(texts))]

    def fake_exact(loaded, layout, space, vectors, text):
        return text[0] == 2 or (text[0] == 0 and float(vectors[0, 0]) >= 3)  # text 0: after its second refit

    monkeypatch.setattr(search, "fit_chunks", fake_fit)
    monkeypatch.setattr(search, "greedy_exact", fake_exact)
    loaded = __import__("types").SimpleNamespace(model=None)
    outcomes = search._fit_until_exact(loaded, [[0], [1], [2]], torch.zeros(3, 1, 4), get_recipe("default"),
                                       VectorSpace(), None)
    assert [(exact, steps) for _, exact, steps in outcomes] == [(True, 30), (False, 10), (True, 10)]
    assert calls == [(3, 1.0, [0.0, 0.0, 0.0]), (1, 2.0, [1.0]), (1, 4.0, [2.0])]


def test_search_finds_per_text_lengths_that_really_decode_and_repeats_them(tiny):
    from memzip.research.samples import bench_chunks
    from memzip.research.search import greedy_exact, search_capacity, search_report
    from memzip.vectors.optimize import VectorSpace, recipe_layout
    from memzip.vectors.recipes import get_recipe

    recipe = get_recipe("default", 40)
    layout, space = recipe_layout(recipe, tiny.tokenizer), VectorSpace(1, "float16")
    texts = bench_chunks(tiny, "book", 2, 24) + bench_chunks(tiny, "random", 1, 24)
    first = search_capacity(tiny, texts, recipe, space, layout, start=4)
    again = search_capacity(tiny, texts, recipe, space, layout, start=4)
    assert [s.exact for s in first] == [s.exact for s in again] and [s.tried for s in first] == [s.tried for s in again]
    for s in first:
        lengths = [n for n, _, _ in s.tried]
        assert lengths[0] == 4 and s.steps == sum(k for _, _, k in s.tried)
        assert s.exact == max([n for n, exact, _ in s.tried if exact], default=0)
        if s.exact:  # the vectors it kept decode that prefix exactly, judged again from scratch
            assert greedy_exact(tiny, layout, space, s.vectors, s.text[:s.exact])
        # it stopped where it had to: at the text's end, or next to a failed length above its best
        assert s.exact == len(s.text) or any(not exact and n == s.exact + 1 for n, exact, _ in s.tried)
    for s in search_capacity(tiny, texts, recipe, space, layout, start=1):  # from 1: doubling after a success
        assert s.tried[0][0] == 1 and (not s.tried[0][1] or s.tried[1][0] == 2)
    report = search_report(tiny, first, ["book", "book", "random"], space)
    assert [row["greedy_exact_tokens"] for row in report["texts"]] == [s.exact for s in first]
    assert report["texts"][0]["vector_bytes_float16"] == 2 * tiny.d_model
    assert set(report) >= {"mean_greedy_exact_tokens", "std_greedy_exact_tokens", "mean_greedy_exact_tokens_random"}


def test_an_interrupted_search_keeps_its_finished_rounds(tiny):
    """Ctrl-C during the second round: the first round's lengths come back, each text marked as
    still searching (a lower bound), and the report says it was interrupted."""
    from memzip.research import search
    from memzip.research.samples import bench_chunks
    from memzip.vectors.optimize import VectorSpace, recipe_layout
    from memzip.vectors.recipes import get_recipe

    recipe = get_recipe("default", 20)
    layout, space = recipe_layout(recipe, tiny.tokenizer), VectorSpace(1, "float16")
    texts = bench_chunks(tiny, "book", 2, 24)
    rounds = []

    def interrupt_in_second_round(searches):
        rounds.append([s.exact for s in searches])
        if len(rounds) == 1:
            raise KeyboardInterrupt  # as Ctrl-C would, between two rounds' fits

    found = search.search_capacity(tiny, texts, recipe, space, layout, start=4, on_round=interrupt_in_second_round)
    assert [s.exact for s in found] == rounds[0] and all(len(s.tried) == 1 for s in found)
    report = search.search_report(tiny, found, ["book", "book"], space)
    searching = [row["searching"] for row in report["texts"]]
    assert report["interrupted"] == any(searching)
    assert searching == [s.next_length(4) is not None for s in found] and any(searching)


def test_greedy_prefix_stops_at_the_exact_engines_first_miss(tiny, monkeypatch):
    """The prefix the exact engine reproduces is exact, and one token more is not."""
    from memzip.exact.streams import compress_stream
    from memzip.research import search
    from memzip.research.samples import bench_chunks
    from memzip.research.search import greedy_exact, greedy_prefix
    from memzip.vectors.optimize import VectorSpace, initial_vectors, recipe_layout
    from memzip.vectors.recipes import get_recipe

    layout, space = recipe_layout(get_recipe("default"), tiny.tokenizer), VectorSpace(1, "float16")
    text = bench_chunks(tiny, "book", 1, 24)[0]
    coded = []  # the exact stream coder's own count of misses: an oracle independent of first_miss
    monkeypatch.setattr(search, "compress_stream", lambda *a, **k: coded.append(compress_stream(*a, **k)) or coded[-1])
    for seed in range(3):
        vectors = initial_vectors(tiny.model, 1, 1, seed)[0]
        held = greedy_prefix(tiny, layout, space, vectors, text)
        assert greedy_exact(tiny, layout, space, vectors, text[:held]) and coded[-1].misses == 0
        assert held == len(text) or (not greedy_exact(tiny, layout, space, vectors, text[:held + 1])
                                     and coded[-1].misses == 1)
    # a text made of the model's own greedy choices is held to its end
    vectors = initial_vectors(tiny.model, 1, 1, 0)[0]
    own = text[:greedy_prefix(tiny, layout, space, vectors, text)]
    assert greedy_prefix(tiny, layout, space, vectors, own) == len(own)


# --- the search by growth (memzip/research/growth.py) ----------------------------------------------


def test_growth_finds_prefixes_that_really_decode_and_repeats_them(tiny):
    from dataclasses import replace

    from memzip.research.growth import Growth, grow_capacity
    from memzip.research.samples import bench_chunks
    from memzip.research.search import greedy_exact, search_report
    from memzip.vectors.optimize import VectorSpace, recipe_layout
    from memzip.vectors.recipes import get_recipe

    # the tiny random model's leads move slowly: a prefix counts as held from a lead of 0.2
    recipe = replace(get_recipe("default", 60), margin=0.2)
    layout, space = recipe_layout(recipe, tiny.tokenizer), VectorSpace(1, "float16")
    texts = bench_chunks(tiny, "book", 2, 24) + bench_chunks(tiny, "random", 1, 24)
    growth = Growth(lookahead=4, patience=10, decays=1, check_every=10)
    first = grow_capacity(tiny, texts, recipe, space, layout, growth=growth)
    again = grow_capacity(tiny, texts, recipe, space, layout, growth=growth)
    assert [(s.exact, s.steps, s.checks) for s in first] == [(s.exact, s.steps, s.checks) for s in again]
    assert any(s.exact for s in first)
    for s in first:
        assert s.done and s.steps <= 60 and s.checks
        assert s.exact == max(held for _, _, held in s.checks)
        checked_steps = [step for step, _, _ in s.checks]
        assert checked_steps == sorted(checked_steps)
        if s.exact:  # the vectors it kept decode that prefix exactly, judged again from scratch
            assert greedy_exact(tiny, layout, space, s.vectors, s.text[:s.exact])
    report = search_report(tiny, first, ["book", "book", "random"], space)
    assert report["interrupted"] is False
    assert [len(row["checks"]) for row in report["texts"]] == [len(s.checks) for s in first]


def test_a_token_the_exact_engine_misses_gets_a_larger_margin(monkeypatch):
    """A check where the float model held 8 tokens and the exact engine 3: the 3 count, token 3's
    margin doubles (up to most_margin), and the float prefix is judged again from scratch."""
    import math

    import torch

    from memzip.research import growth
    from memzip.research.search import TextSearch

    monkeypatch.setattr(growth, "greedy_prefix", lambda loaded, layout, space, vectors, tokens: 3)
    t = growth._Text(TextSearch(list(range(10)), 0), 0.3, torch.ones(10))
    settings = growth.Growth(raise_by=2.0, most_margin=3.0)
    for expected in (2.0, 3.0):
        t.best, t.candidate, t.checked = (8, 1.5), torch.full((1, 4), expected), False
        growth._check(None, None, None, [t], [0], settings)
        assert t.margins.tolist() == [1.0] * 3 + [expected] + [1.0] * 6
        assert (t.best, t.candidate, t.checked) == ((-1, -math.inf), None, True)
    # at most_margin already: the margin stays, and so does the candidate (checked)
    t.best, t.candidate, t.checked = (8, 1.5), torch.full((1, 4), 4.0), False
    growth._check(None, None, None, [t], [0], settings)
    assert t.margins.tolist() == [1.0] * 3 + [3.0] + [1.0] * 6 and t.best == (8, 1.5) and t.checked
    assert t.search.exact == 3 and t.search.checks == [(0, 8, 3)] * 3
    assert float(t.search.vectors[0, 0]) == 2.0  # the vectors of the first check that held 3


def test_an_interrupted_growth_keeps_its_checks(tiny):
    from memzip.research.growth import Growth, grow_capacity
    from memzip.research.samples import bench_chunks
    from memzip.vectors.optimize import VectorSpace, recipe_layout
    from memzip.vectors.recipes import get_recipe

    recipe = get_recipe("default", 200)
    layout, space = recipe_layout(recipe, tiny.tokenizer), VectorSpace(1, "float16")
    seen = []

    def interrupt_at_the_second_check(searches):
        seen.append([s.exact for s in searches])
        if len(seen) == 2:
            raise KeyboardInterrupt

    found = grow_capacity(tiny, bench_chunks(tiny, "book", 2, 24), recipe, space, layout,
                          growth=Growth(lookahead=4, check_every=5), on_check=interrupt_at_the_second_check)
    assert [s.exact for s in found] == seen[-1] and not any(s.done for s in found)


def test_search_cli_json(tiny_dir):
    result = CliRunner().invoke(app, ["capacity", "-m", str(tiny_dir), "--search", "--texts", "book", "--samples", "1",
                                      "--longest", "8", "--start", "4", "--max-steps", "5", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["texts"]) == 1 and 0 <= report["texts"][0]["greedy_exact_tokens"] <= 8
    assert report["interrupted"] is False and report["texts"][0]["searching"] is False
    assert report["strategy"] == "grow" and report["max_steps"] == 5
    bisect = CliRunner().invoke(app, ["capacity", "-m", str(tiny_dir), "--search", "--strategy", "bisect", "--texts",
                                      "book", "--samples", "1", "--longest", "8", "--start", "4", "--max-steps", "5",
                                      "--json"])
    assert bisect.exit_code == 0, bisect.output
    assert json.loads(bisect.stdout)["texts"][0]["tried"][0]["tokens"] == 4
    unknown = CliRunner().invoke(app, ["capacity", "-m", str(tiny_dir), "--search", "--strategy", "doubling"])
    assert unknown.exit_code != 0 and "unknown --strategy" in unknown.output
    bad = CliRunner().invoke(app, ["capacity", "-m", str(tiny_dir), "--search", "--vectors", "1,2"])
    assert bad.exit_code != 0 and "one vector count" in bad.output
