. .dev/setup.sh
R=/tmp/r3; mkdir -p $R; t0=$(date +%s)
step() { echo "== $1 at $(( $(date +%s) - t0 )) s"; }
step mem
timeout 240 python3 -m memzip bench-memory examples/alice-chapter1-opening.txt .dev/tinyshakespeare.txt --max-steps 0 --batch-size 64 --json > $R/mem.json 2>$R/mem.err; echo "mem rc=$?"; cat $R/mem.json; tail -3 $R/mem.err
step shakes30k
/usr/bin/time -v timeout 200 python3 -m memzip compress .dev/shakes30k.txt -o $R/gpu-shakes30k.memz --batch-size 128 --force --json > $R/c-shakes.json 2>$R/c-shakes.err; echo "rc=$? $(grep -E 'Elapsed|Maximum' $R/c-shakes.err | tr '\n' ' ')"; head -c 600 $R/c-shakes.json
/usr/bin/time -v timeout 60 python3 -m memzip extract $R/gpu-shakes30k.memz -o $R/shakes.out --force --json > $R/x-shakes.json 2>$R/x-shakes.err; echo "rc=$? $(cmp -s $R/shakes.out .dev/shakes30k.txt && echo identical) $(grep -E 'Elapsed|Maximum' $R/x-shakes.err | tr '\n' ' ')"
python3 -m memzip stats $R/gpu-shakes30k.memz --json > $R/s-shakes.json; cat $R/s-shakes.json
step end
tar czf $OUT/r3.tgz -C $R .
