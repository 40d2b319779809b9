/**
 * The paper's experiment in one call: MMLU accuracy of every method at every removal count.
 *
 * The uncompressed model is evaluated once. Calibration runs once for the whole sweep (every method
 * that needs it shares the same prompts and pass) and the similarity matrix is computed once; each
 * method then plans every count from them. Compressed models are built in memory from the plan
 * (the same tensors `mka compress` writes) and evaluated with the original as reference model.
 *
 * Resumable: each finished point is saved in `OUT/points/`, each evaluation keeps its own resumable
 * results directory in `OUT/eval/`, and the analysis in `OUT/analysis.json`; a rerun of the same
 * command skips what is done.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, disposeModel, type LlamaModel } from '../model/model.ts';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer.ts';
import { loadMmlu, type MmluData } from '../eval/mmlu/data.ts';
import { evaluateMmlu } from '../eval/mmlu/evaluate.ts';
import type { MmluSummary } from '../eval/mmlu/results.ts';
import { analyzeIds, calibrationPrompts, checkRemove, methodContext, similarityJson, similarityOptionsFor, writeCompressed, type CompressOptions } from '../compress/compress.ts';
import { getMethod } from '../compress/methods/registry.ts';
import { materialize, planSource, planSummary, type CompressionPlan } from '../compress/plan.ts';
import { modelSource } from '../export/source.ts';
import { atomicWriteText } from '../io/atomic.ts';
import { writeMarker } from '../io/output-dir.ts';
import { readJsonObject } from '../io/read.ts';
import { UserError } from '../runtime/errors.ts';
import { progress } from '../runtime/progress.ts';
import { writeSweepReport } from './report.ts';
import { prepareCorpus } from '../eval/ppl/run.ts';
import { evaluatePerplexity } from '../eval/ppl/evaluate.ts';

export interface SweepOptions extends Omit<CompressOptions, 'out' | 'method' | 'remove'> {
  model: string;
  data: string;
  methods: string[];
  remove: number[];
  ntrain: number;
  limit?: number;
  /** MMLU subjects to evaluate (default all). */
  evalSubjects?: string[];
  batchSize?: number;
  out: string;
  /** Point shown in categories.png, e.g. "mka:2" (default: the largest MKA count). */
  chosen?: string;
  /** Also write each compressed model directory to OUT/models/ (e.g. to export it). */
  keepModels?: boolean;
  /** Extra fields for run.json (backend, command line). */
  runInfo?: Record<string, unknown>;
  /** A text corpus: adds each point's perplexity on it (the `ppl` column), as `mka eval ppl` computes it. */
  ppl?: { text: string; seqLen?: number; stride?: number };
}

/** One row of results.csv. */
export interface SweepPoint {
  method: string;
  layers_removed: number;
  layers: number;
  compression_ratio: number;
  mmlu: number;
  mmlu_macro: number;
  stem: number | null;
  humanities: number | null;
  social_sciences: number | null;
  other: number | null;
  perplexity: number;
  /** Perplexity on the sweep's text corpus (null without one). */
  ppl: number | null;
  agreement: number | null;
  kl: number | null;
  seconds: number;
}

function categoryAccuracy(s: MmluSummary, label: string): number | null {
  const row = s.categories.find((c) => c.name.toLowerCase().startsWith(label));
  return row ? row.accuracy : null;
}

function pointFrom(method: string, removed: number, L: number, s: MmluSummary, seconds: number, ppl: number | null): SweepPoint {
  return {
    method, layers_removed: removed, layers: L - removed, compression_ratio: removed / L,
    mmlu: s.overall.accuracy, mmlu_macro: s.overall.macroAccuracy,
    stem: categoryAccuracy(s, 'stem'), humanities: categoryAccuracy(s, 'humanities'),
    social_sciences: categoryAccuracy(s, 'social'), other: categoryAccuracy(s, 'other'),
    perplexity: s.overall.perplexity, ppl, agreement: s.overall.agreement, kl: s.overall.kl, seconds: Math.round(seconds * 10) / 10,
  };
}

