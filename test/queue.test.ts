/**
 * Sweeps on a real Redis server with BullMQ workers as separate processes: a queued sweep finished by
 * two workers after a third is killed (SIGKILL) mid-job gives the local sweep's results byte for byte
 * (apart from timings), per-subject result files included; `mka queue status` counts the jobs; a job
 * failing for a user error fails once, not forever, and its error reaches the sweep and the status.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { queueStatus } from '../src/queue/status.ts';
import { UserError } from '../src/runtime/errors.ts';
import { CLI, NO_REDIS, mkaInProcess, resultsWithoutTimings, startRedis, tinySweepArgs } from './queue-fixture.ts';
import { runCliInProcess } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('queue');
// 2 MMLU subjects and boolq (one shard of 5 documents): calibration, then 3 points of 2 subject jobs and a shard job each (13 jobs)
// (the task's data inside the workers' root, as every path of a queued sweep must be)
cpSync(join('test', 'fixtures', 'tasks', 'boolq.jsonl'), join(root, 'boolq.jsonl'));
const args = [...await tinySweepArgs(root, 'mka,shortgpt', '0,2', ['demo_arithmetic', 'demo_facts']), '--tasks', 'mmlu,boolq', '--task-data', `boolq=${join(root, 'boolq.jsonl')}`];
let redis: Awaited<ReturnType<typeof startRedis>> | null = null;
const children: ChildProcess[] = [];

before(async () => {
  if (!NO_REDIS) redis = await startRedis(root);
});
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await redis?.stop();
});

/** A worker process with a short lock, so a killed worker's job is retried within seconds; its log lines collected. */
function startWorker(queueName: string): { proc: ChildProcess; log: string[] } {
  const proc = spawn(process.execPath, [CLI, 'worker', '--queue', redis!.url, '--queue-name', queueName, '--backend', 'wasm',
    '--lock-duration', '3000', '--stalled-interval', '1000', '--root', root], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(proc);
  const log: string[] = [];
  let rest = '';
  proc.stderr!.on('data', (b: Buffer) => {
    const lines = (rest + b.toString()).split('\n');
    rest = lines.pop()!;
    log.push(...lines);
  });
  return { proc, log };
}

function stopWorker(w: { proc: ChildProcess }): Promise<void> {
  return new Promise((resolve) => {
    if (w.proc.exitCode !== null || w.proc.signalCode !== null) return resolve();
    w.proc.once('exit', () => resolve());
    w.proc.kill('SIGTERM');
  });
}

/**
 * Runs the CLI in this process (src/cli/run.ts) while the test goes on (the sweep command only talks to
 * Redis and reads the results directory; the workers are the processes); resolves with its exit status and stderr.
 */
function runAsync(a: string[]): Promise<{ status: number | null; stderr: string }> {
  return runCliInProcess(a);
}

/** Child processes of a process (Linux /proc; none elsewhere). */
function childrenOf(pid: number): number[] {
  const f = `/proc/${pid}/task/${pid}/children`;
  return existsSync(f) ? readFileSync(f, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number) : [];
}

async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a queued sweep over worker processes, one killed mid-job, equals the local sweep', { skip: NO_REDIS }, async () => {
  const local = join(root, 'local'), queued = join(root, 'queued');
  await mkaInProcess(['sweep', ...args, '--out', local]); // the reference: a local sweep, in this process

  const sweep = runAsync(['sweep', ...args, '--out', queued, '--queue', redis!.url, '--queue-name', 'ok']);
  // the first worker is killed as soon as it has started a job
  const doomed = startWorker('ok');
  // (on Linux, also until the process that runs the job is there)
  const hasProc = existsSync(`/proc/${process.pid}/task/${process.pid}/children`);
  await until(() => doomed.log.some((l) => l.startsWith('worker: start ')) && (!hasProc || childrenOf(doomed.proc.pid!).length > 0), 'the first worker to take a job');
  const jobProcesses = childrenOf(doomed.proc.pid!);
  doomed.proc.kill('SIGKILL');
  const killedJob = doomed.log.find((l) => l.startsWith('worker: start '))!.split(' ')[2];
  assert.ok(!doomed.log.some((l) => l.startsWith(`worker: done ${killedJob}`)), 'the kill came after the job ended');
  const workers = [startWorker('ok'), startWorker('ok')];
  // the process that ran the killed worker's job exits too, instead of computing on
  await until(() => jobProcesses.every((pid) => !existsSync(`/proc/${pid}`)), 'the killed worker\'s job process to exit', 30_000);

  const r = await sweep;
  assert.equal(r.status, 0, r.stderr);
  await Promise.all(workers.map(stopWorker));
  // the killed worker's job was taken over once its lock expired
  const log = workers.flatMap((w) => w.log);
  assert.ok(log.some((l) => l.startsWith(`worker: done ${killedJob} `)), `no worker finished ${killedJob}:\n${log.join('\n')}`);
  // nothing but the killed job ran twice: the survivors kept their locks while computing
  const starts = log.filter((l) => l.startsWith('worker: start ')).map((l) => l.split(' ')[2]);
  assert.deepEqual(starts.filter((id, i) => starts.indexOf(id) !== i), [], 'a job ran twice');
  // both workers took part
  for (const w of workers) assert.ok(w.log.some((l) => l.startsWith('worker: done ')), `a worker ran nothing:\n${w.log.join('\n')}`);

  assert.deepEqual(resultsWithoutTimings(queued), resultsWithoutTimings(local));
  // each subject and task shard computed alone by a worker has the bytes the local sweep's evaluation wrote
  for (const point of readdirSync(join(local, 'eval'))) {
    for (const f of [...readdirSync(join(local, 'eval', point, 'subjects')).map((x) => `subjects/${x}`), 'tasks/boolq/shards/boolq-00000.json']) {
      assert.equal(readFileSync(join(queued, 'eval', point, f), 'utf8'), readFileSync(join(local, 'eval', point, f), 'utf8'), `${point}/${f}`);
    }
  }
  assert.match(readFileSync(join(queued, 'results.csv'), 'utf8').split('\n')[0], /,boolq_acc,boolq_acc_stderr,boolq_acc_delta,boolq_acc_p,average,/);

  const status = await queueStatus({ url: redis!.url, name: 'ok' });
  assert.deepEqual([status.counts.done, status.counts.failed, status.counts.waiting, status.counts.active], [13, 0, 0, 0]);
});

