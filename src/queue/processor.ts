/**
 * The sandboxed processor of `mka worker`: BullMQ runs it in a child process of the worker, so the
 * worker's own event loop stays free to renew the lock of the running job however long a computation
 * blocks this process (the calibration pass of a large model runs for minutes without yielding).
 *
 * This process exists only to run jobs: the JobRunner below is its state, kept between jobs on
 * purpose (the loaded models). Its settings come from the worker in MKA_WORKER (JSON).
 */
import { UnrecoverableError, type SandboxedJob } from 'bullmq';
import { initBackend, type BackendChoice, type ComputeChoice } from '../runtime/backend.ts';
import { UserError } from '../runtime/errors.ts';
import { JobRunner } from './run-job.ts';
import { checkJob } from './payload.ts';
import type { SubjectJobResult, SweepJob } from './jobs.ts';

/** What the worker passes to its processor process. */
export interface ProcessorSettings {
  backend: BackendChoice;
  threads?: number;
  compute?: ComputeChoice;
  quiet: boolean;
  /** Directory every path of a job must lie in (payload.ts). */
  root: string;
}

const settings = JSON.parse(process.env.MKA_WORKER ?? JSON.stringify({ backend: 'auto', quiet: false, root: process.cwd() })) as ProcessorSettings;
const log = (msg: string) => {
  if (!settings.quiet) process.stderr.write(`${msg}\n`);
};
const ready = initBackend(settings.backend, { threads: settings.threads, compute: settings.compute, log });
const runner = new JobRunner(settings.quiet, log);

// The worker is gone (killed): its job's lock will expire and another worker retries the job. The
// stderr this process shares with it may be gone with it: a write failing with EPIPE ends this process too.
const orphaned = () => {
  if (!process.connected) process.exit(1);
};
process.on('disconnect', orphaned);
setInterval(orphaned, 1000).unref();
orphaned();
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => process.exit(1));

/** Runs one job; a user error (bad file, bad option) fails it for good, since it would fail again. */
export default async function processJob(job: SandboxedJob<SweepJob>): Promise<unknown> {
  try {
    const data = checkJob(job.data, settings.root);
    await ready;
    return await runner.run(data, () => job.getChildrenValues() as Promise<Record<string, SubjectJobResult>>);
  } catch (e) {
    if (e instanceof UserError) throw new UnrecoverableError(e.message);
    throw e;
  }
}