function readJson<T>(path: string): T | null {
  return existsSync(path) ? (readJsonObject(path, 'sweep file') as T) : null;
}

/** A saved point as an uninterrupted run holds it: without the summary and plan stored beside it. */
function readPoint(path: string): SweepPoint | null {
  const saved = readJson<SweepPoint & { summary?: unknown; plan?: unknown }>(path);
  if (!saved) return null;
  const { summary: _summary, plan: _plan, ...point } = saved;
  return point;
}

/** Runs (or resumes) a sweep and writes results.csv/json, the charts, summary.md and run.json. */
export async function runSweep(opts: SweepOptions): Promise<SweepPoint[]> {
  const log = opts.log ?? (() => {});
  const methods = opts.methods.map(getMethod);
  if (!opts.remove.length) throw new UserError('--remove needs at least one count, e.g. 0,2,4');
  const tokenizer: Tokenizer = await loadTokenizer(opts.model);
  // calibration prompts and similarity options are checked before anything is written or evaluated
  const prompts = methods.some((m) => m.needsCalibration) ? calibrationPrompts(tokenizer, opts) : null;
  if (prompts && methods.some((m) => m.needsSimilarity)) similarityOptionsFor(prompts.ids.length, opts);
  const started = Date.now();
  mkdirSync(join(opts.out, 'points'), { recursive: true });
  writeMarker(opts.out, 'sweep');
  const keyPath = join(opts.out, 'sweep-key.json');
  const key = JSON.stringify({
    model: opts.model, data: opts.data, ntrain: opts.ntrain, limit: opts.limit ?? null, subjects: opts.evalSubjects ?? null,
    calibration: { data: opts.data, file: opts.calibrationFile ?? null, subjects: opts.subjects ?? null, perSubject: opts.perSubject ?? 'auto', seed: opts.seed ?? 1, representation: opts.representation ?? 'padded', ...(opts.protocol && opts.protocol !== 'mka' ? { protocol: opts.protocol } : {}) },
    similarity: opts.similarity ?? {}, strategy: opts.strategy ?? 'last-pair', blendNorms: opts.blendNorms ?? false,
    ...(opts.ppl ? { ppl: opts.ppl } : {}),
  });
  const oldKey = existsSync(keyPath) ? readFileSync(keyPath, 'utf8') : null;
  if (oldKey !== null && oldKey !== key) {
    throw new UserError(`${opts.out}: holds a sweep with other settings (${keyPath}); choose a new --out or delete that directory`);
  }
  atomicWriteText(keyPath, key);

  const data: MmluData = loadMmlu(opts.data, { subjects: opts.evalSubjects });
  const original = loadModel(opts.model);
  const corpus = opts.ppl ? prepareCorpus(opts.ppl.text, tokenizer, original.config, opts.ppl.seqLen, opts.ppl.stride) : null;
  const L = original.config.num_hidden_layers;
  for (const k of opts.remove) checkRemove(k, L);
  const points: SweepPoint[] = [];
  const timings: Record<string, number> = {};

  const evaluate = async (name: string, model: LlamaModel, reference?: LlamaModel): Promise<{ summary: MmluSummary; seconds: number; ppl: number | null }> => {
    let bar: ReturnType<typeof progress> | null = null;
    const t0 = performance.now();
    const r = await evaluateMmlu({
      model, tokenizer, data, ntrain: opts.ntrain, limit: opts.limit, batchSize: opts.batchSize,
      referenceModel: reference, out: join(opts.out, 'eval', name),
      onProgress: (p) => {
        bar ??= progress(`eval ${name}`, p.questionsToRun, { unit: 'questions', quiet: opts.quiet });
        bar.tick(0, `(${p.subjectsDone}/${p.subjectsTotal} subjects)`);
        bar.tick(p.questions);
      },
    });
    (bar as ReturnType<typeof progress> | null)?.done();
    const ppl = corpus ? (await evaluatePerplexity({ model, ...corpus, out: join(opts.out, 'ppl', name) })).summary.ppl : null;
    return { summary: r.summary!, seconds: (performance.now() - t0) / 1000, ppl };
  };

  try {
    // 1. the uncompressed model, once
    const basePath = join(opts.out, 'points', 'original.json');
    let base = readPoint(basePath);
    if (!base) {
      const e = await evaluate('original', original, original);
      base = pointFrom('original', 0, L, e.summary, e.seconds, e.ppl);
      atomicWriteText(basePath, JSON.stringify({ ...base, summary: e.summary }));
    }
    const baseSummary = readJson<{ summary: MmluSummary }>(basePath)!.summary;
    log(`original: MMLU ${(100 * base.mmlu).toFixed(2)}% (${L} layers)`);

    // 2. one calibration (and similarity) for every method that needs it, cached on disk
    const todo = (m: string) => opts.remove.filter((k) => k > 0 && !existsSync(join(opts.out, 'points', `${m}-${k}.json`)));
    const analysisPath = join(opts.out, 'analysis.json');
    const needCal = methods.filter((m) => m.needsCalibration && todo(m.name).length > 0);
    const needSim = methods.some((m) => m.needsSimilarity);
    let ctxAnalysis = null as ReturnType<typeof analyzeIds> | null;
    let ids: number[][] = [], labels: string[] = [];
    if (needCal.length || (needSim && !existsSync(analysisPath))) {
      ({ ids, labels } = prompts ?? calibrationPrompts(tokenizer, opts));
      const t0 = performance.now();
      ctxAnalysis = analyzeIds(original, ids, labels, { ...opts, withSimilarity: needSim, log });
      timings.analysis = (performance.now() - t0) / 1000;
      if (ctxAnalysis.similarity) {
        atomicWriteText(analysisPath, JSON.stringify(similarityJson(ctxAnalysis.similarity, ctxAnalysis.similarityOptions, {
          samples: ctxAnalysis.calibration.n, representation: ctxAnalysis.calibration.representation,
          block_influence: ctxAnalysis.calibration.blockInfluence, prompts: labels,
        })));
      }
    }

    // 3. every method at every count
    for (const method of methods) {
      const ctx = methodContext(original, ctxAnalysis, { ...opts, out: '', method: method.name, remove: 0 }, ids, labels);
      for (const k of opts.remove) {
        const pointPath = join(opts.out, 'points', `${method.name}-${k}.json`);
        let point = readPoint(pointPath);
        if (!point && k === 0) point = { ...base, method: method.name, seconds: 0 };
        if (!point) {
          const t0 = performance.now();
          const plan: CompressionPlan = await method.plan(ctx, k);
          const model = materialize(planSource(modelSource(original), plan));
          try {
            if (opts.keepModels) await writeCompressed(original, plan, join(opts.out, 'models', `${method.name}-${k}`), { log: () => {} });
            const e = await evaluate(`${method.name}-${k}`, model, original);
            point = pointFrom(method.name, k, L, e.summary, (performance.now() - t0) / 1000, e.ppl);
            atomicWriteText(pointPath, JSON.stringify({ ...point, summary: e.summary, plan: planSummary(plan) }));
          } finally {
            disposeModel(model);
          }
        }
        log(`${method.name} -${k}: MMLU ${(100 * point.mmlu).toFixed(2)}%`);
        points.push(point);
      }
    }
    const analysis = readJson<Record<string, unknown>>(analysisPath);
    await writeSweepReport({
      out: opts.out, base, baseSummary, points, analysis, chosen: opts.chosen,
      pointSummary: (m, k) => readJson<{ summary: MmluSummary }>(join(opts.out, 'points', `${m}-${k}.json`))?.summary ?? null,
      run: {
        command: 'sweep', options: { ...opts, log: undefined }, versions: { mka: readPackageVersion(), tfjs: tf.version_core, node: process.version },
        backend: tf.getBackend(), seed: opts.seed ?? 1, seconds: { total: (Date.now() - started) / 1000, ...timings }, ...opts.runInfo,
      },
    });
    return points;
  } finally {
    disposeModel(original);
  }
}

function readPackageVersion(): string {
  return JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;
}
