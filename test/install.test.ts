/**
 * SLOW (three native builds of the CPU backend, about a minute on 2 cores): the install fallback chain of
 * scripts/install.js on a temporary copy of the package (the git working tree, node_modules linked), and what
 * `npm pack` ships.
 *   prebuild present                 → install uses it, node-gyp-build loads it, doctor says so
 *   no prebuild, no nvcc             → cmake-js builds the CPU backend and says why
 *   cmake-js failing (broken cmake)  → node-gyp builds the CPU backend and says why
 * The CUDA prebuild (sm_80 + sm_90) needs nvcc and a long build; it is made with `npm run prebuilds` on a CUDA
 * machine, which this test's prebuild step (FLASH_MPT_CUDA=0) runs the same way.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { DoctorReport } from '../lib/cli/doctor';

const root = path.join(__dirname, '..');
const BUILD_TIMEOUT_MS = 240_000;

interface Run {
  status: number | null;
  output: string;
}

function run(cwd: string, args: string[], env: NodeJS.ProcessEnv): Run {
  const res = spawnSync(process.execPath, args, { cwd, env, encoding: 'utf8', timeout: BUILD_TIMEOUT_MS });
  return { status: res.status, output: `${res.stdout}${res.stderr}` };
}

/** The install script's own lines (the build tools' output is long). */
const notices = (output: string) => output.split('\n').filter((line) => line.startsWith('flash-mpt '));

function baseEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.FLASH_MPT_CUDA;
  return env;
}

/** PATH without any directory holding nvcc, and CUDA_HOME at an empty folder so /usr/local/cuda is not looked in. */
function envWithoutNvcc(emptyDir: string): NodeJS.ProcessEnv {
  const PATH = (process.env.PATH ?? '')
    .split(path.delimiter)
    .filter((dir) => dir && !fs.existsSync(path.join(dir, 'nvcc')))
    .join(path.delimiter);
  return { ...baseEnv(), PATH, CUDA_HOME: emptyDir };
}

function buildRecord(dir: string): { builder: string; cuda: boolean; reason: string; binary: string } {
  return JSON.parse(fs.readFileSync(path.join(dir, 'build', 'flash-mpt-build.json'), 'utf8'));
}

