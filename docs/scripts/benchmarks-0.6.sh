#!/bin/bash
# The runs behind docs/benchmarks.md §1 for memzip 0.6 (format 7: --window 4096 / 8192 in one
# byte), one after another: one torch process at a time. Run from the repository root with
# ../shared beside it; JSON results and stderr go to $OUT. The window rows of 2026-12-07 were
# made at OMP_NUM_THREADS=1 (another one-thread process had the other core), so their speeds
# compare with each other only.
#   OUT=/tmp/bench OMP_NUM_THREADS=1 bash docs/scripts/benchmarks-0.6.sh windows-20k windows-book streams-book
set -u
STEPS=${*:-windows-20k windows-book streams-book}
source "$(dirname "$0")/bench_setup.sh"
run windows-20k memzip bench-bytes "$OUT/alice29-20k.txt" --windows 2048,4096,8192 --json
run windows-book memzip bench-bytes $CORPUS/alice29.txt --windows 2048,4096,8192 --no-extract --json
run streams-book memzip bench-bytes $CORPUS/alice29.txt --streams 1 --no-extract --json
