"""Markdown tables for docs/benchmarks.md §1-2 from the JSON that benchmarks-0.3.sh leaves in OUT.

    python docs/scripts/benchmark_tables.py bench-out
"""

import json
import re
import sys
from pathlib import Path


def rows(path: Path) -> list[dict]:
    if not path.is_file() or not path.stat().st_size:
        return []
    data = json.loads(path.read_text())
    return data if isinstance(data, list) else [data]


def peak_mb(err: Path) -> str:
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err.read_text()) if err.is_file() else None
    return f"{int(match.group(1)) / 1024:,.0f} MB" if match else "—"


def name(row: dict) -> str:
    return Path(row["file"]).name


def bytes_table(out: Path) -> None:
    print("| text | bytes | engine | streams | .memz | header | bits/byte | residual | model CE | zstd -19 | xz -9 "
          "| compress | extract | identical |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in ("small", "alice29", "asyoulik", "shakespeare-bytes", "alice29-float", "alice29-w2048"):
        for r in rows(out / f"{run}.json"):
            ce = r.get("model_ce_bits_per_byte") or r.get("model_only_ideal_bits_per_byte")
            engine = r["engine"] + (f", window {r['window']}" if r.get("window") not in (None, 1024) else "")
            extract = (f"{r['extract_seconds']:,.1f} s ({r['extract_tokens_per_second']} tok/s)"
                       if "extract_seconds" in r else "not run")
            print(f"| {name(r)} | {r['bytes']:,} | {engine} | {r.get('streams') or '—'} | {r['memz_bytes']:,} "
                  f"| {r['header_bytes']} | **{r['bits_per_byte']:.3f}** | {r['residual_bits_per_byte']:.3f} "
                  f"| {ce:.3f} | {r['zstd_bits_per_byte']:.3f} | {r['xz_bits_per_byte']:.3f} "
                  f"| {r['compress_seconds']:,.1f} s ({r['compress_tokens_per_second']} tok/s) | {extract} "
                  f"| {'yes' if r.get('identical') else ('—' if 'identical' not in r else 'NO')} |")
    for run in ("alice29", "asyoulik"):
        for r in rows(out / f"{run}.json"):
            ce = {k: v for k, v in r.items() if k.endswith("_ce_bits_per_byte_1024")}
            if ce:
                print(f"\n{name(r)}, cross-entropy on independent 1024-token chunks: {ce}")


def speed_table(out: Path) -> None:
    print("| text | tokens | streams | compress | extract (batch) | peak RSS | compress: forward / coding / rest "
          "| extract: forward / coding / rest |")
    print("|---|---|---|---|---|---|---|---|")
    for run in ("speed-20k", "speed-1mb"):
        for r in rows(out / f"{run}.json"):
            split = lambda p: " / ".join(f"{v:,.1f}" for v in p.values()) + " s" if p else "—"
            extract = (f"{r['extract_seconds']:,.1f} s, {r['extract_tokens_per_second']} tok/s ({r['extract_batch']})"
                       if "extract_seconds" in r else "not run")
            print(f"| {name(r)} | {r['tokens']:,} | {r['streams']} | {r['compress_seconds']:,.1f} s, "
                  f"{r['compress_tokens_per_second']} tok/s | {extract} | {peak_mb(out / f'{run}.err')} "
                  f"| {split(r.get('compress_profile_seconds'))} | {split(r.get('extract_profile_seconds'))} |")
    for run in ("speed-20k", "speed-1mb"):
        for r in rows(out / f"{run}.json"):
            print(f"\n{name(r)}: {r['model_gop_per_token']} GOP a token; GEMM GOP/s measured in the run "
                  f"{r['gemm_gop_per_second']}; compression {r['compress_gop_per_second']} GOP/s "
                  f"({r['compress_share_of_int8_gemm']:.1%} of int8 GEMM), extraction "
                  f"{r.get('extract_gop_per_second')} GOP/s ({r.get('extract_share_of_int8_gemm', 0):.1%})")


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench-out")
    bytes_table(out)
    print()
    speed_table(out)
