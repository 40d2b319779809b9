/**
 * A sweep's results directory and what every step of it loads. `prepareSweep` is the light part
 * (checks the options against the directory, reads the model's config and the subject list) that a
 * queue client needs; `openSweep` adds the tokenizer, the MMLU questions and the original model that
 * computing a point needs.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, realpathSync } from 'node:fs';
import { readRegularFile } from '../io/read.ts';
import { join, normalize, resolve } from 'node:path';
import { fileSha256, modelDirFingerprint } from '../io/fingerprint.ts';
import { loadModel, disposeModel, type LlamaModel } from '../model/model.ts';
import { readConfig } from '../model/config.ts';
import { isGgufFile } from '../model/files.ts';
import { currentProfile } from '../runtime/profile.ts';
import { assertFits, checkModelFits, estimateMemory, storedBytes } from '../model/memory-estimate.ts';
import { calibrationWorkload } from '../compress/calibration.ts';
import { bosUnderAddBosTokenFalse, loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer.ts';
import { createMmluCache, mmluWorkload, type MmluCache } from '../eval/mmlu/evaluate.ts';
import { scoringTokenizer } from '../eval/mmlu/question-plan.ts';
import { protocolSettings } from '../compress/protocol.ts';
import { loadMmlu, type MmluData } from '../eval/mmlu/data.ts';
import { calibrationPrompts, similarityOptionsFor } from '../pipeline/analyse.ts';
import { checkRemove } from '../pipeline/plan-targets.ts';
import { getMethod, needsPrompts, needsSimilarity, nonDefaultParameters, parametersOf } from '../compress/methods/registry.ts';
import { DEFAULT_METRIC, getSimilarityMetric } from '../compress/similarity/index.ts';
import { atomicWriteText } from '../io/atomic.ts';
import { writeMarker } from '../io/output-dir.ts';
import { prepareCorpus, type PplCorpus } from '../eval/ppl/run.ts';
import { UserError } from '../runtime/errors.ts';
import type { SweepOptions, SweepSettings } from './types.ts';
import { loadSweepTasks, mmluOnly, sweepTasks } from './tasks.ts';
import type { TaskInput } from '../eval/tasks/evaluate.ts';
import { changedFields, flag, keyFields } from '../runtime/options.ts';
import { SWEEP_EVAL_SUBJECTS, SWEEP_OUT, SWEEP_QUANTIZE, SWEEP_REMOVE } from './options.ts';
import { CALIB_SUBJECTS, CALIBRATION_SEED, PROTOCOL, REPRESENTATION } from '../compress/options.ts';
import { LIMIT, NTRAIN } from '../eval/mmlu/options.ts';
import { FIT_LAMBDA } from '../pipeline/options.ts';
import { getQuantMethod, parseQuantization } from '../quant/registry.ts';
import { quantizedModelMemory } from '../quant/size.ts';
import { checkQuantizeFits, quantCalibration, type QuantCalibration } from '../pipeline/quantize.ts';
import { keptModelNeeded } from './kept-models.ts';
import { pointQuantize, sweepPoints } from './points.ts';

/** The similarity part of the sweep key: NPIB's options as before --metric; another metric's name and β (the rest is NPIB's). */
function similarityKey(opts: SweepSettings): Record<string, unknown> {
  const metric = opts.metric ?? DEFAULT_METRIC;
  if (getSimilarityMetric(metric).usesKernel) return { similarity: opts.similarity ?? {}, ...(metric !== DEFAULT_METRIC ? { metric } : {}) };
  return { similarity: opts.similarity?.beta === undefined ? {} : { beta: opts.similarity.beta }, metric };
}

/** The methods' parameters that differ from their defaults, but mka's strategy and blendNorms (their own fields since before). */
function methodKey(opts: SweepSettings): Record<string, unknown> {
  const given = nonDefaultParameters(opts.params);
  const { strategy: _s, blendNorms: _b, ...mka } = given.mka ?? {};
  const rest = { ...given, ...(Object.keys(mka).length ? { mka } : {}) };
  if (!Object.keys(mka).length) delete rest.mka;
  return Object.keys(rest).length ? { methodParameters: rest } : {};
}

/** A path as the key records it: without "./" parts or a trailing slash. */
const keyPath = (p: string) => normalize(p).replace(/(.)\/+$/, '$1');

