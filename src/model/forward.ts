/**
 * The Llama decoder forward pass (Llama 1/2/3, Mistral, Qwen2), written with the ops of ops.ts (native
 * kernels on the native backend, plain tfjs ops elsewhere).
 *
 * Execution is layer-major: the whole batch goes through decoder layer 0, then layer 1, and so on,
 * optionally in micro-batches of rows inside each layer. A layer's weights are therefore needed once
 * per call, which is what lets a streamed model (one layer in memory at a time) run a calibration or
 * evaluation batch without re-reading weights.
 *
 * Batches are right-padded: every row has the same length T, and a row's real tokens never attend to
 * the padding after them (causal mask), so padding changes nothing for real positions.
 *
 * Memory: attention never holds a [T, S] score matrix for the whole input (see ops.attention), the
 * embedding reads only the rows of the input ids, and logits are computed only at the positions asked
 * for, in chunks when a callback takes them.
 */
import { tf } from '../runtime/tf.ts';
import { acquireLayer, lmHeadName, useWeight, type LayerWeights, type LlamaModel } from './model.ts';
import { inverseFrequencies, ropeTables } from './rope.ts';
import type { LlamaConfig } from './config.ts';
import { attention, decoderLayer, embed, linear, lmHeadLogits, rmsNorm, rope, siluMul } from './ops.ts';

/** Keys and values per layer, [B, kv_heads, S, head_dim], after RoPE. Batch 1 broadcasts to any batch. */
export interface KVCache {
  keys: tf.Tensor4D[];
  values: tf.Tensor4D[];
  /** Number of cached positions S. */
  length: number;
}

export interface ForwardOptions {
  /**
   * Which logits to return: every position [B, T, V]; one position per row [B, V] ('last', see
   * lastIndex); the flat positions in `positions` [n, V]; or none. Default 'all'.
   */
  logits?: 'all' | 'last' | 'positions' | 'none';
  /** With logits 'last': the position of each row to take (default T-1), e.g. the last real token. */
  lastIndex?: number[];
  /** With logits 'positions': flat positions (row * T + t) whose logits to compute, in this order. */
  positions?: number[];
  /**
   * With logits 'last' or 'positions': take the logits in chunks of positions instead of one tensor,
   * as onLogits(first, logits [n, V]) (rows first..first+n-1 of the requested order); the tensor is
   * disposed after the call and result.logits stays unset. Bounds memory for large vocabularies.
   */
  onLogits?: (first: number, logits: tf.Tensor2D) => void;
  /** Return Hugging Face's output_hidden_states: L+1 tensors [B, T, H], the last after the final norm. */
  hiddenStates?: boolean;
  /** Called with each block's output [B, T, H] (pre-norm residual stream) and its input, block by block;
   * the input is disposed after the call returns. Lets calibration consume hidden states without keeping them. */
  onBlockOutput?: (layer: number, h: tf.Tensor3D, input: tf.Tensor3D) => void;
  /** Called with each block's input, like onBlockOutput. */
  onBlockInput?: (layer: number, h: tf.Tensor3D) => void;
  /** Cached keys/values of a prefix; positions of the input start after it. Not disposed. */
  cache?: KVCache;
  /** Return the cache extended by this input. */
  returnCache?: boolean;
  /** Rows per micro-batch inside each layer (bounds activation memory). Default: the whole batch. */
  microBatch?: number;
  /**
   * The decoder layers to run, ascending (default every one): the model with the others dropped, as a
   * plan that only removes layers makes it. Not with a cache (caches hold every layer).
   */
  layers?: readonly number[];
  /**
   * Hidden states [B, T, H] to start from instead of the embeddings of inputIds (HF's inputs_embeds), e.g.
   * a block's calibration input, to run some blocks alone; inputIds still give the shape (their values
   * are not read). Not disposed.
   */
  inputEmbeds?: tf.Tensor3D;
}

