/**
 * LayerNorm, GELU, GEMM (tiled and skinny, every epilogue; the SIMT kernel for f32), QKV epilogue and top-K on the
 * GPU against the same call on CPU tensors (each kernel's fp32 reference), on identical (already rounded) inputs.
 */
import { kernels, Tensor, TensorDType } from '../../lib/tensor';
import { describeGpu, maxAbsDiff, randomValues, relativeL2 } from './gpu';

const DTYPES = ['bf16', 'f16', 'f32'] as const;
/** One rounding of the output to the dtype, relative: 2^-8 (bf16), 2^-11 (f16), with some headroom. */
const OUTPUT_TOL: Record<TensorDType, number> = { bf16: 8e-3, f16: 1.5e-3, f32: 1e-5 };

function pair(values: Float32Array, shape: number[], dtype: TensorDType): { gpu: Tensor; cpu: Tensor } {
  const gpu = Tensor.fromArray(values, shape, { dtype, device: 'cuda' });
  return { gpu, cpu: Tensor.fromArray(gpu.toFloat32Array(), shape, { dtype: 'f32', device: 'cpu' }) };
}

function product(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

let seed = 1000;
function random(shape: number[], dtype: TensorDType, scale = 1): { gpu: Tensor; cpu: Tensor } {
  return pair(randomValues(product(shape), seed++, scale), shape, dtype);
}

describeGpu('LayerNorm, GELU, GEMM, QKV epilogue, top-K (GPU) vs CPU references', () => {
  describe.each([...DTYPES])('%s', (dtype) => {
    it.each([
      [1, 2048],
      [7, 96],
      [130, 2048],
      [3, 8192],
    ])('layerNorm rows %i × cols %i from the fp32 residual stream, with bias', (rows, cols) => {
      const x = random([rows, cols], 'f32', 3);
      const w = random([cols], 'f32');
      const b = random([cols], 'f32');
      const got = kernels.layerNorm(x.gpu, w.gpu, { bias: b.gpu, outDtype: dtype }).toFloat32Array();
      const want = kernels.layerNorm(x.cpu, w.cpu, { bias: b.cpu }).toFloat32Array();
      expect(relativeL2(got, want)).toBeLessThan(OUTPUT_TOL[dtype]);
    });

    it('layerNorm with a residual: normalizes x + residual and stores the sum into x', () => {
      const x = random([5, 256], dtype, 2);
      const r = random([5, 256], dtype, 2);
      const w = random([256], 'f32');
      const got = kernels.layerNorm(x.gpu, w.gpu, { residual: r.gpu }).toFloat32Array();
      const want = kernels.layerNorm(x.cpu, w.cpu, { residual: r.cpu }).toFloat32Array();
      expect(relativeL2(got, want)).toBeLessThan(2 * OUTPUT_TOL[dtype]);
      expect(relativeL2(x.gpu.toFloat32Array(), x.cpu.toFloat32Array())).toBeLessThan(OUTPUT_TOL[dtype]);
    });

    it('gelu (exact erf form)', () => {
      const x = random([4097], dtype, 6);
      expect(relativeL2(kernels.gelu(x.gpu).toFloat32Array(), kernels.gelu(x.cpu).toFloat32Array())).toBeLessThan(OUTPUT_TOL[dtype]);
    });

    // M ≤ 64 runs the skinny decode kernel (split over blocks for K = 8192 with accumulate), larger M the tiled
    // one (64×128 tiles, 128×128 at 1300 × 3000); ragged N and K tails on purpose.
    it.each([
      [1, 777, 96],
      [1, 256, 8192],
      [7, 2048, 2048],
      [64, 300, 264],
      [65, 777, 96],
      [300, 1000, 512],
      [1300, 3000, 264],
    ])('matmul M %i N %i K %i: store, bias+gelu, f32 with alpha, accumulate', (M, N, K) => {
      const a = random([M, K], dtype);
      const w = random([N, K], dtype, 1 / Math.sqrt(K));
      const bias = random([N], 'f32');
      const plain = kernels.matmul(a.gpu, w.gpu).toFloat32Array();
      expect(relativeL2(plain, kernels.matmul(a.cpu, w.cpu).toFloat32Array())).toBeLessThan(OUTPUT_TOL[dtype]);
      const gelu = kernels.matmul(a.gpu, w.gpu, { bias: bias.gpu, gelu: true }).toFloat32Array();
      expect(relativeL2(gelu, kernels.matmul(a.cpu, w.cpu, { bias: bias.cpu, gelu: true }).toFloat32Array())).toBeLessThan(OUTPUT_TOL[dtype]);
      const f32 = kernels.matmul(a.gpu, w.gpu, { alpha: 0.5, outDtype: 'f32' }).toFloat32Array();
      expect(relativeL2(f32, kernels.matmul(a.cpu, w.cpu, { alpha: 0.5 }).toFloat32Array())).toBeLessThan(1e-5);
      const acc = random([M, N], 'f32');
      kernels.matmul(a.gpu, w.gpu, { bias: bias.gpu, accumulate: acc.gpu });
      kernels.matmul(a.cpu, w.cpu, { bias: bias.cpu, accumulate: acc.cpu });
      expect(relativeL2(acc.gpu.toFloat32Array(), acc.cpu.toFloat32Array())).toBeLessThan(1e-5);
    });

    it.each([
      [true, 0],
      [false, 0.7],
      [true, 0.7],
    ])('qkvEpilogue (QK-LayerNorm %s, clip %s): q out, k/v scattered into the cache, padding rows skipped', (qkLn, clip) => {
      const rows = 5;
      const d = 256;
      const slots = 3;
      const cacheLen = 16;
      const qkv = random([rows, 3 * d], dtype, 2);
      const kc = random([slots, cacheLen, d], dtype);
      const vc = random([slots, cacheLen, d], dtype);
      const ln = qkLn ? { qLnWeight: random([d], 'f32'), qLnBias: random([d], 'f32'), kLnWeight: random([d], 'f32') } : null;
      const where = { slots: [2, 0, 1, 2, 0], positions: [0, 5, 15, -1, 6] };
      const side = (s: 'gpu' | 'cpu') =>
        kernels
          .qkvEpilogue(qkv[s], {
            kCache: kc[s],
            vCache: vc[s],
            ...where,
            clip,
            ...(ln ? { qLnWeight: ln.qLnWeight[s], qLnBias: ln.qLnBias[s], kLnWeight: ln.kLnWeight[s] } : {}),
          })
          .toFloat32Array();
      const q = side('gpu');
      const qRef = side('cpu');
      expect(relativeL2(q, qRef)).toBeLessThan(OUTPUT_TOL[dtype]);
      // Written cache rows match the reference; the others (padding row included) keep their values.
      expect(relativeL2(kc.gpu.toFloat32Array(), kc.cpu.toFloat32Array())).toBeLessThan(OUTPUT_TOL[dtype]);
      expect(relativeL2(vc.gpu.toFloat32Array(), vc.cpu.toFloat32Array())).toBeLessThan(OUTPUT_TOL[dtype]);
      const untouched = (t: Float32Array) => t.subarray((2 * cacheLen + 1) * d, (2 * cacheLen + 2) * d);
      expect(maxAbsDiff(untouched(vc.gpu.toFloat32Array()), untouched(vc.cpu.toFloat32Array()))).toBe(0);
    });
  });

  function expectTopKMatches(logits: { gpu: Tensor; cpu: Tensor }, k: number): void {
    const got = kernels.topK(logits.gpu, k);
    const want = kernels.topK(logits.cpu, k);
    expect(Array.from(got.indices)).toEqual(Array.from(want.indices));
    expect(Array.from(got.values)).toEqual(Array.from(want.values));
    expect(relativeL2(got.lse, want.lse)).toBeLessThan(1e-5);
  }

  // One chunk (no merge pass), one merge pass, and two: k = 512 and 1024 over 13 chunks, k = 64 over 74.
  it.each([
    [2, 500, 1],
    [3, 500, 64],
    [2, 50432, 64],
    [1, 4097, 7],
    [2, 50432, 256],
    [2, 50432, 512],
    [3, 50277, 1024],
    [1, 300_000, 64],
  ])('topK rows %i vocab %i k %i: values, ids and log-sum-exp', (rows, vocab, k) => {
    expectTopKMatches(random([rows, vocab], 'f32', 8), k);
  });

  it.each([64, 1024])('topK k %i: ties go to the lower id, NaN counts as -Infinity', (k) => {
    const vocab = 50432;
    // Values on a coarse grid, so most of them repeat (across chunks too), with NaNs among them.
    const values = randomValues(2 * vocab, seed++, 4).map((x, i) => (i % 997 === 5 ? NaN : Math.round(x * 8) / 8));
    const logits = pair(values, [2, vocab], 'f32');
    expectTopKMatches(logits, k);
    const { indices } = kernels.topK(logits.cpu, k);
    let ties = 0;
    for (let i = 1; i < k; i++) {
      const [a, b] = [values[indices[i - 1]], values[indices[i]]];
      expect(a > b || (a === b && indices[i - 1] < indices[i])).toBe(true);
      if (a === b) ties++;
    }
    expect(ties).toBeGreaterThan(0);
  });
});
