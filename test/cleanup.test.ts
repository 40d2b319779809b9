/**
 * mka leaves no temporary file behind: an atomic write ended by SIGINT/SIGTERM removes its temporary
 * directory (or leaves it to a command that stops itself and cleans up); what a killed writer of a
 * shared sweep directory left is removed by the next writer of the same host, and only that: never a
 * live process's files, another host's, or a directory mka did not write.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { atomicWriteFile } from '../src/io/atomic.ts';
import { WRITERS_DIR, claimOutputDir, joinSharedOutput, writeMarker } from '../src/io/output-dir.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('cleanup');
/** Every writer started: killed when the tests end, whatever their outcome. */
const children: ChildProcess[] = [];
after(() => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); });

/** Starts test/temp-writer.ts writing `out`; resolves once its temporary directory holds a file. */
async function writer(mode: string, out: string, sweep = ''): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/temp-writer.ts', mode, out, sweep], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  await new Promise<void>((ok, fail) => {
    child.stdout!.on('data', (d) => String(d).includes('ready') && ok());
    child.once('exit', (code) => fail(new Error(`temp-writer exited (${code}) before it was ready`)));
  });
  return child;
}

const ended = (child: ChildProcess) => new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((ok) => {
  if (child.exitCode !== null || child.signalCode !== null) ok({ code: child.exitCode, signal: child.signalCode });
  else child.once('exit', (code, signal) => ok({ code, signal }));
});

/** A pid no process has: that of a process that has exited. */
const deadPid = () => Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
const temp = (name: string, pid: number) => `.${name}.tmp-${pid}-0123456789ab`;
const record = (dir: string, host: string, pid: number) => {
  mkdirSync(join(dir, WRITERS_DIR), { recursive: true });
  writeFileSync(join(dir, WRITERS_DIR, `${host}.${pid}.json`), JSON.stringify({ pid, host, command: 'sweep --point' }) + '\n');
};

test('an atomic write ended by SIGTERM or SIGINT removes its temporary directory and ends by the signal; a command that handles SIGINT cleans up itself', async () => {
  const cases = [['plain', 'SIGTERM'], ['plain', 'SIGINT'], ['handles', 'SIGINT']] as const;
  const results = await Promise.all(cases.map(async ([mode, signal], i) => {
    const dir = join(root, `signal-${i}`);
    mkdirSync(dir);
    const child = await writer(mode, join(dir, 'out'));
    assert.equal(readdirSync(dir).length, 1, 'the temporary directory exists while the write runs');
    child.kill(signal);
    return { dir, ...(await ended(child)) };
  }));
  assert.deepEqual(results.map((r) => [r.signal, r.code]), [['SIGTERM', null], ['SIGINT', null], [null, 130]]);
  for (const r of results) assert.deepEqual(readdirSync(r.dir), [], `${r.dir}: nothing left, no half-written output`);
});

