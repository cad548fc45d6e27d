import { FlashMptError } from '../errors';
import { formatEngineBench, runEngineBench } from '../bench/engine';
import { parseCommandArgs, optionalNumber } from './args';

export const benchUsage = `flash-mpt bench [--model DIR] [--device auto|cpu|cuda|cuda:N] [--dtype bf16|f16] [--json]
flash-mpt bench tokenizer [--tokenizer FILE] [--json]`;

export async function benchCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs(argv, {
    model: { type: 'string' },
    device: { type: 'string', default: 'auto' },
    dtype: { type: 'string', default: 'bf16' },
    tokenizer: { type: 'string' },
    'decode-tokens': { type: 'string' },
    json: { type: 'boolean' },
  });
  const what = positionals[0] ?? 'engine';
  if (what === 'tokenizer') {
    const { runTokenizerBenchCommand } = await import('../bench/tokenizer-command');
    await runTokenizerBenchCommand({ tokenizerPath: values.tokenizer, json: values.json ?? false });
    return;
  }
  if (what !== 'engine') throw new FlashMptError('E_INVALID_ARGUMENT', `unknown benchmark '${what}'\n${benchUsage}`);
  if (values.dtype !== 'bf16' && values.dtype !== 'f16') throw new FlashMptError('E_INVALID_ARGUMENT', `--dtype must be bf16 or f16, got '${values.dtype}'`);
  const result = await runEngineBench({
    modelDir: values.model,
    device: values.device!,
    dtype: values.dtype,
    decodeTokens: optionalNumber(values['decode-tokens'], '--decode-tokens'),
  });
  process.stdout.write(values.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatEngineBench(result)}\n`);
}
