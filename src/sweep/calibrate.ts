/**
 * The sweep's one calibration: a single calibration pass (and similarity matrix) of the original model
 * shared by every method, from which each method plans each removal count. The plans are written to
 * plans/METHOD-K.json and the similarity report to analysis.json, so that points computed later, in
 * other processes or on other machines, all use the same plans. Points added to the sweep later are
 * planned from analysis.json without a calibration pass when their methods need only what it holds.
 */
import { existsSync } from 'node:fs';
import { similarityJson } from '../pipeline/compress.ts';
import { getMethod, needsSimilarity, type MethodParameters } from '../compress/methods/registry.ts';
import { planFromStored, planTargets } from '../pipeline/plan-targets.ts';
import { analysisFile, readAnalysis } from './analysis-file.ts';
import type { CompressionPlan } from '../compress/merge-plan.ts';
import { atomicWriteText } from '../io/atomic.ts';
import type { SweepContext } from './context.ts';
import { planFile, pointFile, withQuantize, type PointId } from './points.ts';
import { readChecked } from '../io/schema.ts';
import { UserError } from '../runtime/errors.ts';
import { COMPRESSION_PLAN, mixProblem } from '../compress/plan-file.ts';

/** Points of the sweep (above 0 layers removed, without quantization) that have no plan yet while one of their quantizations has no result. */
export function unplannedPoints(out: string, methods: readonly string[], remove: readonly number[], quantize: readonly string[] = ['none']): PointId[] {
  return methods.flatMap((method) => remove.filter((k) => k > 0).map((removed) => ({ method, removed })))
    .filter((p) => !existsSync(planFile(out, p)) && quantize.some((q) => !existsSync(pointFile(out, withQuantize(p, q)))));
}

/** Whether the sweep still needs its calibration step (missing plans, or a missing analysis.json for MKA). */
export function needsCalibration(out: string, methods: readonly string[], remove: readonly number[], params?: MethodParameters, quantize?: readonly string[]): boolean {
  const needSim = methods.some((m) => needsSimilarity(getMethod(m), params));
  return unplannedPoints(out, methods, remove, quantize).length > 0 || (needSim && !existsSync(analysisFile(out)));
}

/**
 * Calibrates the original model once and writes the plan of every point that has neither a result nor
 * a plan, and analysis.json. Returns the seconds spent (0 when nothing was missing). Idempotent: the
 * same inputs write the same bytes.
 */
export async function calibrateSweep(ctx: SweepContext): Promise<number> {
  const { opts, original, tokenizer } = ctx;
  const todo = unplannedPoints(opts.out, opts.methods, opts.remove, opts.quantize);
  const analysisPath = analysisFile(opts.out);
  const needSim = opts.methods.some((m) => needsSimilarity(getMethod(m), opts.params));
  const analyse = needSim && !existsSync(analysisPath);
  if (!todo.length && !analyse) return 0;
  const t0 = performance.now();
  // Points added to a sweep (a new count or method) are planned from analysis.json when it holds all their methods need.
  const stored = analyse ? null : readAnalysis(opts.out, original.config.num_hidden_layers)?.planning ?? null;
  const fromStored = stored && await planFromStored(original.config, todo, stored, opts);
  if (fromStored) {
    todo.forEach((p, i) => atomicWriteText(planFile(opts.out, p), JSON.stringify(fromStored[i]) + '\n'));
    opts.log?.(`sweep: ${todo.length} new point${todo.length > 1 ? 's' : ''} planned from ${analysisPath} (no calibration pass)`);
    return (performance.now() - t0) / 1000;
  }
  const planned = await planTargets({ dir: opts.model, model: original, tokenizer, command: 'sweep' }, todo, { ...opts, withSimilarity: needSim, analyse });
  const a = planned.analysis;
  if (a?.scores) {
    atomicWriteText(analysisPath, JSON.stringify(similarityJson(a.metric, a.scores, a.similarityOptions, {
      samples: a.calibration.n, representation: a.calibration.representation,
      block_influence: a.calibration.blockInfluence, prompts: planned.labels,
    })));
  }
  todo.forEach((p, i) => atomicWriteText(planFile(opts.out, p), JSON.stringify(planned.plans[i]) + '\n'));
  return (performance.now() - t0) / 1000;
}

/** Why `plan` cannot be a plan of a model of `layers` decoder layers, or null when it can. */
function planProblem(plan: CompressionPlan, layers: number): string | null {
  if (plan.originalLayers !== layers) return `it is for a model of ${plan.originalLayers} layers, the sweep's has ${layers}`;
  if (plan.layers.length < 1 || plan.layers.length > layers) return `it keeps ${plan.layers.length} layers`;
  for (const [k, l] of plan.layers.entries()) {
    const problem = mixProblem(l, layers);
    if (problem) return `layers[${k}]: ${problem}`;
  }
  return null;
}

/**
 * The stored plan of a point, or null when the calibration step has not written it; `layers` (the
 * model's decoder layers) refuses a plan that cannot be applied to it (an edited or misplaced file).
 */
export function readPlan(out: string, p: PointId, layers?: number): CompressionPlan | null {
  const f = planFile(out, p);
  if (!existsSync(f)) return null;
  const fix = 'delete it, and the sweep plans the point again';
  const plan = readChecked(f, COMPRESSION_PLAN, 'sweep plan file', fix) as CompressionPlan;
  const problem = layers === undefined ? null : planProblem(plan, layers);
  if (problem) throw new UserError(`${f}: not a plan this sweep's model can take (${problem}); ${fix}`);
  return plan;
}
