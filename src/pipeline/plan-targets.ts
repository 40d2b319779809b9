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
import { removeOnExit } from '../io/cleanup.ts';
import { join } from 'node:path';
import { loadModel, disposeModel, type LlamaModel } from '../model/model.ts';
import { type LlamaConfig, readConfig } from '../model/config.ts';
import { checkModelFits } from '../model/memory-estimate.ts';
import { calibrationWorkload } from '../compress/calibration.ts';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer.ts';
import { UserError } from '../runtime/errors.ts';
import { DEFAULT_METRIC } from '../compress/similarity/index.ts';
import { getMethod, needsCalibrationPass, needsPrompts, needsSimilarity, parametersOf, plansFromSummary, type MethodParameters } from '../compress/methods/registry.ts';
import { protocolSettings } from '../compress/protocol.ts';
import type { AnyMethod, InputName, MethodContext, MethodInputs, SimilarityInput } from '../compress/methods/method.ts';
import { identityPlan, planSource, type CompressionPlan } from '../compress/merge-plan.ts';
import { materialize } from '../compress/plan-model.ts';
import { checkpointSource, modelSource } from '../weights/source.ts';
import { analyzeIds, calibrationPrompts, similarityOptionsFor, type Analysis, type AnalysisOptions } from './analyse.ts';
import { writePlan } from './write.ts';
import { weightGradients } from './gradients.ts';
import { planScorer } from './scorer.ts';
import { fitLambdas } from './fit-lambda.ts';
import { flag } from '../runtime/options.ts';
import { REMOVE } from './options.ts';

export interface PipelineOptions extends AnalysisOptions {
  /** Each method's own parameters (by method name, then parameter name); the methods' defaults fill in the rest. */
  params?: MethodParameters;
  /** Stream decoder layers from disk instead of loading them all. */
  streaming?: boolean;
  /** Refit each two-layer merge's λ on the calibration activations after planning (fit-lambda.ts). */
  fitLambda?: boolean;
}

/** One plan to make: `method` removing `removed` layers. */
export interface PlanTarget {
  method: string;
  removed: number;
}

export interface PlannedTargets {
  /** One plan per target, in order. */
  plans: CompressionPlan[];
  /** The calibration pass and similarity, when a target needed them (or `analyse` asked for them). */
  analysis: Analysis | null;
  /** The calibration prompts the methods ran on (null when none did): their number and real tokens. */
  prompts: { n: number; tokens: number } | null;
  labels: string[];
  /** The calibration prompts' token ids (null when none ran). */
  ids: number[][] | null;
  /** Questions per subject drawn for calibration (null for a prompt file or without calibration). */
  perSubject: number | null;
}

/** Checks that `remove` layers can be removed from an L-layer model. */
export function checkRemove(remove: number, L: number): void {
  if (!Number.isInteger(remove) || remove < 0 || remove > L - 1) {
    throw new UserError(`${flag(REMOVE)} ${remove}: must be an integer from 0 to ${L - 1} for a ${L}-layer model`);
  }
}

/** Where each input comes from: a getter the pipeline calls the first time a method reads that input. */
export type InputSources = { [K in InputName]?: () => MethodInputs[K] };

/**
 * The context of `method`: exactly its declared inputs, each computed on first read from `sources`. An
 * input the pipeline cannot give here (a stored analysis has no model) is never read by a method whose
 * `needs` left it out; reading it anyway is a bug in mka, reported as such.
 */
export function methodContext(method: AnyMethod, config: LlamaConfig, sources: InputSources, opts: PipelineOptions): MethodContext {
  const inputs: Partial<Record<InputName, unknown>> = {};
  for (const k of method.inputs) {
    let value: unknown, done = false;
    Object.defineProperty(inputs, k, {
      enumerable: true,
      get: () => {
        if (!done) {
          const source = sources[k];
          if (!source) throw new Error(`${method.name}: its input "${k}" is not available here (the method's needs() left it out)`);
          value = source();
          done = true;
        }
        return value;
      },
    });
  }
  return { config, biases: protocolSettings(opts.protocol).biases, log: opts.log ?? (() => {}), inputs: inputs as MethodInputs };
}

/** `method`'s plan removing `removed` layers (the identity for 0), its resolved parameters recorded in the plan. */
export async function planMethod(method: AnyMethod, config: LlamaConfig, sources: InputSources, removed: number, opts: PipelineOptions): Promise<CompressionPlan> {
  const params = parametersOf(method, opts.params);
  const plan = removed === 0 ? identityPlan(method.name, config.num_hidden_layers) : await method.plan(methodContext(method, config, sources, opts), removed, params);
  if (Object.keys(params).length) plan.details = { ...plan.details, parameters: params };
  return plan;
}

