#!/bin/bash
# The runs behind docs/benchmarks.md §1 for memzip 0.5 (format 6, the adaptive bias), one after
# another: one torch process at a time on the machine's cores. Run from the repository root with
# ../shared beside it; JSON results and stderr (with peak memory from /usr/bin/time -v) go to $OUT.
# Every bench-bytes row is made with the bias on and off in the same run (--adapt on,off), so
# the two speeds are comparable.
#   OUT=/tmp/bench bash docs/scripts/benchmarks-0.5.sh            # every step
#   OUT=/tmp/bench bash docs/scripts/benchmarks-0.5.sh alice29    # named steps only
set -u
STEPS=${*:-small-files small alice29 asyoulik bias-sim}
source "$(dirname "$0")/bench_setup.sh"
run small-files bash docs/scripts/small_files.sh
run small memzip bench-bytes examples/alice-1500.txt "$OUT/alice29-20k.txt" "$OUT/tinyshakespeare-20k.txt" --adapt on,off --json
run alice29 memzip bench-bytes $CORPUS/alice29.txt --adapt on,off --json
run asyoulik memzip bench-bytes $CORPUS/asyoulik.txt --adapt on,off --no-extract --json
run bias-sim python docs/scripts/vocabulary_bias_sim.py $CORPUS/alice29.txt --bias 0.0625,0.125,0.25
