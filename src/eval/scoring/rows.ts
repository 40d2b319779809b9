/**
 * The token-level scorer every evaluation runs on: rows of token ids go through the model and, at the
 * positions each row names, their next-token distribution is read on the host: the summed log-probability
 * of target tokens (and whether each is the arg-max, lm-eval's is_greedy), or raw logits of chosen ids.
 *
 * Speed comes from the plan (plan.ts): rows that share a prefix run it once and attend to its cached
 * keys/values, in right-padded batches of similar length; the rest run alone, batched by length. Every
 * row is still fed exactly its own ids, so the scores equal those of each row run by itself. A resident
 * model runs the forward jobs one after another (forwardInTurn); a streamed one runs all of them
 * layer-major in one pass over its layers (forwardMany), reading each layer once: the same kernels on
 * the same rows, so the same scores.
 */
import { forwardInTurn, forwardMany, type ForwardJob } from '../../model/forward.ts';
import { streamsLayers, type LlamaModel } from '../../model/model.ts';
import { nonFiniteLogitsError } from '../../model/nonfinite.ts';

/** Target tokens scored on a row: tokens[k] by the logits at position start + k. */
export interface RowTargets {
  start: number;
  tokens: readonly number[];
  /** Whether to find each position's arg-max (is_greedy; default true): a pass over the vocabulary per token. */
  greedy?: boolean;
}

/** One sequence to run and what to read from it. */
export interface ScoreRow {
  /** The token ids fed to the model. */
  ids: readonly number[];
  /** Target spans (several continuations may share one row: lm-eval's one-token continuations of a context). */
  targets: readonly RowTargets[];
  /** Raw logits of these token ids at one position (MMLU's answer letters). */
  logits?: { position: number; ids: readonly number[] };
}

/** What was read from a row. */
export interface RowScore {
  /** Per target span: Σ log p(token), summed in float64 from 0 in position order, and whether every token was the arg-max (true when not asked). */
  spans: { logProb: number; greedy: boolean }[];
  /** The requested logits (empty without a `logits` read). */
  logits: number[];
}

/** Rows that share their first `start` ids: the prefix runs once, each row then feeds ids.slice(start). */
export interface RowGroup {
  start: number;
  /** The candidate group (planRows) it came from. */
  candidate?: number;
  /** Members, in the order their batches are formed (longest first). */
  rows: number[];
}

/** What to run for a set of rows: prefix groups, then the rows that run alone (batched by length, longest first). */
export interface ScorePlan {
  rows: readonly ScoreRow[];
  groups: RowGroup[];
  alone: number[];
}

/** Default bound on a batch row's padding, as a fraction of its batch's longest row. */
export const MAX_PADDING = 0.1;

/** How rows are batched: at most `size` rows, none padded by more than `maxPadding` of the longest; `size` 0: no batching, no prefix reuse. */
export interface Batching {
  size: number;
  maxPadding: number;
}

/**
 * Splits rows sorted longest first into batches of at most batchSize whose rows are fed `skip` ids less,
 * starting a new batch when a row would need more than maxPadding padding.
 */
export function batchesOf<T extends { ids: readonly number[] }>(sorted: readonly T[], batchSize: number, skip = 0, maxPadding = MAX_PADDING): T[][] {
  const batches: T[][] = [];
  let cur: T[] = [];
  for (const r of sorted) {
    if (cur.length > 0 && (cur.length >= batchSize || r.ids.length - skip < (1 - maxPadding) * (cur[0].ids.length - skip))) {
      batches.push(cur);
      cur = [];
    }
    cur.push(r);
  }
  if (cur.length > 0) batches.push(cur);
  return batches;
}

/** The first position of a row whose logits are read. */
export function firstRead(row: ScoreRow): number {
  let p = row.logits?.position ?? Infinity;
  for (const t of row.targets) p = Math.min(p, t.start);
  return p;
}

/** log Σ exp(x), in float64. */
export function logSumExp(x: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i] > m) m = x[i];
  let s = 0;
  for (let i = 0; i < x.length; i++) s += Math.exp(x[i] - m);
  return m + Math.log(s);
}

