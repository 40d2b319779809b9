/**
 * kill -9 in the middle of writing an output directory, then a rerun: the rerun removes what the
 * killed run left (its temporary directory, its lock) and nothing else: not temporaries of live
 * processes, not other outputs' temporaries, not look-alike names.
 *
 * The writer is stopped (SIGSTOP) the moment its temporary directory appears, so the kill lands
 * mid-write; a run that finished before the stop is thrown away and run again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { lockPath, MARKER_FILE } from '../src/io/output-dir.ts';
import { CLI, runCli, tree } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('kill');
const D = join(root, 'data');
await ensureBenchmark(D);
const SUBJECT = readdirSync(join(D, 'test'))[0].replace(/_test\.csv$/, '');

async function deadPid(): Promise<number> {
  const c = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise((r) => c.once('exit', r));
  return c.pid!;
}

const tempOf = (name: string, pid: number) => `.${name}.tmp-${pid}-0123456789ab`;

/**
 * Runs `mka args` writing `out` and stops it (SIGSTOP) as soon as its temporary directory `.<name>.tmp-<pid>-*`
 * appears in `root`; a run that got further first (its --out renamed into place) is killed, its output
 * removed, and run again. Returns the stopped process.
 */
async function stoppedMidWrite(args: string[], name: string, out: string): Promise<ChildProcess> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const watcher = watch(root);
    const child = spawn(process.execPath, [CLI, ...args], { stdio: 'ignore' });
    const prefix = `.${name}.tmp-${child.pid}-`;
    const stopped = await new Promise<boolean>((resolve) => {
      watcher.on('change', (_event, file) => {
        if (String(file).startsWith(prefix) && child.exitCode === null) {
          child.kill('SIGSTOP');
          resolve(true);
        }
      });
      child.once('exit', () => resolve(false));
    });
    watcher.close();
    if (stopped && !existsSync(out) && readdirSync(root).some((e) => e.startsWith(prefix))) return child;
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    rmSync(out, { recursive: true, force: true });
  }
  throw new Error(`${args.join(' ')}: could not stop the writer before it finished in 20 runs`);
}

for (const [command, args] of [
  ['compress', (m: string, out: string) => ['compress', '--model', m, '--data', D, '--method', 'reverse', '--remove', '1', '--out', out, '--quiet']],
  ['export hf', (m: string, out: string) => ['export', 'hf', '--model', m, '--out', out, '--quiet']],
] as const) {
  test(`${command} killed mid-write: the rerun cleans up after it and touches nothing else`, async () => {
    const name = `out-${command.replace(' ', '-')}`;
    const model = join(root, `model-${name}`), out = join(root, name);
    cpSync('models/demo', model, { recursive: true });
    const child = await stoppedMidWrite(args(model, out), name, out);
    const killedTemp = () => readdirSync(root).filter((e) => e.startsWith(`.${name}.tmp-${child.pid}-`));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.equal(killedTemp().length, 1, 'the killed run left its temporary directory');
    assert.ok(!existsSync(out), 'no partial --out');
    assert.ok(existsSync(lockPath(out)), 'and its lock');

    // look-alikes that are not the killed run's: a live process's temporary, other names
    const dead = await deadPid();
    const keep = [tempOf(name, process.pid), `.${name}.tmp-abc`, tempOf(`${name}-other`, dead), `${name}.tmp-${dead}-0123456789ab`, `.${name}.tmp-${dead}-0123456789abX`];
    for (const k of keep) mkdirSync(join(root, k, 'inside'), { recursive: true });
    const stale = tempOf(name, dead);
    mkdirSync(join(root, stale));
    writeFileSync(join(root, stale, 'model.safetensors'), 'partial');
    const killed = killedTemp()[0];
    const ignore = (p: string) => [`${name}/`, `${killed}/`, `${stale}/`, `.${name}.mka-lock`].some((x) => p.startsWith(x));
    const before = tree(root).filter((p) => !ignore(p));

    const r = await runCli(args(model, out));
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(killedTemp(), [], 'the killed run\'s temporary directory is removed');
    assert.ok(!existsSync(join(root, stale)), 'so is a dead process\'s older one');
    assert.ok(!existsSync(lockPath(out)), 'the stale lock was taken over and released');
    for (const k of keep) assert.ok(existsSync(join(root, k, 'inside')), `${k} is left alone`);
    assert.deepEqual(tree(root).filter((p) => !ignore(p)), before, 'nothing else was touched');
    assert.deepEqual(readdirSync(out).sort(), [MARKER_FILE, 'README.md', 'config.json', ...(command === 'compress' ? ['merge.json', 'mergekit.yaml'] : []), 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].sort());
    for (const k of keep) rmSync(join(root, k), { recursive: true });
  });
}

test('eval mmlu rerun removes dead runs\' temporary files inside its results, keeps live ones', async () => {
  const out = join(root, 'mmlu');
  const args = ['eval', 'mmlu', '--model', 'models/demo', '--data', D, '--subjects', SUBJECT, '--limit', '2', '--out', out, '--quiet'];
  const first = await runCli(args);
  assert.equal(first.status, 0, first.stderr);
  const dead = await deadPid();
  const deadTemps = [join(out, tempOf('summary.json', dead)), join(out, 'subjects', tempOf(`${SUBJECT}.json`, dead))];
  const liveTemp = join(out, 'subjects', tempOf(`${SUBJECT}.json`, process.pid));
  for (const f of [...deadTemps, liveTemp]) writeFileSync(f, '{"partial":');
  const again = await runCli(args);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(again.stdout, first.stdout);
  for (const f of deadTemps) assert.ok(!existsSync(f), `${f} removed`);
  assert.equal(readFileSync(liveTemp, 'utf8'), '{"partial":');
});
