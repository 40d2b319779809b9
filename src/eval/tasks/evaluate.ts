/**
 * Evaluating a model on lm-eval-style tasks: every document's requests (requests.ts) are planned into
 * rows (the loglikelihood scorer, ../scoring/), scored, and turned into per-document records (the
 * choices' loglikelihoods, is_greedy, acc, acc_norm, what truncation cost) and metrics (metrics.ts).
 *
 * Work is cut into shards (a subtask's documents, at most SHARD_DOCS at a time). A resident model
 * runs them one after another; a streamed one puts as many shards as fit PASS_HIDDEN_BYTES of hidden
 * states into one pass over its layers, whichever tasks they belong to (`mka eval tasks` reads each
 * layer once for all of them). With `out`, each finished shard is written at once and a rerun with
 * the same run key loads it instead of computing it again, so an interrupted run resumes.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { readRegularFile } from '../../io/read.ts';
import { join } from 'node:path';
import { passTokens } from '../../model/forward.ts';
import { computeKey, streamsLayers, type LlamaModel } from '../../model/model.ts';
import { atomicWriteText } from '../../io/atomic.ts';
import { readChecked } from '../../io/schema.ts';
import { TASK_SHARD } from './result-files.ts';
import { modelFingerprint } from '../fingerprint.ts';
import { UserError } from '../../runtime/errors.ts';
import { PythonRandom } from '../../runtime/python-random.ts';
import type { Tokenizer } from '../../tokenizer/tokenizer.ts';
import { planRequests, requestEncoder, type PlannedRequest, type RequestEncoder } from '../scoring/loglikelihood.ts';
import { MAX_PADDING, scorePlans, type RowScore, type ScorePlan } from '../scoring/rows.ts';
import { choiceMetrics, metricOf, pooledStderr, type MetricValue } from './metrics.ts';
import { subtaskDocRequests, type DocRequests } from './requests.ts';
import type { Doc, Subtask, TaskDefinition, TaskGroup } from './task.ts';
import { checkOption, flag, keyFields } from '../../runtime/options.ts';
import { OUT } from '../../io/output-options.ts';
import { FRESH } from '../mmlu/options.ts';
import { NUM_FEWSHOT, TASK_BATCH_SIZE, TASK_KEY, TASK_KEY_FIELDS, TASK_LIMIT } from './options.ts';

/** Documents per shard: the unit of resumption. */
export const SHARD_DOCS = 500;

/** lm-eval's default fewshot_random_seed. */
export const FEWSHOT_SEED = 1234;

/** A task with its data, ready to evaluate. */
export interface TaskInput {
  task: TaskDefinition;
  subtasks: Subtask[];
  /** Few-shot examples per prompt. */
  shots: number;
  /** First N documents per subtask (null: all). */
  limit: number | null;
  /** Group entries of the results (MMLU's categories). */
  groups?: TaskGroup[];
}

/** One scored document. */
export interface DocRecord {
  doc_id: number;
  /** Per choice: loglikelihood and is_greedy. */
  lls: number[];
  greedy: boolean[];
  acc: number;
  acc_norm: number;
  gold: number;
  /** Tokens cut from the left of the longest request to fit the model's context (0: none). */
  truncated: number;
  /** Few-shot examples the prompt holds in full (after truncation). */
  shots: number;
}

/** The finished evaluation of one subtask. */
export interface SubtaskResult {
  name: string;
  alias: string;
  records: DocRecord[];
  metrics: Record<string, MetricValue>;
  originalSize: number;
  /** Its lm-eval config fields beyond the task's. */
  config?: Record<string, unknown>;
}

export interface TaskResult {
  task: TaskDefinition;
  shots: number;
  limit: number | null;
  subtasks: SubtaskResult[];
  /** The task's metrics (a group's: size-weighted over its subtasks, pooled stderr). */
  metrics: Record<string, MetricValue>;
  groups: { name: string; alias: string; members: string[]; metrics: Record<string, MetricValue> }[];
  /** Prompts cut to the model's context, and how many of them lost few-shot examples. */
  truncatedPrompts: number;
  promptsWithFewerShots: number;
  /** Documents whose target is none of their choices (scored as wrong, as lm-eval scores them). */
  targetsOutOfRange: number;
}

