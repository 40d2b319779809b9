/**
 * Computing one point of a sweep: build the compressed model from its stored plan, evaluate it on the
 * sweep's tasks (the paper's MMLU with the original as reference model into eval/NAME/, the others into
 * eval/NAME/tasks/), and write points/NAME.json: its row (metrics map), MMLU summary, plan summary and
 * every document's scores. A point's evaluation can also be run one shard at a time (an MMLU subject,
 * or 500 documents of another task), each saved by its evaluator; the full run then only loads them.
 * Every write is atomic and the same inputs give the same bytes, so a point (or shard) computed twice
 * leaves the same files.
 */
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { readChecked } from '../io/schema.ts';
import { UserError } from '../runtime/errors.ts';
import { STORED_POINT } from './point-file.ts';
import { evaluatePerplexity } from '../eval/ppl/evaluate.ts';
import { evaluateTasks, shardFile, taskShards, type ShardId } from '../eval/tasks/evaluate.ts';
import { accStderr, type MetricsMap } from '../eval/tasks/metrics.ts';
import { PAPER_MMLU } from '../eval/tasks/registry.ts';
import { mmluPointMetrics, sweepTasks, taskPointMetrics, type DocumentScores } from './tasks.ts';
import { disposeModel, type LlamaModel } from '../model/model.ts';
import { evaluateMmlu } from '../eval/mmlu/evaluate.ts';
import type { MmluSummary } from '../eval/mmlu/results.ts';
import { planFiles, writeCompressed } from '../pipeline/write.ts';
import { planSource, type CompressionPlan } from '../compress/merge-plan.ts';
import { materialize } from '../compress/plan-model.ts';
import { planSummary } from '../compress/plan-file.ts';
import { modelSource } from '../weights/source.ts';
import { atomicWriteText } from '../io/atomic.ts';
import { progress } from '../runtime/progress.ts';
import type { SweepContext } from './context.ts';
import { calibrateSweep, readPlan } from './calibrate.ts';
import { keptModelDir, keptModelNeeded } from './kept-models.ts';
import { evalDir, pointFile, pointLabel, pointName, pointQuantize, subjectFile, withQuantize, type PointId } from './points.ts';
import { SWEEP_QUANTIZE } from './options.ts';
import { flag } from '../runtime/options.ts';
import type { LlamaConfig } from '../model/config.ts';
import { getQuantMethod, parseQuantization, type Quantization } from '../quant/registry.ts';
import { materializeQuantized, quantizedSource } from '../quant/quantize.ts';
import { modelBytes } from '../quant/size.ts';
import { QUANT_CALIBRATION_SHOTS, quantCalibration, quantizeSourceTo } from '../pipeline/quantize.ts';
import type { SweepPoint } from './types.ts';

/** A finished point as stored in points/NAME.json. */
export interface StoredPoint extends SweepPoint {
  /** The paper's MMLU summary (null when the sweep has no mmlu task). */
  summary: MmluSummary | null;
  plan?: Record<string, unknown>;
  /** Per task and metric, every document's score (0/1 string): what the paired tests compare. */
  documents?: DocumentScores;
  /** A quantized point's embedding bits (absent in points stored before they were recorded: the layers' bits then). */
  embedding_bits?: number;
}

function categoryAccuracy(s: MmluSummary | null, label: string): number | null {
  const row = s?.categories.find((c) => c.name.toLowerCase().startsWith(label));
  return row ? row.accuracy : null;
}

/** What evaluating a point gives: the MMLU summary (if any), every task's metrics and document scores. */
export interface PointEvaluation {
  summary: MmluSummary | null;
  metrics: MetricsMap;
  documents: DocumentScores;
}

/** The size of a point's model: its bytes (16-bit floats, packed weights as stored), and the original's at 16 bits. */
export function pointBytes(config: LlamaConfig, p: PointId): { bytes: number; original: number } {
  const original: LlamaConfig = { ...config, quantization_config: null };
  const compressed = { ...original, num_hidden_layers: original.num_hidden_layers - p.removed };
  return { bytes: modelBytes(compressed, pointQuantization(p)), original: modelBytes(original, null) };
}

/** The quantization of a point (null: unquantized). */
export function pointQuantization(p: PointId): Quantization | null {
  return parseQuantization(pointQuantize(p), flag(SWEEP_QUANTIZE));
}

