#!/usr/bin/env node
'use strict';
/*
 * Install step: use an existing build or prebuild (node-gyp-build), else build with cmake-js (CPU + CUDA when
 * nvcc is found), else fall back to node-gyp (CPU only). Says which one it did and why, and records it in
 * build/flash-mpt-build.json for `flash-mpt doctor`.
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

function tryExisting() {
  try {
    const addonPath = require('node-gyp-build').path(root);
    require(addonPath);
    return addonPath;
  } catch {
    return null;
  }
}

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

function main() {
  if (!rebuild) {
    const existing = tryExisting();
    if (existing) {
      say(`using the existing binary ${path.relative(root, existing)} (run \`npm run build\` to rebuild)`);
      return;
    }
  }
  const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
  const cmakeError = run(process.execPath, [cmakeJs, 'compile', '--out', 'build']);
  if (!cmakeError) {
    const cache = fs.readFileSync(path.join(root, 'build', 'CMakeCache.txt'), 'utf8');
    const cuda = /^FLASH_MPT_CUDA:\w+=1$/m.test(cache) || /^CMAKE_CUDA_COMPILER:\w+=.+nvcc/m.test(cache);
    record({ builder: 'cmake-js', cuda, reason: cuda ? 'nvcc found: CPU and CUDA backends' : 'no nvcc: CPU backend only (install the CUDA toolkit and run `npm run build` for GPU support)' });
    say(`built with cmake-js (${cuda ? 'CPU + CUDA backends' : 'CPU backend only: nvcc not found'})`);
    return;
  }
  say(`cmake-js build failed (${cmakeError}); falling back to node-gyp (CPU backend only)`);
  const [gyp, gypArgs] = nodeGypCommand();
  const gypError = run(gyp, [...gypArgs, 'rebuild', ...nodeGypDirArgs()]);
  if (gypError) {
    console.error(`flash-mpt install: node-gyp build failed too (${gypError}). Install CMake and a C++17 compiler (and the CUDA toolkit for GPUs), then run \`npm rebuild flash-mpt\`.`);
    process.exit(1);
  }
  record({ builder: 'node-gyp', cuda: false, reason: `cmake-js failed: ${cmakeError}` });
  say('built the CPU-only addon with node-gyp');
}

main();
