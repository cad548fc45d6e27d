import { parseArgs, ParseArgsConfig } from 'node:util';
import { FlashMptError } from '../errors';

/** node:util parseArgs with unknown flags reported as a typed error instead of a raw TypeError. */
type CommandArgsConfig<T> = { args: string[]; options: T; allowPositionals: true; strict: true };

export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[],
  options: T,
): ReturnType<typeof parseArgs<CommandArgsConfig<T>>> {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new FlashMptError('E_INVALID_ARGUMENT', (err as Error).message);
  }
}

export function parseIdList(text: string, flag: string): number[] {
  const ids = text.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (ids.length === 0 || ids.some((id) => !Number.isInteger(id) || id < 0)) {
    throw new FlashMptError('E_INVALID_ARGUMENT', `${flag} expects comma-separated non-negative integers, got '${text}'`);
  }
  return ids;
}

/**
 * A device list: GPU ordinals ('0,1' or 'cuda:0,cuda:1'), each at most once, or 'cpu' entries (repeatable), not
 * both: CPU and GPU replicas compute in different precisions, so their answers would depend on the routing.
 */
export function parseDeviceList(text: string, flag: string): string[] {
  const devices = text.split(',').map((entry) => {
    const trimmed = entry.trim();
    if (trimmed === 'cpu') return 'cpu';
    const ordinal = /^(?:cuda:)?(\d+)$/.exec(trimmed)?.[1];
    if (ordinal === undefined) {
      throw new FlashMptError('E_INVALID_ARGUMENT', `${flag} expects comma-separated GPU ordinals (0,1) or cpu entries (cpu,cpu), got '${text}'`);
    }
    return `cuda:${Number(ordinal)}`;
  });
  const gpus = devices.filter((d) => d !== 'cpu');
  if (gpus.length > 0 && gpus.length < devices.length) {
    throw new FlashMptError('E_INVALID_ARGUMENT', `${flag} mixes cpu and GPUs ('${text}'): replicas must compute alike`);
  }
  const repeated = gpus.find((d, i) => gpus.indexOf(d) !== i);
  if (repeated) throw new FlashMptError('E_INVALID_ARGUMENT', `${flag} names ${repeated} twice ('${text}'): one replica per GPU`);
  return devices;
}

/** Numeric flag → number, or undefined when absent; zod validates the range afterwards. */
export function optionalNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new FlashMptError('E_INVALID_ARGUMENT', `${flag} expects a number, got '${value}'`);
  return n;
}