export interface ForwardResult {
  logits?: tf.Tensor;
  hiddenStates?: tf.Tensor3D[];
  cache?: KVCache;
}

/** Frees a KV cache. */
export function disposeCache(cache: KVCache): void {
  for (const t of [...cache.keys, ...cache.values]) t.dispose();
}

interface LayerContext {
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
  /** The products' inputs, and attention's, rounded to bf16 (--compute bfloat16). */
  bf16?: boolean;
}

/** The projections of a decoder layer, in the order of ops.decoderLayer. */
const PROJECTIONS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];

/**
 * Sees each projection of a decoder block as it runs: its name (`self_attn.q_proj`, ...), its input
 * [.., in] and its output [.., out] (with the residual added for o_proj and down_proj). The tensors are
 * freed after the block: copy what must be kept. Quantizers collect calibration statistics with it.
 */
export type ProjectionTap = (name: string, input: tf.Tensor, output: tf.Tensor) => void;

/**
 * One decoder block on rows x [b, T, H]; returns the new hidden state and, with keep, this call's
 * keys/values (the cache's followed by the new ones). One native call where the backend fuses the
 * layer (ops.decoderLayer), else op by op (always when `tap` watches the projections).
 */
function decoderBlock(
  c: LlamaConfig, w: LayerWeights, x: tf.Tensor3D, ctx: LayerContext,
  past: { k: tf.Tensor4D; v: tf.Tensor4D } | null, keep: boolean, tap?: ProjectionTap,
): { h: tf.Tensor3D; k?: tf.Tensor4D; v?: tf.Tensor4D } {
  const nH = c.num_attention_heads, nKV = c.num_key_value_heads, hd = c.head_dim;
  const bias = (s: string) => (w.has(s) ? w.get(s) : undefined);
  const bf16 = ctx.bf16 ?? false;
  const fused = tap ? null : decoderLayer(x, {
    inputNorm: w.get('input_layernorm.weight'), postNorm: w.get('post_attention_layernorm.weight'),
    weights: PROJECTIONS.map((p) => w.weight(`${p}.weight`)), biases: PROJECTIONS.map((p) => bias(`${p}.bias`)),
  }, past, ctx.cos, ctx.sin, { heads: nH, kvHeads: nKV, headDim: hd, eps: c.rms_norm_eps, window: c.sliding_window, bf16 }, keep);
  if (fused) return fused;
  const proj = projector(w, tap);
  // the attention's intermediates are freed before the MLP runs, and the MLP's before the block returns:
  // a pass holds the larger part's at a time, not both (the same ops, so the same values)
  const { h: h1, k, v } = tf.tidy((): { h: tf.Tensor3D; k?: tf.Tensor4D; v?: tf.Tensor4D } => {
    const a = selfAttention(c, proj, rmsNorm(x, w.get('input_layernorm.weight'), c.rms_norm_eps), x, ctx, past);
    return keep ? a : { h: a.h };
  });
  try {
    const h = tf.tidy(() => mlp(proj, rmsNorm(h1, w.get('post_attention_layernorm.weight'), c.rms_norm_eps), h1));
    return keep ? { h, k, v } : { h };
  } catch (e) {
    k?.dispose();
    v?.dispose();
    throw e;
  } finally {
    h1.dispose();
  }
}

/** A layer's projections by name (`self_attn.q_proj`): x·Wᵀ (+ bias) (+ residual), seen by `tap`. */
type Projector = (x: tf.Tensor, name: string, residual?: tf.Tensor) => tf.Tensor;

function projector(w: LayerWeights, tap?: ProjectionTap): Projector {
  const bias = (s: string) => (w.has(s) ? w.get(s) : undefined);
  return (xn, name, residual) => {
    const y = linear(xn, w.weight(`${name}.weight`), bias(`${name}.bias`), residual);
    tap?.(name, xn, y);
    return y;
  };
}