/** Options a sweep's results depend on, recorded by spec (declared defaults filled in); the evaluated subjects under the key's old field `subjects`. */
const EVALUATION_KEY = [NTRAIN, LIMIT, SWEEP_EVAL_SUBJECTS] as const;
/** Calibration options of the key (besides its data and file, recorded as paths, and --per-subject, `auto` when not given). */
const CALIBRATION_KEY = [CALIB_SUBJECTS] as const;
const SAMPLING_KEY = [CALIBRATION_SEED, REPRESENTATION] as const;

/** A sweep's settings and paths: what its results depend on besides the weights (not the methods or counts: those can grow). */
function settingsKey(opts: SweepSettings): Record<string, unknown> {
  // mka's strategy and blendNorms have had their own fields since before methods declared parameters
  const { strategy, blendNorms } = parametersOf(getMethod('mka'), opts.params);
  return {
    model: keyPath(opts.model), data: keyPath(opts.data), ...keyFields(EVALUATION_KEY, opts, { [SWEEP_EVAL_SUBJECTS.name]: 'subjects' }),
    calibration: {
      data: keyPath(opts.data), file: opts.calibrationFile ? keyPath(opts.calibrationFile) : null, ...keyFields(CALIBRATION_KEY, opts),
      perSubject: opts.perSubject ?? 'auto', ...keyFields(SAMPLING_KEY, opts), ...changedFields([PROTOCOL], opts),
    },
    ...similarityKey(opts), strategy, blendNorms, ...methodKey(opts), ...changedFields([FIT_LAMBDA], opts),
    ...(opts.ppl ? { ppl: { ...opts.ppl, text: keyPath(opts.ppl.text) } } : {}),
    // a sweep of the paper's MMLU alone keeps the key it had before tasks existed
    ...(mmluOnly(opts) ? {} : { tasks: sweepTasks(opts), taskData: opts.taskData ?? {}, numFewshot: opts.numFewshot ?? null }),
  };
}

/**
 * What a sweep's results depend on: its settings and paths, and the fingerprint of the model's
 * weights (so replaced weights at the same path are not mixed with points computed from the old ones).
 */
export function sweepKey(opts: SweepSettings): string {
  const weights = isGgufFile(opts.model) ? fileSha256(opts.model) : existsSync(join(opts.model, 'config.json')) ? modelDirFingerprint(opts.model) : null;
  return JSON.stringify({ ...settingsKey(opts), ...(weights ? { weights } : {}) });
}

/** Whether a sweep directory holds anything computed from the model's weights: plans, analysis, points, evaluated subjects. */
function holdsResults(out: string): boolean {
  const jsonIn = (dir: string) => existsSync(dir) && readdirSync(dir).some((f) => f.endsWith('.json'));
  if (existsSync(join(out, 'analysis.json')) || jsonIn(join(out, 'plans')) || jsonIn(join(out, 'points'))) return true;
  const evalDir = join(out, 'eval');
  return existsSync(evalDir) && readdirSync(evalDir).some((p) => jsonIn(join(evalDir, p, 'subjects')));
}

/** Path fields of a sweep key, compared as files (the same file by two spellings is the same path). */
const KEY_PATHS = new Set(['model', 'data', 'file', 'text']);

/** Why a stored sweep key does not describe this sweep ("" when it does): the first differing field. */
function keyDifference(stored: unknown, key: unknown, path = ''): string {
  if (typeof stored === 'string' && typeof key === 'string' && KEY_PATHS.has(path.split('.').pop()!)) {
    const real = (p: string) => (existsSync(p) ? realpathSync(p) : resolve(p));
    return stored === key || real(stored) === real(key) ? '' : path;
  }
  if (typeof stored !== 'object' || stored === null || typeof key !== 'object' || key === null) return JSON.stringify(stored) === JSON.stringify(key) ? '' : path;
  const a = stored as Record<string, unknown>, b = key as Record<string, unknown>;
  for (const f of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (f === 'weights' && !(f in a)) continue; // a key written before fingerprints were recorded
    const d = keyDifference(a[f], b[f], path ? `${path}.${f}` : f);
    if (d) return d;
  }
  return '';
}

/**
 * A short hash of the sweep's settings and results directory (names the sweep's queue jobs; not the
 * weights, so a job that failed on a corrupt file keeps its id when the file is repaired and rerun).
 */
export function sweepId(opts: SweepOptions): string {
  return createHash('sha256').update(JSON.stringify(settingsKey(opts))).update('\0').update(opts.out).digest('hex').slice(0, 16);
}

export interface PreparedSweep {
  opts: SweepOptions;
  /** Layers of the original model. */
  layers: number;
  /** MMLU subjects evaluated, sorted. */
  subjects: string[];
}

