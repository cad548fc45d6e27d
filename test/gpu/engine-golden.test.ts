/**
 * The CUDA engine end to end through the public API, on every golden in $FLASH_MPT_TEST_DATA/golden, in bf16 and
 * f16:
 *  - logits: relative L2 error vs the golden ≤ 2e-2. A checkpoint whose weights do not survive rounding to the
 *    compute dtype within that bound (the fp32 CPU engine on the rounded weights already misses it) is held to
 *    the FlashAttention-style rule instead: at most twice that same-precision reference's error.
 *  - greedy continuation equal to the golden's, unless they part at a near-tie (margin < 1e-2 between the two
 *    tokens on the fp32 CPU reference) or where the same-precision reference parts too.
 * Every case prints a [precision] line and every parting a [greedy] line: the report. Folders made by
 * mpt_oracle.py elsewhere (a 1B-shape checkpoint on the GPU machine) join through FLASH_MPT_GOLDEN_DIRS
 * (comma-separated). The CPU references load only when a case needs them.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadTensorIndex } from '../../lib/checkpoint';
import { loadConfig } from '../../lib/config';
import { loadModel, Model } from '../../lib/model';
import { decode, encode, safetensorsBytes, TensorSpec } from '../helpers/checkpoint-writers';
import { sharedPath, TEST_DATA } from '../helpers/data';
import { describeGpu, relativeL2 } from './gpu';

interface GoldenCase {
  ids: number[];
  argmax: number[];
  last_logits: number[];
  logits?: number[][];
  greedy?: number[];
}

const GOLDEN_TOL = 2e-2;
const NEAR_TIE = 1e-2;

const goldenRoot = sharedPath('golden');
const goldens = [
  ...(fs.existsSync(goldenRoot) ? fs.readdirSync(goldenRoot).map((d) => sharedPath('golden', d)) : []),
  ...(process.env.FLASH_MPT_GOLDEN_DIRS ?? '').split(',').filter(Boolean),
].filter((dir) => fs.existsSync(path.join(dir, 'golden.json')));
const LOAD_TIMEOUT = 600000;

/** A value made on first use (loading a reference model only for the cases that need it). */
function lazy<T>(make: () => Promise<T>): { get: () => Promise<T>; made: () => T | undefined } {
  let value: Promise<T> | undefined;
  let done: T | undefined;
  return {
    get: () => (value ??= make().then((v) => (done = v))),
    made: () => done,
  };
}

function row(logits: Float32Array, rows: number, r: number): Float32Array {
  const vocab = logits.length / rows;
  return logits.subarray(r * vocab, (r + 1) * vocab);
}

/**
 * A copy of the checkpoint in `dir` with every matrix (Linear weights, the embedding) rounded to the compute
 * dtype, as the GPU engine holds them, saved as fp32 safetensors: the CPU engine on it isolates the error of
 * the rounded weights from that of the GPU's arithmetic.
 */
async function roundedCopy(dir: string, dtype: 'bf16' | 'f16'): Promise<string> {
  const index = await loadTensorIndex(dir, await loadConfig(dir));
  const out = fs.mkdtempSync(path.join(os.tmpdir(), `flash-mpt-${dtype}-weights-`));
  fs.copyFileSync(path.join(dir, 'config.json'), path.join(out, 'config.json'));
  const rounded = dtype === 'bf16' ? 'BF16' : 'F16';
  const tensors: Record<string, TensorSpec> = {};
  for (const t of index.tensors.values()) {
    const bytes = new Uint8Array(t.bytes);
    const fd = fs.openSync(t.file, 'r');
    fs.readSync(fd, bytes, 0, t.bytes, t.offset);
    fs.closeSync(fd);
    let values = decode(t.dtype, bytes);
    if (t.shape.length === 2) values = decode(rounded, encode(rounded, values));
    tensors[t.sourceName] = { dtype: 'F32', shape: t.shape, data: encode('F32', values) };
  }
  fs.writeFileSync(path.join(out, 'model.safetensors'), safetensorsBytes(tensors));
  return out;
}

