/**
 * Prefill and decode attention on the GPU against the fp32 reference, with FlashAttention's tolerance rule:
 * the fused kernel's max error must be at most twice the naive same-precision kernel's.
 */
import { kernels, Tensor, TensorDType } from '../../lib/tensor';
import { describeGpu, maxAbsDiff, randomValues } from './gpu';

interface Case {
  dtype: 'bf16' | 'f16';
  headDim: number;
  causal: boolean;
  alibi: boolean;
  batch: number;
  heads: number;
  seqQ: number;
  seqK: number;
}

function slopes(heads: number): number[] {
  return Array.from({ length: heads }, (_, h) => 2 ** ((-8 * (h + 1)) / heads));
}

function cases(): Case[] {
  const out: Case[] = [];
  for (const length of [1, 7, 128, 1000]) {
    for (const dtype of ['bf16', 'f16'] as const) {
      for (const headDim of [64, 128]) {
        for (const causal of [false, true]) {
          for (const alibi of [false, true]) {
            out.push({ dtype, headDim, causal, alibi, batch: length <= 128 ? 2 : 1, heads: 2, seqQ: length, seqK: length });
          }
        }
      }
    }
  }
  // ALiBi extrapolates past max_seq_len: long rows, the model's configuration (causal + ALiBi).
  for (const length of [2048, 4096]) {
    for (const dtype of ['bf16', 'f16'] as const) {
      for (const headDim of [64, 128]) out.push({ dtype, headDim, causal: true, alibi: true, batch: 1, heads: 2, seqQ: length, seqK: length });
    }
  }
  // A chunk appended after a cached prefix (bottom-right causal alignment).
  for (const dtype of ['bf16', 'f16'] as const) out.push({ dtype, headDim: 128, causal: true, alibi: true, batch: 1, heads: 2, seqQ: 7, seqK: 1000 });
  return out;
}

function name(c: Case): string {
  return `${c.dtype} hd${c.headDim} ${c.causal ? 'causal' : 'full'} ${c.alibi ? 'alibi' : 'no-alibi'} B${c.batch} Sq${c.seqQ} Sk${c.seqK}`;
}

/** Same values on the GPU (rounded to dtype) and on the CPU in fp32 (the rounded values, exactly). */
function pair(values: Float32Array, shape: number[], dtype: TensorDType): { gpu: Tensor; cpu: Tensor } {
  const gpu = Tensor.fromArray(values, shape, { dtype, device: 'cuda' });
  return { gpu, cpu: Tensor.fromArray(gpu.toFloat32Array(), shape, { dtype: 'f32', device: 'cpu' }) };
}

describeGpu('attention kernels (GPU) vs fp32 reference', () => {
  let seed = 1;
  it.each(cases().map((c) => [name(c), c] as const))('prefill %s', (_, c) => {
    const scale = Math.sqrt(3); // unit variance, like randn
    const qShape = [c.batch, c.seqQ, c.heads, c.headDim];
    const kShape = [c.batch, c.seqK, c.heads, c.headDim];
    const q = pair(randomValues(qShape.reduce((a, b) => a * b), seed++, scale), qShape, c.dtype);
    const k = pair(randomValues(kShape.reduce((a, b) => a * b), seed++, scale), kShape, c.dtype);
    const v = pair(randomValues(kShape.reduce((a, b) => a * b), seed++, scale), kShape, c.dtype);
    const options = { causal: c.causal, alibiSlopes: c.alibi ? slopes(c.heads) : undefined };
    const reference = kernels.flashAttention(q.cpu, k.cpu, v.cpu, options).toFloat32Array();
    const fused = kernels.flashAttention(q.gpu, k.gpu, v.gpu, options).toFloat32Array();
    const naive = kernels.naiveAttention(q.gpu, k.gpu, v.gpu, options).toFloat32Array();
    const fusedErr = maxAbsDiff(fused, reference);
    const naiveErr = maxAbsDiff(naive, reference);
    expect(Number.isFinite(fusedErr)).toBe(true);
    expect(fusedErr).toBeLessThanOrEqual(2 * naiveErr + 1e-6);
    for (const t of [q, k, v]) {
      t.gpu.dispose();
      t.cpu.dispose();
    }
  });

  const decodeCases = (['bf16', 'f16'] as const).flatMap((dtype) =>
    [64, 128].flatMap((headDim) => [false, true].map((alibi) => ({ dtype, headDim, alibi }))),
  );
  it.each(decodeCases.map((c) => [`${c.dtype} hd${c.headDim} ${c.alibi ? 'alibi' : 'no-alibi'}`, c] as const))('decode %s', (_, c) => {
    const batch = 3;
    const heads = 4;
    const cacheLen = 1500;
    const lens = [1, 700, 1500];
    const qShape = [batch, heads, c.headDim];
    const cacheShape = [batch, cacheLen, heads, c.headDim];
    const q = pair(randomValues(batch * heads * c.headDim, seed++, Math.sqrt(3)), qShape, c.dtype);
    const k = pair(randomValues(cacheShape.reduce((a, b) => a * b), seed++, Math.sqrt(3)), cacheShape, c.dtype);
    const v = pair(randomValues(cacheShape.reduce((a, b) => a * b), seed++, Math.sqrt(3)), cacheShape, c.dtype);
    const options = { alibiSlopes: c.alibi ? slopes(heads) : undefined };
    const reference = kernels.decodeAttention(q.cpu, k.cpu, v.cpu, lens, options).toFloat32Array();
    const fused = kernels.decodeAttention(q.gpu, k.gpu, v.gpu, lens, options).toFloat32Array();
    // The naive kernel over each sequence's own keys gives the same-precision yardstick.
    let naiveErr = 0;
    for (let b = 0; b < batch; b++) {
      const rows = lens[b];
      const qb = Tensor.fromArray(q.cpu.toFloat32Array().subarray(b * heads * c.headDim, (b + 1) * heads * c.headDim), [1, 1, heads, c.headDim], { dtype: c.dtype, device: 'cuda' });
      const slice = (t: Tensor) =>
        Tensor.fromArray(t.toFloat32Array().subarray(b * cacheLen * heads * c.headDim, (b * cacheLen + rows) * heads * c.headDim), [1, rows, heads, c.headDim], {
          dtype: c.dtype,
          device: 'cuda',
        });
      const out = kernels.naiveAttention(qb, slice(k.cpu), slice(v.cpu), { causal: true, ...options }).toFloat32Array();
      naiveErr = Math.max(naiveErr, maxAbsDiff(out, reference.subarray(b * heads * c.headDim, (b + 1) * heads * c.headDim)));
    }
    expect(maxAbsDiff(fused, reference)).toBeLessThanOrEqual(2 * naiveErr + 1e-6);
  });
});