/** The similarity matrix of a partly compressed model (recalibrated on the same prompts, same metric and options). */
function recalibrator(model: LlamaModel, ids: number[][], labels: string[], opts: PipelineOptions): (plan: CompressionPlan) => Promise<SimilarityInput> {
  return async (plan) => {
    // Streaming: the partly merged model is written to a temporary directory and streamed from it,
    // never held whole; otherwise it is built in memory.
    const scratch = opts.streaming && model.dir ? mkdtempSync(join(tmpdir(), 'mka-recalibrate-')) : null;
    const dispose = scratch ? removeOnExit(scratch) : () => {}; // also when the run is ended by a signal
    try {
      if (scratch) await writePlan(model.dir!, plan, join(scratch, 'model'), {});
      const merged = scratch ? loadModel(join(scratch, 'model'), { streaming: true }) : materialize(planSource(modelSource(model), plan));
      try {
        const a = analyzeIds(merged, ids, labels, { ...opts, withSimilarity: true });
        return { matrix: a.scores!.matrix, metric: a.metric, options: a.similarityOptions };
      } finally {
        disposeModel(merged);
      }
    } finally {
      if (scratch) rmSync(scratch, { recursive: true, force: true });
      dispose();
    }
  };
}

/** The inputs a loaded original model gives: the calibration pass's, the model's weights, and what runs the model. */
function modelSources(model: LlamaModel, analysis: Analysis | null, ids: number[][], labels: string[], opts: PipelineOptions): InputSources {
  const cal = analysis?.calibration;
  return {
    ...(analysis?.scores ? { similarity: () => ({ matrix: analysis.scores!.matrix, metric: analysis.metric, options: analysis.similarityOptions }) } : {}),
    ...(cal ? { blockInfluence: () => cal.blockInfluence, lastStates: () => ({ n: cal.n, hiddenSize: cal.hiddenSize, states: cal.lastStates }) } : {}),
    weights: () => modelSource(model),
    recalibrate: () => recalibrator(model, ids, labels, opts),
    gradients: () => (g = {}) => weightGradients(model, g.maxTokens ? ids.map((r) => r.slice(0, g.maxTokens)) : ids, { microBatch: opts.microBatch, log: opts.log }),
    scorer: () => planScorer(model, ids, { microBatch: opts.microBatch }),
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
  /**
   * Runs once the calibration prompts are drawn, before the model is loaded for their pass: a later
   * stage's own checks (compress --quantize: the quantizer's memory on the same questions).
   */
  beforePass?: (drawn: { ids: number[][]; labels: string[]; perSubject: number | null }) => Promise<void>;
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
  methods.forEach((m) => parametersOf(m, opts.params)); // the parameters are checked before any work
  const active = methods.filter((_, i) => targets[i].removed > 0);
  const planAll = async (sources: InputSources) => {
    const plans: CompressionPlan[] = [];
    for (const [i, m] of methods.entries()) plans.push(await planMethod(m, config, sources, targets[i].removed, opts));
    return plans;
  };
  if (!opts.analyse && !active.some((m) => needsPrompts(m, opts.params))) {
    // (no such method merges with a λ, so there is nothing for --fit-lambda to fit)
    // no method runs the model: what they read comes from the checkpoint (or the caller's model), one tensor at a time
    const checkpoint = input.model ? null : active.length ? checkpointSource(input.dir) : null;
    try {
      const weights = input.model ? modelSource(input.model) : checkpoint;
      const plans = await planAll(weights ? { weights: () => weights } : {});
      return { plans, analysis: null, prompts: null, labels: [], ids: null, perSubject: null };
    } finally {
      checkpoint?.close();
    }
  }
  const pass = opts.analyse || active.some((m) => needsCalibrationPass(m, opts.params));
  const withSimilarity = opts.withSimilarity ?? active.some((m) => needsSimilarity(m, opts.params));
  const tokenizer = input.tokenizer ?? await loadTokenizer(input.dir);
  const { ids, labels, perSubject } = calibrationPrompts(tokenizer, opts, readConfig(input.dir).max_position_embeddings);
  if (!input.model) checkModelFits(input.command, input.dir, calibrationWorkload(ids.map((r) => r.length), opts));
  if (withSimilarity) similarityOptionsFor(ids.length, opts); // before any model is loaded
  await input.beforePass?.({ ids, labels, perSubject: perSubject ?? null });
  const model = input.model ?? loadModel(input.dir, { streaming: opts.streaming });
  try {
    const analysis = pass ? analyzeIds(model, ids, labels, { ...opts, withSimilarity }) : null;
    let plans = await planAll(modelSources(model, analysis, ids, labels, opts));
    if (opts.fitLambda) plans = plans.map((p) => fitLambdas(model, p, ids, { microBatch: opts.microBatch, log: opts.log }));
    return { plans, analysis, prompts: { n: ids.length, tokens: ids.reduce((a, r) => a + r.length, 0) }, labels, ids, perSubject };
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
  if (opts.fitLambda) return null; // fitting runs the model
  if (!methods.every((m) => plansFromSummary(m, opts.params))) return null;
  for (const t of targets) checkRemove(t.removed, config.num_hidden_layers);
  const similarity: SimilarityInput = { matrix: stored.matrix, metric: stored.metric, options: similarityOptionsFor(stored.samples, opts) };
  const sources: InputSources = { similarity: () => similarity, blockInfluence: () => stored.blockInfluence };
  const plans: CompressionPlan[] = [];
  for (const [i, m] of methods.entries()) plans.push(await planMethod(m, config, sources, targets[i].removed, opts));
  return plans;
}