/** The results.csv row of a point from its evaluation (paired tests are added by the report, against the original). */
export function pointFrom(p: PointId, L: number, size: { bytes: number; original: number }, e: PointEvaluation, seconds: number, ppl: number | null): SweepPoint {
  const s = e.summary;
  const { method, removed } = p;
  const reference = method === 'original' && pointQuantize(p) === 'none'; // the original itself: agreement 1, KL 0
  return {
    method, layers_removed: removed, layers: L - removed, compression_ratio: removed / L,
    quantize: pointQuantize(p), bytes: size.bytes, byte_compression_ratio: 1 - size.bytes / size.original, metrics: e.metrics, paired: null,
    mmlu: s ? s.overall.accuracy : null, mmlu_macro: s ? s.overall.macroAccuracy : null,
    stem: categoryAccuracy(s, 'stem'), humanities: categoryAccuracy(s, 'humanities'),
    social_sciences: categoryAccuracy(s, 'social'), other: categoryAccuracy(s, 'other'),
    // the original agrees with itself (it is evaluated without a reference model)
    perplexity: s ? s.overall.perplexity : null, ppl,
    agreement: !s ? null : reference ? 1 : s.overall.agreement, kl: !s ? null : reference ? 0 : s.overall.kl,
    seconds: Math.round(seconds * 10) / 10,
  };
}

/** points/NAME.json, or null when the point is not finished. */
export function readStoredPoint(out: string, p: PointId): StoredPoint | null {
  const f = pointFile(out, p);
  if (!existsSync(f)) return null;
  const fix = 'delete it to compute the point again';
  const stored = readChecked(f, STORED_POINT, 'sweep point file', fix);
  const held = withQuantize({ method: stored.method, removed: stored.layers_removed }, stored.quantize ?? 'none');
  if (pointLabel(held) !== pointLabel(p)) throw new UserError(`${f}: holds the point ${pointLabel(held)}, not ${pointLabel(p)}; ${fix}`);
  const q = pointQuantization(p);
  // points stored before the embedding's bits were recorded had them at the layers' bits
  const embedding = stored.embedding_bits ?? q?.grid.bits;
  if (q && embedding !== q.embeddingBits) {
    throw new UserError(`${f}: was computed with a ${embedding}-bit embedding, and ${pointQuantize(p)} now stores it at ${q.embeddingBits} bits; ${fix}`);
  }
  return stored as unknown as StoredPoint;
}

/** The plan of a point, running the sweep's calibration first if it has not been written. */
export async function pointPlan(ctx: SweepContext, p: PointId): Promise<CompressionPlan> {
  const layers = ctx.original.config.num_hidden_layers;
  let plan = readPlan(ctx.opts.out, p, layers);
  if (!plan) {
    await calibrateSweep(ctx);
    plan = readPlan(ctx.opts.out, p, layers);
  }
  if (!plan) throw new Error(`sweep: no plan for ${pointLabel(p)} after calibration`);
  return plan;
}

/**
 * The model of a point: the original itself, or the compressed model built from its plan, quantized when
 * the point has a quantization (calibrated as `mka quantize` on the sweep's calibration questions); dispose it.
 */
export async function pointModel(ctx: SweepContext, p: PointId): Promise<{ model: LlamaModel; plan: CompressionPlan | null }> {
  const q = pointQuantization(p);
  if (p.method === 'original' && !q) return { model: ctx.original, plan: null };
  const plan = p.method === 'original' ? null : await pointPlan(ctx, p);
  const source = plan ? planSource(modelSource(ctx.original), plan) : modelSource(ctx.original);
  if (!q) return { model: materialize(source), plan };
  // the prompts openSweep drew for its memory check (the same for every calibrating method)
  const calibration = getQuantMethod(q.method).calibration !== 'none' && ctx.quantCalibration ? ctx.quantCalibration : await quantCalibration(ctx.opts.model, q, ctx.opts);
  const kept = keptModelDir(ctx.opts.out, p);
  if (ctx.opts.keepModels && keptModelNeeded(ctx.opts.out, p, ctx.layers - p.removed, q, plan)) {
    // written as `mka quantize` writes it, from the same tensors the sweep evaluates (a worker that finds it written quantizes in memory only)
    const files = plan ? planFiles(ctx.opts.model, plan, 'float32', kept) : {};
    const { model } = await quantizeSourceTo(source, {
      model: ctx.opts.model, out: kept, quantization: q, calibration, materialize: true, quiet: ctx.opts.quiet, log: ctx.opts.log,
      ...(plan ? {
        extraFiles: { 'merge.json': files['merge.json'], 'mergekit.yaml': files['mergekit.yaml'] },
        card: { compression: JSON.parse(files['merge.json']) as Record<string, unknown>, summary: `${ctx.opts.model} with ${p.removed} of its ${plan.originalLayers} decoder layers removed by \`${plan.method}\`, then quantized by \`${pointQuantize(p)}\` (sweep point ${pointLabel(p)}).` },
      } : {}),
    });
    return { model: model!, plan };
  }
  const quantized = quantizedSource({ source, quantization: q, prompts: calibration.prompts, calibrationInfo: calibration.info, label: ctx.opts.model, quiet: ctx.opts.quiet, log: ctx.opts.log });
  return { model: await materializeQuantized(quantized), plan };
}

