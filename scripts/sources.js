'use strict';
// Source list for binding.gyp (the CPU-only node-gyp build); CMakeLists.txt globs the same tree.
const fs = require('node:fs');
const path = require('node:path');

function walk(dir, out) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(full, out);
    else if (entry.name.endsWith('.cc')) out.push(path.relative(path.join(__dirname, '..'), full));
  }
  return out;
}

exports.cpuSources = () => walk(path.join(__dirname, '..', 'csrc'), []).sort();
