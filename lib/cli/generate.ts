import { loadModel, Prompt } from '../model';
import { FlashMptError } from '../errors';
import { GenerateOptions } from '../sampling';
import { optionalNumber, parseCommandArgs, parseIdList } from './args';
import { loadProgressBar } from './progress';

export const generateUsage = `flash-mpt generate --model DIR [PROMPT | --ids 1,2,3] [options]
  --device cpu|cuda|cuda:N|auto   --dtype bf16|f16|f32  --max-context N
  --max-tokens N   --temperature T   --top-k K   --top-p P   --min-p P   --seed S
  --repetition-penalty R   --presence-penalty P   --frequency-penalty F
  --logit-bias ID:BIAS,...   --stop STR (repeatable)   --stop-token-ids 0,1   --ignore-eos
  --truncate none|left   --json (print the result object instead of streaming text)`;

export async function generateCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs(argv, {
    model: { type: 'string' },
    ids: { type: 'string' },
    device: { type: 'string' },
    dtype: { type: 'string' },
    'max-context': { type: 'string' },
    'max-tokens': { type: 'string' },
    temperature: { type: 'string' },
    'top-k': { type: 'string' },
    'top-p': { type: 'string' },
    'min-p': { type: 'string' },
    seed: { type: 'string' },
    'repetition-penalty': { type: 'string' },
    'presence-penalty': { type: 'string' },
    'frequency-penalty': { type: 'string' },
    'logit-bias': { type: 'string' },
    stop: { type: 'string', multiple: true },
    'stop-token-ids': { type: 'string' },
    'ignore-eos': { type: 'boolean' },
    truncate: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (!values.model) throw new FlashMptError('E_INVALID_ARGUMENT', `--model DIR is required\n${generateUsage}`);
  if (values.ids !== undefined && positionals.length > 0) {
    throw new FlashMptError('E_INVALID_ARGUMENT', 'give either a text PROMPT or --ids, not both');
  }
  const prompt: Prompt = values.ids !== undefined ? { ids: parseIdList(values.ids, '--ids') } : positionals.join(' ');
  if (prompt === '') throw new FlashMptError('E_INVALID_ARGUMENT', `a PROMPT or --ids is required\n${generateUsage}`);

  const logitBias: Record<string, number> | undefined = values['logit-bias']
    ? Object.fromEntries(
        values['logit-bias'].split(',').map((pair) => {
          const [id, bias] = pair.split(':');
          return [id.trim(), optionalNumber(bias, '--logit-bias') ?? NaN];
        }),
      )
    : undefined;
  const options: GenerateOptions = {
    maxTokens: optionalNumber(values['max-tokens'], '--max-tokens'),
    temperature: optionalNumber(values.temperature, '--temperature'),
    topK: optionalNumber(values['top-k'], '--top-k'),
    topP: optionalNumber(values['top-p'], '--top-p'),
    minP: optionalNumber(values['min-p'], '--min-p'),
    seed: optionalNumber(values.seed, '--seed'),
    repetitionPenalty: optionalNumber(values['repetition-penalty'], '--repetition-penalty'),
    presencePenalty: optionalNumber(values['presence-penalty'], '--presence-penalty'),
    frequencyPenalty: optionalNumber(values['frequency-penalty'], '--frequency-penalty'),
    logitBias,
    stop: values.stop,
    stopTokenIds: values['stop-token-ids'] ? parseIdList(values['stop-token-ids'], '--stop-token-ids') : undefined,
    ignoreEos: values['ignore-eos'],
    truncate: values.truncate as GenerateOptions['truncate'],
  };
  const cleaned = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as GenerateOptions;

  const progress = loadProgressBar(`loading ${values.model}`);
  const model = await loadModel(values.model, {
    device: (values.device ?? 'auto') as 'auto',
    dtype: values.dtype as 'bf16' | undefined,
    maxContext: optionalNumber(values['max-context'], '--max-context'),
    onProgress: progress.onProgress,
  }).finally(progress.stop);
  try {
    if (values.json) {
      const result = await model.generate(prompt, cleaned);
      process.stdout.write(`${JSON.stringify(result)}\n`);
      return;
    }
    if (!model.tokenizer) {
      throw new FlashMptError('E_TOKENIZER', 'streaming text needs tokenizer.json in the model folder; use --json to print token ids');
    }
    const stream = model.stream(prompt, cleaned);
    for (;;) {
      const step = await stream.next();
      if (step.done) break;
      process.stdout.write(step.value.text);
    }
    process.stdout.write('\n');
  } finally {
    await model.dispose();
  }
}
