/**
 * `mka sweep --queue redis://...`: the sweep's work enqueued as BullMQ jobs (jobs.ts) for workers on
 * any number of machines, then followed until done, with progress, and the report assembled from the
 * shared results directory, as a local sweep writes it.
 *
 * What is finished on disk is never enqueued again (a point in points/, a subject in
 * eval/NAME/subjects/), and jobs have fixed ids, so rerunning the command after an interruption (of
 * this process, of workers, of Redis) picks up where the sweep stands. A job that failed for good
 * ends the command with its error; rerunning the command enqueues it again.
 */
import { FlowProducer, Queue, type JobsOptions } from 'bullmq';
import { UserError } from '../runtime/errors.ts';
import { progress } from '../runtime/progress.ts';
import { checkSweepBeforeWork, prepareSweep, sweepId } from '../sweep/context.ts';
import { needsCalibration } from '../sweep/calibrate.ts';
import { pointShards, readStoredPoint, rowOf, shardDone, type PointShard, type ShardId } from '../sweep/point.ts';
import { pointLabel, sweepPoints, type PointId } from '../sweep/points.ts';
import { headlineMetric, loadSweepTasks } from '../sweep/tasks.ts';
import { assembleSweepReport } from '../sweep/assemble.ts';
import { SweepInterrupted, type SweepOptions, type SweepPoint } from '../sweep/sweep.ts';
import { checkAddress, connectRedis, type QueueAddress } from './connection.ts';
import { DEFAULT_ATTEMPTS, jobId, jobOptions, jobSweep, type SweepJob } from './jobs.ts';
import { checkOption, flag } from '../runtime/options.ts';
import { ATTEMPTS, DEFAULT_QUEUE_NAME, QUEUE_NAME, QUEUE_URL } from './options.ts';

export interface QueuedSweepOptions extends QueueAddress {
  /** Runs of a job that throws before it fails for good (default DEFAULT_ATTEMPTS; user errors fail at once). */
  attempts?: number;
  /** Milliseconds between looks at the queue (default 1000). */
  pollMs?: number;
}

const FINAL = new Set(['completed', 'failed']);