/**
 * Self-attention on normed rows xn [B, T, H] after the cached `past`: q/k/v, RoPE, attention and
 * o_proj, plus `residual` when given. Returns the output and the keys/values it attended to.
 */
function selfAttention(
  c: LlamaConfig, proj: Projector, xn: tf.Tensor, residual: tf.Tensor | undefined, ctx: LayerContext, past: { k: tf.Tensor4D; v: tf.Tensor4D } | null,
): { h: tf.Tensor3D; k: tf.Tensor4D; v: tf.Tensor4D } {
  const [B, T] = xn.shape;
  const nH = c.num_attention_heads, nKV = c.num_key_value_heads, hd = c.head_dim;
  // each in a scope of its own: the projection's output and RoPE's input are freed once q, k and v are made
  const q = tf.tidy(() => rope(proj(xn, 'self_attn.q_proj').reshape([B, T, nH, hd]), ctx.cos, ctx.sin)); // [B, T, nH, hd]
  const kNew = tf.tidy(() => rope(proj(xn, 'self_attn.k_proj').reshape([B, T, nKV, hd]), ctx.cos, ctx.sin)
    .transpose([0, 2, 1, 3]) as tf.Tensor4D); // [B, nKV, T, hd]
  const vNew = tf.tidy(() => proj(xn, 'self_attn.v_proj').reshape([B, T, nKV, hd]).transpose([0, 2, 1, 3]) as tf.Tensor4D); // [B, nKV, T, hd]
  let k = kNew, v = vNew;
  if (past) {
    // a batch-1 prefix cache serves every row (concat of copies: much faster than tile on wasm)
    const pk = past.k.shape[0] === B ? past.k : tf.concat(new Array(B).fill(past.k), 0);
    const pv = past.v.shape[0] === B ? past.v : tf.concat(new Array(B).fill(past.v), 0);
    k = tf.concat([pk, kNew], 2);
    v = tf.concat([pv, vNew], 2);
  }
  const att = attention(q, k, v, { window: c.sliding_window, bf16: ctx.bf16 ?? false }).reshape([B, T, nH * hd]); // [B, T, nH*hd]
  return { h: proj(att, 'self_attn.o_proj', residual) as tf.Tensor3D, k, v }; // residual + o_proj(att)
}

/** The MLP on normed rows hn: down_proj(SiLU(gate_proj(hn)) · up_proj(hn)), plus `residual` when given. */
function mlp(proj: Projector, hn: tf.Tensor, residual?: tf.Tensor): tf.Tensor3D {
  const act = tf.tidy(() => siluMul(proj(hn, 'mlp.gate_proj'), proj(hn, 'mlp.up_proj'))); // SiLU(gate) * up; gate and up freed before down_proj
  return proj(act, 'mlp.down_proj', residual) as tf.Tensor3D; // residual + down_proj(act)
}

/**
 * One part of a decoder block on its normed input, for quantizers that measure a part's output
 * (AWQ): 'attention' (q/k/v, RoPE, attention, o_proj) on the input norm's output [B, T, H] at
 * positions 0..T-1, or 'mlp' on the post-attention norm's output; no residual. The caller owns the result.
 */
export function runBlockPart(config: LlamaConfig, w: LayerWeights, part: 'attention' | 'mlp', xn: tf.Tensor3D): tf.Tensor3D {
  const proj = projector(w);
  if (part === 'mlp') return tf.tidy(() => mlp(proj, xn));
  const { cos, sin } = ropeTables(inverseFrequencies(config), 0, xn.shape[1]);
  try {
    return tf.tidy(() => selfAttention(config, proj, xn, undefined, { cos, sin }, null).h);
  } finally {
    cos.dispose();
    sin.dispose();
  }
}

/**
 * One decoder block (weights `w`, e.g. a quantizer's candidate weights) on x [B, T, H] at positions
 * 0..T-1, op by op, with `tap` seeing every projection. Returns the block's output [B, T, H]; the
 * caller owns it.
 */