/**
 * Checks that the calibration prompts and the similarity options fit together (e.g. enough prompts for
 * the k-NN estimators), so that a sweep fails before anything is written or evaluated. Returns the
 * prompts' token counts (null when no method calibrates).
 */
export async function checkSweepCalibration(opts: SweepOptions): Promise<number[] | null> {
  const methods = opts.methods.map(getMethod);
  methods.forEach((m) => parametersOf(m, opts.params)); // checked before anything is written
  if (!methods.some((m) => needsPrompts(m, opts.params))) return null;
  const prompts = calibrationPrompts(await loadTokenizer(opts.model), opts, readConfig(opts.model).max_position_embeddings);
  if (methods.some((m) => needsSimilarity(m, opts.params))) similarityOptionsFor(prompts.ids.length, opts);
  return prompts.ids.map((r) => r.length);
}

/**
 * The sweep's memory check, before the original model is loaded: the calibration pass holds the
 * original; each point's evaluation holds the original (its reference) and the point's model, built in
 * float32 from the plan (counted at the original's size, an upper bound). A one-line UserError when
 * either cannot fit (`MKA_MEMORY_LIMIT` sets the budget, `off` skips the check).
 */
export function checkSweepFits(opts: SweepOptions, promptLengths: number[] | null): void {
  if (promptLengths) checkModelFits('sweep', opts.model, { ...calibrationWorkload(promptLengths, { ...opts, streaming: false }), streamable: false });
  const config = readConfig(opts.model);
  const profile = currentProfile().memory;
  const stored = storedBytes(opts.model, config);
  assertFits({
    command: 'sweep', config, profile: { ...profile, keeps16Bit: true }, stored: (name) => (profile.keeps16Bit ? stored(name) : 4) + 4,
    work: { ...mmluWorkload({ batchSize: opts.batchSize }), streamable: false },
  });
}

/**
 * The memory check of the sweep's quantized points, before the original model is loaded: each
 * quantization runs beside the resident original (the points' reference and the source of their
 * weights) and the quantized model it builds (counted unmerged, an upper bound), with the quantizer's
 * own needs (src/quant/memory.ts) on the calibration prompts it draws. A one-line UserError when one
 * cannot fit; returns those prompts (null when no quantization calibrates), which every point uses.
 */
export async function checkSweepQuantizeFits(opts: SweepOptions): Promise<QuantCalibration | null> {
  const quantizations = (opts.quantize ?? []).map((q) => parseQuantization(q, flag(SWEEP_QUANTIZE))).filter((q) => q !== null);
  if (!quantizations.length) return null;
  const config = readConfig(opts.model);
  const profile = currentProfile().memory;
  const original = estimateMemory(config, storedBytes(opts.model, config), profile, { streaming: false, rows: 1, microBatch: 1, seqLen: 1, logits: 'none', streamable: false }).parts.weights;
  let drawn: QuantCalibration | null = null; // the same questions for every method that calibrates
  for (const q of quantizations) {
    const calibrates = getQuantMethod(q.method).calibration !== 'none';
    if (calibrates) drawn ??= await quantCalibration(opts.model, q, opts);
    const model = quantizedModelMemory(config, q);
    checkQuantizeFits('sweep', opts.model, config, q, calibrates ? drawn! : { prompts: null, info: {} }, {
      readsFloat32: true, perSubject: opts.perSubject,
      beside: [{ what: 'original model', bytes: original, tensors: original }, { what: 'quantized model', bytes: model, tensors: model }],
    });
  }
  return drawn;
}

