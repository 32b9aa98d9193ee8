"""Would an adaptive bias on the model's last hidden state pay on top of memzip's vocabulary bias?
The vocabulary bias learns one number per token, and a token it has not seen stays where the
model put it; a bias u on the 576 numbers the output head reads moves every logit by W u, so
learning that "Alice" is likely also lifts the tokens whose embeddings lie near it: the smallest
dynamic evaluation that generalises across tokens. Simulated on the float32 model: one stream,
a sliding window of `--window` positions plus the first (one forward under a banded mask, as
docs/scripts/exact_vs_float_ce.py), then token by token: the vocabulary bias as memzip learns it
(rate 2^-3, new tokens 2x), and for each rate r one SGD step of u on the token's cost
(u -= r g / |g|, g = W^T (p - onehot)). Prints bytes against the vocabulary bias alone.

    OMP_NUM_THREADS=2 python docs/scripts/hidden_bias_sim.py ../shared/corpus/alice29.txt --limit 20000 --rates 0.01,0.03,0.1
"""

import argparse
import math

import torch

from shared_bias_ab import load_text  # beside this script

RATE, FRESH = 0.125, 2  # memzip's vocabulary bias: 2^-3 logits, tokens not seen yet 2x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--limit", type=int, default=20000)
    parser.add_argument("--window", type=int, default=4096)
    parser.add_argument("--rates", default="0.01,0.03,0.1", help="hidden-bias step sizes (normalized SGD)")
    args = parser.parse_args()
    loaded, tokens, text_bytes = load_text(args.file, args.limit or 1 << 40)
    model = loaded.model.eval()
    ids = torch.tensor([[0] + tokens])
    query, key = torch.arange(ids.shape[1])[:, None], torch.arange(ids.shape[1])[None, :]
    seen = (key <= query) & ((query - key <= args.window) | (key == 0))
    mask = torch.zeros(seen.shape).masked_fill_(~seen, float("-inf"))
    with torch.no_grad():
        out = model(ids, attention_mask=mask[None, None], output_hidden_states=True)
    logits, hidden = out.logits[0, :-1].float(), out.hidden_states[-1][0, :-1].float()
    head = model.get_output_embeddings().weight.detach().float()  # [V, d]
    assert torch.allclose(hidden @ head.T, logits, atol=1e-3), "the last hidden state is not what the head reads"
    rates = [float(r) for r in args.rates.split(",") if r]
    vocab = logits.shape[1]
    names = ["bias alone"] + [f"+ hidden bias r={r}" for r in rates]
    biases = [torch.zeros(vocab) for _ in names]
    fresh = [torch.ones(vocab, dtype=torch.bool) for _ in names]
    hiddens = [torch.zeros(head.shape[1]) for _ in names]
    bits = [0.0] * len(names)
    model_bits = 0.0
    for i, y in enumerate(tokens):
        z = logits[i]
        model_bits -= float(torch.log_softmax(z, -1)[y]) / math.log(2)
        for k, (b, f, u) in enumerate(zip(biases, fresh, hiddens)):
            lp = torch.log_softmax(z + b + (head @ u if k else 0), -1)
            bits[k] -= float(lp[y]) / math.log(2)
            p = lp.exp_()
            step = torch.where(f, RATE * FRESH, RATE)
            b.sub_(p * step)
            b[y] += step[y]
            f[y] = False
            if k:
                p[y] -= 1
                g = head.T @ p
                u.sub_(g, alpha=rates[k - 1] / max(float(g.norm()), 1e-9))
    print(f"{args.file}, first {text_bytes:,} bytes (CR LF as LF): {len(tokens):,} tokens, one stream, window "
          f"{args.window}\n")
    print(f"| coding | bytes | bits/byte | against the bias alone |\n|---|---|---|---|\n| model alone | "
          f"{model_bits / 8:,.1f} | {model_bits / text_bytes:.4f} | {100 * (model_bits / bits[0] - 1):+.2f}% |")
    for name, b in zip(names, bits):
        print(f"| {name} | {b / 8:,.1f} | {b / text_bytes:.4f} | {100 * (b / bits[0] - 1):+.2f}% |")


if __name__ == "__main__":
    main()
