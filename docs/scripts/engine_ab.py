"""Same-process A/B timings of ways the exact engine computes the same integers
(docs/benchmarks.md §2). Each set alternates in one process, so machine noise (large on shared
2-core VMs) falls on every side alike; every set is also checked for equal bits.

    OMP_NUM_THREADS=2 python docs/scripts/engine_ab.py step 1 4 28       # reference vs compiled step
    OMP_NUM_THREADS=2 python docs/scripts/engine_ab.py block             # a compression block, each backend
    OMP_NUM_THREADS=2 python docs/scripts/engine_ab.py product 1 4 16 28  # a step's weight products

- step: one decoding step of m streams (layers for one position with a full 1024-token window,
  logits, the coder's pass over them) by the torch reference (memzip/exact/model.py) and by the
  compiled path (memzip/exact/compiled.py), the products of both by their default backends.
- block: compression's unit of work, a block of 512 positions of one stream after a full
  1024-position window (layers and the output head for every position), by the compiled path
  with each product backend that runs here forced (memzip/exact/products.py), and as measured.
- product: the integer products of one decoding step of m streams (every layer's four weights
  and the output head, the embedded model's real weights), by the vector loops and by
  torch._int_mm on the rows' int8 slices; reports the weights' bytes read per second.
"""

import statistics
import sys
import time

import numpy as np
import torch

from memzip.exact import ExactLlama, build_engine, kernels, products
from memzip.exact.coding import CodingSettings, Distribution
from memzip.exact.compiled import CompiledLlama
from memzip.exact.products import Choice
from memzip.models import load_model, resolve_model
from memzip.exact.engine import exact_weights, EXACT_SETTINGS

WINDOW, STEPS, ROUNDS = 1024, 6, 4


def alternate(runs: dict, rounds: int = ROUNDS) -> dict:
    """Time each named function `rounds` times, alternating; their results must be equal."""
    times = {name: [] for name in runs}
    for _ in range(rounds):
        results = []
        for name, run in runs.items():
            began = time.perf_counter()
            results.append(run())
            times[name].append(time.perf_counter() - began)
        assert all(torch.equal(results[0], r) for r in results[1:]), "the ways differ"
    return {name: (round(statistics.median(t) * 1e3, 1), [round(x * 1e3) for x in t]) for name, t in times.items()}


def filled_context(model: ExactLlama, tokens: torch.Tensor):
    context = model.new_context(tokens.shape[0], WINDOW)
    model.forward(model.embed(tokens[:, :1]), context)
    for a in range(1, WINDOW, 64):
        model.forward(model.embed(tokens[:, a:a + 64]), context)
    return context


def step(weights, batches: list[int]) -> None:
    engines = {"reference": build_engine(weights, reference=True), "compiled": build_engine(weights)}
    distribution = Distribution(CodingSettings(), weights.shape.vocab, "cpu")
    generator = torch.Generator().manual_seed(0)
    for batch in batches:
        tokens = torch.randint(0, weights.shape.vocab, (batch, WINDOW + ROUNDS * STEPS + 1), generator=generator)
        contexts = {name: filled_context(model, tokens) for name, model in engines.items()}

        def steps(name):
            model, context = engines[name], contexts[name]
            first = context.position
            for i in range(STEPS):
                hidden = model.forward(model.embed(tokens[:, first + i:first + i + 1]), context)
                logits = model.logits(hidden[:, 0])
                kernels.decode_rows(logits.numpy(), distribution._int_table, distribution.settings.grid_bits)
            return logits

        # the engines advance in lockstep: each round's steps see the same tokens at the same positions
        timed = alternate({name: (lambda n=name: steps(n)) for name in engines})
        per_step = {name: (round(ms / STEPS, 1), [round(x / STEPS) for x in each]) for name, (ms, each) in timed.items()}
        print(f"decoding step, batch {batch} (ms a step: median, each round):", per_step, flush=True)


def block(weights, positions: int = 512) -> None:
    engines = {b: CompiledLlama(weights, "cpu", Choice.forced(b, "cpu")) for b in products.available("cpu")}
    engines["measured"] = build_engine(weights)
    print("measured choice:", engines["measured"].choice.roles, "attention:", engines["measured"].choice.attention)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, weights.shape.vocab, (1, WINDOW + positions), generator=generator)
    contexts = {}
    for name, model in engines.items():
        rows = model.embed(tokens)
        context = model.new_context(1, WINDOW, WINDOW + positions)
        for a in range(0, WINDOW, positions):
            model.forward(rows[:, a:a + positions], context, torch.arange(positions))
        contexts[name] = (context, (context.position, context.filled, context.first), rows)

    def run(name: str) -> torch.Tensor:
        model, (context, filled, rows) = engines[name], contexts[name]
        context.position, context.filled, context.first = filled  # the same block again
        hidden = model.forward(rows[:, WINDOW:], context, torch.arange(positions))[0]
        return torch.cat([model.logits(part) for part in hidden.split(64)])

    timed = alternate({name: (lambda n=name: run(n)) for name in engines}, rounds=3)
    print(f"compression block of {positions} positions after {WINDOW} (ms: median, each round):", timed, flush=True)


def product(weights, batches: list[int]) -> None:
    roles = [w for layer in weights.layers for w in (layer.qkv, layer.out, layer.gate_up, layer.down)] + [weights.head]
    total = sum(w.slices.numel() for w in roles)
    generator = np.random.default_rng(0)
    for rows in batches:
        inputs = {w.n_in: generator.integers(-2 ** 14, 2 ** 14 + 1, (rows, w.n_in), dtype=np.int16) for w in roles}
        ones = {w.n_out: np.ones(w.n_out, np.float32) for w in roles}

        def by(backend: str):
            return [kernels.scaled_outputs(*products.product(w, inputs[w.n_in], backend), ones[w.n_out],
                                           np.ones(rows, np.float32)) for w in roles]
        first, second = by("vector"), by("int8")
        assert all(np.array_equal(a, b) for a, b in zip(first, second)), "the two ways differ"
        times = {"vector": [], "int8": []}
        for _ in range(ROUNDS + 1):
            for name in times:
                began = time.perf_counter()
                by(name)
                times[name].append(time.perf_counter() - began)
        summary = {name: f"{statistics.median(t) * 1e3:.1f} ms ({total / statistics.median(t) / 1e9:.1f} GB/s)"
                   for name, t in times.items()}
        print(f"weight products of a step, {rows} rows, {total / 1e6:.0f} MB of int8 slices (median of "
              f"{ROUNDS + 1}, alternating):", summary, flush=True)


def main(argv: list[str]) -> None:
    loaded = load_model(resolve_model("embedded"), device="cpu", dtype="float32")
    weights = exact_weights(loaded, EXACT_SETTINGS)
    numbers = [int(b) for b in argv[1:]]
    if argv[:1] == ["step"]:
        step(weights, numbers or [1, 4, 28])
    elif argv[:1] == ["block"]:
        block(weights)
    elif argv[:1] == ["product"]:
        product(weights, numbers or [1, 4, 16, 28])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
