#!/usr/bin/env node
import { FlashMptError } from '../errors';
import { benchCommand, benchUsage } from './bench';
import { doctorCommand, doctorUsage } from './doctor';
import { generateCommand, generateUsage } from './generate';
import { serveCommand, serveUsage } from './serve';

const usage = `flash-mpt — MPT language models on NVIDIA GPUs from Node.js

${generateUsage}

${serveUsage}

${benchUsage}

${doctorUsage}`;

const commands: Record<string, (argv: string[]) => Promise<void>> = {
  generate: generateCommand,
  serve: serveCommand,
  bench: benchCommand,
  doctor: doctorCommand,
};

async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage}\n`);
    return;
  }
  const command = commands[name];
  if (!command) throw new FlashMptError('E_INVALID_ARGUMENT', `unknown command '${name}'\n\n${usage}`);
  await command(rest);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const code = err instanceof FlashMptError ? err.code : 'E_INTERNAL';
  process.stderr.write(`flash-mpt: ${code}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