test('a queued sweep with a quantize axis: a worker calibrates and quantizes the points (kept as packed models) and gives the local sweep\'s results', { skip: NO_REDIS }, async () => {
  // one subject; the original, the original quantized and reverse:1 quantized (GPTQ calibrates in the worker, on one subject's 4 questions): 7 jobs
  const quantized = [...await tinySweepArgs(root, 'reverse', '0,1', ['demo_facts']), '--quantize', 'gptq:w4g32', '--calib-subjects', '1', '--keep-models'];
  const local = join(root, 'quantized-local'), queued = join(root, 'quantized-queued');
  const worker = startWorker('quantized');
  const sweep = runAsync(['sweep', ...quantized, '--out', queued, '--queue', redis!.url, '--queue-name', 'quantized']);
  await mkaInProcess(['sweep', ...quantized, '--out', local]); // the reference (in-process runs take turns: after the queued sweep)
  const r = await sweep;
  await stopWorker(worker);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(resultsWithoutTimings(queued), resultsWithoutTimings(local));
  const point = 'reverse-1-quantize-gptq-w4g32';
  assert.equal(readFileSync(join(queued, 'eval', point, 'subjects', 'demo_facts.json'), 'utf8'), readFileSync(join(local, 'eval', point, 'subjects', 'demo_facts.json'), 'utf8'));
  // the worker wrote the quantized point's model as the local sweep did: the same packed tensors
  assert.equal(JSON.parse(readFileSync(join(queued, 'models', point, 'config.json'), 'utf8')).quantization_config.method, 'gptq');
  assert.ok(readFileSync(join(queued, 'models', point, 'model.safetensors')).equals(readFileSync(join(local, 'models', point, 'model.safetensors'))));
  assert.deepEqual((await queueStatus({ url: redis!.url, name: 'quantized' })).counts.failed, 0);
});

