/**
 * The compression pipeline: calibration prompts → one calibration pass → similarity → a method's plan
 * → the compressed model directory with merge.json. `analyzeModel` is shared with the sweep, which
 * reuses one calibration and one similarity matrix for every removal count.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, disposeModel, type LlamaModel } from '../model/model.ts';
import { type LlamaConfig, readConfig } from '../model/config.ts';
import { calibrationWorkload, checkModelFits } from '../model/memory-estimate.ts';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer.ts';
import { loadMmlu } from '../eval/mmlu/data.ts';
import { sampleCalibrationPrompts } from '../eval/mmlu/calibration-prompts.ts';
import { UserError } from '../runtime/errors.ts';
import { readTextFile } from '../io/read.ts';
import { progress } from '../runtime/progress.ts';
import { calibrate, calibrationTarget, defaultPerSubject, type Calibration, type Representation } from './calibration.ts';
import { DEFAULT_SIMILARITY, degenerateKernelWarning, fusionRatio, gramFromActivations, resolveOptions, similarityFromGram, type SimilarityOptions, type SimilarityResult } from './similarity/index.ts';
import { getMethod } from './methods/registry.ts';
import { protocolSettings, releasedCalibrationPrompts, type Protocol } from './methods/protocol.ts';
import type { MethodContext } from './methods/method.ts';
import { materialize, planSource, planSummary, type CompressionPlan } from './plan.ts';
import { checkpointSource, modelSource } from '../weights/source.ts';
import { HF_DTYPES, writeHfModel, type HfDtype } from '../weights/hf-writer.ts';

export interface CalibrationSource {
  /** MMLU directory (Hendrycks layout) to draw prompts from. */
  data?: string;
  /** Or a text file with one prompt per line. */
  calibrationFile?: string;
  subjects?: number;
  /** Questions per subject; default: 1, or enough for calibrationTarget(similarity) prompts. */
  perSubject?: number;
  seed?: number;
  /** The similarity options the prompts are for (they set the default prompt count). */
  similarity?: Partial<SimilarityOptions>;
  /** mka's conventions (default) or the released code's (methods/protocol.ts). */
  protocol?: Protocol;
}

export interface AnalysisOptions extends CalibrationSource {
  representation?: Representation;
  maxPositions?: number;
  microBatch?: number;
  /** Compute the similarity matrix (MKA needs it; the baselines don't). */
  withSimilarity?: boolean;
  quiet?: boolean;
  log?: (msg: string) => void;
}

/** Token ids of the calibration prompts (BOS as the tokenizer adds it), and the questions per subject drawn. */
export function calibrationPrompts(tokenizer: Tokenizer, src: CalibrationSource): { ids: number[][]; labels: string[]; perSubject: number | null } {
  let perSubject: number | null = null;
  let texts: { text: string; label: string }[];
  if (src.calibrationFile) {
    const raw = readTextFile(src.calibrationFile, 'calibration file');
    texts = raw.split(/\r?\n/).filter((l) => l.trim()).map((text, i) => ({ text, label: `line ${i + 1}` }));
    if (texts.length < 2) throw new UserError(`${src.calibrationFile}: needs at least 2 non-empty lines (one prompt per line)`);
  } else if (src.data) {
    const data = loadMmlu(src.data);
    perSubject = src.perSubject
      ?? defaultPerSubject(src.subjects ?? data.subjects.length, calibrationTarget({ ...DEFAULT_SIMILARITY, ...src.similarity }));
    const draw = protocolSettings(src.protocol).draw === 'python' ? releasedCalibrationPrompts : sampleCalibrationPrompts;
    texts = draw(data, { subjects: src.subjects, perSubject, seed: src.seed })
      .map((p) => ({ text: p.text, label: `${p.subject}#${p.index}` }));
  } else {
    throw new UserError('calibration needs --data MMLU_DIR or --calibration FILE');
  }
  const addBos = protocolSettings(src.protocol).calibrationBos ? undefined : false;
  return { ids: texts.map((t) => tokenizer.encode(t.text, { addBos })), labels: texts.map((t) => t.label), perSubject };
}

