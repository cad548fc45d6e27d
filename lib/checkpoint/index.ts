/**
 * The tensor index: where every weight the config needs lives on disk (file, offset, bytes, dtype, shape),
 * under canonical names. Only metadata is read here; the native side maps the bytes (DESIGN.md §2).
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { MptConfig } from '../config';
import { FlashMptError } from '../errors';
import { canonicalName, expectedTensors } from './names';
import { readSafetensors } from './safetensors';
import { readShardedCheckpoint } from './shards';
import { readTorchZip } from './torch-zip';

export type TensorDType = 'F32' | 'F16' | 'BF16';

export interface TensorEntry {
  /** canonical name (names.ts) */
  name: string;
  /** the name in the checkpoint */
  sourceName: string;
  dtype: TensorDType;
  shape: number[];
  /** absolute path */
  file: string;
  /** byte offset of the first element in the file */
  offset: number;
  bytes: number;
}

export interface TensorIndex {
  tensors: Map<string, TensorEntry>;
  files: string[];
  format: 'safetensors' | 'bin';
}

/** A tensor as a checkpoint file describes it, before names and dtypes are checked against the model. */
export interface SourceTensor {
  name: string;
  /** safetensors spelling; storage types of a .bin are translated to it */
  dtype: string;
  shape: number[];
  file: string;
  offset: number;
  bytes: number;
}

const SUPPORTED_DTYPES: ReadonlySet<string> = new Set<TensorDType>(['F32', 'F16', 'BF16']);

/** Weight files in order of preference: safetensors before pickles, one file before shards. */
const WEIGHT_FILES: Array<{ file: string; format: TensorIndex['format']; sharded: boolean }> = [
  { file: 'model.safetensors', format: 'safetensors', sharded: false },
  { file: 'model.safetensors.index.json', format: 'safetensors', sharded: true },
  { file: 'pytorch_model.bin', format: 'bin', sharded: false },
  { file: 'pytorch_model.bin.index.json', format: 'bin', sharded: true },
];

async function isFile(file: string): Promise<boolean> {
  try {
    return (await fs.stat(file)).isFile();
  } catch {
    return false;
  }
}

function checkpointError(dir: string, message: string): FlashMptError {
  return new FlashMptError('E_CHECKPOINT', `${dir}: ${message}`);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((dim, i) => dim === b[i]);
}

/** Maps source tensors to canonical names and checks them against what the config requires. */
function resolveTensors(source: SourceTensor[], config: MptConfig, dir: string): Map<string, TensorEntry> {
  const expected = expectedTensors(config);
  const resolved = new Map<string, TensorEntry>();
  for (const tensor of source) {
    const name = canonicalName(tensor.name);
    if (name === null) continue; // buffers and the tied lm_head
    const shape = expected.get(name);
    if (shape === undefined) {
      throw checkpointError(
        dir,
        `tensor ${tensor.name} (${name}) does not belong to the model config.json describes ` +
          `(n_layers ${config.nLayers}, qk_ln ${config.qkLn}, no_bias ${config.noBias})`,
      );
    }
    const previous = resolved.get(name);
    if (previous !== undefined) {
      throw checkpointError(dir, `tensors ${previous.sourceName} and ${tensor.name} both name ${name}`);
    }
    if (!SUPPORTED_DTYPES.has(tensor.dtype)) {
      throw checkpointError(dir, `tensor ${tensor.name} has dtype ${tensor.dtype}; only F32, F16 and BF16 are supported`);
    }
    if (!sameShape(tensor.shape, shape)) {
      throw checkpointError(dir, `tensor ${tensor.name} has shape [${tensor.shape.join(', ')}], expected [${shape.join(', ')}]`);
    }
    resolved.set(name, { ...tensor, name, sourceName: tensor.name, dtype: tensor.dtype as TensorDType, shape: tensor.shape.slice() });
  }
  const missing = [...expected.keys()].filter((name) => !resolved.has(name));
  if (missing.length > 0) {
    const listed = missing.slice(0, 8).join(', ') + (missing.length > 8 ? `, … (${missing.length} in all)` : '');
    throw checkpointError(dir, `missing tensor${missing.length > 1 ? 's' : ''} ${listed}`);
  }
  return resolved;
}

/** Finds the weights in `dir`, reads their metadata and validates every tensor against `config`. */
export async function loadTensorIndex(dir: string, config: MptConfig): Promise<TensorIndex> {
  const root = path.resolve(dir);
  for (const candidate of WEIGHT_FILES) {
    const file = path.join(root, candidate.file);
    if (!(await isFile(file))) continue;
    const readOne = candidate.format === 'safetensors' ? readSafetensors : readTorchZip;
    const { tensors, files } = candidate.sharded
      ? await readShardedCheckpoint(file, readOne)
      : { tensors: await readOne(file), files: [file] };
    return { tensors: resolveTensors(tensors, config, root), files, format: candidate.format };
  }
  throw checkpointError(root, `no weights found; looked for ${WEIGHT_FILES.map((c) => c.file).join(', ')}`);
}
