"""What each change of format 9 buys, in one process: a text coded in its default streams with
format 8's settings (power-of-two weight scales, no boost for new tokens, a window of 2,048),
then with each of format 9's changes added in turn: weight rows scaled by their max |w|
(`peak_scales`), new tokens learning twice as fast (`fresh_bits`), and a window of 4,096. Prints
the residual bytes (the archive less its ~30 bytes of header and framing) and the coding's
tokens/s, each setting run `--rounds` times in turn. docs/benchmarks.md §1 quotes it.

    OMP_NUM_THREADS=2 python docs/scripts/format9_ablation.py ../shared/corpus/alice29.txt --limit 20000
"""

import argparse
import dataclasses
import time

import memzip.exact.streams as streams
from memzip.exact.coding import ADAPTIVE_BIAS_BITS, ADAPTIVE_BIAS_STREAMS, CodingSettings, Distribution
from memzip.exact.engine import EXACT_SETTINGS, _layout_rows, exact_model
from memzip.layout import model_only_layout
from shared_bias_ab import cut, load_text  # beside this script

FORMAT_8 = dataclasses.replace(EXACT_SETTINGS, peak_scales=0)
STEPS = [  # (name, the exact engine's settings, fresh_bits, window)
    ("format 8 (memzip 0.7)", FORMAT_8, 0, 2048),
    ("+ weight rows scaled by their max", EXACT_SETTINGS, 0, 2048),
    ("+ new tokens learn twice as fast", EXACT_SETTINGS, 1, 2048),
    ("+ window 4,096", EXACT_SETTINGS, 1, 4096),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--limit", type=int, default=20000, help="the first N bytes (0: all)")
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", default="", help="which of the steps, e.g. 0,3 (default: all)")
    args = parser.parse_args()
    loaded, tokens, text_bytes = load_text(args.file, args.limit or 1 << 40)
    original_bytes = len(open(args.file, "rb").read()[:args.limit or None])  # bits/byte of these, as memzip reports
    chunks = cut(tokens, args.streams)
    start = _layout_rows(exact_model(loaded), model_only_layout(loaded.tokenizer).prefix)
    tokens = len(tokens)
    steps = [STEPS[int(i)] for i in args.steps.split(",")] if args.steps else STEPS
    print(f"{args.file}, first {original_bytes:,} bytes ({text_bytes:,} with CR LF as LF): {tokens:,} tokens "
          f"in {len(chunks)} stream(s)")
    for _ in range(args.rounds):
        for name, settings, fresh_bits, window in steps:
            engine = exact_model(loaded, settings)  # rounded once per settings (and cached on disk)
            coding = CodingSettings(bias_bits=ADAPTIVE_BIAS_BITS, bias_streams=ADAPTIVE_BIAS_STREAMS,
                                    fresh_bits=fresh_bits)
            distribution = Distribution(coding, engine.shape.vocab, engine.device)
            streams.compress_stream(engine, distribution, start, chunks[0][:300], window)  # warm, outside the clock
            began = time.perf_counter()
            coded = [streams.compress_streams(engine, distribution, start[None].expand(len(group), -1, -1), group,
                                              window)
                     for group in (chunks[g:g + ADAPTIVE_BIAS_STREAMS]
                                   for g in range(0, len(chunks), ADAPTIVE_BIAS_STREAMS))]
            seconds = time.perf_counter() - began
            residual = sum(len(c.residual) for group in coded for c in group)
            print(f"{name}: {residual:,} B ({8 * residual / original_bytes:.4f} bits/byte), {tokens / seconds:.1f} "
                  "tokens/s", flush=True)


if __name__ == "__main__":
    main()
