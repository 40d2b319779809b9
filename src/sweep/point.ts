/**
 * Computing one point of a sweep: build the compressed model from its stored plan, evaluate it on MMLU
 * (with the original as reference model) into eval/NAME/, and write points/NAME.json. A point's
 * evaluation can also be run one subject at a time (`subjects`), each shard saved by the evaluator as
 * eval/NAME/subjects/<subject>.json; the full run then only loads them. Every write is atomic and the
 * same inputs give the same bytes, so a point (or shard) computed twice leaves the same files.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readChecked } from '../io/schema.ts';
import { UserError } from '../runtime/errors.ts';
import { STORED_POINT } from './point-file.ts';
import { evaluatePerplexity } from '../eval/ppl/evaluate.ts';
import { disposeModel, type LlamaModel } from '../model/model.ts';
import { evaluateMmlu } from '../eval/mmlu/evaluate.ts';
import type { MmluSummary } from '../eval/mmlu/results.ts';
import { writeCompressed } from '../pipeline/write.ts';
import { materialize, planSource, planSummary, type CompressionPlan } from '../compress/merge-plan.ts';
import { modelSource } from '../weights/source.ts';
import { atomicWriteText } from '../io/atomic.ts';
import { progress } from '../runtime/progress.ts';
import type { SweepContext } from './context.ts';
import { calibrateSweep, readPlan } from './calibrate.ts';
import { evalDir, pointFile, pointLabel, pointName, type PointId } from './points.ts';
import type { SweepPoint } from './sweep.ts';

/** A finished point as stored in points/NAME.json. */
export interface StoredPoint extends SweepPoint {
  summary: MmluSummary;
  plan?: Record<string, unknown>;
}

function categoryAccuracy(s: MmluSummary, label: string): number | null {
  const row = s.categories.find((c) => c.name.toLowerCase().startsWith(label));
  return row ? row.accuracy : null;
}

/** The results.csv row of a point from its MMLU summary. */
export function pointFrom(method: string, removed: number, L: number, s: MmluSummary, seconds: number, ppl: number | null): SweepPoint {
  return {
    method, layers_removed: removed, layers: L - removed, compression_ratio: removed / L,
    mmlu: s.overall.accuracy, mmlu_macro: s.overall.macroAccuracy,
    stem: categoryAccuracy(s, 'stem'), humanities: categoryAccuracy(s, 'humanities'),
    social_sciences: categoryAccuracy(s, 'social'), other: categoryAccuracy(s, 'other'),
    // the original agrees with itself (it is evaluated without a reference model)
    perplexity: s.overall.perplexity, ppl, agreement: method === 'original' ? 1 : s.overall.agreement, kl: method === 'original' ? 0 : s.overall.kl,
    seconds: Math.round(seconds * 10) / 10,
  };
}

/** points/NAME.json, or null when the point is not finished. */
export function readStoredPoint(out: string, p: PointId): StoredPoint | null {
  const f = pointFile(out, p);
  if (!existsSync(f)) return null;
  const fix = 'delete it to compute the point again';
  const stored = readChecked(f, STORED_POINT, 'sweep point file', fix);
  if (stored.method !== p.method || stored.layers_removed !== p.removed) {
    throw new UserError(`${f}: holds the point ${pointLabel({ method: stored.method, removed: stored.layers_removed })}, not ${pointLabel(p)}; ${fix}`);
  }
  return stored as unknown as StoredPoint;
}

/** The plan of a point, running the sweep's calibration first if it has not been written. */
export async function pointPlan(ctx: SweepContext, p: PointId): Promise<CompressionPlan> {
  let plan = readPlan(ctx.opts.out, p);
  if (!plan) {
    await calibrateSweep(ctx);
    plan = readPlan(ctx.opts.out, p);
  }
  if (!plan) throw new Error(`sweep: no plan for ${pointLabel(p)} after calibration`);
  return plan;
}