test('a killed writer of a sweep directory: the next writer on this host removes its temporaries and record, and nothing of a live, foreign or unrecorded process', async () => {
  const out = join(root, 'sweep');
  mkdirSync(join(out, 'points'), { recursive: true });
  writeMarker(out, 'sweep');
  const killed = await writer('shared', join(out, 'models', 'mka-2'), out);
  const live = await writer('shared', join(out, 'models', 'mka-3'), out);
  killed.kill('SIGKILL'); // nothing can run: its record and temporary directory stay
  await ended(killed);
  const left = readdirSync(join(out, 'models'));
  assert.equal(left.length, 2, 'both writers\' temporary directories are there');
  // files of others: a dead pid of another host (the pid says nothing here), the same pid recorded by
  // both hosts, and a temporary of no recorded writer (left to the sweep's own run, which holds the lock)
  const other = deadPid(), shared = deadPid(), unrecorded = deadPid();
  record(out, 'elsewhere.invalid', other);
  record(out, 'elsewhere.invalid', shared);
  record(out, hostname(), shared);
  writeFileSync(join(out, 'points', temp('mka-4.json', other)), '');
  writeFileSync(join(out, 'points', temp('mka-5.json', shared)), '');
  writeFileSync(join(out, 'points', temp('mka-6.json', unrecorded)), '');

  const logged: string[] = [];
  const { removed, release } = joinSharedOutput(out, 'sweep', 'sweep --point', (m) => logged.push(m));
  try {
    assert.deepEqual(removed, [join(out, 'models', left.find((e) => e.includes(`.tmp-${killed.pid}-`))!)]);
    assert.deepEqual(logged, [`removed 1 temporary file left in ${out} by killed runs on this host`]);
    assert.deepEqual(readdirSync(join(out, 'models')), left.filter((e) => e.includes(`.tmp-${live.pid}-`)), 'the live writer\'s directory stays');
    assert.deepEqual(readdirSync(join(out, 'points')).sort(), [temp('mka-4.json', other), temp('mka-5.json', shared), temp('mka-6.json', unrecorded)]);
    const records = readdirSync(join(out, WRITERS_DIR)).sort();
    assert.ok(!records.some((f) => f.endsWith(`.${killed.pid}.json`)), 'the killed writer\'s record is removed');
    assert.ok(records.includes(`${encodeURIComponent(hostname())}.${process.pid}.json`) && records.includes(`${encodeURIComponent(hostname())}.${live.pid}.json`));
  } finally {
    release();
  }
  assert.ok(!existsSync(join(out, WRITERS_DIR, `${encodeURIComponent(hostname())}.${process.pid}.json`)), 'release removes the record');

  // the sweep's own run (the lock holder) removes the unrecorded dead temporary, spares the other host's pids
  const unlock = claimOutputDir(out, 'sweep', { kind: 'sweep' });
  unlock();
  assert.deepEqual(readdirSync(join(out, 'points')).sort(), [temp('mka-4.json', other), temp('mka-5.json', shared)]);
  live.kill('SIGTERM');
  await ended(live);
  assert.deepEqual(readdirSync(join(out, 'models')), [], 'the live writer removed its own when stopped');
});

test('a directory mka did not write is never cleaned, whatever its records say', () => {
  const dir = join(root, 'not-mka');
  mkdirSync(dir);
  const pid = deadPid();
  record(dir, hostname(), pid);
  writeFileSync(join(dir, temp('x', pid)), '');
  const { removed, release } = joinSharedOutput(dir, 'sweep', 'sweep --point');
  release();
  assert.deepEqual(removed, []);
  assert.deepEqual(readdirSync(dir).sort(), [temp('x', pid), WRITERS_DIR].sort());
});

test('many atomic writes at once share one exit listener and one per signal: no listener-leak warning, none left after', async () => {
  const dir = join(root, 'many');
  mkdirSync(dir);
  const events = ['exit', 'SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const before = events.map((e) => process.listenerCount(e));
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  let release!: () => void;
  const gate = new Promise<void>((ok) => { release = ok; });
  const writes = Array.from({ length: 25 }, (_, i) => atomicWriteFile(join(dir, `f${i}`), async (fd) => {
    writeSync(fd, `file ${i}\n`);
    await gate;
  }));
  await new Promise((ok) => setImmediate(ok));
  assert.deepEqual(events.map((e) => process.listenerCount(e)), before.map((n) => n + 1), 'one listener per event for the 25 writes under way');
  release();
  await Promise.all(writes);
  await new Promise((ok) => setImmediate(ok)); // a warning is emitted on the next tick
  process.off('warning', onWarning);
  assert.deepEqual(warnings, []);
  assert.deepEqual(events.map((e) => process.listenerCount(e)), before, 'no listener left once the writes are done');
  assert.equal(readdirSync(dir).length, 25);
  assert.equal(readFileSync(join(dir, 'f7'), 'utf8'), 'file 7\n');
});
