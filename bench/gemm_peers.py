"""cuBLAS (through PyTorch) on the prefill GEMMs of the 1B shape, the peer of dev/gemm.cu's timing table: y = x·Wᵀ
with x [M, K] and W [N, K] in bf16 for M = 128 / 512 / 2048, plus the 8192³ rate that MFU is quoted against
(bench/RESULTS-engine.md). The GEMM only: our kernels fuse the epilogue (GELU, residual add), cuBLAS does not here.
Weights rotate over 4 copies, as in dev/gemm.cu. Run: python3 bench/gemm_peers.py; the last line is the 8192³ rate.
"""
import torch

from attention_peers import median_ms

SHAPES = (("Wqkv", 6144, 2048), ("out_proj", 2048, 2048), ("mlp_up", 8192, 2048), ("mlp_down", 2048, 8192))


def linear_ms(m, n, k, copies=4):
    x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
    ws = [torch.randn(n, k, dtype=torch.bfloat16, device="cuda") for _ in range(copies)]
    return median_ms(lambda: [x @ w.t() for w in ws], reps=20, warmup=3) / copies


def main():
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| M | GEMM | cuBLAS ms | TFLOP/s |\n| ---: | --- | ---: | ---: |")
    for m in (128, 512, 2048):
        for name, n, k in SHAPES:
            ms = linear_ms(m, n, k)
            print(f"| {m} | {name} | {ms:.4f} | {2 * m * n * k / ms / 1e9:.1f} |")
    x = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    y = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    ms = median_ms(lambda: x @ y, reps=10, warmup=2)
    print(f"torch bf16 GEMM 8192^3: {2 * 8192**3 / ms / 1e9:.1f} TFLOP/s")


if __name__ == "__main__":
    main()
