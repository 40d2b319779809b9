/**
 * Errors of the operating system the user can act on exit 1 with one line naming the path: an --out
 * in a directory mka may not write, a directory where the lock file goes, no space left (the message
 * itself); a closed pipe on stdout ends the run quietly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { lockPath } from '../src/io/output-dir.ts';
import { systemErrorMessage } from '../src/runtime/errors.ts';
import { assertUserError, CLI, runAllCli, runCli } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('syserr');
chmodSync(root, 0o755);

test('no space, no permission, a read-only file system: one line naming the path and the fix', () => {
  const err = (code: string, syscall: string, path: string) => Object.assign(new Error(`${code}: failed`), { code, syscall, path });
  assert.equal(systemErrorMessage(err('ENOSPC', 'write', '/data/out/model.safetensors')), '/data/out/model.safetensors: no space left on the device (write); free some space, or choose a location on another device');
  assert.match(systemErrorMessage(err('EACCES', 'open', '/x'))!, /^\/x: permission denied \(open\); /);
  assert.match(systemErrorMessage(err('EROFS', 'mkdir', '/ro'))!, /read-only file system/);
  assert.equal(systemErrorMessage(new Error('other')), null);
  assert.equal(systemErrorMessage(err('ENOENT', 'open', '/x')), null, 'a missing file is not the user\'s to fix here');
});

test('an --out where mka may not write, or a directory at the lock path, is a user error', async () => {
  const ro = join(root, 'read-only');
  mkdirSync(ro);
  chmodSync(ro, 0o555);
  const blocked = join(root, 'blocked');
  mkdirSync(lockPath(blocked));
  const results = await Promise.all([
    runCli(['export', 'hf', '--model', 'models/demo', '--out', join(ro, 'out'), '--quiet'], { unprivileged: true }),
    runCli(['export', 'tfjs', '--model', 'models/demo', '--out', join(ro, 'sub', 'out'), '--quiet'], { unprivileged: true }),
    ...(await runAllCli([['export', 'hf', '--model', 'models/demo', '--out', blocked, '--quiet']])),
  ]);
  assertUserError(results[0], join(ro, 'out'), 'permission denied');
  assertUserError(results[1], join(ro, 'sub'), 'permission denied');
  assertUserError(results[2], lockPath(blocked), 'directory');
  assert.deepEqual(readdirSync(ro), []);
});

test('a closed stdout (mka info | head -0) ends the run quietly', async () => {
  const child = spawn(process.execPath, [CLI, 'info', '--model', 'models/demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const status = await new Promise((r) => child.once('close', r));
  assert.equal(stderr, '');
  assert.equal(status, 0);
});
