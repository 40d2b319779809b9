/**
 * What a worker does with one sweep job (jobs.ts). A JobRunner keeps the last sweep it worked on
 * loaded (tokenizer, data, original model) and the last point's model built, so consecutive subject
 * jobs of a point cost only their evaluation. Every file a job writes is written atomically and is
 * the same when the job runs twice.
 */
import type { LlamaModel } from '../model/model.ts';
import { openSweep, sweepKey, type SweepContext } from '../sweep/context.ts';
import { joinSharedOutput } from '../io/output-dir.ts';
import { calibrateSweep } from '../sweep/calibrate.ts';
import { disposePointModel, pointModel, runPoint, runPointShard } from '../sweep/point.ts';
import { pointName, type PointId } from '../sweep/points.ts';
import type { SubjectJobResult, SweepJob } from './jobs.ts';

/** Runs jobs one at a time, reusing what the previous job loaded. */
export class JobRunner {
  private sweep: { key: string; ctx: SweepContext; release: () => void } | null = null;
  private point: { name: string; model: LlamaModel } | null = null;

  constructor(private readonly quiet: boolean, private readonly log: (msg: string) => void) {}

  private async context(job: SweepJob): Promise<SweepContext> {
    const key = `${sweepKey(job.sweep)}\0${job.sweep.out}`;
    if (this.sweep?.key !== key) {
      this.release();
      const ctx = await openSweep({ ...job.sweep, quiet: this.quiet, log: this.log });
      // workers write into the sweep beside each other, without its lock: this one records itself there
      // and first removes what killed workers and --point runs of this host left (io/output-dir.ts)
      const writer = joinSharedOutput(job.sweep.out, 'sweep', 'worker', (m) => this.log(`worker: ${m}`));
      this.sweep = { key, ctx, release: writer.release };
    }
    return this.sweep.ctx;
  }

  private async model(ctx: SweepContext, p: PointId): Promise<LlamaModel> {
    if (this.point?.name !== pointName(p)) {
      if (this.point) disposePointModel(ctx, this.point.model);
      this.point = null;
      this.point = { name: pointName(p), model: (await pointModel(ctx, p)).model };
    }
    return this.point.model;
  }

  /**
   * Runs a job. `childrenValues` gives a point job its subject jobs' results. Returns what the job
   * returns to the queue: { seconds } for calibration and subjects, the results.csv row for a point.
   */
  async run(job: SweepJob, childrenValues: () => Promise<Record<string, SubjectJobResult>>): Promise<unknown> {
    const ctx = await this.context(job);
    if (job.kind === 'calibration') return { seconds: await calibrateSweep(ctx) };
    if (job.kind === 'subject' || job.kind === 'shard') {
      const shard = job.kind === 'subject' ? { task: 'mmlu' as const, subject: job.subject } : { task: job.task, subtask: job.subtask, index: job.index };
      const seconds = await runPointShard(ctx, job.point, shard, await this.model(ctx, job.point));
      return { seconds } satisfies SubjectJobResult;
    }
    const priorSeconds = Object.values(await childrenValues()).reduce((s, r) => s + (r?.seconds ?? 0), 0);
    return runPoint(ctx, job.point, { model: await this.model(ctx, job.point), priorSeconds });
  }

  /** Frees the loaded models. */
  release(): void {
    if (this.point && this.sweep) disposePointModel(this.sweep.ctx, this.point.model);
    this.sweep?.ctx.dispose();
    this.sweep?.release();
    this.point = null;
    this.sweep = null;
  }
}
