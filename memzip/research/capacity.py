"""`memzip capacity`: the paper's measurement protocol, with real greedy decoding beside it.

For each text set and chunk length L, `samples` chunks are fitted (all lengths in one batch).
Per chunk, with and without the [mem] vectors:

- teacher-forced accuracy (the paper's "decoding accuracy") and cross-entropy (nats, summed);
- greedy exactness: the real decoder reproduces the chunk with no correction at all.

"Without" means the model alone with the recipe's layout tokens and no vectors, scored on the same
tokens (for memzip's recipes: from the document-start token; for `paper`: from the chunk's
first token, as the authors' code measures it).

Reported per L: mean accuracies, share of chunks exact (both ways), token gain
`(acc_with - acc_without) * L`, information gain `CE_without - CE_with` (nats and bits), and
capacity utilization `token_gain / L_max` with Eq. 1, `L_max = 16 * d / log2 |V|`.
Decoding capacity is the largest L whose mean accuracy is >= 0.99 (both ways reported).

Lengths are given per vector: with k vectors each chunk is k times as long, so one grid serves
every vector count. Vectors are fitted and judged in a storage dtype (float32 unless asked),
with the rounding in the loop as compression does, and each row says what that costs in bytes:
text bytes per stored vector byte.
"""

from __future__ import annotations

import math
import statistics

import torch
import torch.nn.functional as F

from memzip.ranks.decoder import chunk_choices, decode_group, greedy_misses
from memzip.ranks.engine import fit_and_decode
from memzip.format import vectors as storage
from memzip.format.residual import encode_choices
from memzip.layout import Layout, model_only_layout
from memzip.vectors.optimize import VectorSpace, recipe_layout, scores_first_token
from memzip.options import DEFAULT_MARGIN
from memzip.vectors.recipes import get_recipe
from memzip.research.samples import bench_chunks


def theoretical_capacity(d_model: int, vocab_size: int, bits: int = 16) -> float:
    """Eq. 1 of the paper: tokens one d-dimensional vector of `bits`-bit floats could index."""
    return bits * d_model / math.log2(vocab_size)


@torch.no_grad()
def baseline_scores(loaded, chunks: list[list[int]], layout: Layout, first_fed: bool) -> list[tuple[float, float]]:
    """(accuracy, summed CE in nats) of each chunk's scored tokens under the model alone: the
    recipe's layout without the vectors, as the authors measure "without [mem]" (their code runs
    the model on the tokenized text alone, first token given)."""
    start = list(layout.prefix + layout.infix)
    skip = 1 if first_fed else 0  # the first token is an input, not a target
    scores = []
    for chunk in chunks:
        ids = torch.tensor([start + chunk], device=loaded.device)
        logits = loaded.model(input_ids=ids).logits[0, len(start) + skip - 1:-1].float()
        target = ids[0, len(start) + skip:]
        scores.append(((logits.argmax(-1) == target).float().mean().item(),
                       F.cross_entropy(logits, target, reduction="sum").item()))
    return scores


def measure(loaded, kinds: list[str], lengths: list[int], samples: int, mem_vectors: int,
            recipe_name: str = "default", max_steps: int | None = None, seed: int = 0, on_row=None,
            vector_dtype: str = "float32", code_dims: int | None = None) -> dict:
    recipe = get_recipe(recipe_name, max_steps)
    layout = recipe_layout(recipe, loaded.tokenizer)
    vector_bytes = storage.bytes_per_vector(vector_dtype, code_dims or loaded.d_model) * mem_vectors
    rows = []
    points = []  # per chunk, for the plot: CE without vs with
    for kind in kinds:
        chunks, sizes = [], []
        for length in lengths:
            picked = bench_chunks(loaded, kind, samples, length, seed)
            chunks += picked
            sizes += [length] * len(picked)
        margin = DEFAULT_MARGIN[loaded.dtype_name]
        done = fit_and_decode(loaded, chunks, recipe, VectorSpace(mem_vectors, vector_dtype, code_dims), layout,
                              margin, seed=seed)
        first_fed = not scores_first_token(recipe, layout)
        fits = done.fits
        misses = greedy_misses(done.decoded, [len(c) for c in chunks], first_fed)  # as `memzip bench` counts
        alone = baseline_scores(loaded, chunks, layout, first_fed)
        # Bytes: each chunk's residual with its vectors, and the same chunk coded by the model alone
        # from the document start (model-only mode, without the context of earlier chunks).
        lengths_all = [len(c) for c in chunks]
        residual = _residual_bytes(loaded, done.decoded.choices, lengths_all)
        plain = decode_group(loaded.model, lengths_all, model_only_layout(loaded.tokenizer), margin, targets=chunks)
        model_only = _residual_bytes(loaded, plain.choices, lengths_all)
        for length in lengths:
            idx = [i for i, s in enumerate(sizes) if s == length]
            if not idx:
                continue
            acc_with = statistics.mean(fits[i].accuracy for i in idx)
            acc_without = statistics.mean(alone[i][0] for i in idx)
            scored = length - first_fed  # tokens that are targets (the paper's L)
            ce_with = statistics.mean(fits[i].loss * scored for i in idx)
            ce_without = statistics.mean(alone[i][1] for i in idx)
            greedy_acc = statistics.mean(1 - misses[i] / scored for i in idx)
            token_gain = (acc_with - acc_without) * scored
            text_bytes = statistics.mean(len(loaded.tokenizer.decode(chunks[i]).encode("utf-8")) for i in idx)
            row = {
                "texts": kind, "tokens": length, "mem_vectors": mem_vectors, "samples": len(idx),
                "vector_dtype": vector_dtype, "code_dims": code_dims,
                "teacher_forced_accuracy": round(acc_with, 4),
                "greedy_accuracy": round(greedy_acc, 4),
                "accuracy_without_mem": round(acc_without, 4),
                "exact_teacher_forced": sum(fits[i].accuracy == 1.0 for i in idx),
                "exact_greedy": sum(misses[i] == 0 for i in idx),
                "token_gain": round(token_gain, 2),
                "ce_without_nats": round(ce_without, 2),
                "ce_with_nats": round(ce_with, 2),
                "information_gain_nats": round(ce_without - ce_with, 2),
                "information_gain_bits": round((ce_without - ce_with) / math.log(2), 2),
                "capacity_utilization": round(token_gain / (theoretical_capacity(
                    loaded.identity.d_model, loaded.identity.vocab_size) * mem_vectors), 4),
                "mean_steps": round(statistics.mean(fits[i].steps for i in idx), 1),
                "text_bytes": round(text_bytes, 1),
                "vector_bytes": vector_bytes,
                "text_bytes_per_vector_byte": round(text_bytes / vector_bytes, 3),
                # what an archive of such chunks costs: vectors + residual, against the model alone
                "residual_bytes": round(statistics.mean(residual[i] for i in idx), 1),
                "total_bits_per_byte": round(8 * (vector_bytes + statistics.mean(residual[i] for i in idx)) / text_bytes, 3),
                "model_only_bits_per_byte": round(8 * statistics.mean(model_only[i] for i in idx) / text_bytes, 3),
            }
            rows.append(row)
            if on_row:
                on_row(row)
            points += [{"texts": kind, "tokens": length, "ce_without": alone[i][1],
                        "ce_with": fits[i].loss * scored, "exact": misses[i] == 0} for i in idx]
    return {"rows": rows, "points": points}


