. .dev/setup.sh
R=/tmp/r2; mkdir -p $R; t0=$(date +%s)
step() { echo "== $1 at $(( $(date +%s) - t0 )) s"; }
step load; python3 -m memzip models > $R/models.txt 2>&1; python3 -m memzip info .dev/cpu/hello.memz > $R/info.txt 2>&1
step xcpu
for a in .dev/cpu/*.memz; do n=$(basename $a .memz); src=examples/${n%-int4}.txt
  timeout 120 python3 -m memzip extract $a -o $R/$n.out --force --json > $R/x-$n.json 2>$R/x-$n.err; rc=$?
  echo "extract-on-gpu $n rc=$rc $(cmp -s $R/$n.out $src && echo identical || echo DIFFERENT) $(tail -c 300 $R/x-$n.err)"; done
step cgpu
for n in hello alice-chapter1-opening; do
  /usr/bin/time -v timeout 200 python3 -m memzip compress examples/$n.txt -o $R/gpu-$n.memz --force --json > $R/c-$n.json 2>$R/c-$n.err; echo "compress-on-gpu $n rc=$? $(grep -E 'Elapsed|Maximum' $R/c-$n.err | tr '\n' ' ')"; done
timeout 100 python3 -m memzip compress examples/hello.txt -o $R/gpu-hello-int4.memz --vector-dtype int4 --force --json > $R/c-hello-int4.json 2>&1; echo "int4 rc=$?"
step cap-book
timeout 300 python3 -m memzip capacity --texts book --lengths 32,64,96,128,160,192 --samples 6 --vectors 1 --max-steps 2000 --json --plot $R/cap-book.png > $R/cap-book.json 2>$R/cap-book.err; echo "cap rc=$?"; tail -3 $R/cap-book.err
python3 - <<'PY'
import json
try:
    r = json.load(open("/tmp/r2/cap-book.json"))
    for row in r["rows"]: print({k: row[k] for k in ("tokens","exact_greedy","exact_teacher_forced","samples","teacher_forced_accuracy","greedy_accuracy","information_gain_nats","mean_steps")})
except Exception as e: print("no report", e)
PY
step end
tar czf $OUT/r2.tgz -C $R .
