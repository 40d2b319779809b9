/**
 * kill -9 in the middle of writing an output directory, then a rerun: the rerun removes what the
 * killed run left (its temporary directory, its lock) and nothing else: not temporaries of live
 * processes, not other outputs' temporaries, not look-alike names.
 *
 * The writer is held mid-write deterministically: the model directory's tokenizer.model is a FIFO,
 * which compress and export hf copy into the output after the weights, so they block there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { lockPath, MARKER_FILE } from '../src/io/output-dir.ts';
import { CLI, runCli, tree } from './cli-run.ts';

const root = mkdtempSync(join(tmpdir(), 'mka-kill-'));
const D = join(root, 'data');
await ensureBenchmark(D);
const SUBJECT = readdirSync(join(D, 'test'))[0].replace(/_test\.csv$/, '');
const HAS_MKFIFO = spawnSync('mkfifo', ['--version']).status === 0;

async function deadPid(): Promise<number> {
  const c = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise((r) => c.once('exit', r));
  return c.pid!;
}

const tempOf = (name: string, pid: number) => `.${name}.tmp-${pid}-0123456789ab`;

for (const [command, args] of [
  ['compress', (m: string, out: string) => ['compress', '--model', m, '--data', D, '--method', 'reverse', '--remove', '1', '--out', out, '--quiet']],
  ['export hf', (m: string, out: string) => ['export', 'hf', '--model', m, '--out', out, '--quiet']],
] as const) {
  test(`${command} killed mid-write: the rerun cleans up after it and touches nothing else`, { skip: HAS_MKFIFO ? false : 'mkfifo not available' }, async () => {
    const name = `out-${command.replace(' ', '-')}`;
    const model = join(root, `model-${name}`), out = join(root, name);
    cpSync('models/demo', model, { recursive: true });
    spawnSync('mkfifo', [join(model, 'tokenizer.model')]);
    const child = spawn(process.execPath, [CLI, ...args(model, out)], { stdio: 'ignore' });
    const killedTemp = () => readdirSync(root).filter((e) => e.startsWith(`.${name}.tmp-${child.pid}-`));
    // wait until the weights are in the temporary directory and the writer blocks on the FIFO
    for (;;) {
      const t = killedTemp();
      if (t.length && existsSync(join(root, t[0], 'model.safetensors')) && existsSync(join(root, t[0], 'config.json'))) break;
      assert.equal(child.exitCode, null, 'the writer ended before it could be killed');
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 200));
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
    rmSync(join(model, 'tokenizer.model'));
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
