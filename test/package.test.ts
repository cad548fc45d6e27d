/**
 * The package as users get it: the built dist/ (npm ci runs `prepare`), loaded through its name from CommonJS
 * and ESM, and the `flash-mpt` CLI.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadModel } from '../lib';
import { describeWithData, sharedPath } from './helpers/data';

const root = path.join(__dirname, '..');
const cli = path.join(root, 'dist', 'cli', 'index.js');

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('package entry points', () => {
  beforeAll(() => {
    if (!fs.existsSync(path.join(root, 'dist', 'index.mjs'))) throw new Error('dist/ is not built: run `npm run build:ts`');
  });

  test('require("flash-mpt") gives the typed API', () => {
    const out = node(['-e', "const m = require('flash-mpt'); console.log(typeof m.loadModel, typeof m.Tokenizer, typeof m.FlashMptError)"]);
    expect(out.trim()).toBe('function function function');
  });

  test('import { loadModel } from "flash-mpt" works from ESM', () => {
    const out = node(['--input-type=module', '-e', "import { loadModel, FlashMptError } from 'flash-mpt'; console.log(typeof loadModel, typeof FlashMptError)"]);
    expect(out.trim()).toBe('function function');
  });

  test('unknown CLI commands fail with a typed message', () => {
    let stderr = '';
    try {
      node([cli, 'frobnicate']);
    } catch (err) {
      stderr = String((err as { stderr: string }).stderr);
    }
    expect(stderr).toContain('E_INVALID_ARGUMENT');
  });
});

describeWithData('flash-mpt generate', 'golden/tiny-mosaic-fp32', () => {
  test('--ids … --json prints the same tokens as model.generate', async () => {
    const dir = sharedPath('golden', 'tiny-mosaic-fp32');
    const out = JSON.parse(node([cli, 'generate', '--model', dir, '--ids', '1,2,3', '--max-tokens', '16', '--device', 'cpu', '--json', '--temperature', '0']));
    const model = await loadModel(dir, { device: 'cpu' });
    try {
      const expected = await model.generate({ ids: [1, 2, 3] }, { maxTokens: 16, temperature: 0 });
      expect(out.tokenIds).toEqual(expected.tokenIds);
      expect(out.tokenIds).toHaveLength(16);
    } finally {
      await model.dispose();
    }
  });
});