export interface EvaluateTasksProgress {
  /** What the current pass holds. */
  label: string;
  /** 'mmlu' while `eval tasks` runs the paper's MMLU (questions), else the lm-eval-style tasks (documents). */
  phase?: 'mmlu' | 'tasks';
  /** Documents finished by this step (a fraction per layer on a streamed pass). */
  docs: number;
  docsToRun: number;
}

export interface EvaluateTasksOptions {
  model: LlamaModel;
  tokenizer: Tokenizer;
  tasks: TaskInput[];
  /** Results directory (resumable): OUT/<task>/shards/. */
  out?: string;
  fresh?: boolean;
  /** Rows per batch (default: TASK_BATCH_SIZE's), and prefix caching with batching (default true; false runs every row alone). */
  batchSize?: number;
  cached?: boolean;
  /** The model's context in tokens (lm-eval's max_length; default max_position_embeddings). */
  maxLength?: number;
  /** Extra run-key fields (e.g. weight quantization). */
  keyExtra?: Readonly<Record<string, unknown>>;
  onProgress?: (p: EvaluateTasksProgress) => void;
  /** Stops between batches with TasksInterrupted; finished shards stay saved. */
  signal?: AbortSignal;
  /** Documents per shard (default SHARD_DOCS). */
  shardDocs?: number;
  /** Compute only the shards this accepts (a queue job's share); the others are neither computed nor needed. */
  only?: (shard: ShardId) => boolean;
}

/** A shard of a task: documents index·SHARD_DOCS.. of one subtask. */
export interface ShardId {
  task: string;
  subtask: string;
  index: number;
}

/** The shards of a task (subtask by subtask, in order). */
export function taskShards(input: TaskInput, shardDocs = SHARD_DOCS): ShardId[] {
  return input.subtasks.flatMap((sub) => {
    const n = Math.min(input.limit ?? sub.docs.length, sub.docs.length);
    return Array.from({ length: Math.ceil(n / shardDocs) }, (_, index) => ({ task: input.task.name, subtask: sub.name, index }));
  });
}

/** Where a finished shard is saved under a results directory. */
export function shardFile(out: string, s: ShardId): string {
  return join(out, s.task, 'shards', `${s.subtask}-${String(s.index).padStart(5, '0')}.json`);
}

/** Thrown when the signal aborts a run; finished shards are saved. */
export class TasksInterrupted extends Error {
  constructor(readonly docsDone: number, readonly docsTotal: number) {
    super(`task evaluation interrupted after ${docsDone} of ${docsTotal} documents`);
    this.name = 'TasksInterrupted';
  }
}

/** The few-shot examples of each of the first documents of a subtask, as lm-eval's samplers draw them (a seeded sequence). */
export function drawShotsFor(input: TaskInput, sub: Subtask, docs: readonly Doc[]): Doc[][] {
  const rnd = input.task.sampler === 'default' && input.shots > 0 ? new PythonRandom(FEWSHOT_SEED) : null;
  const k = input.shots;
  if (k === 0) return docs.map(() => []);
  const pool = sub.fewshotDocs;
  if (pool.length < k) {
    throw new UserError(`${sub.source}: ${sub.name} has ${pool.length} few-shot examples (split ${input.task.dataset.fewshotSplit ?? 'none'}), fewer than the ${k} asked for; lower ${flag(NUM_FEWSHOT)}`);
  }
  if (input.task.sampler === 'first_n') return docs.map(() => pool.slice(0, k));
  // lm-eval's default sampler: one random.Random(1234) for the task, rnd.sample(pool, k) per document in
  // order; when the task has no test_split the document is passed along: k + 1 drawn, the document
  // (equal dicts) dropped, the first k kept, and if copies of it left fewer, k drawn from the pool without it
  const excludeDoc = input.task.dataset.testSplit === null;
  const key = pool.map((d) => JSON.stringify(d));
  return docs.map((doc) => {
    if (!excludeDoc) return rnd!.sample(pool.length, k).map((i) => pool[i]);
    const self = JSON.stringify(doc);
    const drawn = rnd!.sample(pool.length, k + 1).filter((i) => key[i] !== self).slice(0, k);
    if (drawn.length === k) return drawn.map((i) => pool[i]);
    const rest = pool.filter((_, i) => key[i] !== self);
    if (rest.length < k) throw new UserError(`${sub.source}: ${sub.name} has ${rest.length} few-shot examples besides the document itself, fewer than the ${k} asked for; lower ${flag(NUM_FEWSHOT)}`);
    return rnd!.sample(rest.length, k).map((i) => rest[i]);
  });
}

