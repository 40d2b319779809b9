/**
 * A sweep without a queue, one point per process (as a Slurm array runs it): --list-points, --point
 * for each point in separate processes, then --report, which must equal a local sweep's results.
 * The points run as processes; the rest of the CLI runs in this process (src/cli/run.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { WRITERS_DIR } from '../src/io/output-dir.ts';
import { runCliInProcess } from './cli-run.ts';
import { CLI, mkaInProcess as mka, resultsWithoutTimings, tinySweepArgs } from './queue-fixture.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('points');
const args = await tinySweepArgs(root);

test('--list-points, --point per process, --report give the local sweep\'s results', async () => {
  const local = join(root, 'local'), split = join(root, 'split');
  await mka(['sweep', ...args, '--out', local]);
  const ids = (await mka(['sweep', ...args, '--out', split, '--list-points'])).stdout.trim().split('\n');
  assert.deepEqual(ids, ['original', 'mka:2', 'shortgpt:2']);

  // --report before the points are there names what is missing
  const early = await runCliInProcess(['sweep', ...args, '--out', split, '--report']);
  assert.equal(early.status, 1);
  assert.match(early.stderr, /3 points are not finished \(original, mka:2, shortgpt:2\)/);

  // the calibration step first (as a job dependency would), then the points two at a time
  await mka(['sweep', ...args, '--out', split, '--point', 'calibration']);
  assert.ok(existsSync(join(split, 'plans', 'mka-2.json')) && existsSync(join(split, 'plans', 'shortgpt-2.json')));
  // a --point run killed on this host left its record and a temporary file; another host's writer has the same pid
  const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
  const writers = join(split, WRITERS_DIR);
  mkdirSync(writers, { recursive: true });
  writeFileSync(join(writers, `${hostname()}.${dead}.json`), JSON.stringify({ pid: dead, host: hostname() }));
  writeFileSync(join(writers, `elsewhere.${dead + 1}.json`), JSON.stringify({ pid: dead + 1, host: 'elsewhere.invalid' }));
  const stale = join(split, 'plans', `.mka-2.json.tmp-${dead}-0123456789ab`), foreign = join(split, `.x.tmp-${dead + 1}-0123456789ab`);
  writeFileSync(stale, '{');
  writeFileSync(foreign, '{');
  const run = (id: string) => new Promise<number | null>((resolve) => {
    spawn(process.execPath, [CLI, 'sweep', ...args, '--out', split, '--point', id], { stdio: 'ignore' }).once('exit', resolve);
  });
  assert.deepEqual(await Promise.all(ids.slice(0, 2).map(run)), [0, 0]);
  assert.ok(!existsSync(stale) && existsSync(foreign), 'the next --point run removed what the killed one of this host left, and only that');
  assert.deepEqual(readdirSync(writers), [`elsewhere.${dead + 1}.json`], 'the --point runs removed their records when done');
  rmSync(foreign);
  assert.ok(!existsSync(join(split, 'results.csv')), '--point wrote the report');
  assert.equal(await run(ids[2]), 0);
  // a point run again is read back, not recomputed, and leaves its file as it was
  const before = readFileSync(join(split, 'points', 'mka-2.json'), 'utf8');
  assert.equal(await run('mka:2'), 0);
  assert.equal(readFileSync(join(split, 'points', 'mka-2.json'), 'utf8'), before);

  await mka(['sweep', ...args, '--out', split, '--report']);
  assert.deepEqual(resultsWithoutTimings(split), resultsWithoutTimings(local));
  assert.ok(existsSync(join(split, 'summary.md')) && existsSync(join(split, 'accuracy.png')));
});

test('--point refuses a point that is not in the sweep', async () => {
  const r = await runCliInProcess(['sweep', ...args, '--out', join(root, 'bad'), '--point', 'mka:3']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--point mka:3: not a point of this sweep/);
});
