"""Wall time of memzip commands as a user runs them, start-up included (docs/benchmarks.md §2):
the very first run on a machine (empty memzip and numba caches: the GGUF conversion, rounding
the weights, compiling the kernels, measuring the products), then warm runs of the README's
Quick start example and of a 1 KB file, each a fresh process.

    OMP_NUM_THREADS=2 python docs/scripts/startup.py
    bash docs/scripts/avx2.sh python docs/scripts/startup.py      # as on an AVX2-only CPU

Prints one line per run and a JSON summary; every extracted file is compared with its input.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]
EXAMPLE = HERE / "examples" / "alice-1500.txt"


def run(args: list[str], env: dict) -> float:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "memzip", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"memzip {' '.join(args)} failed:\n{done.stderr}")
    prepared = [line for line in done.stderr.splitlines() if "(once" in line]
    print(f"{seconds:6.1f} s  memzip {' '.join(args)}" + (f"   [{'; '.join(prepared)}]" if prepared else ""),
          flush=True)
    return seconds


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="memzip-startup-"))
    one_kb = work / "note.txt"
    one_kb.write_bytes(EXAMPLE.read_bytes()[:1000])
    fresh = {**os.environ, "MEMZIP_CACHE": str(work / "cache"), "NUMBA_CACHE_DIR": str(work / "numba")}
    times = {}
    times["first_compress"] = run(["compress", str(EXAMPLE), "-o", str(work / "first.memz"), "--force"], fresh)
    times["first_extract"] = run(["extract", str(work / "first.memz"), "-o", str(work / "first.txt"), "--force"], fresh)
    for round_ in range(2):  # warm: everything cached
        times[f"compress_1500_{round_}"] = run(["compress", str(EXAMPLE), "-o", str(work / "a.memz"), "--force"], fresh)
        times[f"extract_1500_{round_}"] = run(["extract", str(work / "a.memz"), "-o", str(work / "a.txt"), "--force"],
                                              fresh)
        times[f"compress_1kb_{round_}"] = run(["compress", str(one_kb), "-o", str(work / "n.memz"), "--force"], fresh)
    for name in ("first.txt", "a.txt"):
        assert (work / name).read_bytes() == EXAMPLE.read_bytes(), name
    summary = {"first_run_compress_and_extract": round(times["first_compress"] + times["first_extract"], 1),
               "warm_compress_plus_extract_1500": round(min(times[f"compress_1500_{r}"] + times[f"extract_1500_{r}"]
                                                            for r in range(2)), 1),
               "warm_compress_1kb": round(min(times[f"compress_1kb_{r}"] for r in range(2)), 1),
               "seconds": {k: round(v, 1) for k, v in times.items()}, "threads": os.environ.get("OMP_NUM_THREADS")}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
