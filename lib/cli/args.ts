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

/** Numeric flag → number, or undefined when absent; zod validates the range afterwards. */
export function optionalNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new FlashMptError('E_INVALID_ARGUMENT', `${flag} expects a number, got '${value}'`);
  return n;
}