/** Enqueues the sweep, waits for the workers to finish it and writes its report. Returns the rows. */
export async function runQueuedSweep(opts: SweepOptions, q: QueuedSweepOptions): Promise<SweepPoint[]> {
  const started = Date.now();
  const { url, name } = checkAddress(q);
  const attempts = q.attempts ?? DEFAULT_ATTEMPTS;
  checkOption(ATTEMPTS, attempts);
  const log = opts.log ?? (() => {});
  await checkSweepBeforeWork(opts); // as the workers will: refused here, nothing is enqueued
  const taskInputs = await loadSweepTasks(opts);
  const { subjects } = prepareSweep(opts);
  const sid = sweepId(opts);
  const data = jobSweep(opts);
  const options: JobsOptions = jobOptions(attempts);
  const connection = await connectRedis(url);
  const queue = new Queue<SweepJob>(name, { connection });
  const flows = new FlowProducer({ connection });
  try {
    /** Adds a job unless one with its id is queued or running; a finished or failed one is replaced. */
    const ensure = async (id: string, add: () => Promise<unknown>): Promise<void> => {
      const state = await queue.getJobState(id);
      if (state !== 'unknown' && !FINAL.has(state)) return;
      if (state !== 'unknown') await (await queue.getJob(id))?.remove();
      await add();
    };
    const pending = sweepPoints(opts.methods, opts.remove, opts.quantize).filter((p) => !readStoredPoint(opts.out, p));
    const shards = pointShards({ opts, subjects, taskInputs });
    const shardsOf = (p: PointId) => shards.filter((s) => !shardDone(opts.out, p, s));
    const totalShards = shards.length;
    const childJob = (p: PointId, s: PointShard): SweepJob => (s.task === 'mmlu'
      ? { kind: 'subject', sweep: data, point: p, subject: (s as { subject: string }).subject }
      : { kind: 'shard', sweep: data, point: p, task: s.task, subtask: (s as ShardId).subtask, index: (s as ShardId).index });
    const enqueuePoint = (p: PointId) => ensure(jobId(sid, { kind: 'point', point: p }), () => flows.add({
      name: 'point', queueName: name, data: { kind: 'point', sweep: data, point: p }, opts: { ...options, jobId: jobId(sid, { kind: 'point', point: p }) },
      children: shardsOf(p).map((s) => {
        const job = childJob(p, s);
        return { name: job.kind, queueName: name, data: job, opts: { ...options, jobId: jobId(sid, job), failParentOnFailure: true } };
      }),
    }));

    const calId = jobId(sid, { kind: 'calibration' });
    let calibrating = needsCalibration(opts.out, opts.methods, opts.remove, opts.params, opts.quantize);
    if (calibrating) await ensure(calId, () => queue.add('calibration', { kind: 'calibration', sweep: data }, { ...options, jobId: calId }));
    const enqueued = new Set<PointId>();
    for (const p of pending) {
      if (p.method === 'original' || !calibrating) {
        await enqueuePoint(p);
        enqueued.add(p);
      }
    }
    log(`sweep: ${pending.length} of ${sweepPoints(opts.methods, opts.remove, opts.quantize).length} points enqueued on ${url} (queue ${name}${calibrating ? ', after the calibration job' : ''}); start workers with \`mka worker ${flag(QUEUE_URL)} ${url}${name === DEFAULT_QUEUE_NAME ? '' : ` ${flag(QUEUE_NAME)} ${name}`}\``);

    const total = pending.length * totalShards;
    const subjectsDone = () => pending.reduce((n, p) => n + totalShards - shardsOf(p).length, 0);
    const bar = progress('sweep (queue)', total, { unit: 'shards', quiet: opts.quiet });
    let shown = subjectsDone();
    bar.tick(shown);
    const finished = new Set<PointId>();
    for (;;) {
      // Ctrl-C stops following the sweep; the workers go on, and rerunning the command follows it again.
      if (opts.signal?.aborted) throw new SweepInterrupted(sweepPoints(opts.methods, opts.remove, opts.quantize).length - pending.length + finished.size, sweepPoints(opts.methods, opts.remove, opts.quantize).length);
      if (calibrating) {
        const state = await queue.getJobState(calId);
        if (state === 'failed') throw await failure(queue, calId, 'calibration', []);
        if (state === 'completed' || !needsCalibration(opts.out, opts.methods, opts.remove, opts.params, opts.quantize)) {
          calibrating = false;
          for (const p of pending.filter((x) => !enqueued.has(x))) {
            await enqueuePoint(p);
            enqueued.add(p);
          }
        } else if (state === 'unknown') {
          await ensure(calId, () => queue.add('calibration', { kind: 'calibration', sweep: data }, { ...options, jobId: calId }));
        }
      }
      for (const p of enqueued) {
        if (finished.has(p)) continue;
        const stored = readStoredPoint(opts.out, p);
        if (stored) {
          finished.add(p);
          log(`sweep: ${pointLabel(p)} done: ${Object.entries(rowOf(stored).metrics).map(([t, m]) => `${t === 'mmlu' ? 'MMLU' : t} ${(100 * m[headlineMetric(t)].value).toFixed(2)}%`).join(', ')} (${finished.size}/${pending.length} points)`);
          continue;
        }
        const id = jobId(sid, { kind: 'point', point: p });
        const state = await queue.getJobState(id);
        if (state === 'failed') throw await failure(queue, id, pointLabel(p), shards.map((s) => jobId(sid, childJob(p, s))));
        if (state === 'unknown' || state === 'completed') await enqueuePoint(p); // lost from Redis, or its file was removed
      }
      const done = subjectsDone();
      bar.tick(done - shown, `(${finished.size}/${pending.length} points)`);
      shown = done;
      if (finished.size === pending.length && !calibrating) break;
      await new Promise((r) => setTimeout(r, q.pollMs ?? 1000));
    }
    bar.done();
    return await assembleSweepReport(opts, { seconds: { total: (Date.now() - started) / 1000 } });
  } finally {
    await flows.close();
    await queue.close();
    await connection.quit().catch(() => {});
  }
}

/** The error of a job that failed for good (a point's: the first failed subject's). */
async function failure(queue: Queue<SweepJob>, id: string, what: string, childIds: string[]): Promise<UserError> {
  for (const cid of childIds) {
    const child = await queue.getJob(cid);
    if (child && (await child.getState()) === 'failed') return failed(child.id!, `${what} ${child.data.kind === 'subject' ? child.data.subject : child.data.kind === 'shard' ? `${child.data.subtask} ${child.data.index}` : ''}`.trim(), child.failedReason, child.attemptsMade);
  }
  const job = await queue.getJob(id);
  return failed(id, what, job?.failedReason ?? 'unknown reason', job?.attemptsMade ?? 0);
}

function failed(id: string, what: string, reason: string, attempts: number): UserError {
  return new UserError(`sweep: job ${id} (${what}) failed after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${reason}; fix the cause and rerun the same command to retry it`);
}
