#!/bin/bash
# `memzip compress --best` beside the defaults on one file: both compressed, then both extracted
# and compared, one torch process at a time; prints wall seconds (model load included) and bytes.
# docs/benchmarks.md §1 ("Fewest bytes: --best") quotes it.
#   OMP_NUM_THREADS=2 bash docs/scripts/best_vs_default.sh ../shared/corpus/alice29.txt /tmp/best
set -e
FILE=$(realpath "$1"); DIR=${2:-/tmp/best}
mkdir -p "$DIR" && cd "$DIR"
cp "$FILE" a.txt
for mode in default best; do
  flag=""; [ $mode = best ] && flag="--best"
  rm -f $mode.memz
  s=$(date +%s.%N); memzip compress a.txt -o $mode.memz $flag --quiet --json > $mode.c.json; e=$(date +%s.%N)
  echo "$mode compress wall $(echo "$e - $s" | bc) s, $(stat -c %s $mode.memz) B"
done
for mode in default best; do
  rm -f $mode.out
  s=$(date +%s.%N); memzip extract $mode.memz -o $mode.out --quiet --json > $mode.x.json; e=$(date +%s.%N)
  echo "$mode extract wall $(echo "$e - $s" | bc) s, identical: $(cmp -s $mode.out a.txt && echo yes || echo NO)"
done
