/**
 * The MMLU evaluation (Hendrycks et al.; the MKA paper's protocol): for each test question, the
 * arg-max of the next-token logits at the end of its few-shot prompt over the four answer tokens, and
 * the paper's perplexity, the loss over the last len(tokenize(question part)) tokens of the prompt.
 *
 * Speed: the few-shot prefix of a subject is run once and its KV cache reused for every question
 * (questions batched, right-padded). Every question is still fed exactly the ids of its full prompt
 * (see question-plan.ts), so predictions and logits equal the naive per-question evaluation (`cached: false`).
 *
 * Resumability: with `out`, each finished subject is written to out/subjects/<subject>.json at once,
 * and a rerun with the same run key loads finished subjects instead of recomputing them (results.ts).
 */
import { resolve } from 'node:path';
import { tf } from '../../runtime/tf.ts';
import type { Workload } from '../../model/memory-estimate.ts';
import { ANSWER_TOKENS, BATCH_SIZE, LIMIT, MMLU_KEY, REFERENCE_MODEL } from './options.ts';
import { checkOption, flag, keyFields } from '../../runtime/options.ts';
import { PASS_HIDDEN_BYTES, passTokens } from '../../model/forward.ts';
import { argmax } from '../../model/generate.ts';
import { computeKey, streamsLayers, type LlamaModel } from '../../model/model.ts';
import { currentProfile } from '../../runtime/profile.ts';
import { UserError } from '../../runtime/errors.ts';
import type { Tokenizer } from '../../tokenizer/tokenizer.ts';
import { ANSWER_LETTERS, type MmluData } from './data.ts';
import type { QuestionRecord } from './record.ts';
import { checkNtrain } from './prompt.ts';
import { MAX_PADDING, answerTokenIds, planStats, planSubject, questionRow, type AnswerTokens, type PlanStats, type SubjectPlan } from './question-plan.ts';
import { logSumExp, scorePlans, type Batching, type ScorePlan } from '../scoring/rows.ts';
import {
  type MmluSummary, type RunKey, type SubjectResult, dataFingerprint, modelFingerprint, openResultsDir, summarize, writeDumpFile,
} from './results.ts';

export type { QuestionRecord } from './record.ts';

export interface MmluProgress {
  /** The subject being evaluated, or what a pass of several holds. */
  subject: string;
  /** Questions finished by this step (a fraction per layer on a streamed pass). */
  questions: number;
  subjectsDone: number;
  subjectsTotal: number;
  /** Questions this run computes (subjects finished earlier excluded). */
  questionsToRun: number;
}

export interface EvaluateMmluOptions {
  model: LlamaModel;
  tokenizer: Tokenizer;
  data: MmluData;
  ntrain: number;
  /** First N test questions per subject. */
  limit?: number;
  /** Subjects to evaluate (default every loaded subject). */
  subjects?: readonly string[];
  /** Answer token of a letter: "A" (default, as the paper) or " A". */
  answerTokens?: AnswerTokens;
  /** Questions per forward pass on the cached path (default: BATCH_SIZE's). */
  batchSize?: number;
  /** Longest padding of a batch row, as a fraction of its batch's longest row (default MAX_PADDING, 0.1). */
  maxPadding?: number;
  /** Prefix caching and batching (default true); false runs every full prompt alone (the reference path). */
  cached?: boolean;
  /** The uncompressed model: adds top-1 agreement and KL divergence of the answer distribution. */
  referenceModel?: LlamaModel;
  /** Results directory (resumable). */
  out?: string;
  /** Drop earlier results in `out` instead of refusing a different run. */
  fresh?: boolean;
  /** Extra run-key fields (e.g. the weight quantization applied by the caller). */
  keyExtra?: Readonly<Record<string, unknown>>;
  /** JSONL file receiving every prompt as fed to the model. */
  dumpPrompts?: string;
  /** Build, tokenize (and dump) the prompts but run no model. */
  dryRun?: boolean;
  onProgress?: (p: MmluProgress) => void;
  /** Called after a subject is finished (and saved). */
  onSubjectDone?: (result: SubjectResult) => void;
  /** Stops between batches with an EvaluationInterrupted error. */
  signal?: AbortSignal;
  /** Plans and reference scores shared with other evaluations on the same tokenizer and data (createMmluCache). */
  cache?: MmluCache;
}

/** Scores of a plan's questions by question index. */
type PlanScores = Map<number, RowScores & { cached: boolean }>;