describeGpu('CUDA engine on the goldens', () => {
  if (goldens.length === 0) {
    it.skip(`no goldens under ${TEST_DATA} (set FLASH_MPT_TEST_DATA)`, () => undefined);
    return;
  }
  describe.each(goldens.map((dir) => [path.basename(dir), dir] as const))('%s', (golden, dir) => {
    const cases: GoldenCase[] = JSON.parse(fs.readFileSync(path.join(dir, 'golden.json'), 'utf8')).cases;
    const cpu = lazy(() => loadModel(dir, { device: 'cpu' }));
    afterAll(async () => {
      await cpu.made()?.dispose();
    });

    describe.each(['bf16', 'f16'] as const)('%s', (dtype) => {
      let gpu: Model;
      let roundedDir = '';
      const samePrecision = lazy(async () => {
        roundedDir = await roundedCopy(dir, dtype);
        return loadModel(roundedDir, { device: 'cpu' });
      });
      beforeAll(async () => {
        gpu = await loadModel(dir, { device: 'cuda', dtype });
      }, LOAD_TIMEOUT);
      afterAll(async () => {
        await gpu?.dispose();
        await samePrecision.made()?.dispose();
        if (roundedDir) fs.rmSync(roundedDir, { recursive: true, force: true });
      });

      it.each(cases.map((c, i) => [i, c.ids.length, c] as const))('case %i (%i prompt tokens): logits', async (_, n, c) => {
        const got = await gpu.logits(c.ids);
        const rows = c.logits ? c.logits.map((_, r) => r) : [n - 1];
        const errors = rows.map((r) => relativeL2(row(got, n, r), c.logits ? c.logits[r] : c.last_logits));
        let line = `[precision] ${golden} ${dtype} prompt ${n}: GPU vs golden ${errors[errors.length - 1].toExponential(2)}`;
        if (errors.some((e) => e > GOLDEN_TOL)) {
          // Only weights that cannot meet the bound themselves excuse a miss, and then by at most 2x.
          const ref = await (await samePrecision.get()).logits(c.ids);
          rows.forEach((r, i) => {
            const want = c.logits ? c.logits[r] : c.last_logits;
            const floor = relativeL2(row(ref, n, r), want);
            if (r === n - 1) {
              line += `; fp32 engine on ${dtype} weights vs golden ${floor.toExponential(2)}, GPU vs that ${relativeL2(row(got, n, r), row(ref, n, r)).toExponential(2)}`;
            }
            if (errors[i] > GOLDEN_TOL) {
              expect(floor).toBeGreaterThan(GOLDEN_TOL);
              expect(errors[i]).toBeLessThanOrEqual(2 * floor);
            }
          });
        }
        console.log(line);
      }, LOAD_TIMEOUT);

      it.each(cases.filter((c) => c.greedy).map((c, i) => [i, c] as const))('case %i: greedy continuation', async (_, c) => {
        const greedy = c.greedy!;
        const options = { maxTokens: greedy.length, temperature: 0, ignoreEos: true };
        const got = (await gpu.generate({ ids: c.ids }, options)).tokenIds;
        const part = got.findIndex((t, i) => t !== greedy[i]);
        if (part < 0) {
          expect(got).toEqual(greedy);
          return;
        }
        const context = [...c.ids, ...greedy.slice(0, part)];
        const ref = row(await (await cpu.get()).logits(context), context.length, context.length - 1);
        const margin = Math.abs(ref[greedy[part]] - ref[got[part]]);
        const same = (await (await samePrecision.get()).generate({ ids: c.ids }, options)).tokenIds;
        const samePart = same.findIndex((t, i) => t !== greedy[i]);
        console.log(
          `[greedy] ${golden} ${dtype} prompt ${c.ids.length}: step ${part} took ${got[part]} for ${greedy[part]}, fp32 reference margin ` +
            `${margin.toExponential(2)}; fp32 engine on ${dtype} weights ${samePart < 0 ? 'follows the golden' : `parts at step ${samePart}`}`,
        );
        expect(margin < NEAR_TIE || (samePart >= 0 && samePart <= part)).toBe(true);
      }, LOAD_TIMEOUT);
    });
  });
});
