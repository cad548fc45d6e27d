import type { FileHandle } from 'node:fs/promises';
import { FlashMptError } from '../errors';

/** Reads exactly `length` bytes at `position`; a short read means the file ended early (E_CHECKPOINT). */
export async function readAt(handle: FileHandle, position: number, length: number, file: string, what: string): Promise<Uint8Array> {
  const buffer = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, position + filled);
    if (bytesRead === 0) {
      throw new FlashMptError('E_CHECKPOINT', `${file}: truncated: ${what} needs ${length} bytes at offset ${position}, the file ends first`);
    }
    filled += bytesRead;
  }
  return buffer;
}

/** Wraps a file-system failure (missing shard, permission) as E_CHECKPOINT naming the file. */
export function fileError(file: string, err: unknown): FlashMptError {
  if (err instanceof FlashMptError) return err;
  const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (err as Error).message;
  return new FlashMptError('E_CHECKPOINT', `${file}: ${reason}`, { cause: err });
}
