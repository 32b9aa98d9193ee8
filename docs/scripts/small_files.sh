#!/bin/bash
# What small files cost as `memzip compress` writes them (defaults, embedded model), beside
# zstd -19, xz -9 and gzip -9; each archive extracted and compared. docs/benchmarks.md §1.
#   bash docs/scripts/small_files.sh            # from the repository root
set -eu
DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT
: > "$DIR/empty.txt"
printf 'x' > "$DIR/one-byte.txt"
printf 'Hello, memzip. This is a short note.\n' > "$DIR/note.txt"
python -c "import random, sys; r = random.Random(0); sys.stdout.buffer.write(bytes(r.randrange(256) for _ in range(300)))" > "$DIR/random-300.bin"
cp examples/alice-1500.txt "$DIR/alice-1500.txt"
memzip compress -q "$DIR"/*.txt "$DIR"/random-300.bin
printf '| file | bytes | .memz | zstd -19 | xz -9 | gzip -9 | extracted identical |\n|---|---|---|---|---|---|---|\n'
for f in empty.txt one-byte.txt note.txt random-300.bin alice-1500.txt; do
  memzip extract -q "$DIR/$f.memz" -o "$DIR/$f.out"
  same=$(cmp -s "$DIR/$f" "$DIR/$f.out" && echo yes || echo NO)
  printf '| %s | %d | %d | %d | %d | %d | %s |\n' "$f" "$(stat -c%s "$DIR/$f")" "$(stat -c%s "$DIR/$f.memz")" \
    "$(zstd -19 -q -c "$DIR/$f" | wc -c)" "$(xz -9 -c "$DIR/$f" | wc -c)" "$(gzip -9 -c "$DIR/$f" | wc -c)" "$same"
done
