/**
 * One run per output directory: a second run on a locked --out fails naming the holder's pid, a lock
 * whose process is gone is taken over, two real concurrent `eval mmlu` runs cannot mix their results,
 * and a subject file of another run is never reused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { lockPath } from '../src/io/output-dir.ts';
import { assertUserError, CLI, leftovers, runAllCli, runAllInProcess, runCliInProcess } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('locks');
const M = join(root, 'model');
cpSync('models/demo', M, { recursive: true });
const D = join(root, 'data');
await ensureBenchmark(D);
const SUBJECTS = readdirSync(join(D, 'test')).map((f) => f.replace(/_test\.csv$/, ''));

const evalArgs = (out: string, limit: number, ...more: string[]) =>
  ['eval', 'mmlu', '--model', M, '--data', D, '--subjects', SUBJECTS[0], '--limit', String(limit), '--out', out, '--quiet', ...more];

/** A process that stays alive until killed (to hold a pid). */
function sleeper(): ChildProcess {
  return spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const c = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise((r) => c.once('exit', r));
  return c.pid!;
}

test('a live lock makes every writer fail naming the pid; a stale lock is taken over', async () => {
  const holder = sleeper();
  const outs = ['eval', 'compress', 'hf', 'tfjs', 'sweep'].map((n) => join(root, `locked-${n}`));
  try {
    for (const out of outs) writeFileSync(lockPath(out), JSON.stringify({ pid: holder.pid, command: 'test' }));
    const results = await runAllInProcess([ // the holder is another process; the writers may run in this one
      evalArgs(outs[0], 2),
      ['compress', '--model', M, '--data', D, '--method', 'reverse', '--remove', '1', '--out', outs[1], '--quiet'],
      ['export', 'hf', '--model', M, '--out', outs[2], '--quiet'],
      ['export', 'tfjs', '--model', M, '--out', outs[3], '--quiet'],
      ['sweep', '--model', M, '--data', D, '--methods', 'reverse', '--remove', '0', '--eval-subjects', SUBJECTS[0], '--limit', '2', '--out', outs[4], '--quiet'],
    ]);
    results.forEach((r, i) => {
      assertUserError(r, outs[i], `pid ${holder.pid}`);
      assert.ok(!existsSync(outs[i]), 'nothing written');
      assert.ok(existsSync(lockPath(outs[i])), 'the holder\'s lock is left alone');
    });
  } finally {
    holder.kill('SIGKILL');
    for (const out of outs) rmSync(lockPath(out), { force: true });
  }
  const stale = join(root, 'stale');
  writeFileSync(lockPath(stale), JSON.stringify({ pid: await deadPid(), command: 'killed' }));
  const r = await runCliInProcess(evalArgs(stale, 2));
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!existsSync(lockPath(stale)), 'the lock is released at the end');
});

