/**
 * The sweep's one calibration: a single calibration pass (and similarity matrix) of the original model
 * shared by every method, from which each method plans each removal count. The plans are written to
 * plans/METHOD-K.json and the similarity report to analysis.json, so that points computed later, in
 * other processes or on other machines, all use the same plans.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { analyzeIds, calibrationPrompts, methodContext, similarityJson, type Analysis } from '../compress/compress.ts';
import { getMethod } from '../compress/methods/registry.ts';
import type { CompressionPlan } from '../compress/plan.ts';
import { atomicWriteText } from '../io/atomic.ts';
import type { SweepContext } from './context.ts';
import { planFile, pointFile, type PointId } from './points.ts';

/** Points of the sweep (above 0 layers removed) that have neither a result nor a plan yet. */
export function unplannedPoints(out: string, methods: readonly string[], remove: readonly number[]): PointId[] {
  return methods.flatMap((method) => remove.filter((k) => k > 0).map((removed) => ({ method, removed })))
    .filter((p) => !existsSync(pointFile(out, p)) && !existsSync(planFile(out, p)));
}

/** Whether the sweep still needs its calibration step (missing plans, or a missing analysis.json for MKA). */
export function needsCalibration(out: string, methods: readonly string[], remove: readonly number[]): boolean {
  const needSim = methods.some((m) => getMethod(m).needsSimilarity);
  return unplannedPoints(out, methods, remove).length > 0 || (needSim && !existsSync(join(out, 'analysis.json')));
}

/**
 * Calibrates the original model once and writes the plan of every point that has neither a result nor
 * a plan, and analysis.json. Returns the seconds spent (0 when nothing was missing). Idempotent: the
 * same inputs write the same bytes.
 */
export async function calibrateSweep(ctx: SweepContext): Promise<number> {
  const { opts, original, tokenizer } = ctx;
  const log = opts.log ?? (() => {});
  const methods = opts.methods.map(getMethod);
  const todo = unplannedPoints(opts.out, opts.methods, opts.remove);
  const analysisPath = join(opts.out, 'analysis.json');
  const needSim = methods.some((m) => m.needsSimilarity);
  const needCal = todo.some((p) => getMethod(p.method).needsCalibration);
  if (!todo.length && !(needSim && !existsSync(analysisPath))) return 0;
  const t0 = performance.now();
  let analysis: Analysis | null = null;
  let ids: number[][] = [], labels: string[] = [];
  if (needCal || (needSim && !existsSync(analysisPath))) {
    ({ ids, labels } = calibrationPrompts(tokenizer, opts));
    analysis = analyzeIds(original, ids, labels, { ...opts, withSimilarity: needSim, log });
    if (analysis.similarity) {
      atomicWriteText(analysisPath, JSON.stringify(similarityJson(analysis.similarity, analysis.similarityOptions, {
        samples: analysis.calibration.n, representation: analysis.calibration.representation,
        block_influence: analysis.calibration.blockInfluence, prompts: labels,
      })));
    }
  }
  for (const method of methods) {
    const mine = todo.filter((p) => p.method === method.name);
    if (!mine.length) continue;
    const mctx = methodContext(original, analysis, { ...opts, out: '', method: method.name, remove: 0 }, ids, labels);
    for (const p of mine) atomicWriteText(planFile(opts.out, p), JSON.stringify(await method.plan(mctx, p.removed)) + '\n');
  }
  return (performance.now() - t0) / 1000;
}

/** The stored plan of a point, or null when the calibration step has not written it. */
export function readPlan(out: string, p: PointId): CompressionPlan | null {
  const f = planFile(out, p);
  return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as CompressionPlan) : null;
}