/** Index of the largest value (the first on ties, as torch.argmax). */
function argmaxOf(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/**
 * The forward job that scores `batch` (rows of `rows`; each feeds ids.slice(start) after a cache of
 * `start` positions) as one right-padded batch, and the scores it fills in as the logits arrive. Logits
 * are computed only at the positions read, in chunks, and read on the host: a few values per position,
 * which tfjs ops would spend more on dispatch than on math.
 */
function scoringJob(model: string, rows: readonly ScoreRow[], batch: readonly number[], start: number, V: number, out: RowScore[]): ForwardJob {
  const inputs = batch.map((r) => rows[r].ids.slice(start));
  const T = Math.max(...inputs.map((r) => r.length));
  const padded = inputs.map((r) => (r.length === T ? r : [...r, ...new Array<number>(T - r.length).fill(0)]));
  // Flat positions [b * T + t] whose logits are needed, in row order, each row's positions ascending.
  const positions: number[] = [];
  const reads: { row: number; span: number; token: number; logits: boolean; greedy: boolean }[] = [];
  batch.forEach((r, b) => {
    const row = rows[r];
    out[r] = { spans: row.targets.map(() => ({ logProb: 0, greedy: true })), logits: [] };
    const at = new Map<number, { span: number; token: number; greedy: boolean }[]>();
    row.targets.forEach((t, span) => t.tokens.forEach((token, k) => {
      const p = t.start + k;
      at.set(p, [...(at.get(p) ?? []), { span, token, greedy: t.greedy ?? true }]);
    }));
    const logitsAt = row.logits?.position;
    const ps = [...new Set([...at.keys(), ...(logitsAt === undefined ? [] : [logitsAt])])].sort((x, y) => x - y);
    for (const p of ps) {
      if (p < start || p >= row.ids.length) throw new Error(`scoreRows: row ${r} reads position ${p} outside ${start}..${row.ids.length - 1}`);
      for (const read of at.get(p) ?? []) {
        positions.push(b * T + p - start);
        reads.push({ row: r, span: read.span, token: read.token, logits: false, greedy: read.greedy });
      }
      if (p === logitsAt) {
        positions.push(b * T + p - start);
        reads.push({ row: r, span: -1, token: -1, logits: true, greedy: false });
      }
    }
  });
  return {
    inputIds: padded, logits: 'positions', positions,
    onLogits: (i0, logits) => {
      const x = logits.dataSync();
      for (let j = 0; j < logits.shape[0]; j++) {
        const v = x.subarray(j * V, (j + 1) * V);
        const read = reads[i0 + j];
        const o = out[read.row];
        if (read.logits) {
          o.logits = rows[read.row].logits!.ids.map((id) => v[id]);
          const bad = o.logits.find((x) => !Number.isFinite(x));
          const err = bad === undefined ? null : nonFiniteLogitsError(model, bad, `row ${read.row}`, 'score them');
          if (err) throw err;
          continue;
        }
        const s = o.spans[read.span];
        const lse = logSumExp(v); // NaN when any logit is NaN or +Infinity
        const err = Number.isNaN(lse) ? nonFiniteLogitsError(model, lse, `row ${read.row}`, 'score them') : null;
        if (err) throw err;
        s.logProb += v[read.token] - lse;
        if (read.greedy && s.greedy && argmaxOf(v) !== read.token) s.greedy = false;
      }
    },
  };
}

/** Progress of a scoring run: `units` of work (what the caller weighs each row as) finished by this step. */
export type ScoreStep = (units: number) => Promise<void>;

/**
 * Scores the rows of several plans: per prefix group, the prefix once and its batches after it, then
 * the rows alone, plan after plan. `weight(plan, row)` is what a row counts for in progress; `step` gets
 * the weight of each finished batch, or on a streamed pass the total spread over the layers. Returns
 * each plan's scores by row.
 */
export async function scorePlans(
  model: LlamaModel, plans: readonly ScorePlan[], batching: Batching, step: ScoreStep,
  weight: (plan: number, row: number) => number = () => 1,
): Promise<RowScore[][]> {
  const V = model.config.vocab_size;
  const name = model.dir ?? 'the model';
  const jobs: ForwardJob[] = [];
  const units: number[] = []; // per job
  const out: RowScore[][] = plans.map(() => []);
  const sum = (p: number, rows: readonly number[]) => rows.reduce((a, r) => a + weight(p, r), 0);
  plans.forEach((plan, p) => {
    for (const g of plan.groups) {
      const prefix = jobs.push({ inputIds: [plan.rows[g.rows[0]].ids.slice(0, g.start)], logits: 'none' }) - 1;
      units.push(0);
      const members = g.rows.map((r) => ({ r, ids: plan.rows[r].ids }));
      for (const batch of batchesOf(members, batching.size, g.start, batching.maxPadding)) {
        const rows = batch.map((m) => m.r);
        jobs.push({ ...scoringJob(name, plan.rows, rows, g.start, V, out[p]), after: prefix });
        units.push(sum(p, rows));
      }
    }
    for (const batch of aloneBatches(plan, batching)) {
      jobs.push(scoringJob(name, plan.rows, batch, 0, V, out[p]));
      units.push(sum(p, batch));
    }
  });
  if (streamsLayers(model)) {
    const perLayer = units.reduce((a, n) => a + n, 0) / model.config.num_hidden_layers;
    await forwardMany(model, jobs, () => step(perLayer), () => step(0)); // step(0) between jobs: a stop need not wait for the layer
  } else {
    await forwardInTurn(model, jobs, (j) => step(units[j]));
  }
  return out;
}

/** The rows of a plan without a shared prefix: batched by length (longest first, then in plan order) or one by one. */
function aloneBatches(plan: ScorePlan, batching: Batching): number[][] {
  if (batching.size <= 0) return plan.alone.map((r) => [r]);
  const sorted = [...plan.alone].sort((a, b) => plan.rows[b].ids.length - plan.rows[a].ids.length || a - b).map((r) => ({ r, ids: plan.rows[r].ids }));
  return batchesOf(sorted, batching.size, 0, batching.maxPadding).map((b) => b.map((m) => m.r));
}