/** The model of a point: the original itself, or the compressed model built from its plan (dispose it). */
export async function pointModel(ctx: SweepContext, p: PointId): Promise<{ model: LlamaModel; plan: CompressionPlan | null }> {
  if (p.method === 'original') return { model: ctx.original, plan: null };
  const plan = await pointPlan(ctx, p);
  return { model: materialize(planSource(modelSource(ctx.original), plan)), plan };
}

/** Frees a model from pointModel (never the original). */
export function disposePointModel(ctx: SweepContext, model: LlamaModel): void {
  if (model !== ctx.original) disposeModel(model);
}

async function evaluatePoint(ctx: SweepContext, p: PointId, model: LlamaModel, subjects?: readonly string[]): Promise<MmluSummary> {
  const { opts } = ctx;
  let bar: ReturnType<typeof progress> | null = null;
  const name = subjects?.length === 1 ? `${pointName(p)} ${subjects[0]}` : pointName(p);
  const r = await evaluateMmlu({
    model, tokenizer: ctx.scoringTokenizer, data: ctx.data, ntrain: opts.ntrain, limit: opts.limit, batchSize: opts.batchSize,
    // The original is evaluated once: against itself as reference it would run twice for an agreement of 1 and a KL of 0.
    subjects, referenceModel: p.method === 'original' ? undefined : ctx.original, cache: ctx.mmlu, out: evalDir(opts.out, p), signal: opts.signal, keyExtra: { bos: ctx.scoringBos },
    onProgress: (e) => {
      bar ??= progress(`eval ${name}`, e.questionsToRun, { unit: 'questions', quiet: opts.quiet });
      bar.tick(0, `(${e.subjectsDone}/${e.subjectsTotal} subjects)`);
      bar.tick(e.questions);
    },
  });
  (bar as ReturnType<typeof progress> | null)?.done();
  return r.summary!;
}

export interface RunPointOptions {
  /** The point's model when the caller already built it (else built here and freed). */
  model?: LlamaModel;
  /** Seconds already spent on this point elsewhere (its subject shards), added to its row. */
  priorSeconds?: number;
}

/**
 * Computes one point (resuming its saved subjects) and writes points/NAME.json; a finished point is
 * read back instead. Returns its row.
 */
export async function runPoint(ctx: SweepContext, p: PointId, ro: RunPointOptions = {}): Promise<SweepPoint> {
  const { opts } = ctx;
  const stored = readStoredPoint(opts.out, p);
  if (stored) return rowOf(stored);
  const t0 = performance.now();
  const built = ro.model ? { model: ro.model, plan: p.method === 'original' ? null : await pointPlan(ctx, p) } : await pointModel(ctx, p);
  try {
    if (opts.keepModels && built.plan) await writeCompressed(ctx.original, built.plan, `${opts.out}/models/${pointName(p)}`, { log: () => {} });
    const summary = await evaluatePoint(ctx, p, built.model);
    const ppl = ctx.corpus ? (await evaluatePerplexity({ model: built.model, ...ctx.corpus, out: join(opts.out, 'ppl', pointName(p)), signal: opts.signal })).summary.ppl : null;
    const row = pointFrom(p.method, p.removed, ctx.layers, summary, (ro.priorSeconds ?? 0) + (performance.now() - t0) / 1000, ppl);
    atomicWriteText(pointFile(opts.out, p), JSON.stringify({ ...row, summary, ...(built.plan ? { plan: planSummary(built.plan) } : {}) }));
    return row;
  } finally {
    if (!ro.model) disposePointModel(ctx, built.model);
  }
}

/** Evaluates some subjects of a point into eval/NAME/subjects/ (one shard of its evaluation). Returns the seconds spent. */
export async function runPointSubjects(ctx: SweepContext, p: PointId, subjects: readonly string[], model?: LlamaModel): Promise<number> {
  const t0 = performance.now();
  const built = model ? { model } : await pointModel(ctx, p);
  try {
    await evaluatePoint(ctx, p, built.model, subjects);
  } finally {
    if (!model) disposePointModel(ctx, built.model);
  }
  return (performance.now() - t0) / 1000;
}

/** The results.csv row of a stored point. */
export function rowOf(s: StoredPoint): SweepPoint {
  const { summary: _summary, plan: _plan, ...row } = s;
  return row;
}