/** A shard of work: documents of one subtask. */
interface Shard {
  input: TaskInput;
  sub: Subtask;
  index: number;
  /** Positions of its documents in the subtask. */
  from: number;
  docs: Doc[];
  shots: Doc[][];
  fingerprint: string;
}

function shardFingerprint(task: TaskDefinition, docs: readonly Doc[], shots: readonly Doc[][]): string {
  const h = createHash('sha256').update(task.name).update(String(task.version));
  docs.forEach((d, i) => h.update(JSON.stringify(d)).update(JSON.stringify(shots[i])));
  return h.digest('hex').slice(0, 32);
}

/** The planned rows of a shard and what each document needs to read its records from them. */
interface PlannedShard {
  shard: Shard;
  plan: ScorePlan;
  docs: { req: DocRequests; planned: PlannedRequest[] }[];
  tokens: number;
}

function planShard(enc: RequestEncoder, shard: Shard, maxLength: number, cached: boolean): PlannedShard {
  const docs = shard.docs.map((_, i) => ({ req: subtaskDocRequests(shard.input.task, shard.sub, shard.from + i, shard.shots[i]) }));
  const requests = docs.flatMap((d) => d.req.requests);
  const owner = docs.flatMap((d, i) => d.req.requests.map(() => i));
  const label = (r: number) => `${shard.sub.source}: ${shard.sub.name} document ${shard.from + owner[r]}`;
  const { plan, requests: planned } = planRequests(enc, requests, maxLength, cached, label);
  let at = 0;
  const withPlanned = docs.map((d) => ({ ...d, planned: planned.slice(at, (at += d.req.requests.length)) }));
  let tokens = 0;
  for (const g of plan.groups) tokens += g.start + g.rows.reduce((n, r) => n + plan.rows[r].ids.length - g.start, 0);
  for (const r of plan.alone) tokens += plan.rows[r].ids.length;
  return { shard, plan, docs: withPlanned, tokens };
}

/** Complete few-shot examples left in a prompt whose first `truncated` tokens were cut. */
function shotsKept(enc: RequestEncoder, req: DocRequests, truncated: number): number {
  if (truncated === 0) return req.shotStarts.length;
  const context = req.requests[0].context;
  return req.shotStarts.filter((start) => enc.encode(context.slice(0, start)).length >= truncated).length;
}

function recordsOf(enc: RequestEncoder, ps: PlannedShard, scores: readonly RowScore[]): DocRecord[] {
  return ps.docs.map((d, i) => {
    const spans = d.planned.map((p) => scores[p.row].spans[p.span]);
    const lls = spans.map((s) => s.logProb);
    const m = choiceMetrics(lls, d.req.choices, d.req.gold);
    const truncated = Math.max(...d.planned.map((p) => p.truncated));
    return {
      doc_id: ps.shard.from + i, lls, greedy: spans.map((s) => s.greedy), acc: m.acc, acc_norm: m.acc_norm, gold: d.req.gold,
      truncated, shots: shotsKept(enc, d.req, truncated),
    };
  });
}

/** Yields to the event loop (so a SIGINT handler can run) and stops when the signal aborted. */
async function checkpoint(signal: AbortSignal | undefined, done: number, total: number): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  if (signal?.aborted) throw new TasksInterrupted(done, total);
}

/** A subtask's metrics from its records. */
function subtaskMetrics(task: TaskDefinition, records: readonly DocRecord[]): Record<string, MetricValue> {
  return Object.fromEntries(task.metrics.map((m) => [m, metricOf(records.map((r) => r[m]))]));
}

/** A group's metrics: subtasks weighted by size, stderr pooled (lm-eval's weight_by_size aggregation). */
export function groupMetrics(metrics: readonly string[], members: readonly SubtaskResult[]): Record<string, MetricValue> {
  return Object.fromEntries(metrics.map((m) => {
    const sizes = members.map((s) => s.metrics[m].n);
    const n = sizes.reduce((a, b) => a + b, 0);
    const value = members.reduce((a, s) => a + s.metrics[m].value * s.metrics[m].n, 0) / n;
    const stderr = members.some((s) => s.metrics[m].stderr === null) ? null : pooledStderr(members.map((s) => s.metrics[m].stderr!), sizes);
    return [m, { value, stderr, n }];
  }));
}