/**
 * The similarity options for n calibration prompts, checked before any forward pass: a UserError names
 * the option and the fix. The k-NN entropy's k is clamped to n − 1 with a logged note.
 */
export function similarityOptionsFor(n: number, src: CalibrationSource, log: (msg: string) => void = () => {}): SimilarityOptions {
  const more = src.calibrationFile ? `more lines in ${src.calibrationFile}` : src.perSubject ? 'a larger --per-subject (or leave it unset)' : 'more --subjects';
  resolveOptions(Number.MAX_SAFE_INTEGER, src.similarity); // options wrong whatever the prompt count
  let o: SimilarityOptions;
  try {
    o = resolveOptions(n, src.similarity);
  } catch (e) {
    throw e instanceof UserError ? new UserError(`${e.message.replace(/; fix the option or use more samples$/, '')}: ${n} calibration prompts are too few; use ${more}, or smaller values`) : e;
  }
  if (o.kEntropy > n - 1) log(`similarity: ${n} calibration prompts: the k-NN entropy uses k = ${n - 1}, not --k-entropy ${o.kEntropy} (needs ${o.kEntropy + 1} prompts)`);
  return o;
}

export interface Analysis {
  calibration: Calibration;
  similarity?: SimilarityResult;
  similarityOptions: SimilarityOptions;
  labels: string[];
  seconds: { calibration: number; similarity: number };
}

/** Calibrates a loaded model on prompt ids and (optionally) computes the layer similarity. */
export function analyzeIds(model: LlamaModel, ids: number[][], labels: string[], opts: AnalysisOptions): Analysis {
  const log = opts.log ?? (() => {});
  const similarityOptions = opts.withSimilarity ? similarityOptionsFor(ids.length, opts, log) : { ...DEFAULT_SIMILARITY, ...opts.similarity };
  const t0 = performance.now();
  const bar = progress('calibration', model.config.num_hidden_layers, { unit: 'layers', quiet: opts.quiet });
  const calibration = calibrate(model, ids, {
    representation: opts.representation, maxPositions: opts.maxPositions, microBatch: opts.microBatch,
    layerStates: protocolSettings(opts.protocol).layerStates, onProgress: () => bar.tick(),
  });
  bar.done(`(${calibration.n} prompts, ${calibration.tokens} tokens, 1 forward pass)`);
  const t1 = performance.now();
  let similarity: SimilarityResult | undefined;
  if (opts.withSimilarity) {
    const L = calibration.layers;
    const sbar = progress('similarity', L + (L * (L + 1)) / 2, { unit: 'steps', quiet: opts.quiet });
    similarity = similarityFromGram(calibration.grams, calibration.n, similarityOptions, () => sbar.tick());
    sbar.done();
    for (const u of similarity.undefinedPairs) log(`similarity: NPIB(${u.i}, ${u.j}) undefined: ${u.reason}`);
    const warning = degenerateKernelWarning(similarity.kernel);
    if (warning) log(warning);
  }
  return { calibration, similarity, similarityOptions, labels, seconds: { calibration: (t1 - t0) / 1000, similarity: (performance.now() - t1) / 1000 } };
}

