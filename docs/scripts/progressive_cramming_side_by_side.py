"""Progressive Cramming's own code (github.com/FusionBrainLab/progressive_cramming) on the texts
`memzip capacity --search` fits, with the embedded model: the longest prefix its trainer makes
one vector reconstruct, and the optimizer steps it took (docs/capacity.md, docs/benchmarks.md).

Two steps, two environments (their package pins its own dependencies; keep it out of memzip's):

    # 1. memzip's environment: the texts (the same chunks as `memzip capacity --search
    #    --samples N --longest L --seed S`) and the model as a transformers directory
    python docs/scripts/progressive_cramming_side_by_side.py dump texts.json --samples 4 --longest 256

    # 2. theirs, installed from its public source (no Hub access needed: the model and the texts
    #    are local); their code at f642f89 needs transformers 4 (it reads args.logging_dir)
    python3.11 -m venv /tmp/pc/venv && /tmp/pc/venv/bin/pip install torch==2.13.0
    git clone https://github.com/FusionBrainLab/progressive_cramming /tmp/pc/src
    /tmp/pc/venv/bin/pip install -e /tmp/pc/src "transformers>=4.57.1,<5" "datasets>=4.3.0,<5"
    OMP_NUM_THREADS=2 /tmp/pc/venv/bin/python docs/scripts/progressive_cramming_side_by_side.py run texts.json
    # or two processes of one thread each: ... run texts.json --only 0:2 --out runs/a & ... --only 2:4 --out runs/b

`run` uses their quickstart's progressive settings (examples/quickstart.py at f642f89: lr 0.1,
100 warm-up steps, cosine to 1e-3, init random0.02, float32, growth by 8 tokens, at most 500
steps per stage and 4,000 per text, convergence = teacher-forced argmax accuracy 1.0), one text
at a time as theirs runs, and prints one JSON object: per text the longest converged prefix,
the steps taken and the seconds. Their criterion is the float model's teacher-forced argmax,
not memzip's greedy decoding on the exact engine.
"""

import argparse
import json
import os
import sys
import time


def dump(args) -> None:
    from memzip.models import load_model, resolve_model, weights_directory
    from memzip.research.samples import bench_chunks

    loaded = load_model(resolve_model("embedded"), device="cpu")
    texts = []
    for kind in args.kinds.split(","):
        texts += [{"kind": kind, "tokens": t} for t in bench_chunks(loaded, kind, args.samples, args.longest, args.seed)]
    # a transformers 4 copy of the model (memzip's cached safetensors carry no "format" metadata,
    # which transformers 4's loader requires)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(weights_directory(resolve_model("embedded")))
    model_dir = os.path.abspath(args.model_out)
    AutoModelForCausalLM.from_pretrained(source).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(source).save_pretrained(model_dir)
    config_path = os.path.join(model_dir, "tokenizer_config.json")  # transformers 5's class name -> 4's
    config = json.load(open(config_path))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    json.dump(config, open(config_path, "w"))
    with open(args.file, "w") as f:
        json.dump({"model_dir": model_dir, "texts": texts, "samples": args.samples, "longest": args.longest,
                   "seed": args.seed}, f)
    print(f"{len(texts)} texts, model directory {model_dir}")


def run(args) -> None:
    import torch
    from datasets import Dataset, load_from_disk
    from progressive_cramming.run import run_training
    from progressive_cramming.train.arguments import MyTrainingArguments

    spec = json.load(open(args.file))
    first, end = (int(x) for x in args.only.split(":")) if args.only else (0, len(spec["texts"]))
    texts = spec["texts"][first:end]
    longest = max(len(t["tokens"]) for t in texts)
    pad = 0
    rows = {"input_ids": [t["tokens"] + [pad] * (longest - len(t["tokens"])) for t in texts],
            "attention_mask": [[1] * len(t["tokens"]) + [0] * (longest - len(t["tokens"])) for t in texts]}
    dataset = Dataset.from_dict(rows).with_format("torch")
    out = os.path.abspath(args.out)
    targs = MyTrainingArguments(
        output_dir=out, progressive_train=True, progressive_min_seq_len=1, progressive_step=8,
        progressive_convergence_threshold=1.0, max_optimization_steps_per_token=args.steps_per_stage,
        max_optimization_steps_per_sample=args.steps, model_checkpoint=spec["model_dir"], dataset_name="local",
        max_sequence_length=longest, number_of_mem_tokens=1, embedding_init_method="random0.02", learning_rate=0.1,
        warmup_steps=100, lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr": 1e-3},
        dtype="float32", attn_implementation="eager", random_seed=42, per_device_train_batch_size=1, report_to=[])
    began = time.perf_counter()
    artifact = run_training(targs, train_dataset=dataset)
    seconds = time.perf_counter() - began
    result = {}
    for r in load_from_disk(artifact):
        s = result.setdefault(int(r["sample_id"]), {"horizon": 0, "steps": 0, "stages": 0})
        s["stages"] += 1
        s["steps"] = max(s["steps"], int(r["steps_taken"]))
        if r["final_convergence"] is not None and r["final_convergence"] >= 1.0:
            s["horizon"] = max(s["horizon"], int(r["stage_seq_len"]))
    report = {"threads": torch.get_num_threads(), "seconds": round(seconds, 1), "texts": [
        {"kind": texts[i]["kind"], "index": first + i, **result[i]} for i in sorted(result)]}
    print(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="(memzip's environment) write the texts and the model directory")
    d.add_argument("file")
    d.add_argument("--kinds", default="book")
    d.add_argument("--samples", type=int, default=4)
    d.add_argument("--longest", type=int, default=256)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--model-out", default="/tmp/pc/model", help="where to write the model for their loader")
    r = sub.add_parser("run", help="(Progressive Cramming's environment) run their trainer on them")
    r.add_argument("file")
    r.add_argument("--out", default="/tmp/pc/runs/side_by_side")
    r.add_argument("--steps", type=int, default=4000, help="their max_optimization_steps_per_sample")
    r.add_argument("--steps-per-stage", type=int, default=500, help="their max_optimization_steps_per_token")
    r.add_argument("--only", default="", help="texts A:B of the file (e.g. two processes on two cores, one thread each)")
    args = parser.parse_args()
    {"dump": dump, "run": run}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
