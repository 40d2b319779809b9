/**
 * A sweep one step at a time, for clusters without a job queue (a Slurm array, a Kubernetes Job):
 * `--list-points` names the points, `--point ID` computes exactly one into the shared results
 * directory, `--report` assembles the report once all are there (assemble.ts). A `--point` run takes
 * no lock (many run at once): it records itself as a writer of the directory and first removes what
 * killed runs of this host left there (io/output-dir.ts joinSharedOutput).
 */
import { openSweep, prepareSweep } from './context.ts';
import { joinSharedOutput } from '../io/output-dir.ts';
import { flag } from '../runtime/options.ts';
import { POINT } from './options.ts';
import { calibrateSweep } from './calibrate.ts';
import { runPoint } from './point.ts';
import { parsePoint, pointLabel, sweepPoints } from './points.ts';
import { interruptible } from './sweep.ts';
import type { SweepOptions, SweepPoint } from './types.ts';

/** The sweep's points in the order a local sweep computes them ("original", "mka:1", ...). */
export function listSweepPoints(opts: SweepOptions): string[] {
  prepareSweep(opts);
  return sweepPoints(opts.methods, opts.remove, opts.quantize).map(pointLabel);
}

/**
 * Computes one point (or, with "calibration", only the shared calibration step that writes every
 * plan). A point whose plan is missing runs the calibration itself first. Returns the point's row.
 */
export async function runSweepPoint(opts: SweepOptions, id: string): Promise<SweepPoint | null> {
  const point = id === 'calibration' ? null : parsePoint(id, opts.methods, opts.remove, opts.quantize);
  const ctx = await openSweep(opts);
  const writer = joinSharedOutput(opts.out, 'sweep', `sweep ${flag(POINT)} ${id}`, (m) => opts.log?.(`sweep: ${m}`));
  try {
    if (!point) {
      await calibrateSweep(ctx);
      return null;
    }
    return await interruptible(opts, () => runPoint(ctx, point));
  } finally {
    writer.release();
    ctx.dispose();
  }
}
