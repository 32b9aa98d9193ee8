#!/usr/bin/env bash
# Two processes (torchrun, gloo, one thread each) against one process (two threads) on the
# same file and batch shape; prints wall seconds and checks that both archives are identical.
#   bash docs/scripts/torchrun_speedup.sh alice29-20k.txt 3
set -euo pipefail
file=$1; batch=${2:-3}; work=$(mktemp -d)
export HF_HUB_OFFLINE=1
timed() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); python3 -c "print(round($e - $s, 1))"; }
run2() { OMP_NUM_THREADS=1 python -m torch.distributed.run --nproc-per-node 2 --master-addr 127.0.0.1 \
         --master-port "$1" -m memzip "${@:2}"; }
echo "compress, one process, 2 threads: $(timed memzip compress "$file" -o "$work/one.memz" --batch-size "$batch" -q) s"
echo "compress, two processes, 1 thread each: $(timed run2 29533 compress "$file" -o "$work/two.memz" --batch-size "$batch" -q) s"
cmp "$work/one.memz" "$work/two.memz" && echo "archives identical"
echo "extract, two processes: $(timed run2 29534 extract "$work/two.memz" -o "$work/two.txt" -q) s"
echo "extract, one process: $(timed memzip extract "$work/two.memz" -o "$work/one.txt" -q) s"
cmp "$file" "$work/two.txt" && cmp "$file" "$work/one.txt" && echo "both extracted identical"
rm -rf "$work"