/** The name of every shard file shardFile gives. */
const SHARD_FILE = /^.+-\d{5,}\.json$/;

/** Opens OUT/<task>/ for a run with `key`: returns the shard file of each shard and the key's hash stamped into them. */
function openTaskDir(out: string, task: string, key: Record<string, unknown>, fresh: boolean): { file: (sub: string, index: number) => string; stamp: string } {
  const dir = join(out, task);
  const shards = join(dir, 'shards');
  const keyFile = join(dir, 'run-key.json');
  const text = JSON.stringify(key, null, 2) + '\n';
  // --fresh removes only shard files a run wrote: a directory given with --force keeps the user's files
  if (fresh && existsSync(shards)) for (const f of readdirSync(shards)) if (SHARD_FILE.test(f)) rmSync(join(shards, f), { force: true });
  if (!fresh && existsSync(keyFile) && readRegularFile(keyFile, 'run key file').toString('utf8') !== text) {
    throw new UserError(`${keyFile}: ${out} holds ${task} results of a different run (another model, ${flag(TASK_LIMIT)}, ${flag(NUM_FEWSHOT)} or settings); choose another ${flag(OUT)}, or add ${flag(FRESH)} to discard them`);
  }
  if (!existsSync(keyFile) && existsSync(shards) && readdirSync(shards).some((f) => SHARD_FILE.test(f))) {
    throw new UserError(`${shards}: holds results but no run-key.json, so they cannot be matched to this run; choose another ${flag(OUT)}, or add ${flag(FRESH)} to discard them`);
  }
  mkdirSync(shards, { recursive: true });
  if (!existsSync(keyFile) || fresh) atomicWriteText(keyFile, text);
  const stamp = createHash('sha256').update(text).digest('hex').slice(0, 16);
  return { file: (sub, index) => shardFile(out, { task, subtask: sub, index }), stamp };
}

export interface EvaluateTasksResult {
  /** Every task's results; empty when `only` left shards unfinished. */
  results: TaskResult[];
  seconds: number;
  computedDocs: number;
  resumedShards: number;
}

