. .dev/setup.sh
R=/tmp/r4; mkdir -p $R; t0=$(date +%s); export OMP_NUM_THREADS=2
python3 -m memzip extract .dev/cpu/hello.memz -o /tmp/h.out --force --quiet; cmp /tmp/h.out examples/hello.txt && echo "cpu-made hello identical on gpu"
echo "cache ready at $(( $(date +%s) - t0 )) s"
T=400
cap() { name=$1; shift; timeout $T python3 -m memzip capacity --json --samples 4 --vectors 1 --max-steps 1500 "$@" > $R/cap-$name.json 2> $R/cap-$name.err; echo "$name rc=$? at $(( $(date +%s) - t0 )) s"; }
cap book-a --texts book --lengths 48,64,80,96,112,128 --plot $R/cap-book-a.png &
cap book-b --texts book --lengths 160,192,256 --samples 3 &
cap random --texts random --lengths 16,32,48,64,80 &
cap int4 --texts book --lengths 32,64,96 --vector-dtype int4 &
cap int3 --texts book --lengths 32,64,96 --vector-dtype int3 &
cap int2 --texts book --lengths 24,48,64 --vector-dtype int2 &
cap scale --texts book --lengths 64 --samples 2 --vectors 2,4 --max-steps 1000 --plot $R/cap-scale.png &
( timeout $T python3 -m memzip bench-memory examples/alice-chapter1-opening.txt .dev/tinyshakespeare.txt --max-steps 0 --batch-size 256 --json > $R/mem.json 2> $R/mem.err; echo "mem rc=$? at $(( $(date +%s) - t0 )) s" ) &
( /usr/bin/time -v timeout $T python3 -m memzip compress .dev/shakes30k.txt -o $R/gpu-shakes30k.memz --batch-size 512 --force --json > $R/c-shakes.json 2> $R/c-shakes.err; echo "shakes rc=$? at $(( $(date +%s) - t0 )) s";
  timeout 60 python3 -m memzip extract $R/gpu-shakes30k.memz -o $R/shakes.out --force --json > $R/x-shakes.json 2>&1; echo "shakes extract rc=$? $(cmp -s $R/shakes.out .dev/shakes30k.txt && echo identical)" ) &
wait
nvidia-smi --query-gpu=memory.used --format=csv
for f in $R/cap-*.err; do echo "--- $f"; grep -v -i "warn\|convert\|^\s*$" $f | tail -8; done
cat $R/mem.json; head -c 700 $R/c-shakes.json; grep -E "Elapsed|Maximum" $R/c-shakes.err
rm -f $R/shakes.out; tar czf $OUT/r4.tgz -C $R .
