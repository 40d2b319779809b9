/**
 * `mka worker`: takes sweep jobs from the queue and runs them (jobs.ts), on as many machines as
 * wanted. A worker keeps the last sweep it worked on loaded (tokenizer, data, original model) and
 * the last point's model built, so consecutive subject jobs of a point cost only their evaluation.
 *
 * Crash safety is BullMQ's: a job is locked while a worker runs it and the lock is renewed while the
 * worker is alive; a worker that dies (kill -9, lost machine) stops renewing, and once the lock
 * expires (lockDuration) another worker's stalled-job check puts the job back in the queue. Everything
 * a job writes is written atomically and is the same when the job runs twice.
 */
import { Worker, UnrecoverableError, type Job } from 'bullmq';
import type { LlamaModel } from '../model/model.ts';
import { UserError } from '../runtime/errors.ts';
import { openSweep, sweepKey, type SweepContext } from '../sweep/context.ts';
import { calibrateSweep } from '../sweep/calibrate.ts';
import { disposePointModel, pointModel, runPoint, runPointSubjects } from '../sweep/point.ts';
import { pointLabel, pointName, type PointId } from '../sweep/points.ts';
import { checkAddress, connectRedis, type QueueAddress } from './connection.ts';
import type { SubjectJobResult, SweepJob } from './jobs.ts';

export interface WorkerOptions extends QueueAddress {
  /** Milliseconds a job's lock lasts without renewal: how long a dead worker's job waits to be retried. */
  lockDuration?: number;
  /** Milliseconds between checks for jobs whose lock expired. */
  stalledInterval?: number;
  /** Times a job may be taken back from dead workers before it fails. */
  maxStalledCount?: number;
  /** No progress bars for the evaluations. */
  quiet?: boolean;
  /** Receives a line per job started, done or failed. */
  log?: (msg: string) => void;
  /** Stops the worker (after the jobs it runs finish). */
  signal?: AbortSignal;
}

/** Default lock: long enough that a busy worker renews it between evaluation batches of a large model. */
export const DEFAULT_LOCK_MS = 5 * 60_000;

/** The loaded sweep and point model a worker reuses between jobs. */
class Loaded {
  private sweep: { key: string; ctx: SweepContext } | null = null;
  private point: { name: string; model: LlamaModel } | null = null;

  constructor(private readonly quiet: boolean, private readonly log: (msg: string) => void) {}

  async context(job: SweepJob): Promise<SweepContext> {
    const key = `${sweepKey(job.sweep as never)}\0${job.sweep.out}`;
    if (this.sweep?.key !== key) {
      this.release();
      const ctx = await openSweep({ ...job.sweep, quiet: this.quiet, log: this.log });
      this.sweep = { key, ctx };
    }
    return this.sweep.ctx;
  }

  async model(ctx: SweepContext, p: PointId): Promise<LlamaModel> {
    if (this.point?.name !== pointName(p)) {
      if (this.point) disposePointModel(ctx, this.point.model);
      this.point = null;
      this.point = { name: pointName(p), model: (await pointModel(ctx, p)).model };
    }
    return this.point.model;
  }

  release(): void {
    if (this.point && this.sweep) disposePointModel(this.sweep.ctx, this.point.model);
    this.sweep?.ctx.dispose();
    this.point = null;
    this.sweep = null;
  }
}

function describe(job: SweepJob): string {
  if (job.kind === 'calibration') return 'calibration';
  return job.kind === 'point' ? `point ${pointLabel(job.point)}` : `${pointLabel(job.point)} ${job.subject}`;
}

/** Runs one job's work. */
async function runJob(loaded: Loaded, job: Job<SweepJob>): Promise<unknown> {
  const d = job.data;
  const ctx = await loaded.context(d);
  if (d.kind === 'calibration') return { seconds: await calibrateSweep(ctx) };
  if (d.kind === 'subject') {
    const seconds = await runPointSubjects(ctx, d.point, [d.subject], await loaded.model(ctx, d.point));
    return { seconds } satisfies SubjectJobResult;
  }
  const shards = Object.values(await job.getChildrenValues<SubjectJobResult>());
  const priorSeconds = shards.reduce((s, r) => s + (r?.seconds ?? 0), 0);
  return runPoint(ctx, d.point, { model: await loaded.model(ctx, d.point), priorSeconds });
}

/** Runs a worker until `signal` aborts; resolves once it has closed. */
export async function runWorker(opts: WorkerOptions): Promise<void> {
  const { url, name } = checkAddress(opts);
  for (const [flag, v] of [['--lock-duration', opts.lockDuration], ['--stalled-interval', opts.stalledInterval], ['--max-stalled', opts.maxStalledCount]] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v < (flag === '--max-stalled' ? 0 : 1))) throw new UserError(`${flag} ${v}: must be a whole number${flag === '--max-stalled' ? ', 0 or more' : ' of milliseconds, 1 or more'}`);
  }
  const log = opts.log ?? (() => {});
  const connection = await connectRedis(url, { persistent: true });
  const loaded = new Loaded(opts.quiet ?? true, log);
  const worker = new Worker<SweepJob>(name, async (job) => {
    const what = describe(job.data);
    log(`worker: start ${job.id} (${what}, attempt ${job.attemptsMade + 1})`);
    const t0 = performance.now();
    try {
      const r = await runJob(loaded, job);
      log(`worker: done ${job.id} (${what}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      return r;
    } catch (e) {
      log(`worker: failed ${job.id} (${what}): ${(e as Error).message}`);
      // A user error (bad file, bad option) fails the same way every time: no retries.
      if (e instanceof UserError) throw new UnrecoverableError(e.message);
      throw e;
    }
  }, {
    connection,
    concurrency: 1, // a job already uses every core, and the loaded point model is shared between jobs
    lockDuration: opts.lockDuration ?? DEFAULT_LOCK_MS,
    stalledInterval: opts.stalledInterval,
    maxStalledCount: opts.maxStalledCount,
  });
  worker.on('error', (e) => log(`worker: ${e.message}`));
  log(`worker: waiting for jobs on ${url} (queue ${name})`);
  await new Promise<void>((resolve) => {
    if (opts.signal?.aborted) resolve();
    opts.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  await worker.close();
  loaded.release();
  await connection.quit().catch(() => {});
}