export function runBlock(config: LlamaConfig, w: LayerWeights, x: tf.Tensor3D, tap?: ProjectionTap): tf.Tensor3D {
  const { cos, sin } = ropeTables(inverseFrequencies(config), 0, x.shape[1]);
  try {
    return decoderBlock(config, w, x, { cos, sin }, null, false, tap).h;
  } finally {
    cos.dispose();
    sin.dispose();
  }
}

/** Logits rows computed at once: a chunk [n, V] holds at most about this many floats. */
export const LOGIT_CHUNK_FLOATS = 1 << 24;

/**
 * Logits at flat positions of x [B*T, H] (pre-norm), through the final norm and lm_head, chunk by
 * chunk: each chunk goes to `sink`, or all are concatenated into one [n, V] tensor.
 */
function logitsAt(model: LlamaModel, x2: tf.Tensor2D, positions: number[], sink?: (first: number, logits: tf.Tensor2D) => void): tf.Tensor2D | undefined {
  const c = model.config;
  const head = useWeight(model, lmHeadName(c), [c.vocab_size, c.hidden_size]);
  const norm = model.tensors.get('model.norm.weight')!;
  const chunk = sink ? Math.max(1, Math.floor(LOGIT_CHUNK_FLOATS / c.vocab_size)) : Math.max(1, positions.length);
  const parts: tf.Tensor2D[] = [];
  try {
    for (let i0 = 0; i0 < positions.length; i0 += chunk) {
      const pos = positions.slice(i0, i0 + chunk);
      const logits = tf.tidy(() => {
        const whole = pos.length === x2.shape[0] && pos.every((p, j) => p === j);
        const rows = whole ? x2 : tf.gather(x2, tf.tensor1d(pos, 'int32')) as tf.Tensor2D; // [n, H]
        return lmHeadLogits(rmsNorm(rows, norm, c.rms_norm_eps) as tf.Tensor2D, head.weight); // [n, V]
      });
      if (!sink) {
        parts.push(logits);
        continue;
      }
      try {
        sink(i0, logits);
      } finally {
        logits.dispose();
      }
    }
    if (sink) return undefined;
    return parts.length === 1 ? parts[0] : tf.tidy(() => tf.concat(parts, 0));
  } finally {
    if (sink || parts.length > 1) parts.forEach((t) => t.dispose());
    head.release();
  }
}

/** Checks forward()'s input and options; returns the flat logits positions asked for (null: every position or none). */
function checkInput(model: LlamaModel, inputIds: number[][], opts: ForwardOptions): number[] | null {
  const c = model.config;
  const B = inputIds.length;
  const T = inputIds[0]?.length ?? 0;
  if (B === 0 || T === 0) throw new Error('forward: empty input');
  if (inputIds.some((r) => r.length !== T)) throw new Error('forward: rows of inputIds must have equal length (right-pad them)');
  for (const row of inputIds) {
    for (const id of row) {
      if (!Number.isInteger(id) || id < 0 || id >= c.vocab_size) throw new Error(`forward: token id ${id} outside the vocabulary (0..${c.vocab_size - 1})`);
    }
  }
  const cache = opts.cache;
  if (opts.inputEmbeds && opts.inputEmbeds.shape.join() !== [B, T, c.hidden_size].join()) {
    throw new Error(`forward: inputEmbeds has shape [${opts.inputEmbeds.shape}], the input ids give [${B}, ${T}, ${c.hidden_size}]`);
  }
  if (opts.layers) {
    const L = c.num_hidden_layers;
    if (opts.layers.some((l, k) => !Number.isInteger(l) || l < 0 || l >= L || (k > 0 && l <= opts.layers![k - 1]))) throw new Error(`forward: layers [${opts.layers}] must be ascending layers of 0..${L - 1}`);
    if (cache || opts.returnCache) throw new Error('forward: layers (some dropped) cannot be combined with a cache');
  }
  if (cache && cache.keys[0].shape[0] !== 1 && cache.keys[0].shape[0] !== B) {
    throw new Error(`forward: cache batch ${cache.keys[0].shape[0]} does not match input batch ${B}`);
  }
  const mode = opts.logits ?? 'all';
  if (opts.onLogits && mode !== 'last' && mode !== 'positions') throw new Error(`forward: onLogits needs logits 'last' or 'positions', not '${mode}'`);
  if (mode !== 'last' && mode !== 'positions') return null;
  if (mode === 'positions' && !opts.positions) throw new Error("forward: logits 'positions' needs the positions option");
  const positions = mode === 'positions' ? opts.positions! : (opts.lastIndex ?? inputIds.map(() => T - 1)).map((t, b) => b * T + t);
  if (mode === 'last' && positions.length !== B) throw new Error(`forward: lastIndex has ${positions.length} entries for ${B} rows`);
  for (const p of positions) {
    if (!Number.isInteger(p) || p < 0 || p >= B * T) throw new Error(`forward: logits position ${p} outside 0..${B * T - 1}`);
  }
  return positions;
}

