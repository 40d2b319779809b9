#!/usr/bin/env node
// Runs every test/**/*.test.ts with node's test runner (through tsx), one process per file,
// at most two at a time. Extra arguments are passed to `node --test` (e.g. a file list).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function find(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? find(join(dir, e.name)) : e.name.endsWith('.test.ts') ? [join(dir, e.name)] : []);
}
const args = process.argv.slice(2);
const files = args.filter((a) => a.endsWith('.ts'));
const flags = args.filter((a) => !a.endsWith('.ts'));
const list = files.length ? files : find('test').sort();
const r = spawnSync(process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-reporter=spec', ...flags, ...list],
  { stdio: 'inherit' });
process.exit(r.status ?? 1);