/**
 * What evaluations of several models on one benchmark share (a sweep evaluates a dozen): each
 * subject's plan (tokenizing the prompts costs as much as running a small model on them) and the
 * reference model's scores. Keyed by every option they depend on; used only with the tokenizer and
 * data it was made for.
 */
export interface MmluCache {
  tokenizer: Tokenizer;
  data: MmluData;
  plans: Map<string, SubjectPlan>;
  reference: Map<LlamaModel, Map<string, PlanScores>>;
  /**
   * The results directory of each finished evaluation of a model held in memory, by its run key and
   * batching: an evaluation of the same weights with the same reference and settings (a sweep's points
   * whose plans agree, as reverse's and angular's often do) copies its subjects from there instead of
   * computing them again.
   */
  results: Map<string, string>;
}

/** An empty MmluCache for evaluations with this tokenizer and data. */
export function createMmluCache(tokenizer: Tokenizer, data: MmluData): MmluCache {
  return { tokenizer, data, plans: new Map(), reference: new Map(), results: new Map() };
}

export interface EvaluateMmluResult {
  /** Per-question records of every evaluated subject (empty on a dry run). */
  records: QuestionRecord[];
  /** Scores (null on a dry run). */
  summary: MmluSummary | null;
  /** Subjects loaded from an earlier run instead of computed. */
  resumedSubjects: string[];
  /** Subjects copied from another evaluation of the same weights and settings (MmluCache.results), and its directory. */
  reusedSubjects: string[];
  reusedFrom: string | null;
  /** Plans of the subjects computed by this run (all subjects on a dry run or with a dump). */
  stats: PlanStats;
  /** Seconds this run spent (resumed subjects excluded), of which planSeconds tokenizing and fitting prompts. */
  seconds: number;
  planSeconds: number;
  /** Questions computed by this run. */
  computedQuestions: number;
}

/** Thrown when the signal aborts a run; finished subjects are saved. */
export class EvaluationInterrupted extends Error {
  constructor(readonly subjectsDone: number, readonly subjectsTotal: number) {
    super(`MMLU evaluation interrupted after ${subjectsDone} of ${subjectsTotal} subjects`);
    this.name = 'EvaluationInterrupted';
  }
}

/** Logits rows computed for a question, and the question part's summed NLL. */
interface RowScores {
  answerLogits: number[];
  nll: number;
}

/** KL(p || q) of the softmaxes of two logit vectors. */
export function klDivergence(pLogits: readonly number[], qLogits: readonly number[]): number {
  const logSoftmax = (x: readonly number[]) => {
    const lse = logSumExp(x);
    return x.map((v) => v - lse);
  };
  const lp = logSoftmax(pLogits), lq = logSoftmax(qLogits);
  return Math.max(0, lp.reduce((s, v, i) => s + Math.exp(v) * (v - lq[i]), 0));
}

/** Yields to the event loop (so a SIGINT handler can run) and stops when the signal aborted. */
async function checkpoint(signal: AbortSignal | undefined, done: number, total: number): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  if (signal?.aborted) throw new EvaluationInterrupted(done, total);
}

/**
 * Scores every question of the plans on the shared scorer (../scoring/rows.ts): per prefix group, the
 * prefix once and its question batches after it (on its keys/values), then the questions alone; a
 * resident model runs these forward jobs one after another, a streamed one all together in one pass
 * over its layers. step() gets each batch's questions as it finishes, or on a streamed pass the
 * questions spread over the layers. The question part's NLL is read only when wantNll.
 */
async function scoreQuestions(
  model: LlamaModel, plans: readonly SubjectPlan[], answerIds: readonly number[], wantNll: boolean, batching: Batching | null,
  step: (questions: number) => Promise<void>,
): Promise<Map<string, PlanScores>> {
  const scorePlansIn: ScorePlan[] = plans.map((plan) => {
    const row = new Map(plan.questions.map((pq, i) => [pq, i]));
    return {
      rows: plan.questions.map((pq) => questionRow(pq, answerIds, wantNll)),
      groups: plan.groups.map((g) => ({ start: g.start, rows: g.members.map((pq) => row.get(pq)!) })),
      alone: plan.alone.map((pq) => row.get(pq)!),
    };
  });
  const scores = await scorePlans(model, scorePlansIn, batching ?? { size: 0, maxPadding: MAX_PADDING }, step);
  return new Map(plans.map((plan, p) => {
    const cached = new Set(plan.groups.flatMap((g) => g.members));
    return [plan.subject, new Map(plan.questions.map((pq, i) => [pq.question.index, {
      answerLogits: scores[p][i].logits, nll: -scores[p][i].spans[0].logProb, cached: cached.has(pq),
    }]))];
  }));
}

