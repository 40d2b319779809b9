/**
 * The sweep's work as BullMQ jobs. One sweep is:
 *   calibration                 once: the calibration pass and every method's plans (plans/*.json)
 *   point NAME                  per point: builds the report row from its shards' results; the parent of
 *     ├─ subject NAME SUBJECT   one child job per MMLU subject (eval/NAME/subjects/*.json)
 *     └─ shard NAME TASK SUB I  and per 500 documents of every other task (eval/NAME/tasks/TASK/shards/)
 * Job ids are derived from the sweep (its settings and results directory), the point and the subject,
 * so enqueueing the same sweep twice adds nothing twice. Each job carries the sweep's options; the
 * models, data and results directory are reached by path (a shared filesystem).
 */
import type { JobsOptions } from 'bullmq';
import type { SweepOptions, SweepSettings } from '../sweep/types.ts';
import { pointLabel, pointName, type PointId } from '../sweep/points.ts';

/** Sweep options as carried by a job (no callbacks). */
export type JobSweep = SweepSettings;

export type SweepJob =
  | { kind: 'calibration'; sweep: JobSweep }
  | { kind: 'point'; sweep: JobSweep; point: PointId }
  | { kind: 'subject'; sweep: JobSweep; point: PointId; subject: string }
  | { kind: 'shard'; sweep: JobSweep; point: PointId; task: string; subtask: string; index: number };

/** What a subject or shard job returns: the seconds it spent (summed into its point's row). */
export interface SubjectJobResult {
  seconds: number;
}

/** The job id of a sweep's job (BullMQ ids may not contain ':'). */
export function jobId(sweepId: string, job: { kind: SweepJob['kind']; point?: PointId; subject?: string; task?: string; subtask?: string; index?: number }): string {
  if (job.kind === 'calibration') return `${sweepId}.calibration`;
  if (job.kind === 'point') return `${sweepId}.point.${pointName(job.point!)}`;
  if (job.kind === 'shard') return `${sweepId}.shard.${pointName(job.point!)}.${job.task}.${job.subtask}.${job.index}`;
  return `${sweepId}.subject.${pointName(job.point!)}.${job.subject}`;
}

/** How many times a job runs before it fails for good when it throws (a user error fails at once). */
export { DEFAULT_ATTEMPTS } from './options.ts';

/** Retries with a growing delay; finished jobs are kept a day so `mka queue status` can show them. */
export function jobOptions(attempts: number): JobsOptions {
  return {
    attempts,
    backoff: { type: 'exponential', delay: 2000 },
    removeOnComplete: { age: 24 * 3600 },
    removeOnFail: { age: 7 * 24 * 3600 },
  };
}

/** The options a job carries: everything but callbacks and the run-specific info. */
export function jobSweep(opts: SweepOptions): JobSweep {
  const { log: _log, runInfo: _runInfo, signal: _signal, ...rest } = opts;
  return JSON.parse(JSON.stringify(rest)) as JobSweep;
}

/** "calibration", "point mka:4", "mka:4 college_physics" or "mka:4 hellaswag 3" (a shard of 500 documents). */
export function describeJob(job: SweepJob): string {
  if (job.kind === 'calibration') return 'calibration';
  if (job.kind === 'shard') return `${pointLabel(job.point)} ${job.subtask === job.task ? job.task : job.subtask} ${job.index}`;
  return job.kind === 'point' ? `point ${pointLabel(job.point)}` : `${pointLabel(job.point)} ${job.subject}`;
}
