#!/bin/bash
# The runs behind docs/benchmarks.md §1 for memzip 0.7 (format 8: one adaptive bias shared by each
# group of 4 streams), one after another: one torch process at a time. Run from the repository
# root with ../shared beside it; JSON results and stderr go to $OUT.
#   OUT=/tmp/bench OMP_NUM_THREADS=2 bash docs/scripts/benchmarks-0.7.sh book-shared 20k shakespeare asyoulik
# `book-0.6` runs memzip 0.6 (format 7, a bias per stream) from a worktree of its last commit,
# for speeds measured on the same machine in the same session:
#   git worktree add /tmp/memzip-0.6 780dd00 && OLD=/tmp/memzip-0.6 bash docs/scripts/benchmarks-0.7.sh book-0.6 shakespeare-0.6
set -u
STEPS=${*:-book-shared 20k shakespeare asyoulik}
source "$(dirname "$0")/bench_setup.sh"
run book-shared memzip bench-bytes $CORPUS/alice29.txt --adapt on,off --json
run 20k memzip bench-bytes "$OUT/alice29-20k.txt" "$OUT/tinyshakespeare-20k.txt" --json
run shakespeare memzip bench-bytes $CORPUS/tinyshakespeare.txt --json
run asyoulik memzip bench-bytes $CORPUS/asyoulik.txt --no-extract --json
if [ -n "${OLD:-}" ]; then  # from $OLD, so that `python -m memzip` finds that copy first
  corpus=$(realpath $CORPUS)
  run book-0.6 bash -c "cd $OLD && python -m memzip bench-bytes $corpus/alice29.txt --json"
  run shakespeare-0.6 bash -c "cd $OLD && python -m memzip bench-bytes $corpus/tinyshakespeare.txt --no-extract --json"
fi