/**
 * Runs the decoder on right-padded token ids [B][T]. The caller owns (and must dispose) every tensor
 * in the result; the model's tensors and an input cache are left as they were, also when it throws.
 */
export function forward(model: LlamaModel, inputIds: number[][], opts: ForwardOptions = {}): ForwardResult {
  const steps = forwardSteps(model, [{ ...opts, inputIds }]);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value[0];
  }
}

/**
 * Bytes of hidden states (float32) a caller of forwardMany lets one call hold: it groups its jobs so
 * that their tokens times 4·hidden_size stay within this. About 1 GiB: 65,536 tokens at hidden 4096.
 */
export const PASS_HIDDEN_BYTES = 2 ** 30;

/** Tokens whose float32 hidden states fit PASS_HIDDEN_BYTES for this model (at least 1). */
export function passTokens(config: LlamaConfig): number {
  return Math.max(1, Math.floor(PASS_HIDDEN_BYTES / (4 * config.hidden_size)));
}

/** One forward() call of forwardMany: its input and options, and where its prefix comes from. */
export interface ForwardJob extends ForwardOptions {
  inputIds: number[][];
  /**
   * Index of an earlier job of the same call whose input precedes this one's: this job attends to that
   * job's keys and values layer by layer, as if given the cache it would return. Excludes `cache`; the
   * earlier job has batch 1 (it serves every row) or this job's batch.
   */
  after?: number;
}

/** What forwardMany holds for one job between layers. */
interface JobState {
  job: ForwardJob;
  positions: number[] | null;
  B: number;
  T: number;
  offset: number;
  micro: number;
  ctx: LayerContext;
  x: tf.Tensor3D | null;
  hidden: tf.Tensor3D[];
  keys: tf.Tensor4D[];
  values: tf.Tensor4D[];
  /** This layer's keys/values, kept until the layer's later jobs that attend to them have run. */
  layerKV: { k: tf.Tensor4D; v: tf.Tensor4D } | null;
  result: ForwardResult;
}

/**
 * Runs several forward() calls together, layer-major across all of them: each decoder layer is
 * acquired once (read once from disk when streaming) and applied to every job before the next layer,
 * so a streamed model reads its weights once for all of them. Each result is exactly forward()'s on that
 * job alone (the same kernels on the same rows). Every job's hidden state is held at once: the caller
 * bounds their total size. `onLayer(i)` is awaited after layer i has been applied to every job (progress,
 * and a place to stop: what it throws ends the call with every tensor it made freed); `between(i, j)`,
 * likewise, after job j's part of layer i when later jobs follow in that layer, so that a stop does not
 * wait for a whole layer (at paper scale, a minute and more of synchronous native calls).
 */