/** Evaluates the tasks (see the file comment). Leaves tf.memory().numTensors as it found it. */
export async function evaluateTasks(opts: EvaluateTasksOptions): Promise<EvaluateTasksResult> {
  const { model } = opts;
  const enc = requestEncoder(opts.tokenizer);
  const maxLength = opts.maxLength ?? model.config.max_position_embeddings;
  const batchSize = opts.batchSize ?? TASK_BATCH_SIZE.default;
  checkOption(TASK_BATCH_SIZE, batchSize);
  const cached = opts.cached ?? true;
  const t0 = performance.now();

  // Shards of every task, and the ones already on disk.
  const shards: Shard[] = [];
  const done = new Map<Shard, DocRecord[]>();
  const fileOf = new Map<Shard, { path: string; stamp: string }>();
  for (const input of opts.tasks) {
    const key = {
      version: 1, task: input.task.name, taskVersion: input.task.version, model: opts.out ? modelFingerprint(model) : null,
      ...keyFields(TASK_KEY, { numFewshot: input.shots, limit: input.limit, maxLength }, TASK_KEY_FIELDS), ...computeKey(model), ...(opts.keyExtra ?? {}),
    };
    const dir = opts.out !== undefined ? openTaskDir(opts.out, input.task.name, key, !!opts.fresh) : null;
    for (const sub of input.subtasks) {
      const docs = sub.docs.slice(0, input.limit ?? sub.docs.length);
      const shots = drawShotsFor(input, sub, docs);
      const size = opts.shardDocs ?? SHARD_DOCS;
      for (let from = 0, index = 0; from < docs.length; from += size, index++) {
        const part = docs.slice(from, from + size);
        const sh = shots.slice(from, from + size);
        const shard: Shard = { input, sub, index, from, docs: part, shots: sh, fingerprint: shardFingerprint(input.task, part, sh) };
        shards.push(shard);
        if (!dir) continue;
        const path = dir.file(sub.name, index);
        fileOf.set(shard, { path, stamp: dir.stamp });
        if (!existsSync(path)) continue;
        const stored = readChecked(path, TASK_SHARD, 'task results shard', `delete the file to recompute the shard, or add ${flag(FRESH)} to recompute every shard`);
        if (stored.runKey !== dir.stamp) throw new UserError(`${path}: computed by a different run than ${join(opts.out!, input.task.name, 'run-key.json')} describes; add ${flag(FRESH)} to recompute`);
        if (stored.data !== shard.fingerprint) throw new UserError(`${path}: the documents of ${sub.name} changed since these results were computed; choose another ${flag(OUT)}, or add ${flag(FRESH)} to recompute`);
        done.set(shard, stored.records);
      }
    }
  }
  const resumedShards = done.size;
  const pending = shards.filter((s) => !done.has(s) && (!opts.only || opts.only({ task: s.input.task.name, subtask: s.sub.name, index: s.index })));
  const docsToRun = pending.reduce((n, s) => n + s.docs.length, 0);
  let docsDone = 0;
  const tokensPerPass = streamsLayers(model) ? passTokens(model.config) : 0;
  while (pending.length) {
    const pass: PlannedShard[] = [];
    let tokens = 0;
    while (pending.length) {
      const ps = planShard(enc, pending[0], maxLength, cached);
      if (pass.length && tokens + ps.tokens > tokensPerPass) break;
      pass.push(ps);
      tokens += ps.tokens;
      pending.shift();
    }
    const names = [...new Set(pass.map((p) => p.shard.sub.name))];
    const label = names.length === 1 ? names[0] : `${names.length} subtasks in one pass over the layers`;
    await checkpoint(opts.signal, docsDone, docsToRun);
    const docsOf = (p: number) => pass[p].docs.length;
    // progress in documents: a document is done when all of its rows are
    const rowsPerDoc = pass.map((p) => p.plan.rows.length / Math.max(1, p.docs.length));
    const scores = await scorePlans(model, pass.map((p) => p.plan), { size: cached ? batchSize : 0, maxPadding: MAX_PADDING }, async (units) => {
      opts.onProgress?.({ label, docs: units, docsToRun });
      await checkpoint(opts.signal, docsDone, docsToRun);
    }, (p) => 1 / rowsPerDoc[p]);
    pass.forEach((ps, p) => {
      const records = recordsOf(enc, ps, scores[p]);
      done.set(ps.shard, records);
      docsDone += docsOf(p);
      const f = fileOf.get(ps.shard);
      if (f) atomicWriteText(f.path, JSON.stringify({ task: ps.shard.input.task.name, subtask: ps.shard.sub.name, shard: ps.shard.index, runKey: f.stamp, data: ps.shard.fingerprint, records }) + '\n');
    });
  }

  if (shards.some((s) => !done.has(s))) return { results: [], seconds: (performance.now() - t0) / 1000, computedDocs: docsDone, resumedShards };
  const results = opts.tasks.map((input): TaskResult => {
    const subtasks = input.subtasks.map((sub): SubtaskResult => {
      const records = shards.filter((s) => s.input === input && s.sub === sub).flatMap((s) => done.get(s)!);
      return { name: sub.name, alias: sub.alias, records, metrics: subtaskMetrics(input.task, records), originalSize: sub.originalSize, config: sub.config };
    });
    const groups = (input.groups ?? []).map((g) => ({ ...g, metrics: groupMetrics(input.task.metrics, subtasks.filter((s) => g.members.includes(s.name))) }));
    const all = subtasks.flatMap((s) => s.records);
    return {
      task: input.task, shots: input.shots, limit: input.limit, subtasks, groups,
      metrics: subtasks.length === 1 ? subtasks[0].metrics : groupMetrics(input.task.metrics, subtasks),
      truncatedPrompts: all.filter((r) => r.truncated > 0).length,
      promptsWithFewerShots: all.filter((r) => r.shots < input.shots).length,
      targetsOutOfRange: all.filter((r) => r.gold < 0).length,
    };
  });
  return { results, seconds: (performance.now() - t0) / 1000, computedDocs: docsDone, resumedShards };
}
