/** `mka queue status`: how many jobs wait, run, are done or failed, and the errors of the failed ones. */
import { Queue } from 'bullmq';
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

function describe(d: SweepJob): string {
  if (d.kind === 'calibration') return 'calibration';
  if (d.kind === 'shard') return `${pointLabel(d.point)} ${d.subtask === d.task ? d.task : d.subtask} ${d.index}`;
  return d.kind === 'point' ? `point ${pointLabel(d.point)}` : `${pointLabel(d.point)} ${d.subject}`;
}

/** Counts of the queue's jobs, the running ones and the failed ones (most recent first, up to `limit`). */
export async function queueStatus(q: QueueAddress & { limit?: number }): Promise<QueueStatus> {
  const { url, name } = checkAddress(q);
  const connection = await connectRedis(url);
  const queue = new Queue<SweepJob>(name, { connection });
  try {
    const c = await queue.getJobCounts('waiting', 'prioritized', 'active', 'completed', 'failed', 'delayed', 'waiting-children');
    const info = (j: { id?: string; data: SweepJob; attemptsMade: number; failedReason?: string }, withError: boolean): JobInfo => ({
      id: j.id!, job: describe(j.data), out: j.data.sweep.out, attempts: j.attemptsMade, ...(withError ? { error: j.failedReason } : {}),
    });
    const limit = q.limit ?? 50;
    const failed = await Promise.all((await queue.getJobs(['failed'], 0, limit - 1)).map(async (j) => {
      const row = info(j, true);
      // A point fails because one of its subjects did: show that subject's error.
      const child = /^child bull:[^:]+:(\S+) failed$/.exec(j.failedReason ?? '')?.[1];
      const c = child ? await queue.getJob(child) : undefined;
      return c ? { ...row, error: `${describe(c.data)} failed: ${c.failedReason}` } : row;
    }));
    return {
      queue: name,
      counts: { waiting: c.waiting + c.prioritized, active: c.active, done: c.completed, failed: c.failed, delayed: c.delayed, waitingChildren: c['waiting-children'] },
      active: (await queue.getJobs(['active'], 0, limit - 1)).map((j) => info(j, false)),
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
