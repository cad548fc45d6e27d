import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { makeTempDir, parameterShapes, safetensorsBytes, tensor, TensorSpec, TinyModel, writeModelFolder } from './checkpoint-writers';
import { seededRandom } from '../../lib/sampling/rng';
import { sharedPath } from './data';

/** The seed model's vocabulary rows, so every GPT-NeoX id is a valid token. */
export const TEXT_MODEL: TinyModel = { dModel: 64, nHeads: 4, nLayers: 2, vocabSize: 50432, ratio: 4, qkLn: true, noBias: true };

/** N(0, std) values from a seeded generator (Box-Muller). */
function normalValues(count: number, seed: number, std: number): Float32Array {
  const uniform = seededRandom(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = std * Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return out;
}

/** The weights of a text model: LayerNorm weights near 1, the others large enough that the model is far from uniform. */
export function textModelTensors(model: TinyModel = TEXT_MODEL, seed = 1): Record<string, TensorSpec> {
  const tensors: Record<string, TensorSpec> = {};
  parameterShapes(model, 'mpt').forEach(([name, shape], i) => {
    const count = shape.reduce((a, b) => a * b, 1);
    const isNorm = shape.length === 1;
    const values = isNorm ? normalValues(count, seed * 1000 + i, 0.1).map((v) => 1 + v) : normalValues(count, seed * 1000 + i, 0.15);
    tensors[name] = tensor('F32', shape, values);
  });
  return tensors;
}

/**
 * A Hub-style folder with a small random-weight MPT (safetensors) and the real GPT-NeoX tokenizer.json linked
 * from the shared test data, so text prompts go through the real tokenizer.
 */
export async function makeTextModelFolder(model: TinyModel = TEXT_MODEL, seed = 1): Promise<string> {
  const dir = await makeTempDir('flash-mpt-text-model-');
  await writeModelFolder(dir, model, 'mpt', { file: 'model.safetensors', bytes: safetensorsBytes(textModelTensors(model, seed)) });
  await fs.symlink(sharedPath('data', 'gpt-neox-20b', 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  return dir;
}
