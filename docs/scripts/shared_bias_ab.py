"""Speed of format 8's shared bias, A/B in one process: a text cut into 4 streams, coded as one
group sharing an adaptive bias (memzip 0.7) and one stream at a time with a bias each (memzip
0.6's coding), alternating, twice each. Prints tokens/s, the residual bytes and where the time
went. docs/benchmarks.md §1 quotes it.

    OMP_NUM_THREADS=2 python docs/scripts/shared_bias_ab.py ../shared/corpus/alice29.txt --limit 60000
"""

import argparse
import time

import memzip.exact.streams as streams
from memzip.exact.coding import ADAPTIVE_BIAS_BITS, CodingSettings, Distribution
from memzip.exact.engine import _layout_rows, exact_model
from memzip.layout import model_only_layout
from memzip.models import load_model, resolve_model
from memzip.options import EXACT_WINDOW
from memzip.planning import even_spans
from memzip.textcodec import TextCodec, crlf_as_lf


def load_text(path: str, limit: int):
    """(the embedded model loaded, the first `limit` bytes of `path` as memzip codes them in
    tokens, those bytes' length)."""
    data = open(path, "rb").read()[:limit]
    data = crlf_as_lf(data) or data  # as memzip codes it
    loaded = load_model(resolve_model("embedded"), device="cpu")
    return loaded, TextCodec(loaded.tokenizer).encode(data).tokens.tolist(), len(data)


def text_streams(path: str, limit: int, count: int):
    """(the exact model, its start row, the first `limit` bytes of `path` as memzip codes them cut
    into `count` even streams of tokens, those bytes' length). docs/scripts/bias_group_size.py
    uses it too."""
    loaded, tokens, text_bytes = load_text(path, limit)
    model = exact_model(loaded)
    start = _layout_rows(model, model_only_layout(loaded.tokenizer).prefix)
    return model, start, cut(tokens, count), text_bytes


def cut(tokens: list[int], count: int) -> list[list[int]]:
    """`tokens` in `count` even streams, as memzip cuts them."""
    return [tokens[a:b] for a, b in even_spans(len(tokens), -(-len(tokens) // count))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--limit", type=int, default=60000, help="the first N bytes")
    parser.add_argument("--streams", type=int, default=4)
    args = parser.parse_args()
    model, start, chunks, text_bytes = text_streams(args.file, args.limit, args.streams)
    tokens = sum(len(c) for c in chunks)
    vocab = model.shape.vocab
    shared = Distribution(CodingSettings(bias_bits=ADAPTIVE_BIAS_BITS, bias_streams=len(chunks)), vocab, model.device)
    own = Distribution(CodingSettings(bias_bits=ADAPTIVE_BIAS_BITS), vocab, model.device)
    streams.compress_stream(model, own, start, chunks[0][:600], EXACT_WINDOW)  # one-time work outside the clock
    print(f"{args.file}, first {args.limit:,} bytes ({text_bytes:,} with CR LF as LF): {tokens:,} tokens in "
          f"{len(chunks)} streams")
    for _ in range(2):
        for name in ("one group, one bias", "one by one, a bias each"):
            with streams.profiling() as timings:
                began = time.perf_counter()
                if name.startswith("one group"):
                    coded = streams.compress_streams(model, shared, start[None].expand(len(chunks), -1, -1), chunks,
                                                     EXACT_WINDOW)
                else:
                    coded = [streams.compress_stream(model, own, start, c, EXACT_WINDOW) for c in chunks]
                seconds = time.perf_counter() - began
            print(f"{name}: {tokens / seconds:.1f} tokens/s, {sum(len(c.residual) for c in coded):,} B; "
                  f"forward {timings.forward:.1f} s, coding {timings.coding:.1f} s", flush=True)


if __name__ == "__main__":
    main()
