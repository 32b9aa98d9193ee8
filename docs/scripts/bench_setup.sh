# Sourced by docs/scripts/benchmarks-*.sh: the output folder, the corpus, the thread count, the
# 20 KB excerpts every version measures, and `run NAME COMMAND...`, which runs a step when it is
# among the steps asked for ($STEPS) with its output to $OUT/NAME.json and its stderr (with
# peak memory from /usr/bin/time -v) to $OUT/NAME.err.
OUT=${OUT:-bench-out}; mkdir -p "$OUT"
CORPUS=../shared/corpus
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
head -c 20000 $CORPUS/alice29.txt > "$OUT/alice29-20k.txt"
head -c 20000 $CORPUS/tinyshakespeare.txt > "$OUT/tinyshakespeare-20k.txt"
run() {
  name=$1; shift
  case " $STEPS " in *" $name "*) ;; *) return ;; esac
  echo "$(date +%T) $name: $*"; /usr/bin/time -v "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"; echo "$(date +%T) $name rc=$?"
}
