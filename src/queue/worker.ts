/**
 * `mka worker`: takes sweep jobs from the queue and runs them (jobs.ts), on as many machines as
 * wanted. Jobs run in a child process (processor.ts) that keeps the loaded models between jobs; this
 * process only talks to Redis, so it renews the running job's lock however long the job computes.
 *
 * Crash safety is BullMQ's: a worker that dies (kill -9, a lost machine) stops renewing its job's
 * lock; once the lock expires (lockDuration), another worker's check for stalled jobs puts the job
 * back in the queue. Everything a job writes is written atomically and is the same when the job runs
 * twice.
 */
import { fileURLToPath } from 'node:url';
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { Worker, type Job, type JobJson } from 'bullmq';
import { BACKEND_OPTION, type BackendChoice, type ComputeChoice } from '../runtime/backend-choice.ts';
import { UserError } from '../runtime/errors.ts';
import { checkAddress, connectRedis, type QueueAddress } from './connection.ts';
import { describeJob, type SweepJob } from './jobs.ts';
import type { ProcessorSettings } from './processor.ts';
import { NOT_JSON } from './payload.ts';

export interface WorkerOptions extends QueueAddress {
  /** Backend of the process running the jobs. */
  backend?: BackendChoice;
  threads?: number;
  compute?: ComputeChoice;
  /** Milliseconds a job's lock lasts without renewal: how long a dead worker's job waits to be retried. */
  lockDuration?: number;
  /** Milliseconds between checks for jobs whose lock expired. */
  stalledInterval?: number;
  /** Times a job may be taken back from dead workers before it fails. */
  maxStalledCount?: number;
  /** No progress bars or log lines from the job process. */
  quiet?: boolean;
  /** Receives a line per job started, done or failed. */
  log?: (msg: string) => void;
  /** Stops the worker (after the job it runs finishes; at once when Redis cannot be reached). */
  signal?: AbortSignal;
  /** Directory every path a job names must lie in (default: the working directory). */
  root?: string;
}

/**
 * BullMQ's worker, with job data that is not JSON handed to the processor as NOT_JSON (payload.ts),
 * which fails the job, instead of an error in the worker that leaves the job active forever.
 */
class CheckedWorker extends Worker<SweepJob> {
  protected override createJob(data: JobJson, jobId: string): Job<SweepJob> {
    try {
      JSON.parse(data.data || '{}');
      return super.createJob(data, jobId);
    } catch {
      return super.createJob({ ...data, data: JSON.stringify(NOT_JSON) }, jobId);
    }
  }
}

/** Default lock: BullMQ's 30 s (renewed every 15 s by this process, which never blocks). */
export { DEFAULT_LOCK_MS } from './options.ts';
import { DEFAULT_LOCK_MS, LOCK_DURATION, MAX_STALLED, ROOT, STALLED_INTERVAL } from './options.ts';
import { checkOption, flag } from '../runtime/options.ts';

/** Runs a worker until `signal` aborts; resolves once it has closed. */
export async function runWorker(opts: WorkerOptions): Promise<void> {
  const { url, name } = checkAddress(opts);
  checkOption(LOCK_DURATION, opts.lockDuration);
  checkOption(STALLED_INTERVAL, opts.stalledInterval);
  checkOption(MAX_STALLED, opts.maxStalledCount);
  const log = opts.log ?? (() => {});
  log(`worker: connecting to Redis at ${url}`);
  const connection = await connectRedis(url, { persistent: true, signal: opts.signal });
  if (!connection) return; // stopped while connecting
  const root = resolve(opts.root ?? process.cwd());
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new UserError(`${flag(ROOT)} ${root}: not a directory; give the directory that holds the sweeps' models, data and results`);
  const settings: ProcessorSettings = { backend: opts.backend ?? BACKEND_OPTION.default, threads: opts.threads, compute: opts.compute, quiet: opts.quiet ?? false, root };
  // The processor beside this module: compiled JavaScript when mka runs from dist/, else TypeScript through tsx.
  const compiled = import.meta.url.endsWith('.js');
  const processor = fileURLToPath(new URL(compiled ? './processor.js' : './processor.ts', import.meta.url));
  const worker = new CheckedWorker(name, processor, {
    connection,
    concurrency: 1, // a job already uses every core
    lockDuration: opts.lockDuration ?? DEFAULT_LOCK_MS,
    stalledInterval: opts.stalledInterval,
    maxStalledCount: opts.maxStalledCount,
    useWorkerThreads: false,
    workerForkOptions: {
      execArgv: compiled ? [] : ['--import', import.meta.resolve('tsx')],
      env: { ...process.env, MKA_WORKER: JSON.stringify(settings) },
    },
  });
  const started = new Map<string, number>();
  worker.on('active', (job) => {
    started.set(job.id!, performance.now());
    log(`worker: start ${job.id} (${describeJob(job.data)}, attempt ${job.attemptsMade + 1})`);
  });
  worker.on('completed', (job) => {
    log(`worker: done ${job.id} (${describeJob(job.data)}) in ${((performance.now() - (started.get(job.id!) ?? 0)) / 1000).toFixed(1)} s`);
    started.delete(job.id!);
  });
  worker.on('failed', (job, e) => {
    if (job) started.delete(job.id!);
    log(`worker: failed ${job?.id ?? ''} (${job ? describeJob(job.data) : 'job'}): ${e.message}`);
  });
  // Redis gone: say so once (not at every reconnection attempt), and again when it is back
  let down = false;
  const onRedisError = (e: Error) => {
    if (down) return;
    down = true;
    log(`worker: cannot reach Redis at ${url} (${e.message}); retrying until it is back (Ctrl-C stops the worker)`);
  };
  worker.on('error', (e) => (isConnectionError(e) ? onRedisError(e) : log(`worker: ${e.message}`)));
  connection.on('error', onRedisError);
  connection.on('ready', () => {
    if (down) log(`worker: Redis at ${url} is back`);
    down = false;
  });
  log(`worker: waiting for jobs on ${url} (queue ${name}; jobs' paths must lie in ${root})`);
  await new Promise<void>((resolve) => {
    if (opts.signal?.aborted) resolve();
    opts.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  // Redis up: finish the running job (its results are saved), then close. Redis down: nothing can be
  // saved to it, so stop at once; the job's lock expires and another worker takes it.
  const reachable = connection.status === 'ready' && !down;
  if (!reachable) log('worker: Redis is unreachable, stopping now');
  await Promise.race([worker.close(!reachable), ...(reachable ? [] : [new Promise((r) => setTimeout(r, 2000).unref())])]);
  connection.disconnect();
}

/** Whether an error is Redis being unreachable (refused, reset, timed out, DNS). */
function isConnectionError(e: Error): boolean {
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|Connection is closed|connect/i.test(`${(e as NodeJS.ErrnoException).code ?? ''} ${e.message}`);
}
