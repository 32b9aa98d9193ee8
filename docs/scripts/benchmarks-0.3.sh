#!/bin/bash
# The runs behind docs/benchmarks.md §1-3 (memzip 0.3, format 4), one after another: one torch
# process at a time on the machine's cores. Run from the repository root with ../shared beside
# it; JSON results and stderr (with peak memory from /usr/bin/time -v) go to $OUT.
#   OUT=/tmp/bench bash docs/scripts/benchmarks-0.3.sh            # every step
#   OUT=/tmp/bench bash docs/scripts/benchmarks-0.3.sh alice29    # named steps only
set -u
STEPS=${*:-small speed-20k alice29 speed-alice29 asyoulik shakespeare-bytes speed-1mb}
source "$(dirname "$0")/bench_setup.sh"
run small memzip bench-bytes examples/alice-1500.txt "$OUT/alice29-20k.txt" "$OUT/tinyshakespeare-20k.txt" --engines exact,float --json
run speed-20k memzip bench-speed "$OUT/alice29-20k.txt" --profile --json
run alice29 memzip bench-bytes $CORPUS/alice29.txt --compare-ce --json
run speed-alice29 memzip bench-speed $CORPUS/alice29.txt --profile --json
run asyoulik memzip bench-bytes $CORPUS/asyoulik.txt --compare-ce --no-extract --json
run shakespeare-bytes memzip bench-bytes $CORPUS/tinyshakespeare.txt --no-extract --json
run speed-1mb memzip bench-speed $CORPUS/tinyshakespeare.txt --profile --json

# not run for docs/benchmarks.md this time (time): the float engine and a 2048 window on alice29
# memzip bench-bytes $CORPUS/alice29.txt --engines float --no-extract --json
# memzip bench-bytes $CORPUS/alice29.txt --windows 2048 --no-extract --json
