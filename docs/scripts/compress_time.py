"""Seconds to compress one file with the embedded model, model loaded and kernels warm outside
the clock (docs/benchmarks.md §2). Run it from two checkouts alternately to compare code:

    git worktree add /tmp/before 4a1b25c
    for r in 1 2 3; do
      (cd /tmp/before && PYTHONPATH=. OMP_NUM_THREADS=2 python /path/to/docs/scripts/compress_time.py FILE before)
      OMP_NUM_THREADS=2 python docs/scripts/compress_time.py FILE after
    done
"""

import sys
import time

from memzip.pipeline import compress_bytes
from memzip.models import load_model, resolve_model
from memzip.options import CompressOptions
from memzip.exact.engine import exact_model


def main(path: str, label: str) -> None:
    data = open(path, "rb").read()
    loaded = load_model(resolve_model("embedded"), device="cpu", dtype="float32")
    exact_model(loaded)
    options = CompressOptions(store_fallback=False)
    compress_bytes(data[:3000], loaded, options)  # warm: every kernel on this path has run once
    began = time.perf_counter()
    archive, _ = compress_bytes(data, loaded, options)
    seconds = time.perf_counter() - began
    tokens = archive.header.text.tokens
    print(f"{label}: {seconds:.2f} s, {tokens / seconds:.1f} tokens/s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
