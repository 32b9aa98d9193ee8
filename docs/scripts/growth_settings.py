"""The growth search (memzip/research/growth.py) with other settings, on the capacity search's book chunks.

    OMP_NUM_THREADS=1 python docs/scripts/growth_settings.py LOOKAHEAD PATIENCE DECAYS MAX_STEPS SAMPLES LONGEST

prints the exact prefix after every check on the exact engine, then one JSON line: per text the
greedy-exact length, steps, seconds, information gain (bits) and the last four checks
(step, float prefix, exact prefix). docs/capacity.md's lookahead comparison ran
`16 100 3 1500 2 64` and `32 100 3 1500 2 64` (the chunks of `capacity --search --samples 2
--longest 64`).
"""

import json
import sys
import time

from memzip.models import load_model, resolve_model
from memzip.research.growth import Growth, grow_capacity
from memzip.research.samples import bench_chunks
from memzip.vectors.optimize import VectorSpace, recipe_layout
from memzip.vectors.recipes import get_recipe


def main() -> None:
    lookahead, patience, decays, steps, samples, longest = map(int, sys.argv[1:7])
    recipe = get_recipe("default", steps)
    loaded = load_model(resolve_model("embedded"), device="cpu", dtype="float32")
    layout = recipe_layout(recipe, loaded.tokenizer)
    texts = bench_chunks(loaded, "book", samples, longest, 0)
    began = time.time()
    found = grow_capacity(loaded, texts, recipe, VectorSpace(), layout, growth=Growth(lookahead, patience, decays),
                          on_check=lambda ss: print(" ".join(f"{s.exact}{'' if s.done else '…'}" for s in ss), flush=True))
    rows = [dict(exact=s.exact, steps=s.steps, seconds=round(s.seconds), info_gain_bits=round(s.info_gain_bits),
                 checks=s.checks[-4:]) for s in found]
    print(json.dumps(dict(args=sys.argv[1:], wall=round(time.time() - began),
                          mean=sum(s.exact for s in found) / len(found), texts=rows)))


if __name__ == "__main__":
    main()