/** Checks the options, claims (or re-opens) the results directory, reads the config and the subjects. */
export function prepareSweep(opts: SweepOptions): PreparedSweep {
  opts.methods.forEach(getMethod);
  for (const q of opts.quantize ?? []) parseQuantization(q, flag(SWEEP_QUANTIZE));
  sweepTasks(opts);
  if (!opts.remove.length) throw new UserError(`${flag(SWEEP_REMOVE)} needs at least one count, e.g. 0,2,4`);
  if (!existsSync(join(opts.model, 'config.json')) && !isGgufFile(opts.model)) throw new UserError(`${opts.model}: not a model directory (no config.json) nor a GGUF file`);
  const layers = readConfig(opts.model).num_hidden_layers;
  for (const k of opts.remove) checkRemove(k, layers);
  if (opts.keepModels) {
    // before any work: a directory mka did not write where a point's model goes is refused (kept-models.ts)
    for (const p of sweepPoints(opts.methods, opts.remove, opts.quantize)) {
      const q = parseQuantization(pointQuantize(p), flag(SWEEP_QUANTIZE));
      if (p.method !== 'original' || q) keptModelNeeded(opts.out, p, layers - p.removed, q);
    }
  }
  const subjects = [...loadMmlu(opts.data, { subjects: opts.evalSubjects }).subjects].sort();
  mkdirSync(join(opts.out, 'points'), { recursive: true });
  writeMarker(opts.out, 'sweep');
  const keyFile = join(opts.out, 'sweep-key.json');
  const key = sweepKey(opts);
  const oldKey = existsSync(keyFile) ? readRegularFile(keyFile, 'sweep key file').toString('utf8') : null;
  if (oldKey !== null && oldKey !== key) {
    let differs: string;
    try {
      differs = keyDifference(JSON.parse(oldKey), JSON.parse(key));
    } catch {
      differs = 'its sweep-key.json is unreadable';
    }
    if (differs === 'weights' && holdsResults(opts.out)) {
      throw new UserError(`${opts.out}: holds results of other weights than ${opts.model} now has (${keyFile} records their fingerprint); choose a new ${flag(SWEEP_OUT)} or delete that directory`);
    }
    if (differs && differs !== 'weights') throw new UserError(`${opts.out}: holds a sweep with other settings (${differs} differs, ${keyFile}); choose a new ${flag(SWEEP_OUT)} or delete that directory`);
  }
  // new, or other weights with nothing computed from them yet (a run that failed before any result, e.g. on a corrupt file since repaired)
  if (oldKey === null || oldKey !== key) atomicWriteText(keyFile, key);
  return { opts, layers, subjects };
}

export interface SweepContext extends PreparedSweep {
  tokenizer: Tokenizer;
  data: MmluData;
  original: LlamaModel;
  /** Whether MMLU prompts begin with BOS (not under `--protocol released`); recorded in every evaluation's run key. */
  scoringBos: boolean;
  /** The tokenizer MMLU prompts are encoded with (adds BOS as scoringBos says). */
  scoringTokenizer: Tokenizer;
  /** MMLU plans and the original's scores, shared by the points' evaluations. */
  mmlu: MmluCache;
  /** The tokenized text corpus when the sweep measures perplexity (`ppl`). */
  corpus: PplCorpus | null;
  /** The tasks but the paper's MMLU, with their data (empty for a sweep of MMLU alone). */
  taskInputs: TaskInput[];
  /** The quantizers' calibration prompts, drawn once for every calibrating quantization of the sweep (null: none calibrates). */
  quantCalibration: QuantCalibration | null;
  /** Frees the original model. */
  dispose(): void;
}

/**
 * What a sweep checks before any work, run by a local sweep and by a queued sweep's submit alike (so an
 * impossible sweep is refused before anything is enqueued): its quantizations, its calibration, and the
 * memory of the calibration pass, of the points' evaluations and of their quantizations. Returns the
 * quantizers' calibration prompts (null when no quantization calibrates).
 */
export async function checkSweepBeforeWork(opts: SweepOptions): Promise<QuantCalibration | null> {
  for (const q of opts.quantize ?? []) parseQuantization(q, flag(SWEEP_QUANTIZE));
  const promptLengths = await checkSweepCalibration(opts);
  checkSweepFits(opts, promptLengths);
  return checkSweepQuantizeFits(opts);
}

/** Prepares the sweep and loads the tokenizer, the MMLU data and the original model. */
export async function openSweep(opts: SweepOptions): Promise<SweepContext> {
  const quantCalibration = await checkSweepBeforeWork(opts);
  const taskInputs = await loadSweepTasks(opts);
  const prepared = prepareSweep(opts);
  const tokenizer = await loadTokenizer(opts.model);
  const data = loadMmlu(opts.data, { subjects: opts.evalSubjects });
  const original = loadModel(opts.model);
  const corpus = opts.ppl ? prepareCorpus(opts.ppl.text, tokenizer, original.config, opts.ppl.seqLen, opts.ppl.stride) : null;
  const scoringBos = protocolSettings(opts.protocol).scoringBos || bosUnderAddBosTokenFalse(tokenizer);
  const scoring = scoringTokenizer(tokenizer, scoringBos);
  return { ...prepared, tokenizer, scoringBos, scoringTokenizer: scoring, data, original, mmlu: createMmluCache(scoring, data), corpus, taskInputs, quantCalibration, dispose: () => disposeModel(original) };
}