/** The similarity report written by `mka similarity` (sim.json). */
export function similarityJson(sim: SimilarityResult, opts: SimilarityOptions, extra: Record<string, unknown> = {}): Record<string, unknown> {
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

export interface CompressOptions extends AnalysisOptions {
  model: string;
  out: string;
  method: string;
  remove: number;
  strategy?: 'last-pair' | 'adjacent';
  blendNorms?: boolean;
  dtype?: HfDtype;
  /** Stream decoder layers from disk instead of loading them all. */
  streaming?: boolean;
}

/** Checks that `remove` layers can be removed from an L-layer model. */
export function checkRemove(remove: number, L: number): void {
  if (!Number.isInteger(remove) || remove < 0 || remove > L - 1) {
    throw new UserError(`--remove ${remove}: must be an integer from 0 to ${L - 1} for a ${L}-layer model`);
  }
}

/**
 * Builds the method's context from an analysis of the original model; with only a config (methods
 * that need no calibration), there is no recalibration.
 */
export function methodContext(model: LlamaModel | { config: LlamaConfig }, analysis: Analysis | null, opts: CompressOptions, ids: number[][], labels: string[]): MethodContext {
  const log = opts.log ?? (() => {});
  if (!('tensors' in model)) {
    return {
      config: model.config, similarityOptions: { ...DEFAULT_SIMILARITY, ...opts.similarity },
      strategy: opts.strategy ?? 'last-pair', blendNorms: opts.blendNorms ?? false, log,
    };
  }
  return {
    config: model.config,
    calibration: analysis?.calibration,
    similarity: analysis?.similarity,
    similarityOptions: analysis?.similarityOptions ?? { ...DEFAULT_SIMILARITY, ...opts.similarity },
    strategy: opts.strategy ?? 'last-pair',
    blendNorms: opts.blendNorms ?? false,
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
          const a = analyzeIds(merged, ids, labels, { ...opts, withSimilarity: true });
          return { calibration: a.calibration, similarity: a.similarity! };
        } finally {
          disposeModel(merged);
        }
      } finally {
        if (scratch) rmSync(scratch, { recursive: true, force: true });
      }
    },
  };
}

/** The storage dtype of a compressed model: asked for, else the original's torch_dtype when HF has it, else float32. */
function outputDtype(config: LlamaConfig, dtype?: HfDtype): HfDtype {
  return dtype ?? ((HF_DTYPES as readonly string[]).includes(config.torch_dtype) ? (config.torch_dtype as HfDtype) : 'float32');
}

/**
 * Writes the compressed model of the original in `dir` (HF layout, tokenizer copied, merge.json),
 * straight from its checkpoint: one tensor at a time, merged tensors computed as they are written,
 * kept tensors copied as stored (16-bit stays 16-bit). Nothing needs to be loaded.
 */
export async function writePlan(dir: string, plan: CompressionPlan, out: string, opts: { dtype?: HfDtype; extra?: Record<string, unknown>; log?: (m: string) => void }): Promise<void> {
  const original = checkpointSource(dir);
  try {
    const summary = { source_model: dir, ...planSummary(plan), ...opts.extra };
    await writeHfModel(planSource(original, plan), out, {
      dtype: outputDtype(original.config, opts.dtype),
      copyFrom: dir,
      extraFiles: { 'merge.json': JSON.stringify(summary, null, 2) + '\n' },
      log: opts.log,
    });
  } finally {
    original.close();
  }
}

/** Writes the compressed model directory (HF layout, tokenizer copied) with merge.json. */
export async function writeCompressed(model: LlamaModel, plan: CompressionPlan, out: string, opts: { dtype?: HfDtype; extra?: Record<string, unknown>; log?: (m: string) => void }): Promise<void> {
  if (model.dir) return writePlan(model.dir, plan, out, opts);
  const summary = { source_model: model.dir, ...planSummary(plan), ...opts.extra };
  await writeHfModel(planSource(modelSource(model), plan), out, {
    dtype: outputDtype(model.config, opts.dtype),
    copyFrom: model.dir,
    extraFiles: { 'merge.json': JSON.stringify(summary, null, 2) + '\n' },
    log: opts.log,
  });
}

/**
 * `mka compress`: calibration, similarity and the merge or pruning in one go. Returns the plan. The
 * model is loaded only for the calibration pass and released before the output is written from the
 * checkpoint; methods without calibration (reverse) never load it.
 */