test('a job failing with a user error fails once, its error reaches the sweep and queue status, and a rerun after the fix finishes', { skip: NO_REDIS }, async () => {
  // config.json is fine (the sweep command reads it) but the weights are cut short (workers load them)
  const model = join(root, 'broken-model');
  cpSync('models/demo', model, { recursive: true });
  truncateSync(join(model, 'model.safetensors'), 100);
  const small = await tinySweepArgs(root, 'shortgpt', '0,1', ['demo_facts']);
  const bad = small.map((a) => (a === join(root, 'demo-model') ? model : a));
  const sweep = ['sweep', ...bad, '--out', join(root, 'broken'), '--queue', redis!.url, '--queue-name', 'bad'];
  const worker = startWorker('bad');
  const r = await runAsync(sweep);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /failed after 1 attempt: .*model\.safetensors: header length \d+ is larger than the file/);

  const status = await queueStatus({ url: redis!.url, name: 'bad' });
  assert.ok(status.failed.length >= 1);
  for (const j of status.failed) {
    assert.ok(j.attempts <= 1, `${j.job} was retried`); // 0 for a point failed by its subject
    assert.match(j.error ?? "", /model\.safetensors/);
  }
  const text = (await mkaInProcess(['queue', 'status', '--queue', redis!.url, '--queue-name', 'bad'])).stdout;
  assert.match(text, /failed:\n(.*\n)* {2}\S.*1 attempt\): .*model\.safetensors/);

  // the same command after the weights are repaired enqueues the failed work again and completes
  cpSync('models/demo/model.safetensors', join(model, 'model.safetensors'));
  const again = await runAsync(sweep);
  await stopWorker(worker);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(readFileSync(join(root, 'broken', 'results.csv'), 'utf8').trim().split('\n').length, 1 + 1 + 2);
  assert.equal((await queueStatus({ url: redis!.url, name: 'bad' })).counts.failed, 0);
});

test('a queued sweep whose quantize axis cannot fit is refused by the submit with the local sweep\'s line, before anything is enqueued', async () => {
  // a config with a wide MLP (down_proj's GPTQ Hessian alone is 32768² float32, 4.3 GB): the model fits in 4 GB, its quantization does not
  const model = join(root, 'wide-mlp');
  mkdirSync(model);
  writeFileSync(join(model, 'config.json'), JSON.stringify({ ...JSON.parse(readFileSync('models/demo/config.json', 'utf8')), intermediate_size: 32768, num_hidden_layers: 2 }));
  copyFileSync('models/demo/tokenizer.json', join(model, 'tokenizer.json'));
  const wide = (await tinySweepArgs(root, 'reverse', '0,1', ['demo_facts'])).map((a) => (a === join(root, 'demo-model') ? model : a === 'wasm' ? 'cpu' : a));
  const sweep = ['sweep', ...wide, '--quantize', 'none,gptq:w4g32', '--calib-subjects', '1'];
  const env = { ...process.env, MKA_MEMORY_LIMIT: '4G' };
  const local = await runCliInProcess([...sweep, '--out', join(root, 'wide-local')], { env });
  assert.equal(local.status, 1, local.stderr);
  assert.match(local.stderr, /^mka: sweep needs about \d+\.\d GB of RAM \(.*mlp\.down_proj \(32768 inputs\).*\) but 4\.3 GB is available; [^\n]*\n$/);
  // the submit checks first: it never reaches the queue (unreachable here, which would be the error otherwise) and writes nothing
  const queued = await runCliInProcess([...sweep, '--out', join(root, 'wide-queued'), '--queue', 'redis://127.0.0.1:1'], { env });
  assert.equal(queued.status, 1, queued.stderr);
  assert.equal(queued.stderr, local.stderr);
  assert.ok(!existsSync(join(root, 'wide-queued')) || readdirSync(join(root, 'wide-queued')).length === 0, 'nothing written');
});

