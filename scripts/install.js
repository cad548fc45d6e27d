#!/usr/bin/env node
'use strict';
/*
 * Install step: use an existing build or a prebuild from prebuilds/ (node-gyp-build), else build with cmake-js
 * (CPU + CUDA when nvcc is found), else fall back to node-gyp (CPU only). Says which one it did and why, and
 * records a build in build/flash-mpt-build.json for `flash-mpt doctor`.
 *   --rebuild   skip the existing-build check (npm run build)
 */
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const rebuild = process.argv.includes('--rebuild');
const say = (msg) => console.log(`flash-mpt install: ${msg}`);

function record(info) {
  fs.mkdirSync(path.join(root, 'build'), { recursive: true });
  fs.writeFileSync(path.join(root, 'build', 'flash-mpt-build.json'), JSON.stringify({ ...info, at: new Date().toISOString() }, null, 2));
}

/** The binary node-gyp-build resolves (build/ first, then prebuilds/), if it loads: { path, cuda }. */
function loadable() {
  try {
    const addonPath = require('node-gyp-build').path(root);
    return { path: addonPath, cuda: require(addonPath).buildInfo().cuda };
  } catch {
    return null;
  }
}

const backends = (cuda) => (cuda ? 'CPU + CUDA backends' : 'CPU backend only');

function run(cmd, args) {
  const res = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: process.env });
  if (res.error) return `${cmd} could not start: ${res.error.message}`;
  return res.status === 0 ? null : `${cmd} ${args.join(' ')} exited with ${res.status}`;
}

function nodeGypCommand() {
  // npm exports the node-gyp it bundles; outside npm, use the one beside this Node's npm, else one on PATH.
  if (process.env.npm_config_node_gyp) return [process.execPath, [process.env.npm_config_node_gyp]];
  const bundled = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (fs.existsSync(bundled)) return [process.execPath, [bundled]];
  return ['node-gyp', []];
}

// node-gyp downloads Node's headers unless told where they are; a Node installed with its headers needs no network.
function nodeGypDirArgs() {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return fs.existsSync(path.join(prefix, 'include', 'node', 'common.gypi')) ? [`--nodedir=${prefix}`] : [];
}

function withoutCudaReason() {
  if (process.env.FLASH_MPT_CUDA === '0') return 'FLASH_MPT_CUDA=0';
  return 'nvcc not found on PATH, in CUDA_HOME or /usr/local/cuda: install the CUDA toolkit and run `npm run build` for GPU support';
}

function main() {
  if (!rebuild) {
    const existing = loadable();
    if (existing) {
      const relative = path.relative(root, existing.path);
      if (relative.startsWith(`prebuilds${path.sep}`)) {
        say(`using the prebuilt binary ${relative} (${backends(existing.cuda)}); \`npm run build\` builds from source instead`);
      } else {
        say(`using the existing binary ${relative} (${backends(existing.cuda)}; run \`npm run build\` to rebuild)`);
      }
      return;
    }
    say(`no prebuilt binary for ${process.platform}-${process.arch} and no existing build: building from source`);
  }
  const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
  const cmakeError = run(process.execPath, [cmakeJs, 'compile', '--out', 'build']);
  const cmakeBuilt = cmakeError ? null : loadable();
  if (cmakeBuilt) {
    const reason = cmakeBuilt.cuda ? 'nvcc found: CPU and CUDA backends' : `CPU backend only: ${withoutCudaReason()}`;
    record({ builder: 'cmake-js', cuda: cmakeBuilt.cuda, reason, binary: path.relative(root, cmakeBuilt.path) });
    say(`built with cmake-js (${reason})`);
    return;
  }
  const cmakeFailure = cmakeError ?? 'its binary did not load';
  say(`cmake-js build failed (${cmakeFailure}); falling back to node-gyp (CPU backend only; install CMake ≥ 3.18 for the CUDA backend)`);
  const [gyp, gypArgs] = nodeGypCommand();
  const gypError = run(gyp, [...gypArgs, 'rebuild', '--jobs=max', ...nodeGypDirArgs()]);
  const gypBuilt = gypError ? null : loadable();
  if (!gypBuilt) {
    console.error(`flash-mpt install: node-gyp build failed too (${gypError ?? 'its binary did not load'}). Install CMake and a C++17 compiler (and the CUDA toolkit for GPUs), then run \`npm rebuild flash-mpt\`.`);
    process.exit(1);
  }
  record({ builder: 'node-gyp', cuda: false, reason: `CPU backend only: cmake-js failed (${cmakeFailure})`, binary: path.relative(root, gypBuilt.path) });
  say('built the CPU-only addon with node-gyp');
}

main();
