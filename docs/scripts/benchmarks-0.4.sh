#!/bin/bash
# The runs behind docs/benchmarks.md §1 for memzip 0.4 (format 5), one after another: one torch
# process at a time on the machine's cores. Run from the repository root with ../shared beside
# it; JSON results and stderr (with peak memory from /usr/bin/time -v) go to $OUT.
#   OUT=/tmp/bench bash docs/scripts/benchmarks-0.4.sh            # every step
#   OUT=/tmp/bench bash docs/scripts/benchmarks-0.4.sh alice29    # named steps only
set -u
STEPS=${*:-small-files small windows alice29 asyoulik adaptive}
source "$(dirname "$0")/bench_setup.sh"
run small-files bash docs/scripts/small_files.sh
run small memzip bench-bytes examples/alice-1500.txt "$OUT/alice29-20k.txt" "$OUT/tinyshakespeare-20k.txt" --json
run windows memzip bench-bytes "$OUT/alice29-20k.txt" --windows 1024,2048,4096 --streams 1,4 --json
run alice29 memzip bench-bytes $CORPUS/alice29.txt --compare-ce --json
run asyoulik memzip bench-bytes $CORPUS/asyoulik.txt --no-extract --json
run adaptive python docs/scripts/adaptive_sim.py $CORPUS/alice29.txt
