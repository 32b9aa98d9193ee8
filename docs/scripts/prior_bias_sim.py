"""Would a vocabulary bias learnt beforehand, on other text, pay as the adaptive bias's start?
The exact coder as memzip runs it (format 9's settings, the text's default streams, one bias per
group of 4), in one process: first each `--prior` text is coded and the bias it ends with kept;
then the text is coded with its bias starting from zero (memzip today) and from each prior, scaled
by each of `--scales`. Prints the residual bytes (the archive less its ~30 bytes of header and
framing). A prior that helps on a text of another kind (Shakespeare before Alice) would be one
that a generic prior shipped with memzip could beat.

    OMP_NUM_THREADS=2 python docs/scripts/prior_bias_sim.py ../shared/corpus/alice29.txt --prior ../shared/corpus/asyoulik.txt
"""

import argparse
import time

import numpy as np

import memzip.exact.streams as streams
from memzip.exact.coding import (ADAPTIVE_BIAS_BITS, ADAPTIVE_BIAS_STREAMS, ADAPTIVE_FRESH_BITS, CodingSettings,
                                  Distribution)
from memzip.exact.engine import _layout_rows, exact_model
from memzip.layout import model_only_layout
from memzip.models import load_model, resolve_model
from memzip.planning import default_streams
from memzip.textcodec import TextCodec, crlf_as_lf
from shared_bias_ab import cut  # beside this script


DEFAULT_CODING = CodingSettings(bias_bits=ADAPTIVE_BIAS_BITS, bias_streams=ADAPTIVE_BIAS_STREAMS,
                                fresh_bits=ADAPTIVE_FRESH_BITS)


class PriorDistribution(Distribution):
    """A Distribution whose adaptive biases start from `start` (values [V], fresh [V]) and
    remember the last one made, so its final state can be read."""

    start = None
    last = None

    def adaptive_bias(self, biases):
        bias = super().adaptive_bias(biases)
        if self.start is not None:
            bias.values[:] = self.start[0]
            bias.fresh[:] = self.start[1]
        self.last = bias
        return bias


def code(loaded, engine, path: str, limit: int, count: int, start=None):
    """(residual bytes, final bias (values, fresh) of the last group, seconds, tokens)."""
    data = open(path, "rb").read()[:limit or None]
    tokens = TextCodec(loaded.tokenizer).encode(crlf_as_lf(data) or data).tokens.tolist()  # as memzip codes it
    count = count or default_streams(len(tokens))
    chunks = cut(tokens, count)
    layout_start = _layout_rows(engine, model_only_layout(loaded.tokenizer).prefix)
    distribution = PriorDistribution(DEFAULT_CODING, engine.shape.vocab, engine.device)
    distribution.start = start
    window = 4096 if count == 1 else 2048
    began = time.perf_counter()
    coded = [streams.compress_streams(engine, distribution, layout_start[None].expand(len(group), -1, -1), group, window)
             for group in (chunks[g:g + ADAPTIVE_BIAS_STREAMS] for g in range(0, len(chunks), ADAPTIVE_BIAS_STREAMS))]
    residual = sum(len(c.residual) for group in coded for c in group)
    final = (distribution.last.values[0].copy(), distribution.last.fresh[0].copy())
    return residual, final, time.perf_counter() - began, len(tokens), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--prior", action="append", required=True, help="a text to learn a prior on (repeatable)")
    parser.add_argument("--limit", type=int, default=0, help="the first N bytes of the text (0: all)")
    parser.add_argument("--streams", type=int, default=0, help="0: memzip's default for the text's length")
    parser.add_argument("--scales", default="0.5,1", help="the prior's values times these (arithmetic shifts)")
    parser.add_argument("--keep-fresh", action="store_true", help="also start from the prior's new-token flags")
    parser.add_argument("--save", default="", help="save the last prior's bias (.npz) here")
    args = parser.parse_args()
    loaded = load_model(resolve_model("embedded"), device="cpu")
    engine = exact_model(loaded)
    original = len(open(args.file, "rb").read()[:args.limit or None])
    priors = []
    for path in args.prior:
        residual, final, seconds, tokens, count = code(loaded, engine, path, 0, 0)
        print(f"prior {path}: {tokens:,} tokens in {count} stream(s), residual {residual:,} B, {seconds:.0f} s; "
              f"bias range {final[0].min()}..{final[0].max()}, {int((final[1] == 0).sum()):,} tokens seen", flush=True)
        priors.append((path, final))
    if args.save:
        np.savez_compressed(args.save, values=priors[-1][1][0], fresh=priors[-1][1][1])
    base, _, seconds, tokens, count = code(loaded, engine, args.file, args.limit, args.streams)
    print(f"{args.file}, first {original:,} bytes: {tokens:,} tokens in {count} stream(s)")
    print(f"| start | residual | bits/byte | against zero |\n|---|---|---|---|\n| zero (memzip 0.8) | {base:,} B | "
          f"{8 * base / original:.4f} | | {seconds:.0f} s", flush=True)
    for path, (values, fresh) in priors:
        for scale in (float(s) for s in args.scales.split(",")):
            numerator = int(round(scale * 4))  # quarters: values * n >> 2, integers as memzip would ship them
            start = ((values * numerator) >> 2, fresh if args.keep_fresh else np.ones_like(fresh))
            residual, _, seconds, _, _ = code(loaded, engine, args.file, args.limit, args.streams, start)
            print(f"| prior {path.rsplit('/', 1)[-1]} x{scale} | {residual:,} B | {8 * residual / original:.4f} | "
                  f"{100 * (residual / base - 1):+.2f}% | {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