export async function forwardMany(
  model: LlamaModel, jobs: readonly ForwardJob[], onLayer?: (layer: number) => Promise<void> | void,
  between?: (layer: number, job: number) => Promise<void> | void,
): Promise<ForwardResult[]> {
  if (jobs.length === 0) return [];
  const steps = forwardSteps(model, jobs);
  try {
    for (;;) {
      const r = steps.next();
      if (r.done) return r.value;
      const { layer, job } = r.value;
      if (job === null) await onLayer?.(layer);
      else await between?.(layer, job);
    }
  } finally {
    steps.return([]);
  }
}

/**
 * Checks the jobs' `after` links and returns, for each job that others follow, the last job that
 * follows it (after which its keys/values can go).
 */
function followers(jobs: readonly ForwardJob[]): Map<number, number> {
  const last = new Map<number, number>();
  jobs.forEach((job, j) => {
    if (job.after === undefined) return;
    if (!Number.isInteger(job.after) || job.after < 0 || job.after >= j) throw new Error(`forwardMany: job ${j} comes after job ${job.after}, which is not an earlier job`);
    if (job.cache) throw new Error(`forwardMany: job ${j} has both a cache and an earlier job to follow`);
    if (job.layers || jobs[job.after].layers) throw new Error(`forwardMany: job ${j} follows job ${job.after}, and one of them drops layers`);
    const B = job.inputIds.length, prior = jobs[job.after].inputIds.length;
    if (prior !== 1 && prior !== B) throw new Error(`forwardMany: job ${j} has batch ${B} but follows job ${job.after} of batch ${prior}`);
    last.set(job.after, j);
  });
  return last;
}

/** Frees every tensor of a forward result. */
function disposeResult(r: ForwardResult): void {
  r.logits?.dispose();
  r.hiddenStates?.forEach((t) => t.dispose());
  if (r.cache) disposeCache(r.cache);
}

/**
 * forwardMany's jobs run one after another instead of layer-major: one forward() call each, a job
 * that others follow returning its cache, which is kept until the last of them has run. The same
 * results as forwardMany, holding one job's activations at a time (what suits resident weights).
 * `onJob(j)` is awaited after job j; what it throws ends the call with every tensor it made freed.
 */
export async function forwardInTurn(
  model: LlamaModel, jobs: readonly ForwardJob[], onJob?: (job: number) => Promise<void> | void,
): Promise<ForwardResult[]> {
  const lastUser = followers(jobs);
  const caches = new Map<number, KVCache>(); // caches kept for later jobs and not returned
  const results: ForwardResult[] = [];
  try {
    for (const [j, { after, ...job }] of jobs.entries()) {
      const kept = lastUser.has(j) && !job.returnCache;
      const r = forward(model, job.inputIds, { ...job, cache: after !== undefined ? caches.get(after) ?? results[after].cache : job.cache, returnCache: job.returnCache || kept });
      if (kept) {
        caches.set(j, r.cache!);
        delete r.cache;
      }
      results.push(r);
      if (after !== undefined && lastUser.get(after) === j && caches.has(after)) {
        disposeCache(caches.get(after)!);
        caches.delete(after);
      }
      await onJob?.(j);
    }
    return results;
  } catch (e) {
    results.forEach(disposeResult);
    throw e;
  } finally {
    caches.forEach(disposeCache);
  }
}

