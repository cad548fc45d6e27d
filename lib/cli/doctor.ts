import * as fs from 'node:fs';
import * as path from 'node:path';
import { deviceInfo, DeviceInfo } from '../devices';
import { FlashMptError } from '../errors';
import { loadNative } from '../native';
import { parseCommandArgs } from './args';

export const doctorUsage = `flash-mpt doctor [--json]   which binary loaded and why, CUDA, GPUs, and what to do when something is missing`;

/** lib/cli (tests) or dist/cli (installed): the package root is two levels up either way. */
const packageRoot = path.resolve(__dirname, '..', '..');

/** What scripts/install.js records in build/flash-mpt-build.json when it builds or picks a binary. */
interface BuildRecord {
  builder: string;
  cuda: boolean;
  reason: string;
  /** relative to the package root; absent in records written before it was added */
  binary?: string;
  at: string;
}

export interface DoctorReport {
  package: { version: string; root: string };
  node: { version: string; platform: string; arch: string; napi: string | undefined };
  binary: {
    /** the file node-gyp-build resolves (and loadNative loads), null when there is none */
    path: string | null;
    source: 'local build' | 'prebuild' | 'none';
    why: string;
    /** install.js's record, when it describes this binary */
    build: BuildRecord | null;
    loaded: boolean;
    loadError?: string;
  };
  cuda: {
    compiledIn: boolean;
    /** nvcc as CMakeLists.txt would find it */
    nvcc: string | null;
    /** the NVIDIA kernel driver's version, from /proc/driver/nvidia/version */
    driverVersion: string | null;
    visibleDevices: string | undefined;
  };
  gpus: Array<DeviceInfo | { index: number; error: string }>;
  /** what to do about what is missing; empty when nothing is */
  advice: string[];
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Where CMakeLists.txt looks: CUDA_HOME (else /usr/local/cuda), then PATH. */
function findNvcc(): string | null {
  const dirs = [path.join(process.env.CUDA_HOME || '/usr/local/cuda', 'bin'), ...(process.env.PATH ?? '').split(path.delimiter)];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, 'nvcc');
    if (fs.existsSync(candidate)) return candidate;
  }
  return null;
}