test('an unreachable queue or a bad URL is a user error', async () => {
  await assert.rejects(queueStatus({ url: 'redis://127.0.0.1:1' }), (e: Error) => e instanceof UserError && /^--queue redis:\/\/127\.0\.0\.1:1: cannot reach Redis/.test(e.message));
  await assert.rejects(queueStatus({ url: 'http://127.0.0.1:6379' }), (e: Error) => e instanceof UserError && /expected a redis:\/\//.test(e.message));
});

test('job data is checked: not JSON, paths outside the worker\'s --root and file names that leave the results fail at once; status lists them', { skip: NO_REDIS }, async () => {
  const jail = join(root, 'jail');
  mkdirSync(jail);
  const { Queue } = await import('bullmq');
  const { Redis } = await import('ioredis');
  const connection = new Redis(redis!.url, { maxRetriesPerRequest: null });
  const queue = new Queue('hostile', { connection });
  const sweep = { model: join(jail, 'm'), data: join(jail, 'd'), out: join(jail, 'out'), methods: ['reverse'], remove: [0, 1] };
  const point = { method: 'reverse', removed: 1 };
  const outside = join(root, 'escaped');
  try {
    await queue.add('x', { kind: 'calibration', sweep: { ...sweep, out: outside } }, { jobId: 'out-outside', attempts: 3 });
    await queue.add('x', { kind: 'subject', sweep: { ...sweep, model: '/' }, point, subject: 'demo_facts' }, { jobId: 'model-outside', attempts: 3 });
    await queue.add('x', { kind: 'subject', sweep, point, subject: '../../../escaped' }, { jobId: 'subject-escapes', attempts: 3 });
    await queue.add('x', { kind: 'point', sweep, point: { method: '../../escaped', removed: 1 } }, { jobId: 'method-escapes', attempts: 3 });
    await queue.add('x', { kind: 'shard', sweep, point, task: 'boolq', subtask: '../../escaped', index: 0 }, { jobId: 'shard-escapes', attempts: 3 });
    await queue.add('x', { kind: 'shard', sweep: { ...sweep, taskData: { boolq: outside } }, point, task: 'boolq', subtask: 'boolq', index: 0 }, { jobId: 'task-data-outside', attempts: 3 });
    await queue.add('x', { kind: 'nope' }, { jobId: 'unknown-kind', attempts: 3 });
    await queue.add('x', {}, { jobId: 'not-json', attempts: 3 });
    await connection.hset('bull:hostile:not-json', 'data', 'not json {');
    const worker = spawn(process.execPath, [CLI, 'worker', '--queue', redis!.url, '--queue-name', 'hostile', '--backend', 'wasm', '--root', jail], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(worker);
    let log = '';
    worker.stderr!.on('data', (b) => (log += b));
    const failedIds = async () => (await queue.getRanges(['failed'], 0, -1)).sort();
    const t0 = Date.now();
    while ((await failedIds()).length < 8 && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 100));
    await stopWorker({ proc: worker });
    assert.deepEqual(await failedIds(), ['method-escapes', 'model-outside', 'not-json', 'out-outside', 'shard-escapes', 'subject-escapes', 'task-data-outside', 'unknown-kind'], log);
    // failed for good although 3 attempts were allowed: a refused job is not retried
    for (const id of await failedIds()) {
      const reason = (await connection.hget(`bull:hostile:${id}`, 'failedReason')) ?? '';
      assert.match(reason, /^job data refused: /, `${id}: ${reason}`);
    }
    assert.ok(!existsSync(outside), 'nothing was written outside the root');
    const status = (await mkaInProcess(['queue', 'status', '--queue', redis!.url, '--queue-name', 'hostile'])).stdout;
    assert.match(status, /8 failed/);
    assert.match(status, /\(job data is not JSON\)/);
  } finally {
    await queue.close();
    await connection.quit();
  }
});

test('a worker whose Redis goes away says so and stops at once on SIGTERM', { skip: NO_REDIS }, async () => {
  const dir = join(root, 'redis-gone');
  mkdirSync(dir);
  const own = await startRedis(dir);
  const worker = spawn(process.execPath, [CLI, 'worker', '--queue', own.url, '--backend', 'wasm'], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(worker);
  let log = '';
  worker.stderr!.on('data', (b) => (log += b));
  const exited = new Promise<number | null>((r) => worker.once('exit', (code) => r(code)));
  await until(() => log.includes('waiting for jobs'), 'the worker to start');
  await own.stop();
  await until(() => log.includes('cannot reach Redis'), 'the worker to notice');
  worker.kill('SIGTERM');
  assert.equal(await exited, 0, log);
  assert.equal(log.match(/cannot reach Redis/g)?.length, 1, `said once:\n${log}`);
  assert.match(log, /Redis is unreachable, stopping now/);
});

test('a --queue database that Redis does not have is refused, not replaced by database 0', { skip: NO_REDIS }, async () => {
  await assert.rejects(queueStatus({ url: `${redis!.url}/999` }), (e: Error) => e instanceof UserError && /refuses database 999/.test(e.message));
  await assert.rejects(queueStatus({ url: `${redis!.url}/x` }), (e: Error) => e instanceof UserError && /database number/.test(e.message));
  assert.equal((await queueStatus({ url: `${redis!.url}/3` })).counts.waiting, 0);
});

test('a worker stopped while it waits for an unreachable Redis exits at once, cleanly', async () => {
  const worker = spawn(process.execPath, [CLI, 'worker', '--queue', 'redis://127.0.0.1:1', '--backend', 'wasm'], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(worker);
  let log = '';
  worker.stderr!.on('data', (b) => (log += b));
  const exited = new Promise<number | null>((r) => worker.once('exit', (code) => r(code)));
  await until(() => log.includes('connecting to Redis'), 'the worker to start connecting');
  worker.kill('SIGINT');
  assert.equal(await exited, 0, log);
  assert.doesNotMatch(log, /cannot reach Redis/, 'stopped by the signal, not by the connection timeout');
});