/** forwardMany's work, yielding {layer, job} after each job's part of a layer but its last, and {layer, job: null} after the layer. */
function* forwardSteps(model: LlamaModel, jobs: readonly ForwardJob[]): Generator<{ layer: number; job: number | null }, ForwardResult[]> {
  const c = model.config;
  const H = c.hidden_size;
  const states: JobState[] = [];
  const lastUser = followers(jobs); // job → the last job attending to its keys/values
  let finished = false;
  try {
    jobs.forEach((job) => {
      const positions = checkInput(model, job.inputIds, job);
      const B = job.inputIds.length, T = job.inputIds[0].length;
      const prior = job.after !== undefined ? states[job.after] : undefined;
      const offset = prior ? prior.offset + prior.T : job.cache?.length ?? 0;
      const { cos, sin } = ropeTables(inverseFrequencies(c), offset, T);
      states.push({
        job, positions, B, T, offset, micro: Math.max(1, Math.min(job.microBatch ?? B, B)), ctx: { cos, sin },
        x: null, hidden: [], keys: [], values: [], layerKV: null, result: {},
      });
    });
    model.stats.forwardCalls += jobs.length;
    const table = useWeight(model, 'model.embed_tokens.weight', [c.vocab_size, H]);
    try {
      for (const s of states) s.x = s.job.inputEmbeds ? tf.clone(s.job.inputEmbeds) : embed(table.weight, s.job.inputIds);
    } finally {
      table.release();
    }
    const runs = states.map((s) => (s.job.layers ? new Set(s.job.layers) : null)); // null: every layer
    for (let i = 0; i < c.num_hidden_layers; i++) {
      if (runs.every((r) => r !== null && !r.has(i))) {
        yield { layer: i, job: null }; // every job drops this layer: it is not read
        continue;
      }
      const w = acquireLayer(model, i);
      try {
        for (const [j, s] of states.entries()) {
          const { job } = s;
          if (runs[j] && !runs[j]!.has(i)) continue;
          if (job.hiddenStates) s.hidden.push(tf.clone(s.x!));
          job.onBlockInput?.(i, s.x!);
          const past = job.cache ? { k: job.cache.keys[i], v: job.cache.values[i] } : job.after !== undefined ? states[job.after].layerKV : null;
          const next = runLayer(model, w, s.x!, s.ctx, past, s.micro, !!job.returnCache || lastUser.has(j));
          const input = s.x!;
          s.x = next.h;
          if (next.k) {
            s.layerKV = { k: next.k, v: next.v! };
            if (job.returnCache) {
              s.keys.push(next.k);
              s.values.push(next.v!);
            }
          }
          try {
            job.onBlockOutput?.(i, s.x, input);
          } finally {
            input.dispose();
          }
          if (job.after !== undefined && lastUser.get(job.after) === j) dropLayerKV(states[job.after]);
          if (j < states.length - 1) yield { layer: i, job: j };
        }
      } finally {
        w.release();
        states.forEach(dropLayerKV);
      }
      yield { layer: i, job: null };
    }
    for (const s of states) finishJob(model, s);
    finished = true;
    return states.map((s) => s.result);
  } finally {
    // on a throw, or when the caller stops early: free what the jobs made
    if (!finished) {
      for (const s of states) {
        s.hidden.forEach((t) => t.dispose());
        [...s.keys, ...s.values].forEach((t) => t.dispose());
        s.result.logits?.dispose();
        s.result.hiddenStates?.forEach((t) => t.dispose());
      }
    }
    for (const s of states) {
      s.x?.dispose();
      s.ctx.cos.dispose();
      s.ctx.sin.dispose();
    }
  }
}

/** Frees a job's keys/values of the current layer unless they are part of the cache it returns. */
function dropLayerKV(s: JobState): void {
  if (s.layerKV && !s.job.returnCache) {
    s.layerKV.k.dispose();
    s.layerKV.v.dispose();
  }
  s.layerKV = null;
}

