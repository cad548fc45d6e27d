#!/usr/bin/env node
'use strict';
/*
 * npm run prebuilds (not `prebuild`, which npm would run before every `npm run build`): makes
 * prebuilds/<platform>-<arch>/flash-mpt.node, an N-API binary (one for every Node ≥ 20) that node-gyp-build loads
 * when there is no local build in build/. prebuildify has no cmake-js backend, so its --node-gyp hook is
 * scripts/prebuild-cmake-js.js. The CUDA backend (sm_80 and sm_90) is built in when nvcc is found, as for install
 * (FLASH_MPT_CUDA=0|1, FLASH_MPT_CUDA_ARCHS). prebuildify runs in build-prebuild/, so a developer's build/ is left
 * alone.
 */
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const staging = path.join(root, 'build-prebuild');
const say = (msg) => console.log(`flash-mpt prebuild: ${msg}`);

fs.rmSync(staging, { recursive: true, force: true });
fs.mkdirSync(staging);
const prebuildify = path.join(path.dirname(require.resolve('prebuildify/package.json')), 'bin.js');
const hook = path.join(__dirname, 'prebuild-cmake-js.js');
const args = [prebuildify, '--napi', '--strip', '--name', require('../package.json').name, '--cwd', staging, '--out', root, '--node-gyp', hook];
const res = spawnSync(process.execPath, args, { stdio: 'inherit' });
if (res.status !== 0) {
  console.error(`flash-mpt prebuild: prebuildify failed (${res.error ? res.error.message : `exit ${res.status}`})`);
  process.exit(1);
}

const binary = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'flash-mpt.node');
const { cuda, version } = require(binary).buildInfo();
say(`${path.relative(root, binary)}: flash-mpt ${version}, ${cuda ? 'CPU + CUDA backends' : 'CPU backend only (no nvcc found, or FLASH_MPT_CUDA=0)'}`);
