"""Run the authors' own optimization loop (yurakuratov/hidden_capacity: train.py and model.py,
unmodified, imported from a checkout) on the chunks `memzip bench` uses, with the embedded model,
from the same starting vectors, on the CPU, and judge each result with memzip's greedy decoder.

    git clone https://github.com/yurakuratov/hidden_capacity /path/hidden_capacity
    pip install --target /path/site pandas nltk tqdm          # what train.py imports
    OMP_NUM_THREADS=1 python docs/scripts/authors_side_by_side.py /path/hidden_capacity /path/site \\
        --texts book --chunks 8 --chunk-tokens 16 --budget 5000 --out authors.json
    OMP_NUM_THREADS=1 memzip bench --texts book --chunks 8 --chunk-tokens 16 \\
        --recipes paper,default --device cpu --json > memzip.json

Only their environment is adapted, never their loop: nltk's sentence splitter (it needs a
download) returns the text whole (a 16-token chunk is one "sentence" either way), the global RNG
is seeded per chunk before their MemoryCell draws its start (chunk i from seed i, as memzip's
bench draws chunk i), and transformers 5 no longer takes `use_flash_attention_2` (they pass False;
the wrapper drops it). One JSON row per chunk is printed as it finishes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", help="a clone of yurakuratov/hidden_capacity")
    parser.add_argument("site", help="a directory with pandas, nltk and tqdm (pip install --target)")
    parser.add_argument("--texts", default="book", help="book or random, comma-separated")
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--first", type=int, default=0, help="skip the chunks before this one")
    parser.add_argument("--chunk-tokens", type=int, default=16)
    parser.add_argument("--budget", type=int, default=5000, help="their max optimization steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write every row as a JSON list here too")
    args = parser.parse_args()

    sys.path.append(args.site)
    sys.path.insert(0, args.checkout)
    import torch
    import model as authors_model  # their model.py
    import train  # their train.py
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from memzip.ranks.decoder import decode_group, greedy_misses
    from memzip.layout import Layout
    from memzip.models import load_model, resolve_model, weights_directory
    from memzip.options import DEFAULT_MARGIN
    from memzip.research.samples import bench_chunks

    torch.set_num_threads(args.threads)
    loaded = load_model(resolve_model("embedded"), device="cpu")
    model_dir = str(weights_directory(resolve_model("embedded")))  # the same weights, as a directory
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    train.sent_tokenize = lambda text: [text]
    from_pretrained = AutoModelForCausalLM.from_pretrained

    class _Auto:
        @staticmethod
        def from_pretrained(name, use_flash_attention_2=False, **kwargs):
            assert not use_flash_attention_2
            return from_pretrained(name, **kwargs)

    train.AutoModelForCausalLM = _Auto
    seed = {"value": 0}
    create_memory = authors_model.MemoryCell.create_memory

    def seeded_create_memory(self):
        torch.manual_seed(seed["value"])
        create_memory(self)

    authors_model.MemoryCell.create_memory = seeded_create_memory

    rows = []
    for kind in args.texts.split(","):
        chunks = bench_chunks(loaded, kind, args.chunks, args.chunk_tokens, seed=0)
        for i, chunk in enumerate(chunks):
            if i < args.first:
                continue
            text = loaded.tokenizer.decode(chunk)
            retokenized = tokenizer(text, max_length=args.chunk_tokens, truncation=True)["input_ids"]
            assert retokenized == chunk, "their tokenization of the chunk differs from memzip's"
            seed["value"] = i
            began = time.time()
            # Their arguments, in their order: 1 vector, the text, its length, max steps, the
            # sample index, seed 0, the model, float32, no flash attention, device, tokenizer,
            # lr 1e-2, beta1 0.9, beta2 0.9, weight decay 0.01, patience 2000, no compile.
            result = train.run_single_experiment(1, text, args.chunk_tokens, args.budget, i, 0, model_dir,
                                                 torch.float32, False, "cpu", tokenizer, 1e-2, 0.9, 0.9, 0.01,
                                                 2000, False)
            wall = time.time() - began
            vector = torch.tensor(result["best_memory_params"])[None]
            decoded = decode_group(loaded.model, [len(chunk)], Layout(), DEFAULT_MARGIN["float32"],
                                   vectors=vector, targets=[chunk])
            misses = greedy_misses(decoded, [len(chunk)], first_fed=True)[0]  # their first token is fed
            row = {"texts": kind, "chunk": i, "steps": len(result["losses"]),
                   "teacher_forced_accuracy": round(result["best_accuracy"], 4),
                   "greedy_misses": misses, "lossless": misses == 0, "wall_seconds": round(wall, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
