#!/usr/bin/env node
'use strict';
/*
 * prebuildify's --node-gyp hook (see prebuild.js): called as `node-gyp rebuild --target=… --devdir=… --arch=…
 * --release|--debug` in prebuildify's working directory, it builds this package with cmake-js into ./build/Release,
 * where prebuildify picks the .node up. --target and --devdir are not needed: an N-API build compiles against
 * node-api-headers, the same for every Node version.
 */
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const args = process.argv.slice(2);
const arch = args.find((arg) => arg.startsWith('--arch='));
const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const cmakeArgs = ['rebuild', '--directory', root, '--out', path.join(process.cwd(), 'build')];
if (arch) cmakeArgs.push('--arch', arch.slice('--arch='.length));
if (args.includes('--debug')) cmakeArgs.push('--debug');
const res = spawnSync(process.execPath, [cmakeJs, ...cmakeArgs], { stdio: 'inherit' });
process.exit(res.status ?? 1);