/**
 * Evaluates subjects: the model's records, plus agreement and KL against the reference model, whose
 * scores come from the shared cache when it has them (under refKey(subject)).
 */
async function evaluateSubjects(
  opts: EvaluateMmluOptions, plans: readonly SubjectPlan[], answerIds: readonly number[], batching: Batching | null,
  step: (questions: number) => Promise<void>, refKey: (subject: string) => string | null,
): Promise<Map<string, QuestionRecord[]>> {
  const ref = opts.referenceModel;
  // With a reference model, questions count as done when the reference has run them too.
  const own = await scoreQuestions(opts.model, plans, answerIds, true, batching, ref ? async () => step(0) : step);
  const refScores = new Map<string, PlanScores>();
  if (ref) {
    const known = opts.cache?.reference.get(ref);
    const unknown: SubjectPlan[] = [];
    for (const plan of plans) {
      const key = refKey(plan.subject);
      const scores = key === null ? undefined : known?.get(key);
      if (scores) {
        refScores.set(plan.subject, scores);
        await step(plan.questions.length);
      } else {
        unknown.push(plan);
      }
    }
    for (const [subject, scores] of await scoreQuestions(ref, unknown, answerIds, false, batching, step)) {
      refScores.set(subject, scores);
      const key = refKey(subject);
      if (key !== null) {
        const byKey = opts.cache!.reference.get(ref) ?? new Map<string, PlanScores>();
        opts.cache!.reference.set(ref, byKey.set(key, scores));
      }
    }
  }
  return new Map(plans.map((plan) => [plan.subject, plan.questions.map((pq): QuestionRecord => {
    const q = pq.question;
    const s = own.get(plan.subject)!.get(q.index)!;
    const prediction = ANSWER_LETTERS[argmax(s.answerLogits)];
    const rec: QuestionRecord = {
      subject: q.subject, index: q.index, answer: q.answer, prediction, correct: prediction === q.answer,
      answerLogits: s.answerLogits, ntrainKept: pq.ntrainKept, truncated: pq.truncated, cached: s.cached,
      nll: s.nll, nllTokens: pq.nllTokens,
    };
    const r = refScores.get(plan.subject)?.get(q.index);
    if (r) {
      rec.referencePrediction = ANSWER_LETTERS[argmax(r.answerLogits)];
      rec.agreement = rec.referencePrediction === prediction;
      rec.kl = klDivergence(r.answerLogits, s.answerLogits);
    }
    return rec;
  })]));
}

/** Tokens a plan feeds the model (padding aside): each prefix once, each question after its prefix. */
function planTokens(plan: SubjectPlan): number {
  let n = 0;
  for (const g of plan.groups) n += g.start + g.members.reduce((m, pq) => m + pq.ids.length - g.start, 0);
  return n + plan.alone.reduce((m, pq) => m + pq.ids.length, 0);
}

/**
 * Evaluates a model on MMLU (see the file comment). Leaves tf.memory().numTensors as it found it.
 * Throws EvaluationInterrupted when `signal` aborts (finished subjects stay saved in `out`).
 */