/** A job's outputs after the last layer: final hidden state, logits where asked, its cache. */
function finishJob(model: LlamaModel, s: JobState): void {
  const c = model.config;
  const { job, B, T } = s;
  const x = s.x!;
  const mode = job.logits ?? 'all';
  if (job.hiddenStates) s.hidden.push(rmsNorm(x, model.tensors.get('model.norm.weight')!, c.rms_norm_eps) as tf.Tensor3D);
  if (mode !== 'none') {
    const x2 = x.reshape([B * T, c.hidden_size]) as tf.Tensor2D; // [B*T, H]
    try {
      const all = s.positions ?? Array.from({ length: B * T }, (_, p) => p);
      const logits = logitsAt(model, x2, all, job.onLogits);
      if (logits) s.result.logits = mode === 'all' ? tf.tidy(() => logits.reshape([B, T, c.vocab_size])) : logits; // [B, T, V]
      if (logits && mode === 'all') logits.dispose();
    } finally {
      x2.dispose();
    }
  }
  if (job.hiddenStates) {
    s.result.hiddenStates = s.hidden;
    s.hidden = [];
  }
  if (job.returnCache) {
    s.result.cache = { keys: s.keys, values: s.values, length: s.offset + T };
    s.keys = [];
    s.values = [];
  }
}

/**
 * A decoder layer (weights w) on x [B, T, H] after the layer's cached keys/values `past` (batch 1 or B),
 * in micro-batches of `micro` rows. Returns the new hidden state and, with `keep`, this layer's
 * extended keys/values; frees everything it made when a block throws.
 */
function runLayer(
  model: LlamaModel, w: LayerWeights, x: tf.Tensor3D, ctx: LayerContext, layerPast: { k: tf.Tensor4D; v: tf.Tensor4D } | null, micro: number, keep: boolean,
): { h: tf.Tensor3D; k?: tf.Tensor4D; v?: tf.Tensor4D } {
  const [B, T, H] = x.shape;
  const outs: tf.Tensor3D[] = [], ks: tf.Tensor4D[] = [], vs: tf.Tensor4D[] = [];
  try {
    for (let b0 = 0; b0 < B; b0 += micro) {
      const rows = Math.min(micro, B - b0);
      let xs: tf.Tensor3D | null = null;
      let past: { k: tf.Tensor4D; v: tf.Tensor4D } | null = null;
      try {
        xs = rows === B ? x : tf.slice(x, [b0, 0, 0], [rows, T, H]);
        if (layerPast) past = pastRows(layerPast.k, layerPast.v, b0, rows, B);
        const r = decoderBlock(model.config, w, xs, { ...ctx, bf16: model.compute === 'bfloat16' }, past, keep);
        outs.push(r.h);
        if (keep) {
          ks.push(r.k!);
          vs.push(r.v!);
        }
      } finally {
        if (xs && xs !== x) xs.dispose();
        if (past && layerPast && past.k !== layerPast.k) {
          past.k.dispose();
          past.v.dispose();
        }
      }
    }
    if (outs.length === 1) return { h: outs[0], k: ks[0], v: vs[0] };
    return tf.tidy(() => ({
      h: tf.concat(outs, 0), // [B, T, H]
      k: keep ? tf.concat(ks, 0) : undefined, // [B, nKV, S, hd]
      v: keep ? tf.concat(vs, 0) : undefined,
    })) as { h: tf.Tensor3D; k?: tf.Tensor4D; v?: tf.Tensor4D };
  } catch (e) {
    [...outs, ...ks, ...vs].forEach((t) => t.dispose());
    throw e;
  } finally {
    if (outs.length > 1) [...outs, ...ks, ...vs].forEach((t) => t.dispose());
  }
}

/** The cached keys/values for rows b0..b0+rows-1: the cache itself when it is batch 1 or whole, else slices. */
function pastRows(pk: tf.Tensor4D, pv: tf.Tensor4D, b0: number, rows: number, B: number): { k: tf.Tensor4D; v: tf.Tensor4D } {
  if (pk.shape[0] === 1 || rows === B) return { k: pk, v: pv };
  const k = tf.slice(pk, [b0, 0, 0, 0], [rows, -1, -1, -1]);
  try {
    return { k, v: tf.slice(pv, [b0, 0, 0, 0], [rows, -1, -1, -1]) };
  } catch (e) {
    k.dispose();
    throw e;
  }
}
