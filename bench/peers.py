"""Peers of `flash-mpt bench`, measured on the GPU machine in the same session (DESIGN.md §5).

Hugging Face transformers' MptForCausalLM in bf16 at the seed model's shape (random weights; speed does not
depend on their values): prefill of 128/512/2048 tokens, greedy generate at batch 1 (prompt 32, 128 new tokens)
and batch 16, the two ceilings (device-to-device copy bandwidth, bf16 GEMM rate), then the attention peers of
bench/attention_peers.py. Run: python3 bench/peers.py [--json]
"""
import json
import sys

import torch
from transformers import MptConfig, MptForCausalLM

import attention_peers
from attention_peers import median_ms


def ceilings():
    n = 1 << 29  # 1 GiB of bf16, far past L2
    a, b = torch.empty(n, dtype=torch.bfloat16, device="cuda"), torch.empty(n, dtype=torch.bfloat16, device="cuda")
    copy_ms = median_ms(lambda: b.copy_(a), reps=10, warmup=2)
    x = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    y = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    gemm_ms = median_ms(lambda: x @ y, reps=10, warmup=2)
    return {"copy_gb_s": 2 * n * 2 / copy_ms / 1e6, "gemm_tflops": 2 * 8192**3 / gemm_ms / 1e9}


def transformers_mpt():
    cfg = MptConfig(d_model=2048, n_heads=16, n_layers=24, expansion_ratio=4, max_seq_len=2048, vocab_size=50432,
                    no_bias=True, attn_config={"alibi": True, "alibi_bias_max": 8}, tie_word_embeddings=True)
    model = MptForCausalLM(cfg).to(device="cuda", dtype=torch.bfloat16).eval()
    out = {"params": sum(p.numel() for p in model.parameters())}
    with torch.inference_mode():
        prefill = []
        for tokens in (128, 512, 2048):
            ids = torch.randint(2, 50000, (1, tokens), device="cuda")
            ms = median_ms(lambda: model(ids, use_cache=False), reps=10, warmup=2)
            prefill.append({"tokens": tokens, "ms": ms, "tokens_per_s": tokens * 1000 / ms})
        out["prefill"] = prefill
        for batch in (1, 16):
            ids = torch.randint(2, 50000, (batch, 32), device="cuda")
            gen = lambda: model.generate(ids, max_new_tokens=128, min_new_tokens=128, do_sample=False, pad_token_id=0)
            ms = median_ms(gen, reps=3, warmup=1)
            out[f"generate_b{batch}_tokens_per_s"] = batch * 128 * 1000 / ms
    return out


def main():
    as_json = "--json" in sys.argv
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, **ceilings(), "transformers_mpt": transformers_mpt()}
    if as_json:
        result["attention"] = attention_peers.measure(as_json=True)["rows"]
        print(json.dumps(result, indent=2))
        return
    t = result["transformers_mpt"]
    print(f"{result['gpu']}: copy {result['copy_gb_s']:.0f} GB/s, bf16 GEMM {result['gemm_tflops']:.0f} TFLOP/s")
    for p in t["prefill"]:
        print(f"transformers MptForCausalLM prefill {p['tokens']:5d} tokens: {p['ms']:.2f} ms ({p['tokens_per_s']:.0f} tokens/s)")
    print(f"transformers generate: batch 1 {t['generate_b1_tokens_per_s']:.1f} tokens/s, batch 16 {t['generate_b16_tokens_per_s']:.1f} tokens/s")
    attention_peers.measure(as_json=False)


if __name__ == "__main__":
    main()
