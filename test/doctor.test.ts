/**
 * `flash-mpt doctor`, run from dist/ (npm ci runs `prepare`): the binary it names is the one lib/native.ts loads,
 * its CUDA and GPU facts match the addon's, and it says what to do about what is missing. A copy of the package
 * without any binary shows the failing case. test/install.test.ts covers the prebuild case.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { DoctorReport } from '../lib/cli/doctor';
import { deviceInfo } from '../lib/devices';
import { FlashMptError } from '../lib/errors';
import { loadNative } from '../lib/native';

const root = path.join(__dirname, '..');

function doctor(packageDir: string, args: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const res = spawnSync(process.execPath, [path.join(packageDir, 'dist', 'cli', 'index.js'), 'doctor', ...args], { encoding: 'utf8' });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

describe('flash-mpt doctor', () => {
  const native = loadNative();
  const gpus = native.deviceCount();
  let report: DoctorReport;

  beforeAll(() => {
    if (!fs.existsSync(path.join(root, 'dist', 'cli', 'doctor.js'))) throw new Error('dist/ is not built: run `npm run build:ts`');
    const run = doctor(root, ['--json']);
    expect(run.status).toBe(0);
    report = JSON.parse(run.stdout) as DoctorReport;
  });

  test('names the binary node-gyp-build loads, and why', () => {
    const expected = (require('node-gyp-build') as { path(dir: string): string }).path(root);
    expect(report.binary).toMatchObject({ path: expected, loaded: true, source: expected.includes(`${path.sep}prebuilds${path.sep}`) ? 'prebuild' : 'local build' });
    expect(report.binary.why).not.toBe('');
    expect(report.package.version).toBe(require('../package.json').version);
    if (report.binary.build) expect(['cmake-js', 'node-gyp']).toContain(report.binary.build.builder);
  });

  test('CUDA and GPU facts are the addon’s', () => {
    expect(report.cuda.compiledIn).toBe(native.buildInfo().cuda);
    expect(report.gpus).toHaveLength(gpus);
    for (const [index, gpu] of report.gpus.entries()) {
      expect(gpu).toMatchObject({ index });
      if ('error' in gpu) continue;
      expect(gpu.name).not.toBe('');
      expect(gpu.computeCapability).toMatch(/^\d+\.\d$/);
      expect(gpu.freeBytes).toBeGreaterThan(0);
      expect(gpu.freeBytes).toBeLessThanOrEqual(gpu.totalBytes);
    }
  });

  test('says what to do about what is missing', () => {
    if (!report.cuda.compiledIn) expect(report.advice.some((line) => line.includes('no CUDA backend') && line.includes('npm run build'))).toBe(true);
    if (gpus === 0) expect(report.advice.some((line) => line.includes("device 'cpu'"))).toBe(true);
    console.log(`doctor on this machine:\n${doctor(root).stdout}`);
  });

  test('the text report has the same facts', () => {
    const text = doctor(root).stdout;
    expect(text).toContain(`binary    ${report.binary.path} (${report.binary.source}, loaded)`);
    expect(text).toContain(`CUDA      ${report.cuda.compiledIn ? 'compiled in' : 'not compiled in'}`);
    expect(text).toContain(`GPUs      ${gpus}`);
    for (const line of report.advice) expect(text).toContain(`  - ${line}`);
  });

  test('arguments other than --json are refused', () => {
    const run = doctor(root, ['now']);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('E_INVALID_ARGUMENT');
  });

  test('deviceInfo of a device that is not there is a typed error', () => {
    // E_NATIVE only from a binary built before deviceInfo existed
    const expectedCode = 'deviceInfo' in native ? 'E_DEVICE' : 'E_NATIVE';
    expect(() => deviceInfo(gpus)).toThrow(expect.objectContaining({ code: expectedCode }));
    expect(() => deviceInfo(gpus)).toThrow(FlashMptError);
  });

  test('without any binary: exit 1, and how to build one', () => {
    const bare = fs.mkdtempSync(path.join(os.tmpdir(), 'flash-mpt-doctor-'));
    try {
      fs.cpSync(path.join(root, 'dist'), path.join(bare, 'dist'), { recursive: true });
      fs.copyFileSync(path.join(root, 'package.json'), path.join(bare, 'package.json'));
      fs.symlinkSync(path.join(root, 'node_modules'), path.join(bare, 'node_modules'));
      const run = doctor(bare, ['--json']);
      expect(run.status).toBe(1);
      const bareReport = JSON.parse(run.stdout) as DoctorReport;
      expect(bareReport.binary).toMatchObject({ path: null, source: 'none', loaded: false });
      expect(bareReport.binary.why).toContain('No native build was found');
      expect(bareReport.advice).toEqual([expect.stringContaining(`run \`npm run build\` in ${bare}`)]);
      expect(bareReport.gpus).toEqual([]);
    } finally {
      fs.rmSync(bare, { recursive: true, force: true });
    }
  });
});
