/**
 * The paper's experiment in one call: MMLU accuracy of every method at every removal count.
 *
 * It runs the compression pipeline of `mka compress` (src/pipeline/plan-targets.ts) for all of its points at
 * once: one calibration pass and one similarity matrix shared by every method, from which each
 * method plans every count (calibrate.ts). Compressed models are built in memory from the plan (the
 * same tensors `mka compress` writes) and evaluated with the original as reference model (point.ts);
 * the uncompressed model is evaluated once, without a reference. The report is assembled from the
 * finished points on disk (assemble.ts).
 *
 * Resumable: plans are saved in `OUT/plans/`, each finished point in `OUT/points/`, each evaluation
 * keeps its own resumable results directory in `OUT/eval/`; a rerun of the same command skips what is
 * done and, its plans being stored, does not calibrate again; points added later are planned from
 * `OUT/analysis.json` when their methods need nothing else (calibrate.ts). The same steps run one
 * point at a time (`--point`) or as queue jobs on many machines (src/queue/).
 */
import type { SweepOptions, SweepPoint } from './types.ts';
import { openSweep } from './context.ts';
import { calibrateSweep } from './calibrate.ts';
import { runPoint } from './point.ts';
import { sweepPoints } from './points.ts';
import { assembleSweepReport } from './assemble.ts';
import { readStoredPoint } from './point.ts';
import { EvaluationInterrupted } from '../eval/mmlu/evaluate.ts';
import { PplInterrupted } from '../eval/ppl/evaluate.ts';
import { TasksInterrupted } from '../eval/tasks/evaluate.ts';

export type { SweepOptions, SweepSettings, SweepPoint } from './types.ts';

/** Thrown when the sweep's signal aborts it; every finished point (and subject) is saved, and rerunning resumes. */
export class SweepInterrupted extends Error {
  constructor(readonly pointsDone: number, readonly pointsTotal: number) {
    super(`sweep interrupted with ${pointsDone} of ${pointsTotal} points done`);
    this.name = 'SweepInterrupted';
  }
}

/** Runs `step`, turning an interrupted evaluation (or an abort between points) into SweepInterrupted. */
export async function interruptible<T>(opts: SweepOptions, step: () => Promise<T>): Promise<T> {
  const points = sweepPoints(opts.methods, opts.remove, opts.quantize);
  const stopped = () => new SweepInterrupted(points.filter((p) => readStoredPoint(opts.out, p)).length, points.length);
  if (opts.signal?.aborted) throw stopped();
  try {
    return await step();
  } catch (e) {
    if (e instanceof EvaluationInterrupted || e instanceof PplInterrupted || e instanceof TasksInterrupted) throw stopped();
    throw e;
  }
}

/**
 * Runs (or resumes) a sweep in this process and writes results.csv/json, the charts, summary.md and
 * run.json: the calibration step, every point, then the report from what is on disk.
 */
export async function runSweep(opts: SweepOptions): Promise<SweepPoint[]> {
  const started = Date.now();
  const ctx = await openSweep(opts);
  try {
    const analysis = await calibrateSweep(ctx);
    for (const p of sweepPoints(opts.methods, opts.remove, opts.quantize)) await interruptible(opts, () => runPoint(ctx, p));
    return await assembleSweepReport(opts, { seconds: { total: (Date.now() - started) / 1000, ...(analysis ? { analysis } : {}) }, compute: ctx.original.compute });
  } finally {
    ctx.dispose();
  }
}
