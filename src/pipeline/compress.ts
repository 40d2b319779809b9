/**
 * `mka compress` and `mka similarity` as library calls. Compression runs the pipeline
 * (src/pipeline/plan-targets.ts: calibrate → analyse → plan, then write) for one method and count, or
 * replays a recorded plan (a merge.json, compress/plan-file.ts) on the original model without
 * calibrating. The sweep runs the same pipeline for all of its points at once.
 */
import { describeJson, isPlainObject, parseJsonText, readTextFile } from '../io/read.ts';
import { UserError } from '../runtime/errors.ts';
import { progress } from '../runtime/progress.ts';
import { DEFAULT_METRIC, degenerateKernelWarning, fusionRatio, getSimilarityMetric, gramFromActivations, resolveOptions, type MetricResult, type SimilarityOptions } from '../compress/similarity/index.ts';
import type { CompressionPlan } from '../compress/merge-plan.ts';
import type { HfDtype } from '../weights/hf-writer.ts';
import type { AnalysisOptions } from './analyse.ts';
import { planTargets, type PipelineOptions } from './plan-targets.ts';
import { outputDtype, planFiles, writePlan } from './write.ts';
import { checkQuantizeFits, quantCalibration, quantizeSourceTo, type MergeCalibration, type QuantCalibration } from './quantize.ts';
import type { CalibrationSource } from './analyse.ts';
import { planSource } from '../compress/merge-plan.ts';
import { checkpointSource } from '../weights/source.ts';
import { readConfig } from '../model/config.ts';
import { quantizationName, type Quantization } from '../quant/registry.ts';
import { readPlanFile, type RecordedPlan } from '../compress/plan-file.ts';
import { flag, valueOf } from '../runtime/options.ts';
import { CALIBRATION_SEED, PROTOCOL } from '../compress/options.ts';
import { PLAN } from './options.ts';
import { METRIC } from '../compress/similarity/registry.ts';

/**
 * The similarity report written by `mka similarity` (sim.json) and a sweep (analysis.json): the metric,
 * its matrix under the metric's name, and for NPIB its whole stage (embeddings, entropies, fusion ratios,
 * kernel diagnostics), which other metrics do not compute.
 */
export function similarityJson(metric: string, r: MetricResult, opts: SimilarityOptions, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const sim = r.npib;
  if (!sim) {
    return {
      metric, params: { beta: opts.beta }, ...extra, [metric]: r.matrix, undefined_pairs: r.undefinedPairs,
      not_applicable: `diffusion embeddings, entropies, fusion ratios and kernel diagnostics belong to ${flag(METRIC)} npib`,
    };
  }
  const L = sim.npib.length;
  const fusion: Record<string, number | null> = {};
  for (let i = 0; i + 1 < L; i++) {
    try {
      fusion[`${i},${i + 1}`] = fusionRatio(sim.npib, i, i + 1, opts.beta);
    } catch {
      fusion[`${i},${i + 1}`] = null;
    }
  }
  return {
    metric,
    params: { sigma: opts.sigma, alpha: opts.alpha, d: opts.dims, k_mi: opts.kMi, k_entropy: opts.kEntropy, beta: opts.beta },
    ...extra,
    eigenvalues: sim.eigenvalues,
    embeddings: sim.embeddings,
    rank_embeddings: sim.rankEmbeddings,
    entropy: sim.entropy,
    npib: sim.npib,
    undefined_pairs: sim.undefinedPairs,
    fusion_ratio: fusion,
    solver: sim.solver,
    kernel: sim.kernel.map((k) => ({
      sigma: k.sigma, median_distance: k.medianDistance, off_diagonal: k.offDiagonal, spectral_gap: k.spectralGap, degenerate: k.degenerate,
    })),
  };
}

export interface CompressOptions extends PipelineOptions {
  model: string;
  out: string;
  method: string;
  remove: number;
  dtype?: HfDtype;
  /** Quantize the compressed model (`--quantize gptq:w4g128`); null or absent: write floats. */
  quantize?: Quantization | null;
  /** Dev examples before each of the merge's questions in the quantizer's calibration (default 5; 0: the merge's own prompts). */
  quantizeShots?: number;
}

/**
 * Writes the compressed model: the plan applied to the checkpoint as floats (writePlan), or with
 * `quantize`, the merged layers quantized one at a time as the plan makes them (nothing merged is
 * held whole), with merge.json and mergekit.yaml of the plan beside quantize.json; the card says both.
 */
