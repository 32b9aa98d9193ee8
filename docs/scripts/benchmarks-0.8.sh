#!/bin/bash
# The runs behind docs/benchmarks.md §1 for memzip 0.8 (format 9: weight rows scaled by their max,
# new tokens learning twice as fast, a window of 4,096 for files of one stream), one after
# another: one torch process at a time. Run from the repository root with ../shared beside it;
# JSON results (text for the ablations) and stderr go to $OUT.
#   OUT=/tmp/bench OMP_NUM_THREADS=2 bash docs/scripts/benchmarks-0.8.sh 20k windows-20k ablation-20k book ablation-book asyoulik shakespeare small
# `best-windows`, `best`, `prior`, `sinks` and `hidden-bias`: the fewest-bytes runs of the eighth
# session (--best, and three ideas that did not pay). `grow-4`, `grow-8`, `grow-lookahead` and
# `logit-gap`: the ninth session's capacity search (docs/capacity.md).
# `20k-0.7` and `book-0.7` run memzip 0.7 (format 8) from a worktree of its last commit, for
# speeds measured on the same machine in the same session:
#   git worktree add /tmp/memzip-0.7 c801ca4 && OLD=/tmp/memzip-0.7 bash docs/scripts/benchmarks-0.8.sh 20k-0.7 book-0.7
set -u
STEPS=${*:-20k windows-20k ablation-20k book ablation-book asyoulik shakespeare small}
source "$(dirname "$0")/bench_setup.sh"
run 20k memzip bench-bytes "$OUT/alice29-20k.txt" "$OUT/tinyshakespeare-20k.txt" --json
run windows-20k memzip bench-bytes "$OUT/alice29-20k.txt" --windows 2048,4096 --json
run ablation-20k python docs/scripts/format9_ablation.py $CORPUS/alice29.txt --limit 20000 --rounds 2
run book memzip bench-bytes $CORPUS/alice29.txt --adapt on,off --json
run ablation-book python docs/scripts/format9_ablation.py $CORPUS/alice29.txt --limit 0 --streams 4 --steps 0,2
run asyoulik memzip bench-bytes $CORPUS/asyoulik.txt --no-extract --json
run shakespeare memzip bench-bytes $CORPUS/tinyshakespeare.txt --no-extract --json
run small bash docs/scripts/small_files.sh
run best-windows memzip bench-bytes $CORPUS/alice29.txt --windows 2048,4096,8192 --streams 1 --no-extract --json
run best bash docs/scripts/best_vs_default.sh $CORPUS/alice29.txt "$OUT/best"
run prior bash -c "cd docs/scripts && python prior_bias_sim.py $(realpath $CORPUS)/alice29.txt --prior $(realpath $CORPUS)/asyoulik.txt --scales 0.5,1"
run sinks bash -c "cd docs/scripts && python sink_sim.py $(realpath $CORPUS)/alice29.txt --limit 20000 --sinks 1,4,16"
run hidden-bias bash -c "cd docs/scripts && python hidden_bias_sim.py $(realpath $CORPUS)/alice29.txt --limit 20000 --rates 0.0003,0.001,0.003,0.01,0.03,0.1,0.3"
if [ -n "${OLD:-}" ]; then  # from $OLD, so that `python -m memzip` finds that copy first
  corpus=$(realpath $CORPUS) out=$(realpath "$OUT")
  run 20k-0.7 bash -c "cd $OLD && python -m memzip bench-bytes $out/alice29-20k.txt $out/tinyshakespeare-20k.txt --json"
  run book-0.7 bash -c "cd $OLD && python -m memzip bench-bytes $corpus/alice29.txt --json"
fi
# The ninth session's capacity search by growth (docs/capacity.md): the four side-by-side chunks,
# the eight book chunks, the lookahead comparison and the float/exact logit gap on a fitted vector.
run grow-4 memzip capacity --search --texts book --samples 4 --longest 256 --max-steps 1000 --json
run grow-8 memzip capacity --search --texts book --samples 8 --longest 256 --max-steps 1000 --json
run grow-lookahead bash -c "python docs/scripts/growth_settings.py 16 100 3 1500 2 64; python docs/scripts/growth_settings.py 32 100 3 1500 2 64"
run logit-gap bash -c "python docs/scripts/vector_logit_gap.py 40 0; python docs/scripts/vector_logit_gap.py 40 400"
