"""Attention peers at the shapes of dev/attention.cu's prefill benchmark, for the same-run comparison.

bf16, batch x seq = 16k tokens, 16 heads x 128, causal; TFLOP/s counted as 4*B*H*S^2*D/2 like the harness.
  sdpa_flash       torch SDPA, flash backend, no ALiBi (it takes no bias)
  sdpa_alibi_mask  torch SDPA with a materialized ALiBi + causal bias (the backend torch picks for a mask)
  flex_alibi       flex_attention (compiled) with an ALiBi score_mod and a causal block mask
Run on the GPU machine: python3 bench/attention_peers.py [--json] (bench/peers.py runs it too). Needs torch >= 2.5.
"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

H, D, TOKENS = 16, 128, 16384
SEQS = (512, 2048, 8192)


def alibi_slopes(n_heads):
    n = 1 << math.ceil(math.log2(n_heads))
    s = [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]
    return s if n == n_heads else (s[1::2] + s[0::2])[:n_heads]


def median_ms(fn, reps=15, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def measure(as_json):
    """Times every peer at every S; prints each row as it lands unless as_json. Returns the result object."""
    dev = torch.device("cuda")
    if not as_json:
        print(f"peers on {torch.cuda.get_device_name()} (torch {torch.__version__}): bf16, {TOKENS} tokens, "
              f"{H} heads x {D}, causal TFLOP/s", flush=True)
    slopes = torch.tensor(alibi_slopes(H), device=dev, dtype=torch.float32)
    rows = []

    def record(name, S, B, fn):
        try:
            ms = median_ms(fn)
            flops = 4.0 * B * H * S * S * D / 2
            rows.append({"peer": name, "S": S, "B": B, "ms": round(ms, 4), "tflops": round(flops / ms / 1e9, 1)})
        except Exception as e:  # a peer that cannot run at a shape is reported, not fatal
            rows.append({"peer": name, "S": S, "B": B, "error": f"{type(e).__name__}: {e}"[:200]})
        torch.cuda.empty_cache()
        if not as_json:
            show(rows[-1])

    flex = None
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        flex = torch.compile(flex_attention, dynamic=False)
    except Exception as e:
        rows.append({"peer": "flex_alibi", "error": f"{type(e).__name__}: {e}"[:200]})

    for S in SEQS:
        B = TOKENS // S
        q, k, v = (torch.randn(B, H, S, D, device=dev, dtype=torch.bfloat16) for _ in range(3))

        def sdpa_flash():
            with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)

        record("sdpa_flash", S, B, sdpa_flash)

        pos = torch.arange(S, device=dev)
        rel = (pos[None, :] - pos[:, None]).float()  # j - i
        bias = (slopes[:, None, None] * rel[None]).masked_fill(rel[None] > 0, float("-inf"))
        bias = bias.to(torch.bfloat16)[None]  # [1, H, S, S]
        record("sdpa_alibi_mask", S, B, lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias))
        del bias, rel

        if flex is not None:
            def alibi(score, b, h, q_idx, kv_idx):
                return score + slopes[h] * (kv_idx - q_idx)

            def causal(b, h, q_idx, kv_idx):
                return q_idx >= kv_idx

            t0 = time.time()
            try:
                mask = create_block_mask(causal, None, None, S, S, device=dev)
                flex(q, k, v, score_mod=alibi, block_mask=mask)  # compile outside the timing
                torch.cuda.synchronize()
                record("flex_alibi", S, B, lambda: flex(q, k, v, score_mod=alibi, block_mask=mask))
                rows[-1]["compile_s"] = round(time.time() - t0, 1)
            except Exception as e:
                rows.append({"peer": "flex_alibi", "S": S, "B": B, "error": f"{type(e).__name__}: {e}"[:200]})
                if not as_json:
                    show(rows[-1])
        del q, k, v
        torch.cuda.empty_cache()

    return {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}


def main():
    as_json = "--json" in sys.argv
    result = measure(as_json)
    if as_json:
        print(json.dumps(result))


def show(r):
    if "error" in r:
        print(f"  {r['peer']:<16} S={r.get('S', '-'):<5} error: {r['error']}", flush=True)
    else:
        print(f"  {r['peer']:<16} S={r['S']:<5} B={r['B']:<3} {r['tflops']:7.1f} TFLOP/s  {r['ms']:.3f} ms", flush=True)


if __name__ == "__main__":
    main()