export async function evaluateMmlu(opts: EvaluateMmluOptions): Promise<EvaluateMmluResult> {
  const { model, tokenizer, data } = opts;
  const subjects = [...(opts.subjects ?? data.subjects)].sort();
  for (const s of subjects) {
    if (!data.test.has(s)) throw new UserError(`${data.dir}/test/${s}_test.csv: subject ${s} was not loaded`);
  }
  if (subjects.length === 0) throw new UserError('no MMLU subjects to evaluate');
  checkNtrain({ ...data, subjects }, opts.ntrain);
  checkOption(LIMIT, opts.limit);
  const batchSize = opts.batchSize ?? BATCH_SIZE.default;
  checkOption(BATCH_SIZE, batchSize);
  const maxPadding = opts.maxPadding ?? MAX_PADDING;
  const answerTokens = opts.answerTokens ?? ANSWER_TOKENS.default;
  const answerIds = answerTokenIds(tokenizer, answerTokens, model.config.vocab_size);
  const maxTokens = model.config.max_position_embeddings;
  const ref = opts.referenceModel;
  if (ref) {
    if (ref.config.vocab_size !== model.config.vocab_size) {
      throw new UserError(`${flag(REFERENCE_MODEL)}${ref.dir ? ` ${ref.dir}` : ''}: vocabulary of ${ref.config.vocab_size} tokens, but the model has ${model.config.vocab_size}; the reference must share the model's tokenizer`);
    }
    if (ref.config.max_position_embeddings < maxTokens) {
      throw new UserError(`${flag(REFERENCE_MODEL)}${ref.dir ? ` ${ref.dir}` : ''}: max_position_embeddings ${ref.config.max_position_embeddings} is less than the model's ${maxTokens}`);
    }
  }
  const cached = opts.cached ?? true;
  const shared = opts.cache && opts.cache.tokenizer === tokenizer && opts.cache.data === data ? opts.cache : null;
  const planKey = (s: string) => JSON.stringify([s, opts.ntrain, opts.limit ?? null, maxTokens]);
  const planOf = (s: string) => {
    const known = shared?.plans.get(planKey(s));
    if (known) return known;
    const plan = planSubject(tokenizer, data, s, { ntrain: opts.ntrain, limit: opts.limit, maxTokens });
    shared?.plans.set(planKey(s), plan);
    return plan;
  };

  // Planning everything up front is needed for a dump or a dry run; otherwise each subject is planned when reached.
  let plans: Map<string, SubjectPlan> | null = null;
  const tPlan = performance.now();
  if (opts.dumpPrompts !== undefined || opts.dryRun) {
    plans = new Map(subjects.map((s) => [s, planOf(s)]));
    if (opts.dumpPrompts !== undefined) writeDumpFile(opts.dumpPrompts, [...plans.values()]);
  }
  if (opts.dryRun) {
    const planSeconds = (performance.now() - tPlan) / 1000;
    return { records: [], summary: null, stats: planStats([...plans!.values()], batchSize, maxPadding), resumedSubjects: [], reusedSubjects: [], reusedFrom: null, seconds: planSeconds, planSeconds, computedQuestions: 0 };
  }

  // bf16 products, and packed weights on the integer kernels or as float32 rows, give other scores: such runs are keyed apart
  const float32 = model.compute === 'float32' && (!ref || ref.compute === 'float32');
  const packed = computeKey(model).packed_products;
  const key: RunKey = {
    version: 1, model: modelFingerprint(model), reference: ref ? modelFingerprint(ref) : null,
    ...keyFields(MMLU_KEY, opts), maxTokens, ...(float32 ? {} : { compute: ref ? `${model.compute},${ref.compute}` : model.compute }), ...(packed ? { packed_products: packed } : {}),
    ...(opts.keyExtra ?? {}),
  };
  const results = opts.out !== undefined ? openResultsDir(opts.out, key, !!opts.fresh) : null;
  // The same run key and batching give the same records, so evaluations of the same weights share their subjects:
  // only for a model held in memory (as a sweep's points are), whose fingerprint hashes every weight it has
  // (a model directory's hashes its files, whatever was changed in memory; a streamed one's, not the layers it reads).
  const runId = shared && results && model.dir === null && model.checkpoint === null ? JSON.stringify([key, cached, batchSize, maxPadding]) : null;
  const twin = runId === null ? undefined : shared!.results.get(runId);
  const reused = new Set(twin === undefined || resolve(twin) === resolve(opts.out!) ? [] : subjects.filter((s) => results!.adopt(s, twin)));
  const done = new Map<string, SubjectResult>();
  const resumedSubjects: string[] = [];
  for (const s of subjects) {
    const prior = results?.load(s, dataFingerprint(data, s), Math.min(opts.limit ?? Infinity, data.test.get(s)!.length));
    if (prior) {
      done.set(s, prior);
      if (!reused.has(s)) resumedSubjects.push(s);
    }
  }

  const questionsToRun = subjects.filter((s) => !done.has(s))
    .reduce((n, s) => n + Math.min(opts.limit ?? Infinity, data.test.get(s)!.length), 0);
  const t0 = performance.now();
  let computedQuestions = 0, planSeconds = plans ? (t0 - tPlan) / 1000 : 0;
  const computedPlans: SubjectPlan[] = [];
  // A streamed model reads every layer from disk once per pass, so subjects share passes, as many as
  // fit PASS_HIDDEN_BYTES of hidden states (passTokens); a resident one runs subject by subject.
  const streamed = streamsLayers(model) || (ref !== undefined && streamsLayers(ref));
  const tokensPerPass = streamed ? passTokens(model.config) : 0;
  const pending = subjects.filter((s) => !done.has(s));
  const planned = new Map<string, SubjectPlan>();
  while (pending.length) {
    const pass: SubjectPlan[] = [];
    let tokens = 0;
    while (pending.length) {
      const tp = performance.now();
      const plan = plans?.get(pending[0]) ?? planned.get(pending[0]) ?? planOf(pending[0]);
      if (!plans) planSeconds += (performance.now() - tp) / 1000;
      planned.set(plan.subject, plan);
      const run = cached ? plan : { ...plan, groups: [], alone: [...plan.questions] };
      const n = planTokens(run);
      if (pass.length && tokens + n > tokensPerPass) break;
      pass.push(run);
      tokens += n;
      pending.shift();
      planned.delete(plan.subject);
      computedPlans.push(plan);
    }
    const names = pass.length === 1 ? pass[0].subject : `${pass.length} subjects in one pass over the layers`;
    const step = async (n: number) => {
      opts.onProgress?.({ subject: names, questions: n, subjectsDone: done.size, subjectsTotal: subjects.length, questionsToRun });
      await checkpoint(opts.signal, done.size, subjects.length);
    };
    await checkpoint(opts.signal, done.size, subjects.length);
    const refKey = (subject: string) => (shared ? JSON.stringify([planKey(subject), answerTokens, cached, batchSize, maxPadding]) : null);
    const records = await evaluateSubjects({ ...opts, cache: shared ?? undefined }, pass, answerIds, cached ? { size: batchSize, maxPadding } : null, step, refKey);
    for (const { subject } of pass) {
      const result: SubjectResult = { subject, data: dataFingerprint(data, subject), questions: records.get(subject)! };
      results?.save(result);
      done.set(subject, result);
      computedQuestions += result.questions.length;
      opts.onProgress?.({ subject, questions: 0, subjectsDone: done.size, subjectsTotal: subjects.length, questionsToRun });
      opts.onSubjectDone?.(result);
    }
  }
  const seconds = (performance.now() - tPlan) / 1000;
  const ordered = subjects.map((s) => done.get(s)!);
  const summary = summarize(ordered, {
    model: model.dir, reference: ref?.dir ?? null, data: data.dir, ntrain: opts.ntrain, limit: opts.limit ?? null, answerTokens,
    extra: opts.keyExtra ?? {},
  });
  const stats = planStats(computedPlans, batchSize, maxPadding);
  const reusedSubjects = subjects.filter((s) => reused.has(s));
  results?.finish(summary, {
    backend: currentProfile().backend, compute: model.compute, ...(ref ? { referenceCompute: ref.compute } : {}), cached, batchSize, seconds, planSeconds, computedQuestions,
    questionsPerSecond: seconds > 0 ? computedQuestions / seconds : null, resumedSubjects, ...(reusedSubjects.length ? { reusedSubjects, reusedFrom: twin } : {}),
    uncachedQuestions: cached ? stats.uncachedQuestions : stats.questions,
    testQuestions: Object.fromEntries(subjects.map((s) => [s, data.test.get(s)!.length])),
    shotsKept: Object.fromEntries(ordered.map((r) => [r.subject, Math.min(...r.questions.map((q) => q.ntrainKept))])),
    fitting: summary.fitting,
  });
  if (runId !== null) shared!.results.set(runId, opts.out!);
  return {
    records: ordered.flatMap((r) => r.questions), summary, stats, resumedSubjects, reusedSubjects, reusedFrom: reusedSubjects.length ? twin! : null, seconds, planSeconds, computedQuestions,
  };
}

/**
 * What an MMLU evaluation needs for the memory estimate: batches of questions on a cached 5-shot
 * prefix, answer logits at the last position; --batch-size sets the batch. Prompts are not tokenized
 * yet when the check runs, so typical MMLU lengths are assumed (a 1,536-token prefix, 256-token
 * questions), not the longest subject's. Streamed, subjects share passes over the layers, which hold
 * up to PASS_HIDDEN_BYTES of hidden states.
 */
export function mmluWorkload(opts: { batchSize?: number; streaming?: boolean }): Workload {
  const rows = opts.batchSize ?? BATCH_SIZE.default;
  const streaming = opts.streaming ?? false;
  return {
    streaming, rows, microBatch: rows, seqLen: 256, cacheTokens: 1536, prefixPass: true, logits: 'last', heldBytes: streaming ? PASS_HIDDEN_BYTES : 0,
    batch: { option: BATCH_SIZE, field: 'rows' }, streamable: true,
  };
}