export async function compressModel(opts: CompressOptions): Promise<CompressionPlan> {
  const log = opts.log ?? (() => {});
  const method = getMethod(opts.method);
  const config = readConfig(opts.model);
  checkRemove(opts.remove, config.num_hidden_layers);
  let analysis: Analysis | null = null;
  let plan: CompressionPlan;
  let ids: number[][] = [], labels: string[] = [], perSubject: number | null = null;
  if (method.needsCalibration && opts.remove > 0) {
    const tok = await loadTokenizer(opts.model);
    ({ ids, labels, perSubject } = calibrationPrompts(tok, opts));
    checkModelFits('compress', opts.model, calibrationWorkload(ids.map((r) => r.length), opts), { batch: { option: '--micro-batch', field: 'microBatch' } });
    const model = loadModel(opts.model, { streaming: opts.streaming });
    try {
      analysis = analyzeIds(model, ids, labels, { ...opts, withSimilarity: method.needsSimilarity });
      plan = await method.plan(methodContext(model, analysis, opts, ids, labels), opts.remove);
    } finally {
      disposeModel(model);
    }
  } else {
    plan = await method.plan(methodContext({ config }, null, opts, [], []), opts.remove);
  }
  const extra = analysis ? {
    calibration: {
      prompts: analysis.calibration.n, tokens: analysis.calibration.tokens, representation: analysis.calibration.representation,
      source: opts.calibrationFile ?? opts.data, subjects: opts.subjects ?? null, per_subject: perSubject, seed: opts.seed ?? 1,
      forward_passes: analysis.calibration.forwardPasses, protocol: opts.protocol ?? 'mka',
    },
  } : {};
  await writePlan(opts.model, plan, opts.out, { dtype: opts.dtype, extra, log });
  log(`${method.name}: removed ${opts.remove} of ${config.num_hidden_layers} layers -> ${opts.out}`);
  return plan;
}

/** `mka similarity` on a model: calibration + similarity report. */
export async function modelSimilarity(opts: AnalysisOptions & { model: string; streaming?: boolean }): Promise<Record<string, unknown>> {
  const tok = await loadTokenizer(opts.model);
  const { ids, labels } = calibrationPrompts(tok, opts);
  checkModelFits('similarity', opts.model, calibrationWorkload(ids.map((r) => r.length), opts), { batch: { option: '--micro-batch', field: 'microBatch' } });
  const model = loadModel(opts.model, { streaming: opts.streaming });
  try {
    const a = analyzeIds(model, ids, labels, { ...opts, withSimilarity: true });
    return similarityJson(a.similarity!, a.similarityOptions, {
      model: opts.model, samples: a.calibration.n, representation: a.calibration.representation, prompts: labels,
      block_influence: a.calibration.blockInfluence, seconds: a.seconds,
    });
  } finally {
    disposeModel(model);
  }
}

/** `mka similarity --activations F`: the similarity stage on activations from elsewhere ({"activations": [layers][samples][hidden]}). */
export function activationsSimilarity(file: string, opts: { similarity?: Partial<SimilarityOptions>; quiet?: boolean; log?: (msg: string) => void }): Record<string, unknown> {
  let acts: unknown;
  try {
    acts = JSON.parse(readFileSync(file, 'utf8')).activations;
  } catch (e) {
    throw new UserError(`${file}: cannot read activations JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(acts) || acts.length < 2 || !acts.every((l) => Array.isArray(l) && l.length === (acts as unknown[][])[0].length && l.every((r: unknown) => Array.isArray(r)))) {
    throw new UserError(`${file}: "activations" must be [layers][samples][hidden] with at least 2 layers and the same samples in each`);
  }
  const layers = acts as number[][][];
  const n = layers[0].length;
  const o = resolveOptions(n, opts.similarity);
  const grams = layers.map((l) => gramFromActivations(l));
  const L = grams.length;
  const bar = progress('similarity', L + (L * (L + 1)) / 2, { unit: 'steps', quiet: opts.quiet });
  const sim = similarityFromGram(grams, n, o, () => bar.tick());
  bar.done();
  const warning = degenerateKernelWarning(sim.kernel);
  if (warning) opts.log?.(warning);
  return similarityJson(sim, o, { activations: file, samples: n });
}