/** Frees a model from pointModel (never the original). */
export function disposePointModel(ctx: SweepContext, model: LlamaModel): void {
  if (model !== ctx.original) disposeModel(model);
}

/** A shard of a point's evaluation: an MMLU subject, or documents of another task (evaluate.ts' ShardId). */
export type PointShard = { task: 'mmlu'; subject: string } | ShardId;
export type { ShardId };

/** Where a point's tasks but MMLU keep their resumable shards. */
export const pointTasksDir = (out: string, p: PointId) => join(evalDir(out, p), 'tasks');

/**
 * Evaluates a point on the sweep's tasks: the paper's MMLU into eval/NAME/ (with the original as
 * reference), the others into eval/NAME/tasks/. With `shard`, only that shard is computed (a queue job's
 * share) and nothing is returned.
 */
async function evaluatePoint(ctx: SweepContext, p: PointId, model: LlamaModel, shard?: PointShard): Promise<PointEvaluation | null> {
  const { opts } = ctx;
  const tasks = sweepTasks(opts);
  let bar: ReturnType<typeof progress> | null = null;
  const name = shard ? `${pointName(p)} ${shard.task === 'mmlu' ? (shard as { subject: string }).subject : `${shard.task} ${(shard as ShardId).index}`}` : pointName(p);
  let summary: MmluSummary | null = null;
  const metrics: MetricsMap = {};
  const documents: DocumentScores = {};
  const quantized = pointQuantize(p) !== 'none';
  if (tasks.includes(PAPER_MMLU) && (!shard || shard.task === 'mmlu')) {
    const subjects = shard ? [(shard as { subject: string }).subject] : undefined;
    const r = await evaluateMmlu({
      model, tokenizer: ctx.scoringTokenizer, data: ctx.data, ntrain: opts.ntrain, limit: opts.limit, batchSize: opts.batchSize,
      // The original is evaluated once: against itself as reference it would run twice for an agreement of 1 and a KL of 0.
      subjects, referenceModel: p.method === 'original' && !quantized ? undefined : ctx.original, cache: ctx.mmlu, out: evalDir(opts.out, p), signal: opts.signal,
      // a quantized point's results are its quantization's: the spec (and the method's parameters) are in the run key
      keyExtra: { bos: ctx.scoringBos, ...(quantized ? { quantize: quantizationKey(pointQuantization(p)!) } : {}) },
      onProgress: (e) => {
        bar ??= progress(`eval ${name}`, e.questionsToRun, { unit: 'questions', quiet: opts.quiet });
        bar.tick(0, `(${e.subjectsDone}/${e.subjectsTotal} subjects)`);
        bar.tick(e.questions);
      },
    });
    (bar as ReturnType<typeof progress> | null)?.done();
    bar = null;
    if (r.reusedSubjects.length) {
      opts.log?.(`sweep: ${pointName(p)} has the weights of ${basename(r.reusedFrom!)} (the same plan): ${r.reusedSubjects.length} MMLU subject${r.reusedSubjects.length === 1 ? '' : 's'} copied from its results, not computed again`);
    }
    if (!shard) {
      summary = r.summary!;
      const fit = summary.fitting;
      if (p.method === 'original' && !quantized && (fit.promptsWithDroppedExamples || fit.truncatedQuestions)) {
        opts.log?.(`sweep: ${fit.promptsWithDroppedExamples} of ${summary.overall.questions} MMLU prompts lost dev examples to fit the model's context (${fit.droppedExamples} in all)`
          + `${fit.truncatedQuestions ? `, ${fit.truncatedQuestions} questions were cut to their last tokens` : ''}; every point sees the same prompts (points/original.json records it)`);
      }
      const m = mmluPointMetrics(r.records);
      metrics[PAPER_MMLU] = m.metrics;
      documents[PAPER_MMLU] = m.documents;
    }
  }
  if (ctx.taskInputs.length && (!shard || shard.task !== 'mmlu')) {
    const only = shard ? (s: ShardId) => s.task === shard.task && s.subtask === (shard as ShardId).subtask && s.index === (shard as ShardId).index : undefined;
    const r = await evaluateTasks({
      model, tokenizer: ctx.tokenizer, tasks: ctx.taskInputs, out: pointTasksDir(opts.out, p), batchSize: opts.batchSize, signal: opts.signal, only,
      onProgress: (e) => {
        bar ??= progress(`eval ${name} tasks`, e.docsToRun, { unit: 'docs', quiet: opts.quiet });
        bar.tick(e.docs, `| ${e.label}`);
      },
    });
    (bar as ReturnType<typeof progress> | null)?.done();
    if (!shard) {
      const m = taskPointMetrics(r.results);
      Object.assign(metrics, m.metrics);
      Object.assign(documents, m.documents);
    }
  }
  if (shard) return null;
  // the metrics map in the sweep's task order
  return { summary, metrics: Object.fromEntries(tasks.map((t) => [t, metrics[t]])), documents: Object.fromEntries(tasks.map((t) => [t, documents[t]])) };
}

