/**
 * The compression pipeline that `mka compress`, `mka sweep` (and so `mka demo`) and the queue workers
 * all run, so that a stage is written once:
 *
 *   calibrate → analyse   (analyse.ts: prompts, one calibration pass, the similarity matrix)
 *   → plan                (here: every method's plan for every removal count asked for)
 *   → materialise → write (write.ts: the plan applied to the checkpoint, merge.json; or in memory for
 *                          a sweep point, compress/plan.ts)
 *   → evaluate            (a sweep point's MMLU run, sweep/point.ts)
 *
 * `planTargets` runs the first three for any set of (method, count) targets: compress asks for one,
 * a sweep for all of its points at once, sharing one calibration pass and one similarity matrix.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, disposeModel, type LlamaModel } from '../model/model.ts';
import { type LlamaConfig, readConfig } from '../model/config.ts';
import { checkModelFits } from '../model/memory-estimate.ts';
import { calibrationWorkload } from '../compress/calibration.ts';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer.ts';
import { UserError } from '../runtime/errors.ts';
import { DEFAULT_METRIC, DEFAULT_SIMILARITY } from '../compress/similarity/index.ts';
import { getMethod, parametersOf, planWith, type MethodParameters } from '../compress/methods/registry.ts';
import { protocolSettings } from '../compress/protocol.ts';
import type { MethodContext } from '../compress/methods/method.ts';
import { materialize, planSource, type CompressionPlan } from '../compress/merge-plan.ts';
import { modelSource } from '../weights/source.ts';
import { analyzeIds, calibrationPrompts, similarityOptionsFor, type Analysis, type AnalysisOptions } from './analyse.ts';
import { writePlan } from './write.ts';
import { flag } from '../runtime/options.ts';
import { REMOVE } from './options.ts';

export interface PipelineOptions extends AnalysisOptions {
  /** Each method's own parameters (MKA's strategy and norm blending), by method name. */
  params?: MethodParameters;
  /** Stream decoder layers from disk instead of loading them all. */
  streaming?: boolean;
}

/** One plan to make: `method` removing `removed` layers. */
export interface PlanTarget {
  method: string;
  removed: number;
}

export interface PlannedTargets {
  /** One plan per target, in order. */
  plans: CompressionPlan[];
  /** The calibration and similarity, when a target needed them (or `analyse` asked for them). */
  analysis: Analysis | null;
  labels: string[];
  /** Questions per subject drawn for calibration (null for a prompt file or without calibration). */
  perSubject: number | null;
}

/** Checks that `remove` layers can be removed from an L-layer model. */
export function checkRemove(remove: number, L: number): void {
  if (!Number.isInteger(remove) || remove < 0 || remove > L - 1) {
    throw new UserError(`${flag(REMOVE)} ${remove}: must be an integer from 0 to ${L - 1} for a ${L}-layer model`);
  }
}

/**
 * Builds the method's context from an analysis of the original model; with only a config (methods
 * that need no calibration), there is no recalibration.
 */
export function methodContext(model: LlamaModel | { config: LlamaConfig }, analysis: Analysis | null, opts: PipelineOptions, ids: number[][], labels: string[]): MethodContext {
  const log = opts.log ?? (() => {});
  const similarityOptions = analysis?.similarityOptions ?? { ...DEFAULT_SIMILARITY, ...opts.similarity };
  if (!('tensors' in model)) return { config: model.config, similarityOptions, biases: protocolSettings(opts.protocol).biases, log };
  return {
    config: model.config,
    calibration: analysis?.calibration,
    blockInfluence: analysis?.calibration.blockInfluence,
    similarity: analysis?.scores?.matrix,
    metric: analysis?.metric,
    similarityOptions,
    biases: protocolSettings(opts.protocol).biases,
    log,
    recalibrate: async (plan: CompressionPlan) => {
      // Streaming: the partly merged model is written to a temporary directory and streamed from it,
      // never held whole; otherwise it is built in memory.
      const scratch = opts.streaming && model.dir ? mkdtempSync(join(tmpdir(), 'mka-recalibrate-')) : null;
      try {
        if (scratch) await writePlan(model.dir!, plan, join(scratch, 'model'), {});
        const merged = scratch ? loadModel(join(scratch, 'model'), { streaming: true }) : materialize(planSource(modelSource(model), plan));
        try {
          return { similarity: analyzeIds(merged, ids, labels, { ...opts, withSimilarity: true }).scores!.matrix };
        } finally {
          disposeModel(merged);
        }
      } finally {
        if (scratch) rmSync(scratch, { recursive: true, force: true });
      }
    },
  };
}

