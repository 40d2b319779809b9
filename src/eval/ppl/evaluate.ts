/**
 * Token-weighted perplexity of a model on a token sequence, window by window (windows.ts): the
 * negative log-likelihood of every scored token, summed in float64 and divided by their number;
 * ppl = exp(mean NLL). Resumable: each finished window is saved in the results directory. A streamed
 * model runs many windows per pass over its layers, so each layer is read once per pass, not per window.
 */
import { tf } from '../../runtime/tf.ts';
import type { Workload } from '../../model/memory-estimate.ts';
import { LOGIT_CHUNK_FLOATS, PASS_HIDDEN_BYTES, forward, forwardMany, passTokens, type ForwardJob } from '../../model/forward.ts';
import { streamsLayers, type LlamaModel } from '../../model/model.ts';
import { nonFiniteLogitsError } from '../../model/nonfinite.ts';
import { currentProfile } from '../../runtime/profile.ts';
import { slidingWindows, type PplWindow } from './windows.ts';
import { openPplResults, type PplSummary, type WindowResult } from './results.ts';
import { keyFields } from '../../runtime/options.ts';
import { PPL_KEY, PPL_KEY_FIELDS } from './options.ts';
import { tidyValues } from '../../runtime/read-out.ts';

/**
 * The forward job of one window and its result once the job has run: the sum of −log p(token) over
 * the window's scored tokens and their number. Logits are computed only at the scored positions, in
 * chunks of rows (the same final RMSNorm and lm_head as every other caller), so a window never holds
 * [seqLen, vocab] logits.
 */
function windowJob(model: LlamaModel, ids: readonly number[], w: PplWindow): { job: ForwardJob; result(): WindowResult } {
  const V = model.config.vocab_size;
  const first = w.scoredFrom - 1 - w.begin; // window position whose logits predict the first scored token
  const count = w.end - w.scoredFrom;
  const positions = Array.from({ length: count }, (_, r) => first + r);
  let nll = 0;
  const job: ForwardJob = {
    inputIds: [ids.slice(w.begin, w.end)],
    logits: 'positions',
    positions,
    onLogits: (r0, logits) => {
      const rows = logits.shape[0];
      const values = tidyValues(() => {
        const logp = tf.logSoftmax(logits, -1); // [rows, V]
        const flat = Int32Array.from({ length: rows }, (_, r) => r * V + ids[w.scoredFrom + r0 + r]); // target of each row in [rows * V]
        return tf.neg(tf.gather(logp.reshape([-1]), tf.tensor1d(flat, 'int32'))); // [rows]
      });
      for (const v of values) {
        const err = Number.isNaN(v) ? nonFiniteLogitsError(model.dir ?? 'the model', v, `window ${w.begin}..${w.end}`, 'score them') : null;
        if (err) throw err;
        nll += v;
      }
    },
  };
  return { job, result: () => ({ begin: w.begin, end: w.end, scored_from: w.scoredFrom, nll, tokens: count }) };
}

/** Sum of −log p(token) over the scored tokens of one window and their number (see windowJob). */
export function windowNll(model: LlamaModel, ids: readonly number[], w: PplWindow): WindowResult {
  const { job, result } = windowJob(model, ids, w);
  forward(model, job.inputIds, job);
  return result();
}

export interface PplProgress {
  windows: number;
  windowsTotal: number;
  /** Windows of this call (not loaded from an earlier run) done so far, and their total. */
  computed: number;
  toCompute: number;
}

export interface EvaluatePplOptions {
  model: LlamaModel;
  ids: readonly number[];
  seqLen: number;
  stride: number;
  /** Results directory (resumable); without it nothing is saved. */
  out?: string;
  fresh?: boolean;
  onProgress?: (p: PplProgress) => void;
  signal?: AbortSignal;
}

export class PplInterrupted extends Error {
  constructor(readonly windowsDone: number, readonly windowsTotal: number) {
    super(`perplexity interrupted after ${windowsDone} of ${windowsTotal} windows`);
  }
}

/** Perplexity of `model` on `ids` (resumes from `out` when it holds windows of the same run). */
export async function evaluatePerplexity(opts: EvaluatePplOptions): Promise<{ summary: PplSummary; resumedWindows: number; seconds: number }> {
  const windows = slidingWindows(opts.ids.length, opts.seqLen, opts.stride);
  const results = opts.out ? openPplResults(opts.out, opts.model, opts.ids, keyFields(PPL_KEY, opts, PPL_KEY_FIELDS), !!opts.fresh) : null;
  const all: (WindowResult | null)[] = windows.map((w, i) => results?.load(i, { begin: w.begin, end: w.end, scored_from: w.scoredFrom }) ?? null);
  const resumedWindows = all.filter((r) => r !== null).length;
  const toCompute = windows.length - resumedWindows;
  const t0 = performance.now();
  let computed = 0;
  const stop = async () => {
    await new Promise((ok) => setImmediate(ok)); // lets a Ctrl-C handler run
    if (opts.signal?.aborted) throw new PplInterrupted(resumedWindows + computed, windows.length);
  };
  // A streamed model reads every layer once per forward call, so windows share calls (forwardMany),
  // as many as fit PASS_HIDDEN_BYTES of hidden states; a resident one runs window by window.
  const pending = windows.map((_, i) => i).filter((i) => !all[i]);
  const perPass = streamsLayers(opts.model) ? Math.max(1, Math.floor(passTokens(opts.model.config) / opts.seqLen)) : 1;
  for (let p0 = 0; p0 < pending.length; p0 += perPass) {
    await stop();
    const pass = pending.slice(p0, p0 + perPass);
    const jobs = pass.map((i) => windowJob(opts.model, opts.ids, windows[i]));
    if (perPass === 1) forward(opts.model, jobs[0].job.inputIds, jobs[0].job);
    else await forwardMany(opts.model, jobs.map((j) => j.job), stop, stop);
    pass.forEach((i, j) => {
      all[i] = jobs[j].result();
      results?.save(i, all[i]!);
      computed++;
      opts.onProgress?.({ windows: resumedWindows + computed, windowsTotal: windows.length, computed, toCompute });
    });
  }
  let nll = 0, tokens = 0;
  for (const r of all as WindowResult[]) {
    nll += r.nll;
    tokens += r.tokens;
  }
  const summary: PplSummary = {
    ppl: Math.exp(nll / tokens), mean_nll: nll / tokens, nll_sum: nll, tokens_scored: tokens, corpus_tokens: opts.ids.length,
    windows: windows.length, seq_len: opts.seqLen, stride: opts.stride,
  };
  const seconds = (performance.now() - t0) / 1000;
  results?.finish(summary, { seconds, resumed_windows: resumedWindows, backend: currentProfile().backend, compute: opts.model.compute });
  return { summary, resumedWindows, seconds };
}

/**
 * What a perplexity evaluation needs for the memory estimate: one window of seqLen tokens per forward
 * call, logits of its scored positions in chunks (a chunk and its log-softmax); streamed, windows share
 * passes that hold up to PASS_HIDDEN_BYTES.
 */
export function pplWorkload(seqLen: number, streaming: boolean): Workload {
  return {
    streaming, rows: 1, microBatch: 1, seqLen, logits: 'none',
    heldBytes: 2 * 4 * LOGIT_CHUNK_FLOATS + (streaming ? PASS_HIDDEN_BYTES : 0), streamable: true,
  };
}