async function writeOutput(
  opts: Pick<CompressOptions, 'model' | 'out' | 'dtype' | 'quantize' | 'quantizeShots' | 'quiet' | 'log'> & CalibrationSource & { microBatch?: number },
  plan: CompressionPlan, extra: Record<string, unknown>, merge: MergeCalibration | null = null, calibration?: QuantCalibration,
): Promise<void> {
  if (!opts.quantize) return writePlan(opts.model, plan, opts.out, { dtype: opts.dtype, extra, log: opts.log });
  const original = checkpointSource(opts.model);
  try {
    const files = planFiles(opts.model, plan, outputDtype(original.config, opts.dtype), opts.out, { extra });
    const removed = plan.originalLayers - plan.layers.length;
    await quantizeSourceTo(planSource(original, plan), {
      ...opts, command: 'compress', shots: opts.quantizeShots, quantization: opts.quantize, microBatch: opts.microBatch, merge, calibration,
      extraFiles: { 'merge.json': files['merge.json'], 'mergekit.yaml': files['mergekit.yaml'] },
      card: {
        compression: JSON.parse(files['merge.json']) as Record<string, unknown>,
        summary: `${opts.model} with ${removed} of its ${plan.originalLayers} decoder layers removed by \`${plan.method}\`, then quantized by \`${quantizationName(opts.quantize)}\`.`,
        files: {
          'merge.json': `the plan: each layer's original layers and weights (mka compress ${flag(PLAN)} replays it, as floats)`,
          'mergekit.yaml': 'the plan as a mergekit config (passthrough slices), or why mergekit cannot express it; mergekit does not quantize',
        },
      },
    });
  } finally {
    original.close();
  }
}

/**
 * `mka compress`: calibration, similarity and the merge or pruning in one go. Returns the plan. The
 * model is loaded only for the calibration pass and released before the output is written from the
 * checkpoint; methods without calibration (reverse) never load it.
 */
export async function compressModel(opts: CompressOptions): Promise<CompressionPlan> {
  const log = opts.log ?? (() => {});
  const q = opts.quantize;
  let calibration: QuantCalibration | undefined;
  // the quantizer calibrates on the merge's questions: drawn (and its memory checked) before the merge's pass runs
  const beforePass = q ? async (drawn: { ids: number[][]; labels: string[]; perSubject: number | null }) => {
    calibration = await quantCalibration(opts.model, q, { ...opts, shots: opts.quantizeShots }, { labels: opts.calibrationFile ? [] : drawn.labels, ids: drawn.ids });
    const config = readConfig(opts.model);
    checkQuantizeFits('compress', opts.model, { ...config, num_hidden_layers: config.num_hidden_layers - opts.remove }, q, calibration, {
      microBatch: opts.microBatch, perSubject: drawn.perSubject ?? undefined, microBatchOption: true,
    });
  } : undefined;
  const planned = await planTargets({ dir: opts.model, command: 'compress', beforePass }, [{ method: opts.method, removed: opts.remove }], opts);
  const [plan] = planned.plans;
  const a = planned.analysis?.calibration;
  const extra = planned.prompts ? {
    calibration: {
      prompts: planned.prompts.n, tokens: planned.prompts.tokens, ...(a ? { representation: a.representation } : {}),
      source: opts.calibrationFile ?? opts.data, subjects: opts.subjects ?? null, per_subject: planned.perSubject, seed: valueOf(CALIBRATION_SEED, opts),
      ...(a ? { forward_passes: a.forwardPasses } : {}), protocol: valueOf(PROTOCOL, opts),
    },
  } : {};
  // the quantizer calibrates on the merge's questions (compress --quantize: one draw, one tokenizer)
  const merge = planned.ids ? { labels: opts.calibrationFile ? [] : planned.labels, ids: planned.ids } : null;
  await writeOutput(opts, plan, extra, merge, calibration);
  log(`${plan.method}: removed ${opts.remove} of ${plan.originalLayers} layers${opts.quantize ? `, quantized by ${quantizationName(opts.quantize)}` : ''} -> ${opts.out}`);
  return plan;
}

/**
 * `mka compress --plan FILE`: a recorded plan (merge.json, or the same fields in YAML) applied to the
 * original model, without calibration. `recorded` is the file as readPlanFile checked it (read here if absent).
 */