/** Where the original model comes from: its directory, and what the caller has already loaded. */
export interface PipelineInput {
  dir: string;
  /** The original model, when the caller holds it (a sweep); else it is loaded here for calibration and freed. */
  model?: LlamaModel;
  tokenizer?: Tokenizer;
  /** The command, for the memory check's message. */
  command: string;
}

/**
 * Calibrate → analyse → plan for every target. The calibration pass runs once, and only when a
 * target's method needs it (or `analyse` is set: a sweep that must write its analysis.json); the
 * similarity options are checked against the prompt count and the memory estimate against the
 * available RAM before the model is loaded. Methods that need no calibration never load the model.
 */
export async function planTargets(input: PipelineInput, targets: readonly PlanTarget[], opts: PipelineOptions & { analyse?: boolean }): Promise<PlannedTargets> {
  const config = input.model?.config ?? readConfig(input.dir);
  for (const t of targets) checkRemove(t.removed, config.num_hidden_layers);
  const methods = targets.map((t) => getMethod(t.method));
  const active = (i: number) => targets[i].removed > 0;
  const needCalibration = opts.analyse || methods.some((m, i) => m.needsCalibration && active(i));
  if (!needCalibration) {
    const ctx = methodContext({ config }, null, opts, [], []);
    return { plans: await Promise.all(methods.map((m, i) => planWith(m, ctx, targets[i].removed, opts.params))), analysis: null, labels: [], perSubject: null };
  }
  const withSimilarity = opts.withSimilarity ?? methods.some((m, i) => m.needsSimilarity && active(i));
  const tokenizer = input.tokenizer ?? await loadTokenizer(input.dir);
  const { ids, labels, perSubject } = calibrationPrompts(tokenizer, opts);
  if (!input.model) checkModelFits(input.command, input.dir, calibrationWorkload(ids.map((r) => r.length), opts));
  if (withSimilarity) similarityOptionsFor(ids.length, opts); // before any model is loaded
  const model = input.model ?? loadModel(input.dir, { streaming: opts.streaming });
  try {
    const analysis = analyzeIds(model, ids, labels, { ...opts, withSimilarity });
    const ctx = methodContext(model, analysis, opts, ids, labels);
    const plans: CompressionPlan[] = [];
    for (const [i, m] of methods.entries()) plans.push(await planWith(m, ctx, targets[i].removed, opts.params));
    return { plans, analysis, labels, perSubject };
  } finally {
    if (!input.model) disposeModel(model);
  }
}

/** What a stored analysis (a sweep's analysis.json) holds for planning. */
export interface StoredAnalysis {
  /** Calibration prompts it was computed from. */
  samples: number;
  /** The metric and its matrix. */
  metric: string;
  matrix: (number | null)[][];
  blockInfluence: number[];
}

/**
 * Plans the targets from a stored analysis instead of a calibration pass, or returns null when some
 * target's method needs more than it holds (the calibration's hidden states, or the model), or it holds
 * another metric's matrix. The similarity options are those the stored analysis was computed with (the
 * same options, the same prompt count).
 */
export async function planFromStored(config: LlamaConfig, targets: readonly PlanTarget[], stored: StoredAnalysis, opts: PipelineOptions): Promise<CompressionPlan[] | null> {
  const methods = targets.map((t) => getMethod(t.method));
  if (stored.metric !== (opts.metric ?? DEFAULT_METRIC)) return null; // another metric's matrix: calibrate again
  if (!methods.every((m) => m.plansFromSummary(parametersOf(m, opts.params)))) return null;
  for (const t of targets) checkRemove(t.removed, config.num_hidden_layers);
  const ctx: MethodContext = {
    config, similarity: stored.matrix, metric: stored.metric, blockInfluence: stored.blockInfluence, similarityOptions: similarityOptionsFor(stored.samples, opts),
    biases: protocolSettings(opts.protocol).biases, log: opts.log ?? (() => {}),
  };
  const plans: CompressionPlan[] = [];
  for (const [i, m] of methods.entries()) plans.push(await planWith(m, ctx, targets[i].removed, opts.params));
  return plans;
}