function nvidiaDriverVersion(): string | null {
  try {
    return /Kernel Module\s+(\S+)/.exec(fs.readFileSync('/proc/driver/nvidia/version', 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}

function describeBinary(root: string): Omit<DoctorReport['binary'], 'loaded' | 'loadError'> {
  let resolved: string;
  try {
    resolved = (require('node-gyp-build') as { path(dir: string): string }).path(root);
  } catch (err) {
    return { path: null, source: 'none', why: `node-gyp-build found no binary: ${(err as Error).message.split('\n')[0]}`, build: null };
  }
  const record = readJson(path.join(root, 'build', 'flash-mpt-build.json')) as BuildRecord | undefined;
  const build = record && (record.binary === undefined || path.resolve(root, record.binary) === resolved) ? record : null;
  const prebuild = path.relative(root, resolved).startsWith(`prebuilds${path.sep}`);
  const why = prebuild
    ? `no local build in build/, so node-gyp-build took the prebuilt binary for ${process.platform}-${process.arch} (N-API)`
    : 'node-gyp-build prefers a local build in build/ over prebuilds/';
  return { path: resolved, source: prebuild ? 'prebuild' : 'local build', why, build };
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

/** Major versions a default CUDA build targets (CMakeLists.txt: sm_80 and sm_90 cubins, no PTX). */
const BUILT_MAJORS = [8, 9];

function adviceFor(report: Omit<DoctorReport, 'advice'>): string[] {
  const advice: string[] = [];
  const rebuild = `run \`npm run build\` in ${report.package.root}`;
  if (!report.binary.loaded) {
    advice.push(`the native addon did not load: ${rebuild} (needs CMake and a C++17 compiler, or node-gyp; the CUDA toolkit for GPUs)`);
    return advice;
  }
  if (!report.cuda.compiledIn) {
    advice.push(
      report.cuda.nvcc
        ? `this binary has no CUDA backend although nvcc is at ${report.cuda.nvcc}: ${rebuild} (FLASH_MPT_CUDA=1 forces CUDA)`
        : `this binary has no CUDA backend and nvcc was not found: install the CUDA toolkit (nvcc on PATH or CUDA_HOME set), then ${rebuild}`,
    );
  } else if (report.gpus.length === 0) {
    advice.push(
      report.cuda.driverVersion
        ? `the NVIDIA driver ${report.cuda.driverVersion} is loaded but no GPU is visible: check nvidia-smi, CUDA_VISIBLE_DEVICES (${report.cuda.visibleDevices ?? 'unset'}), and that the driver supports the CUDA version the addon was built with`
        : 'no GPU is visible and no NVIDIA driver is loaded: install the driver (nvidia-smi should list the GPU)',
    );
  }
  if (report.gpus.length === 0) advice.push("without a GPU, use device 'cpu' (device 'auto' picks it): the exact fp32 CPU engine");
  for (const gpu of report.gpus) {
    if ('error' in gpu) {
      advice.push(`GPU ${gpu.index} could not be queried (${gpu.error}): check nvidia-smi`);
      continue;
    }
    const major = Number(gpu.computeCapability.split('.')[0]);
    if (major < BUILT_MAJORS[0]) {
      advice.push(`GPU ${gpu.index} (${gpu.name}) has compute capability ${gpu.computeCapability}; flash-mpt's kernels need 8.0 or newer: use device 'cpu'`);
    } else if (!BUILT_MAJORS.includes(major)) {
      const arch = gpu.computeCapability.replace('.', '');
      advice.push(`GPU ${gpu.index} (${gpu.name}, compute capability ${gpu.computeCapability}) is not among the default architectures (sm_80, sm_90): rebuild with FLASH_MPT_CUDA_ARCHS="80-real;90-real;${arch}-real" npm run build`);
    }
  }
  return advice;
}

export function runDoctor(): DoctorReport {
  const pkg = readJson(path.join(packageRoot, 'package.json')) as { version?: string } | undefined;
  const binary = describeBinary(packageRoot);
  let native: ReturnType<typeof loadNative> | undefined;
  let loadError: string | undefined;
  if (binary.path) {
    try {
      native = loadNative();
    } catch (err) {
      loadError = (err as Error).message;
    }
  }
  const count = native ? native.deviceCount() : 0;
  const gpus = Array.from({ length: count }, (_, index) => {
    try {
      return deviceInfo(index);
    } catch (err) {
      return { index, error: (err as Error).message };
    }
  });
  const report: Omit<DoctorReport, 'advice'> = {
    package: { version: pkg?.version ?? 'unknown', root: packageRoot },
    node: { version: process.version, platform: process.platform, arch: process.arch, napi: process.versions.napi },
    binary: { ...binary, loaded: native !== undefined, ...(loadError === undefined ? {} : { loadError }) },
    cuda: { compiledIn: native?.buildInfo().cuda ?? false, nvcc: findNvcc(), driverVersion: nvidiaDriverVersion(), visibleDevices: process.env.CUDA_VISIBLE_DEVICES },
    gpus,
  };
  return { ...report, advice: adviceFor(report) };
}

export function formatDoctorReport(report: DoctorReport): string {
  const { binary, cuda } = report;
  const lines = [
    `flash-mpt ${report.package.version} at ${report.package.root}`,
    `node      ${report.node.version} ${report.node.platform}-${report.node.arch}, N-API ${report.node.napi ?? '?'}`,
    `binary    ${binary.path ?? 'none'} (${binary.source}${binary.loaded ? ', loaded' : binary.path ? ', failed to load' : ''})`,
    `          ${binary.why}`,
  ];
  if (binary.build) lines.push(`          built by ${binary.build.builder} at ${binary.build.at}: ${binary.build.reason}`);
  if (binary.loadError) lines.push(`          load error: ${binary.loadError}`);
  lines.push(
    `CUDA      ${cuda.compiledIn ? 'compiled in' : 'not compiled in'}; nvcc ${cuda.nvcc ?? 'not found'}; NVIDIA driver ${cuda.driverVersion ?? 'not loaded'}` +
      (cuda.visibleDevices === undefined ? '' : `; CUDA_VISIBLE_DEVICES=${cuda.visibleDevices}`),
    `GPUs      ${report.gpus.length}`,
  );
  for (const gpu of report.gpus) {
    lines.push(
      'error' in gpu
        ? `  cuda:${gpu.index}  ${gpu.error}`
        : `  cuda:${gpu.index}  ${gpu.name}, compute ${gpu.computeCapability}, ${gpu.multiprocessors} SMs, ${gib(gpu.freeBytes)} free of ${gib(gpu.totalBytes)}, ` +
            `driver supports CUDA ${gpu.driverCudaVersion} (runtime ${gpu.runtimeCudaVersion})`,
    );
  }
  lines.push(report.advice.length === 0 ? 'all good' : 'to do:');
  for (const item of report.advice) lines.push(`  - ${item}`);
  return lines.join('\n');
}

export async function doctorCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandArgs(argv, { json: { type: 'boolean' } });
  if (positionals.length > 0) throw new FlashMptError('E_INVALID_ARGUMENT', `doctor takes no arguments, got '${positionals.join(' ')}'\n${doctorUsage}`);
  const report = runDoctor();
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatDoctorReport(report)}\n`);
  if (!report.binary.loaded) process.exitCode = 1;
}
