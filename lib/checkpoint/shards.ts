/**
 * Sharded checkpoints: `model.safetensors.index.json` / `pytorch_model.bin.index.json` map each tensor name to
 * the shard file holding it (`weight_map`). The index decides which shard a tensor is taken from, as
 * transformers does; a tensor it lists that its shard lacks is an error.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { FlashMptError } from '../errors';
import type { SourceTensor } from './index';
import { fileError } from './read-at';

export interface ShardedTensors {
  tensors: SourceTensor[];
  /** absolute shard paths, in the order the index first names them */
  files: string[];
}

function indexError(indexFile: string, message: string): FlashMptError {
  return new FlashMptError('E_CHECKPOINT', `${indexFile}: ${message}`);
}

/** weight_map as tensor name → shard file name; shard names must be plain file names in the same folder. */
export function parseShardIndex(json: unknown, indexFile: string): Map<string, string> {
  const weightMap = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw indexError(indexFile, 'weight_map: expected an object mapping tensor names to shard files');
  }
  const shardOf = new Map<string, string>();
  for (const [tensor, shard] of Object.entries(weightMap)) {
    // A shard path must not reach outside the checkpoint folder.
    if (typeof shard !== 'string' || shard === '' || shard === '.' || shard === '..' || path.basename(shard) !== shard || shard.includes('\\')) {
      throw indexError(indexFile, `weight_map.${tensor}: expected a shard file name in the same folder, got ${JSON.stringify(shard)}`);
    }
    shardOf.set(tensor, shard);
  }
  if (shardOf.size === 0) throw indexError(indexFile, 'weight_map is empty');
  return shardOf;
}

/** Reads the index, then each shard's metadata through `readShard`, keeping the tensors the index assigns it. */
export async function readShardedCheckpoint(
  indexFile: string,
  readShard: (file: string) => Promise<SourceTensor[]>,
): Promise<ShardedTensors> {
  let json: unknown;
  try {
    json = JSON.parse(await fs.readFile(indexFile, 'utf8'));
  } catch (err) {
    if (err instanceof SyntaxError) throw indexError(indexFile, `invalid JSON: ${err.message}`);
    throw fileError(indexFile, err);
  }
  const shardOf = parseShardIndex(json, indexFile);
  const dir = path.dirname(indexFile);

  const wantedByShard = new Map<string, Set<string>>();
  for (const [tensor, shard] of shardOf) {
    const wanted = wantedByShard.get(shard) ?? new Set<string>();
    wanted.add(tensor);
    wantedByShard.set(shard, wanted);
  }

  const tensors: SourceTensor[] = [];
  const files: string[] = [];
  for (const [shard, wanted] of wantedByShard) {
    const file = path.join(dir, shard);
    files.push(file);
    const found = new Map((await readShard(file)).map((t) => [t.name, t]));
    for (const name of wanted) {
      const tensor = found.get(name);
      if (tensor === undefined) throw indexError(indexFile, `lists tensor ${name} in ${shard}, but that shard does not contain it`);
      tensors.push(tensor);
    }
  }
  return { tensors, files };
}
