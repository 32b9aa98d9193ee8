"""How far the exact engine's logits are from the float model's, for a [mem] vector before and after fitting.

    OMP_NUM_THREADS=1 python docs/scripts/vector_logit_gap.py TOKENS STEPS

fits one vector (recipe long-hinge, STEPS steps at most; 0: the random start) to the first TOKENS
tokens of book chunk 1 of `capacity --search --samples 2 --longest 64`, then runs the chunk
teacher-forced through the float model and through the exact engine from the same vector and
prints the largest logit difference per position (max and median over positions), the leads of
the true token over the runner-up in both, and the positions where they disagree on the sign.
docs/capacity.md ran `40 0` and `40 400`.
"""

import sys

import torch

from memzip.exact.engine import _layout_rows, exact_model, exact_vectors
from memzip.format import vectors as storage
from memzip.models import load_model, resolve_model
from memzip.options import EXACT_WINDOW
from memzip.research.samples import bench_chunks
from memzip.vectors.optimize import VectorSpace, fit_chunks, recipe_layout
from memzip.vectors.recipes import get_recipe


def leads(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    true = logits.gather(1, target[:, None])[:, 0]
    others = logits.clone()
    others[torch.arange(len(target)), target] = -torch.inf
    return true - others.max(dim=1).values


def main() -> None:
    tokens, steps = int(sys.argv[1]), int(sys.argv[2])
    loaded = load_model(resolve_model("embedded"), device="cpu", dtype="float32")
    recipe = get_recipe("long-hinge", steps)
    layout, space = recipe_layout(recipe, loaded.tokenizer), VectorSpace()
    text = bench_chunks(loaded, "book", 2, 64, 0)[1][:tokens]
    fit = fit_chunks(loaded.model, [text], recipe, space, layout)[0]
    embed = loaded.model.get_input_embeddings()
    print(f"steps {fit.steps}, teacher-forced accuracy {fit.accuracy:.3f}, vector norm {float(fit.vectors.norm()):.1f} "
          f"(embedding rows: median {float(embed.weight.norm(dim=1).median()):.2f})")
    target = torch.tensor(text)
    with torch.no_grad():
        rows = torch.cat([embed(torch.tensor(list(layout.prefix))), fit.vectors, embed(target)])[None]
        first = len(layout.prefix) + space.mem_vectors - 1  # the vector's position predicts the first token
        float_logits = loaded.model(inputs_embeds=rows).logits[0, first:first + tokens].float()
    model = exact_model(loaded)
    packed, scales = storage.pack(fit.vectors.numpy()[None], space.storage)
    start = torch.cat([_layout_rows(model, layout.prefix),
                       exact_vectors(packed, scales, space.storage, None, loaded.d_model)[0],
                       _layout_rows(model, layout.infix)])
    context = model.new_context(1, EXACT_WINDOW, EXACT_WINDOW + 512)
    inputs = torch.cat([start, model.embed(target[:-1])])[None]
    exact_logits = model.logits(model.forward(inputs, context, torch.arange(start.shape[0] - 1, inputs.shape[1]))[0])
    gap = (float_logits - exact_logits.float()).abs().max(dim=1).values
    lead_float, lead_exact = leads(float_logits, target), leads(exact_logits.float(), target)
    print(f"largest |float - exact| logit per position: max {float(gap.max()):.2f}, median {float(gap.median()):.2f}")
    print("leads, float:", [round(float(x), 1) for x in lead_float[:12]])
    print("leads, exact:", [round(float(x), 1) for x in lead_exact[:12]])
    print("disagree (position, float lead, exact lead):",
          [(i, round(float(a), 2), round(float(b), 2)) for i, (a, b) in enumerate(zip(lead_float, lead_exact))
           if (a > 0) != (b > 0)])


if __name__ == "__main__":
    main()
