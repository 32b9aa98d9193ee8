#!/bin/bash
# The runs behind docs/benchmarks.md §1 for memzip 0.4 (format 5), one after another: one torch
# process at a time on the machine's cores. Run from the repository root with ../shared beside
# it; JSON results and stderr (with peak memory from /usr/bin/time -v) go to $OUT.
#   OUT=/tmp/bench bash docs/scripts/benchmarks-0.4.sh            # every step
#   OUT=/tmp/bench bash docs/scripts/benchmarks-0.4.sh alice29    # named steps only
set -u
OUT=${OUT:-bench-out}; mkdir -p "$OUT"
CORPUS=../shared/corpus
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
head -c 20000 $CORPUS/alice29.txt > "$OUT/alice29-20k.txt"
head -c 20000 $CORPUS/tinyshakespeare.txt > "$OUT/tinyshakespeare-20k.txt"
STEPS=${*:-small-files small windows alice29 asyoulik adaptive}
run() {
  name=$1; shift
  case " $STEPS " in *" $name "*) ;; *) return ;; esac
  echo "$(date +%T) $name: $*"; /usr/bin/time -v "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"; echo "$(date +%T) $name rc=$?"
}
run small-files bash docs/scripts/small_files.sh
run small memzip bench-bytes examples/alice-1500.txt "$OUT/alice29-20k.txt" "$OUT/tinyshakespeare-20k.txt" --json
run windows memzip bench-bytes "$OUT/alice29-20k.txt" --windows 1024,2048,4096 --streams 1,4 --json
run alice29 memzip bench-bytes $CORPUS/alice29.txt --compare-ce --json
run asyoulik memzip bench-bytes $CORPUS/asyoulik.txt --no-extract --json
run adaptive python docs/scripts/adaptive_sim.py $CORPUS/alice29.txt
