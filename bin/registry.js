#!/usr/bin/env node
// `npm start`: runs the built registry (dist/), building it first only when a source file is newer
// than the build (a checkout that changed) or there is no build yet. A start from a built tree, such
// as the Docker image, compiles nothing.
'use strict';
const { existsSync, readdirSync, statSync } = require('fs');
const { join } = require('path');
const { execFileSync } = require('child_process');

const root = join(__dirname, '..');
const SOURCES = ['config', 'core', 'couchapp', 'couchdb', 'lib', 'replication', 'gateway', 'server'];
const BUILT = [join(root, 'dist', 'server', 'main.js'), join(root, 'dist', 'couchapp', 'design.json')];

function newestSource(dir) {
  let newest = 0;
  if (!existsSync(dir)) return newest;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

const built = BUILT.every((file) => existsSync(file)) ? Math.min(...BUILT.map((file) => statSync(file).mtimeMs)) : 0;
const sources = Math.max(...SOURCES.map((dir) => newestSource(join(root, dir))));
if (built === 0 || sources > built) {
  process.stdout.write(built === 0 ? 'Building the registry (first start)…\n' : 'Sources changed since the last build: building…\n');
  try {
    execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', join(root, 'tsconfig.json')], { stdio: 'inherit', cwd: root });
    execFileSync(process.execPath, [join(root, 'dist', 'couchapp', 'build.js')], { stdio: 'inherit', cwd: root });
  } catch {
    process.stderr.write('The build failed (see above). `npm install` brings the build tools (TypeScript, esbuild).\n');
    process.exit(1);
  }
}
require(BUILT[0]);