export async function replayPlan(opts: {
  model: string; plan: string; out: string; dtype?: HfDtype; recorded?: RecordedPlan; quantize?: Quantization | null; quantizeShots?: number; calibration?: CalibrationSource; quiet?: boolean; log?: (msg: string) => void;
}): Promise<CompressionPlan> {
  const log = opts.log ?? (() => {});
  const recorded = opts.recorded ?? readPlanFile(opts.plan, opts.model);
  await writeOutput({ ...opts.calibration, ...opts, dtype: opts.dtype ?? recorded.dtype }, recorded.plan, { ...recorded.extra, replayed_from: opts.plan });
  log(`${recorded.plan.method}: replayed ${opts.plan}: removed ${recorded.plan.originalLayers - recorded.plan.layers.length} of ${recorded.plan.originalLayers} layers -> ${opts.out}`);
  return recorded.plan;
}

/** `mka similarity` on a model: the pipeline's calibrate → analyse stages, no plan, as a similarity report. */
export async function modelSimilarity(opts: AnalysisOptions & { model: string; streaming?: boolean }): Promise<Record<string, unknown>> {
  const { analysis, labels } = await planTargets({ dir: opts.model, command: 'similarity' }, [], { ...opts, analyse: true, withSimilarity: true });
  const a = analysis!;
  return similarityJson(a.metric, a.scores!, a.similarityOptions, {
    model: opts.model, samples: a.calibration.n, representation: a.calibration.representation, prompts: labels,
    block_influence: a.calibration.blockInfluence, seconds: a.seconds,
  });
}

/** `acts` as [layers][samples][hidden] of finite numbers, the same sizes throughout; else a UserError naming the first bad entry. */
function checkActivations(file: string, acts: unknown): number[][][] {
  const shape = `"activations" must be [layers][samples][hidden] numbers with at least 2 layers, the same samples in each and one hidden size`;
  if (!Array.isArray(acts) || acts.length < 2) throw new UserError(`${file}: ${shape}`);
  const first = acts[0];
  const samples = Array.isArray(first) ? first.length : -1;
  const hidden = Array.isArray(first) && Array.isArray(first[0]) ? first[0].length : -1;
  if (samples < 1 || hidden < 1) throw new UserError(`${file}: ${shape}`);
  acts.forEach((layer: unknown, l) => {
    if (!Array.isArray(layer) || layer.length !== samples) throw new UserError(`${file}: activations[${l}] has ${Array.isArray(layer) ? layer.length : 'no'} samples, activations[0] ${samples}; ${shape}`);
    layer.forEach((row: unknown, s) => {
      if (!Array.isArray(row) || row.length !== hidden) throw new UserError(`${file}: activations[${l}][${s}] has ${Array.isArray(row) ? row.length : 'no'} values, activations[0][0] ${hidden}; ${shape}`);
      const bad = row.findIndex((x) => typeof x !== 'number' || !Number.isFinite(x));
      if (bad >= 0) throw new UserError(`${file}: activations[${l}][${s}][${bad}] is ${typeof row[bad] === 'number' ? String(row[bad]) : typeof row[bad] === 'string' ? JSON.stringify(row[bad]).slice(0, 40) : describeJson(row[bad])}, not a finite number`);
    });
  });
  return acts as number[][][];
}

/** `mka similarity --activations F`: the similarity stage on activations from elsewhere ({"activations": [layers][samples][hidden]}). */
export function activationsSimilarity(file: string, opts: { similarity?: Partial<SimilarityOptions>; metric?: string; quiet?: boolean; log?: (msg: string) => void }): Record<string, unknown> {
  const metric = getSimilarityMetric(opts.metric ?? DEFAULT_METRIC);
  let acts: unknown;
  try {
    const raw = parseJsonText(readTextFile(file, 'activations file'), file, 'activations file');
    acts = isPlainObject(raw) ? raw.activations : undefined;
  } catch (e) {
    throw e instanceof UserError ? new UserError(`${e.message}; give {"activations": [layers][samples][hidden]}`) : e;
  }
  const layers = checkActivations(file, acts);
  const n = layers[0].length;
  const o = resolveOptions(metric.usesKernel ? n : Infinity, opts.similarity);
  const grams = layers.map((l) => gramFromActivations(l));
  const bar = progress('similarity', metric.steps(grams.length), { unit: 'steps', quiet: opts.quiet });
  const r = metric.compute(grams, n, o, () => bar.tick());
  bar.done();
  const warning = r.npib && degenerateKernelWarning(r.npib.kernel);
  if (warning) opts.log?.(warning);
  return similarityJson(metric.name, r, o, { activations: file, samples: n });
}