/** The shards of every point's evaluation: MMLU subjects, then other tasks' document shards. */
export function pointShards(ctx: Pick<SweepContext, 'opts' | 'subjects' | 'taskInputs'>): PointShard[] {
  const mmlu: PointShard[] = sweepTasks(ctx.opts).includes(PAPER_MMLU) ? ctx.subjects.map((subject) => ({ task: 'mmlu' as const, subject })) : [];
  return [...mmlu, ...ctx.taskInputs.flatMap((input) => taskShards(input))];
}

/** Whether a shard of a point is finished on disk. */
export function shardDone(out: string, p: PointId, s: PointShard): boolean {
  return existsSync(s.task === 'mmlu' ? subjectFile(out, p, (s as { subject: string }).subject) : shardFile(pointTasksDir(out, p), s as ShardId));
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
    // (a quantized point's model is written by pointModel, as it is quantized)
    if (opts.keepModels && built.plan && !pointQuantization(p) && keptModelNeeded(opts.out, p, ctx.layers - p.removed, null, built.plan)) {
      await writeCompressed(ctx.original, built.plan, keptModelDir(opts.out, p), { log: () => {} });
    }
    const e = (await evaluatePoint(ctx, p, built.model))!;
    const ppl = ctx.corpus ? (await evaluatePerplexity({ model: built.model, ...ctx.corpus, out: join(opts.out, 'ppl', pointName(p)), signal: opts.signal })).summary.ppl : null;
    const row = pointFrom(p, ctx.layers, pointBytes(ctx.original.config, p), e, (ro.priorSeconds ?? 0) + (performance.now() - t0) / 1000, ppl);
    const q = pointQuantization(p);
    atomicWriteText(pointFile(opts.out, p), JSON.stringify({ ...row, ...(q ? { embedding_bits: q.embeddingBits } : {}), summary: e.summary, ...(built.plan ? { plan: planSummary(built.plan) } : {}), documents: e.documents }));
    return row;
  } finally {
    if (!ro.model) disposePointModel(ctx, built.model);
  }
}

/** Evaluates one shard of a point (an MMLU subject, or documents of another task) into eval/NAME/. Returns the seconds spent. */
export async function runPointShard(ctx: SweepContext, p: PointId, shard: PointShard, model?: LlamaModel): Promise<number> {
  const t0 = performance.now();
  const built = model ? { model } : await pointModel(ctx, p);
  try {
    await evaluatePoint(ctx, p, built.model, shard);
  } finally {
    if (!model) disposePointModel(ctx, built.model);
  }
  return (performance.now() - t0) / 1000;
}

/** What a quantized point's evaluation depends on besides the model it quantizes: the method, grid, parameters and calibration shots. */
function quantizationKey(q: Quantization): string {
  return JSON.stringify({ method: q.method, grid: q.grid, params: q.params, embedding_bits: q.embeddingBits, shots: QUANT_CALIBRATION_SHOTS });
}

/** The results.csv row of a stored point. */
export function rowOf(s: StoredPoint, config: LlamaConfig | null = null): SweepPoint {
  const { summary: _summary, plan: _plan, documents: _documents, embedding_bits: _embeddingBits, ...row } = s;
  const quantize = row.quantize ?? 'none';
  // points stored before sizes were recorded: their bytes from the model's config (when given)
  const size = row.bytes === undefined && config ? pointBytes(config, withQuantize({ method: s.method, removed: s.layers_removed }, quantize)) : null;
  // points stored before tasks existed hold MMLU alone
  return {
    ...row, quantize, ...(size ? { bytes: size.bytes, byte_compression_ratio: 1 - size.bytes / size.original } : {}),
    metrics: row.metrics ?? legacyMetrics(s), paired: row.paired ?? null,
  };
}

/** The metrics map of a point stored before the map existed: MMLU's accuracy over its questions. */
function legacyMetrics(s: StoredPoint): MetricsMap {
  const n = s.summary?.overall.questions ?? 0;
  const correct = s.summary?.overall.correct ?? 0;
  return { [PAPER_MMLU]: { acc: { value: s.mmlu ?? 0, stderr: n < 2 ? null : accStderr(correct, n), n } } };
}
