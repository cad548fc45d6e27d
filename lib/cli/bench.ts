import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlashMptError } from '../errors';
import { formatEngineBench, runEngineBench } from '../bench/engine';
import { formatServingBench, runServingBench } from '../bench/serving';
import { runTokenizerBench } from '../bench/tokenizer';
import { parseCommandArgs, parseIdList, optionalNumber } from './args';

/** --model DIR's tokenizer.json, else the GPT-NeoX tokenizer of the test data (FLASH_MPT_TEST_DATA or ../shared). */
function defaultTokenizerPath(modelDir: string | undefined): string {
  const candidate = modelDir
    ? path.join(modelDir, 'tokenizer.json')
    : path.join(process.env.FLASH_MPT_TEST_DATA ?? path.join(__dirname, '..', '..', '..', 'shared'), 'data', 'gpt-neox-20b', 'tokenizer.json');
  if (!fs.existsSync(candidate)) {
    throw new FlashMptError('E_TOKENIZER', `no tokenizer.json at ${candidate}; pass --tokenizer FILE or --model DIR`);
  }
  return candidate;
}

export const benchUsage = `flash-mpt bench [--model DIR] [--device auto|cpu|cuda|cuda:N] [--dtype bf16|f16] [--json]
flash-mpt bench serving [--model DIR] [--device …] [--dtype …] [--concurrency 1,8,32,64] [--prompt-tokens N]
                        [--new-tokens N] [--temperature T] [--json]
flash-mpt bench tokenizer [--tokenizer FILE] [--json]`;

export async function benchCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs(argv, {
    model: { type: 'string' },
    device: { type: 'string', default: 'auto' },
    dtype: { type: 'string', default: 'bf16' },
    tokenizer: { type: 'string' },
    'decode-tokens': { type: 'string' },
    concurrency: { type: 'string' },
    'prompt-tokens': { type: 'string' },
    'new-tokens': { type: 'string' },
    temperature: { type: 'string' },
    json: { type: 'boolean' },
  });
  const what = positionals[0] ?? 'engine';
  if (what === 'tokenizer') {
    await runTokenizerBench({ tokenizerPath: values.tokenizer ?? defaultTokenizerPath(values.model), json: values.json ?? false });
    return;
  }
  if (what !== 'engine' && what !== 'serving') throw new FlashMptError('E_INVALID_ARGUMENT', `unknown benchmark '${what}'\n${benchUsage}`);
  if (values.dtype !== 'bf16' && values.dtype !== 'f16') throw new FlashMptError('E_INVALID_ARGUMENT', `--dtype must be bf16 or f16, got '${values.dtype}'`);
  if (what === 'serving') {
    const concurrencies = values.concurrency === undefined ? undefined : parseIdList(values.concurrency, '--concurrency');
    if (concurrencies?.includes(0)) throw new FlashMptError('E_INVALID_ARGUMENT', `--concurrency counts start at 1, got '${values.concurrency}'`);
    const result = await runServingBench({
      modelDir: values.model,
      device: values.device!,
      dtype: values.dtype,
      concurrencies,
      promptTokens: optionalNumber(values['prompt-tokens'], '--prompt-tokens'),
      newTokens: optionalNumber(values['new-tokens'], '--new-tokens'),
      temperature: optionalNumber(values.temperature, '--temperature'),
    });
    process.stdout.write(values.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatServingBench(result)}\n`);
    return;
  }
  const result = await runEngineBench({
    modelDir: values.model,
    device: values.device!,
    dtype: values.dtype,
    decodeTokens: optionalNumber(values['decode-tokens'], '--decode-tokens'),
  });
  process.stdout.write(values.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatEngineBench(result)}\n`);
}
