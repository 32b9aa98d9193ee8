"""Bytes only: a text cut into 8 streams, the adaptive bias shared by groups of 4 (format 8's
profile), of 8 (every stream), or of 1 (a bias per stream, formats 6-7). What a larger group would
buy, against the unit of work (journal, torchrun) it makes larger. docs/benchmarks.md §1 quotes it.

    OMP_NUM_THREADS=1 python docs/scripts/bias_group_size.py ../shared/corpus/tinyshakespeare.txt --limit 300000
"""

import argparse

import memzip.exact.streams as streams
from memzip.exact.coding import ADAPTIVE_BIAS_BITS, CodingSettings, Distribution
from memzip.options import EXACT_WINDOW
from shared_bias_ab import text_streams  # beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--limit", type=int, default=300000, help="the first N bytes")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--groups", default="4,8,1", help="streams per bias to try, comma-separated")
    args = parser.parse_args()
    model, start, chunks, _ = text_streams(args.file, args.limit, args.streams)
    print(f"{args.file}, first {args.limit:,} bytes: {sum(map(len, chunks)):,} tokens in {len(chunks)} streams",
          flush=True)
    for group in map(int, args.groups.split(",")):
        settings = CodingSettings(bias_bits=ADAPTIVE_BIAS_BITS, bias_streams=group)
        distribution = Distribution(settings, model.shape.vocab, model.device)
        coded = [c for a in range(0, len(chunks), group) for c in streams.compress_streams(
            model, distribution, start[None].expand(len(chunks[a:a + group]), -1, -1), chunks[a:a + group],
            EXACT_WINDOW)]
        print(f"groups of {group}: {sum(len(c.residual) for c in coded):,} B of residual", flush=True)


if __name__ == "__main__":
    main()