test('two concurrent eval mmlu runs on one --out: the second fails naming the first\'s pid, results stay consistent', async () => {
  const out = join(root, 'concurrent');
  // every subject, each prompt alone (--naive), so the first run is still going when the second starts
  const all = (limit: number, ...more: string[]) => ['eval', 'mmlu', '--model', M, '--data', D, '--limit', String(limit), '--out', out, '--quiet', ...more];
  const first = spawn(process.execPath, [CLI, ...all(40, '--naive')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let firstErr = '';
  first.stderr!.on('data', (d) => (firstErr += d));
  const firstDone = new Promise<number | null>((r) => first.once('exit', r));
  while (!existsSync(lockPath(out)) && first.exitCode === null) await new Promise((r) => setTimeout(r, 20));
  const second = await runCliInProcess(all(10, '--fresh')); // the first is another process; the second may run in this one
  assert.equal(await firstDone, 0, firstErr);
  assertUserError(second, out, `pid ${first.pid}`);
  const key = JSON.parse(readFileSync(join(out, 'run-key.json'), 'utf8'));
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  assert.equal(key.limit, 40);
  assert.equal(summary.limit, 40);
  for (const s of SUBJECTS) assert.equal(JSON.parse(readFileSync(join(out, 'subjects', `${s}.json`), 'utf8')).questions.length, 40, s);
  assert.deepEqual(leftovers(root), []);
});

test('a subject file written by another run is refused, not mixed in', async () => {
  const a = join(root, 'limit-2'), b = join(root, 'limit-3');
  const [ra, rb] = await runAllInProcess([evalArgs(a, 2), evalArgs(b, 3)]);
  assert.equal(ra.status, 0, ra.stderr);
  assert.equal(rb.status, 0, rb.stderr);
  const file = join(a, 'subjects', `${SUBJECTS[0]}.json`);
  copyFileSync(join(b, 'subjects', `${SUBJECTS[0]}.json`), file);
  assertUserError(await runCliInProcess(evalArgs(a, 2)), file, '--fresh');
  const fresh = await runCliInProcess(evalArgs(a, 2, '--fresh'));
  assert.equal(fresh.status, 0, fresh.stderr);
  assert.equal(fresh.stdout, ra.stdout);
});

/** A zombie: a process that has exited and is not reaped (its parent, `sleep`, never waits). Returns its pid and the parent to kill. */
async function zombie(): Promise<{ pid: number; parent: ChildProcess }> {
  const parent = spawn('sh', ['-c', 'sleep 0.2 & echo $!; exec sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const pid = Number(await new Promise<string>((r) => parent.stdout!.once('data', (d) => r(String(d).trim()))));
  for (let i = 0; i < 500 && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); i++) await new Promise((r) => setTimeout(r, 10));
  return { pid, parent };
}

test('a lock whose holder is a zombie, or whose pid another process reuses, is taken over; another host\'s is refused naming it', { skip: existsSync('/proc/self/stat') ? false : 'needs /proc (Linux)' }, async () => {
  const z = await zombie();
  try {
    assert.match(readFileSync(`/proc/${z.pid}/stat`, 'utf8'), /\) Z /, 'the holder is a zombie');
    const outs = ['zombie', 'reused', 'other-host'].map((n) => join(root, n));
    writeFileSync(lockPath(outs[0]), JSON.stringify({ pid: z.pid, host: hostname(), command: 'killed' }));
    // a live pid (this test process) that started at another time than the lock says
    writeFileSync(lockPath(outs[1]), JSON.stringify({ pid: process.pid, host: hostname(), start: '1', command: 'killed' }));
    writeFileSync(lockPath(outs[2]), JSON.stringify({ pid: process.pid, host: 'gpu-node-17', command: 'eval mmlu' }));
    const [a, b, c] = await runAllCli([evalArgs(outs[0], 2), evalArgs(outs[1], 2), evalArgs(outs[2], 2)]);
    assert.equal(a.status, 0, a.stderr);
    assert.equal(b.status, 0, b.stderr);
    assertUserError(c, outs[2], `pid ${process.pid}`, 'host gpu-node-17');
    assert.ok(!existsSync(lockPath(outs[0])) && !existsSync(lockPath(outs[1])), 'taken over and released');
    assert.ok(existsSync(lockPath(outs[2])), 'another host\'s lock is left alone');
  } finally {
    z.parent.kill('SIGKILL');
  }
});

test('a lock records its holder\'s pid, host and start time', async () => {
  const out = join(root, 'recorded');
  const run = spawn(process.execPath, [CLI, ...evalArgs(out, 40, '--naive')], { stdio: 'ignore' });
  const done = new Promise((r) => run.once('exit', r));
  while (!existsSync(lockPath(out)) && run.exitCode === null) await new Promise((r) => setTimeout(r, 20));
  const lock = JSON.parse(readFileSync(lockPath(out), 'utf8'));
  await done;
  assert.equal(lock.pid, run.pid);
  assert.equal(lock.host, hostname());
  if (existsSync('/proc/self/stat')) assert.match(lock.start, /^\d+$/);
});
