/**
 * A sweep's results directory and what every step of it loads. `prepareSweep` is the light part
 * (checks the options against the directory, reads the model's config and the subject list) that a
 * queue client needs; `openSweep` adds the tokenizer, the MMLU questions and the original model that
 * computing a point needs.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, disposeModel, type LlamaModel } from '../model/model.ts';
import { readConfig } from '../model/config.ts';
import { currentProfile } from '../runtime/profile.ts';
import { assertFits, calibrationWorkload, checkModelFits, mmluWorkload, storedBytes } from '../model/memory-estimate.ts';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer.ts';
import { createMmluCache, type MmluCache } from '../eval/mmlu/evaluate.ts';
import { scoringTokenizer } from '../eval/mmlu/question-plan.ts';
import { protocolSettings } from '../compress/methods/protocol.ts';
import { loadMmlu, type MmluData } from '../eval/mmlu/data.ts';
import { calibrationPrompts, similarityOptionsFor } from '../pipeline/analyse.ts';
import { checkRemove } from '../pipeline/plan-targets.ts';
import { getMethod } from '../compress/methods/registry.ts';
import { DEFAULT_METRIC, getSimilarityMetric } from '../compress/similarity/index.ts';
import { atomicWriteText } from '../io/atomic.ts';
import { writeMarker } from '../io/output-dir.ts';
import { prepareCorpus, type PplCorpus } from '../eval/ppl/run.ts';
import { UserError } from '../runtime/errors.ts';
import type { SweepOptions, SweepSettings } from './sweep.ts';

/** The similarity part of the sweep key: NPIB's options as before --metric; another metric's name and β (the rest is NPIB's). */
function similarityKey(opts: SweepSettings): Record<string, unknown> {
  const metric = opts.metric ?? DEFAULT_METRIC;
  if (getSimilarityMetric(metric).usesKernel) return { similarity: opts.similarity ?? {}, ...(metric !== DEFAULT_METRIC ? { metric } : {}) };
  return { similarity: opts.similarity?.beta === undefined ? {} : { beta: opts.similarity.beta }, metric };
}

/** What a sweep's results depend on (not the methods or counts: those can grow between runs). */
export function sweepKey(opts: SweepSettings): string {
  return JSON.stringify({
    model: opts.model, data: opts.data, ntrain: opts.ntrain, limit: opts.limit ?? null, subjects: opts.evalSubjects ?? null,
    calibration: { data: opts.data, file: opts.calibrationFile ?? null, subjects: opts.subjects ?? null, perSubject: opts.perSubject ?? 'auto', seed: opts.seed ?? 1, representation: opts.representation ?? 'padded', ...(opts.protocol && opts.protocol !== 'mka' ? { protocol: opts.protocol } : {}) },
    ...similarityKey(opts), strategy: opts.params?.mka?.strategy ?? 'last-pair', blendNorms: opts.params?.mka?.blendNorms ?? false,
    ...(opts.ppl ? { ppl: opts.ppl } : {}),
  });
}

/** A short hash of the sweep key and results directory (names the sweep's queue jobs). */
export function sweepId(opts: SweepOptions): string {
  return createHash('sha256').update(sweepKey(opts)).update('\0').update(opts.out).digest('hex').slice(0, 16);
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
  if (!methods.some((m) => m.needsCalibration)) return null;
  const prompts = calibrationPrompts(await loadTokenizer(opts.model), opts);
  if (methods.some((m) => m.needsSimilarity)) similarityOptionsFor(prompts.ids.length, opts);
  return prompts.ids.map((r) => r.length);
}

/**
 * The sweep's memory check, before the original model is loaded: the calibration pass holds the
 * original; each point's evaluation holds the original (its reference) and the point's model, built in
 * float32 from the plan (counted at the original's size, an upper bound). A one-line UserError when
 * either cannot fit (`MKA_MEMORY_LIMIT` sets the budget, `off` skips the check).
 */
export function checkSweepFits(opts: SweepOptions, promptLengths: number[] | null): void {
  if (promptLengths) checkModelFits('sweep', opts.model, calibrationWorkload(promptLengths, { ...opts, streaming: false }), { batch: { option: '--micro-batch', field: 'microBatch' }, streamable: false });
  const config = readConfig(opts.model);
  const profile = currentProfile().memory;
  const stored = storedBytes(opts.model, config);
  assertFits({
    command: 'sweep', config, profile: { ...profile, keeps16Bit: true }, stored: (name) => (profile.keeps16Bit ? stored(name) : 4) + 4,
    work: mmluWorkload({ batchSize: opts.batchSize }), batchOption: '--batch-size', batchField: 'rows', streamable: false,
  });
}

/** Checks the options, claims (or re-opens) the results directory, reads the config and the subjects. */
export function prepareSweep(opts: SweepOptions): PreparedSweep {
  opts.methods.forEach(getMethod);
  if (!opts.remove.length) throw new UserError('--remove needs at least one count, e.g. 0,2,4');
  if (!existsSync(join(opts.model, 'config.json'))) throw new UserError(`${opts.model}: not a model directory (no config.json)`);
  const layers = readConfig(opts.model).num_hidden_layers;
  for (const k of opts.remove) checkRemove(k, layers);
  const subjects = [...loadMmlu(opts.data, { subjects: opts.evalSubjects }).subjects].sort();
  mkdirSync(join(opts.out, 'points'), { recursive: true });
  writeMarker(opts.out, 'sweep');
  const keyPath = join(opts.out, 'sweep-key.json');
  const key = sweepKey(opts);
  const oldKey = existsSync(keyPath) ? readFileSync(keyPath, 'utf8') : null;
  if (oldKey !== null && oldKey !== key) {
    throw new UserError(`${opts.out}: holds a sweep with other settings (${keyPath}); choose a new --out or delete that directory`);
  }
  if (oldKey === null) atomicWriteText(keyPath, key);
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
  /** Frees the original model. */
  dispose(): void;
}

/** Prepares the sweep and loads the tokenizer, the MMLU data and the original model. */
export async function openSweep(opts: SweepOptions): Promise<SweepContext> {
  const promptLengths = await checkSweepCalibration(opts);
  checkSweepFits(opts, promptLengths);
  const prepared = prepareSweep(opts);
  const tokenizer = await loadTokenizer(opts.model);
  const data = loadMmlu(opts.data, { subjects: opts.evalSubjects });
  const original = loadModel(opts.model);
  const corpus = opts.ppl ? prepareCorpus(opts.ppl.text, tokenizer, original.config, opts.ppl.seqLen, opts.ppl.stride) : null;
  const scoringBos = protocolSettings(opts.protocol).scoringBos;
  const scoring = scoringTokenizer(tokenizer, scoringBos);
  return { ...prepared, tokenizer, scoringBos, scoringTokenizer: scoring, data, original, mmlu: createMmluCache(scoring, data), corpus, dispose: () => disposeModel(original) };
}
