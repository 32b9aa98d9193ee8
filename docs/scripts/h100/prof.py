import time, cProfile, pstats, io, torch
from dataclasses import replace
from transformers import LlamaConfig, LlamaForCausalLM
from memzip.vectors.optimize import RECIPES, fit_chunks
from memzip.ranks.decoder import greedy_decode
import tests.tiny as tiny
tok = tiny.tiny_tokenizer()
cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                  num_key_value_heads=3, max_position_embeddings=2048, tie_word_embeddings=True, rope_theta=10000)
model = LlamaForCausalLM(cfg).cuda().eval()
for p in model.parameters(): p.requires_grad_(False)
print("attn", model.config._attn_implementation)
g = torch.Generator().manual_seed(0)
for B, L in ((8, 32), (64, 32), (36, 192)):
    chunks = torch.randint(0, 49000, (B, L), generator=g).tolist()
    r = replace(RECIPES["default"], max_steps=20, margin=float("inf"), patience=100)
    fit_chunks(model, chunks, r, prefix=[0])  # warm
    torch.cuda.synchronize(); t = time.perf_counter()
    fit_chunks(model, chunks, r, prefix=[0]); torch.cuda.synchronize()
    print(f"fit B={B} L={L}: {(time.perf_counter()-t)/21*1000:.1f} ms/step")
    emb = torch.randn(B, L + 2, 576, device="cuda")
    with torch.no_grad():
        for _ in range(3): model(inputs_embeds=emb, logits_to_keep=L + 1)
        torch.cuda.synchronize(); t = time.perf_counter()
        for _ in range(10): model(inputs_embeds=emb, logits_to_keep=L + 1)
        torch.cuda.synchronize(); print(f"  forward only: {(time.perf_counter()-t)/10*1000:.1f} ms")
    v = torch.randn(B, 1, 576, device="cuda")
    torch.cuda.synchronize(); t = time.perf_counter()
    greedy_decode(model, v, [L] * B, targets=chunks, force_margin=0.5, prefix=[0]); torch.cuda.synchronize()
    print(f"  greedy decode: {(time.perf_counter()-t)*1000:.0f} ms for {L} tokens x {B}")
chunks = torch.randint(0, 49000, (64, 32), generator=g).tolist()
pr = cProfile.Profile(); pr.enable()
fit_chunks(model, chunks, replace(RECIPES["default"], max_steps=20, margin=float("inf"), patience=100), prefix=[0])
pr.disable(); s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(22); print(s.getvalue()[:6000])
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    fit_chunks(model, chunks, replace(RECIPES["default"], max_steps=3, margin=float("inf"), patience=100), prefix=[0])
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12)[:5000])