describe('install fallback chain (slow: native builds)', () => {
  let dir: string;
  let emptyDir: string;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flash-mpt-install-'));
    emptyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flash-mpt-no-cuda-'));
    const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: root, encoding: 'utf8' })
      .split('\0')
      .filter((file) => file && fs.existsSync(path.join(root, file)));
    for (const file of files) {
      fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
      fs.copyFileSync(path.join(root, file), path.join(dir, file));
      fs.chmodSync(path.join(dir, file), fs.statSync(path.join(root, file)).mode);
    }
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
    // The doctor run below uses the compiled CLI (npm ci runs `prepare`).
    fs.cpSync(path.join(root, 'dist'), path.join(dir, 'dist'), { recursive: true });
  });
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(emptyDir, { recursive: true, force: true });
  });

  test(
    'a prebuild from `npm run prebuilds` is what install uses and node-gyp-build loads',
    () => {
      const prebuild = run(dir, ['scripts/prebuild.js'], { ...baseEnv(), FLASH_MPT_CUDA: '0' });
      expect(prebuild.status).toBe(0);
      const binary = path.join('prebuilds', `${process.platform}-${process.arch}`, 'flash-mpt.node');
      expect(fs.existsSync(path.join(dir, binary))).toBe(true);
      expect(fs.existsSync(path.join(dir, 'build'))).toBe(false); // prebuildify ran in build-prebuild/

      const install = run(dir, ['scripts/install.js'], baseEnv());
      expect(install.status).toBe(0);
      expect(notices(install.output)).toEqual([`flash-mpt install: using the prebuilt binary ${binary} (CPU backend only); \`npm run build\` builds from source instead`]);

      const doctor = run(dir, ['dist/cli/index.js', 'doctor', '--json'], baseEnv());
      expect(doctor.status).toBe(0);
      const report = JSON.parse(doctor.output) as DoctorReport;
      expect(report.binary).toMatchObject({ path: path.join(dir, binary), source: 'prebuild', loaded: true });
      expect(report.binary.why).toContain('prebuilt binary');

      // the freshly built binary has deviceInfo; without CUDA it is a typed error
      const deviceInfo = run(dir, ['-e', `try { require('./${binary}').deviceInfo(0) } catch (err) { console.log(err.message) }`], baseEnv());
      expect(deviceInfo.output).toMatch(/^\[E_DEVICE\] this build of flash-mpt has no CUDA backend/);
      fs.rmSync(path.join(dir, 'prebuilds'), { recursive: true });
    },
    BUILD_TIMEOUT_MS,
  );

  test(
    'no prebuild and no nvcc: cmake-js builds the CPU backend and says why',
    () => {
      const install = run(dir, ['scripts/install.js'], envWithoutNvcc(emptyDir));
      expect(install.status).toBe(0);
      expect(notices(install.output)).toEqual([
        `flash-mpt install: no prebuilt binary for ${process.platform}-${process.arch} and no existing build: building from source`,
        'flash-mpt install: built with cmake-js (CPU backend only: nvcc not found on PATH, in CUDA_HOME or /usr/local/cuda: install the CUDA toolkit and run `npm run build` for GPU support)',
      ]);
      expect(buildRecord(dir)).toMatchObject({ builder: 'cmake-js', cuda: false, binary: path.join('build', 'Release', 'flash_mpt.node') });
      fs.rmSync(path.join(dir, 'build'), { recursive: true });
    },
    BUILD_TIMEOUT_MS,
  );

  test(
    'cmake-js failing: node-gyp builds the CPU backend and says why',
    () => {
      const shimDir = path.join(dir, 'broken-cmake');
      fs.mkdirSync(shimDir);
      fs.writeFileSync(path.join(shimDir, 'cmake'), '#!/bin/sh\necho "cmake: broken on purpose by install.test.ts" >&2\nexit 1\n', { mode: 0o755 });
      const env = baseEnv();
      const install = run(dir, ['scripts/install.js'], { ...env, PATH: `${shimDir}${path.delimiter}${env.PATH ?? ''}` });
      expect(install.status).toBe(0);
      const lines = notices(install.output);
      expect(lines[1]).toMatch(/^flash-mpt install: cmake-js build failed \(.*cmake-js compile --out build exited with 1\); falling back to node-gyp \(CPU backend only; install CMake/);
      expect(lines[2]).toBe('flash-mpt install: built the CPU-only addon with node-gyp');
      expect(buildRecord(dir)).toMatchObject({ builder: 'node-gyp', cuda: false, binary: path.join('build', 'Release', 'flash_mpt.node') });
      const loaded = run(dir, ['-e', "console.log(JSON.stringify(require('node-gyp-build')('.').buildInfo()))"], env);
      expect(JSON.parse(loaded.output)).toEqual({ cuda: false, version: require('../package.json').version });
    },
    BUILD_TIMEOUT_MS,
  );
});

describe('npm pack', () => {
  test('ships dist/, the CLI, and everything needed to rebuild from source', () => {
    const [pack] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' })) as [{ files: { path: string }[] }];
    const packed = new Set(pack.files.map((file) => file.path));
    const tracked = execFileSync('git', ['ls-files', 'csrc', 'kernels'], { cwd: root, encoding: 'utf8' }).split('\n').filter(Boolean);
    const missing = [
      ...tracked,
      'package.json',
      'CMakeLists.txt',
      'binding.gyp',
      'scripts/install.js',
      'scripts/sources.js',
      'scripts/prebuild.js',
      'scripts/prebuild-cmake-js.js',
      'dist/index.js',
      'dist/index.mjs',
      'dist/cli/index.js',
      'dist/cli/doctor.js',
    ].filter((file) => !packed.has(file));
    expect(missing).toEqual([]);
    expect([...packed].filter((file) => /^(test|bench|dev|build)\//.test(file))).toEqual([]);
  });
});
