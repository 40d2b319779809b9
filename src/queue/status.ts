/** `mka queue status`: how many jobs wait, run, are done or failed, and the errors of the failed ones. */
import { Queue, type Job } from 'bullmq';
import { pointLabel } from '../sweep/points.ts';
import { checkAddress, connectRedis, type QueueAddress } from './connection.ts';
import type { SweepJob } from './jobs.ts';

export interface JobInfo {
  id: string;
  /** e.g. "calibration", "point mka:4", "mka:4 college_physics" */
  job: string;
  /** Results directory of the job's sweep. */
  out: string;
  attempts: number;
  error?: string;
}

export interface QueueStatus {
  queue: string;
  counts: { waiting: number; active: number; done: number; failed: number; delayed: number; waitingChildren: number };
  active: JobInfo[];
  failed: JobInfo[];
}

/** What a job is ("point mka:4"), or what is wrong with its data. */
function describe(d: SweepJob | undefined): string {
  try {
    if (d?.kind === 'calibration') return 'calibration';
    if (d?.kind === 'point') return `point ${pointLabel(d.point)}`;
    if (d?.kind === 'subject') return `${pointLabel(d.point)} ${d.subject}`;
    if (d?.kind === 'shard') return `${pointLabel(d.point)} ${d.subtask === d.task ? d.task : d.subtask} ${d.index}`;
  } catch {
    // falls through
  }
  return `(not a sweep job: ${JSON.stringify(d)?.slice(0, 60) ?? 'no data'})`;
}

/** A job of the queue, or null when its data cannot be read (not JSON). */
async function readJob(queue: Queue<SweepJob>, id: string): Promise<Job<SweepJob> | null | 'unreadable'> {
  try {
    return (await queue.getJob(id)) ?? null;
  } catch {
    return 'unreadable';
  }
}

/** Up to `limit` jobs in `state`, most recent first; a job whose data is unreadable is listed as such, not an error. */
async function jobsIn(queue: Queue<SweepJob>, state: 'failed' | 'active', limit: number): Promise<(Job<SweepJob> | { id: string; unreadable: true })[]> {
  const rows = [];
  for (const id of await queue.getRanges([state], 0, limit - 1, false)) {
    const j = await readJob(queue, id);
    if (j === 'unreadable') rows.push({ id, unreadable: true as const });
    else if (j) rows.push(j);
  }
  return rows;
}

/** Counts of the queue's jobs, the running ones and the failed ones (most recent first, up to `limit`). */
export async function queueStatus(q: QueueAddress & { limit?: number }): Promise<QueueStatus> {
  const { url, name } = checkAddress(q);
  const connection = await connectRedis(url);
  const queue = new Queue<SweepJob>(name, { connection });
  try {
    const c = await queue.getJobCounts('waiting', 'prioritized', 'active', 'completed', 'failed', 'delayed', 'waiting-children');
    const info = (j: Job<SweepJob> | { id: string; unreadable: true }, withError: boolean): JobInfo => ('unreadable' in j
      ? { id: j.id, job: '(job data is not JSON)', out: '?', attempts: 0 }
      : { id: j.id!, job: describe(j.data), out: String(j.data?.sweep?.out ?? '?'), attempts: j.attemptsMade, ...(withError ? { error: j.failedReason } : {}) });
    const limit = q.limit ?? 50;
    const failed = await Promise.all((await jobsIn(queue, 'failed', limit)).map(async (j) => {
      const row = info(j, true);
      if ('unreadable' in j) return row;
      // A point fails because one of its subjects did: show that subject's error.
      const child = /^child bull:[^:]+:(\S+) failed$/.exec(j.failedReason ?? '')?.[1];
      const c = child ? await readJob(queue, child) : null;
      return c && c !== 'unreadable' ? { ...row, error: `${describe(c.data)} failed: ${c.failedReason}` } : row;
    }));
    return {
      queue: name,
      counts: { waiting: c.waiting + c.prioritized, active: c.active, done: c.completed, failed: c.failed, delayed: c.delayed, waitingChildren: c['waiting-children'] },
      active: (await jobsIn(queue, 'active', limit)).map((j) => info(j, false)),
      failed,
    };
  } finally {
    await queue.close();
    await connection.quit().catch(() => {});
  }
}

/** The status as text. */
export function formatQueueStatus(s: QueueStatus): string {
  const c = s.counts;
  const lines = [
    `queue ${s.queue}: ${c.waiting} waiting, ${c.active} active, ${c.done} done, ${c.failed} failed` +
      `${c.delayed ? `, ${c.delayed} delayed (to be retried)` : ''}${c.waitingChildren ? `, ${c.waitingChildren} points waiting for their subjects` : ''}`,
  ];
  if (s.active.length) lines.push('', 'active:', ...s.active.map((j) => `  ${j.job}  (${j.out}, attempt ${j.attempts + 1})`));
  if (s.failed.length) lines.push('', 'failed:', ...s.failed.map((j) => `  ${j.job}  (${j.out}, ${j.attempts} attempt${j.attempts === 1 ? '' : 's'}): ${j.error ?? ''}`));
  return lines.join('\n') + '\n';
}