def _residual_bytes(loaded, choices, lengths) -> list[int]:
    """Bytes of each chunk's choices coded on their own (an archive codes a group together)."""
    return [len(encode_choices(c, loaded.identity.vocab_size)) for c in chunk_choices(choices, lengths)]


def decoding_capacity(rows: list[dict], key: str) -> dict:
    """Largest length with mean accuracy >= 0.99, per (texts, mem_vectors)."""
    out = {}
    for row in rows:
        name = f"{row['texts']}/{row['mem_vectors']}"
        if row[key] >= 0.99:
            out[name] = max(out.get(name, 0), row["tokens"])
        else:
            out.setdefault(name, 0)
    return out


def run_capacity(loaded, kinds, lengths, samples, vector_counts, max_steps=None, seed=0, on_row=None,
                 vector_dtype: str = "float32", code_dims: int | None = None, recipe: str = "default") -> dict:
    """`lengths` are per vector: with k vectors, chunks of k * L tokens are measured."""
    rows, points = [], []
    for count in vector_counts:
        result = measure(loaded, kinds, [length * count for length in lengths], samples, count,
                         recipe_name=recipe, max_steps=max_steps, seed=seed, on_row=on_row,
                         vector_dtype=vector_dtype, code_dims=code_dims)
        rows += result["rows"]
        points += [{**p, "mem_vectors": count} for p in result["points"]]
    identity = loaded.identity
    greedy, teacher_forced = decoding_capacity(rows, "greedy_accuracy"), decoding_capacity(rows, "teacher_forced_accuracy")
    # The headline: tokens one vector holds on the first text set. When the longest length tried
    # still decoded, the capacity is at least that (censored): try longer --lengths.
    headline = f"{kinds[0]}/1" if 1 in vector_counts else None
    return {
        "model": identity.name, "d_model": identity.d_model, "vocab_size": identity.vocab_size,
        "device": loaded.device.type, "recipe": recipe, "max_steps": max_steps, "seed": seed,
        "vector_dtype": vector_dtype, "code_dims": code_dims, "lengths_per_vector": lengths,
        "L_max_eq1": round(theoretical_capacity(identity.d_model, identity.vocab_size), 1),
        "decoding_capacity": greedy.get(headline), "capacity_teacher_forced": teacher_forced.get(headline),
        "decoding_capacity_texts": kinds[0] if headline else None,
        "decoding_capacity_censored": headline is not None and greedy.get(headline) == max(lengths),
        "decoding_capacity_teacher_forced": teacher_forced,
        "decoding_capacity_greedy": greedy,
        "rows": rows, "points": points,
    }


def plot(report: dict, path) -> bool:
    """The paper's Figure 3 (CE without vs with the vectors) and tokens vs vectors, as PNG.
    Returns False when matplotlib is not installed (pip install 'memzip[plot]')."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for kind, marker in (("book", "o"), ("random", "s")):
        pts = [p for p in report["points"] if p["texts"] == kind]
        if not pts:
            continue
        for exact, color in ((True, "tab:green"), (False, "tab:red")):
            sel = [p for p in pts if p["exact"] == exact]
            left.scatter([p["ce_without"] for p in sel], [p["ce_with"] for p in sel], marker=marker, color=color,
                         alpha=0.7, label=f"{kind}, {'exact' if exact else 'not exact'} (greedy)")
    left.set_xlabel("CE of chunk without [mem] (nats)")
    left.set_ylabel("CE with [mem] (nats)")
    left.set_title(f"{report['model']}: information gain (cf. paper Fig. 3)")
    left.legend(fontsize=7)
    for kind in ("book", "random"):
        caps = report["decoding_capacity_greedy"]
        xs = sorted({r["mem_vectors"] for r in report["rows"] if r["texts"] == kind})
        if xs:
            right.plot(xs, [caps.get(f"{kind}/{x}", 0) for x in xs], marker="o", label=f"{kind} (greedy exact)")
    right.set_xlabel("[mem] vectors")
    right.set_ylabel("decoding capacity (tokens)")
    right.set_title("tokens vs number of vectors")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
