/**
 * The Llama decoder forward pass (Llama 1/2/3, Mistral, Qwen2), in tfjs ops.
 *
 * Execution is layer-major: the whole batch goes through decoder layer 0, then layer 1, and so on,
 * optionally in micro-batches of rows inside each layer. A layer's weights are therefore needed once
 * per call, which is what lets a streamed model (one layer in memory at a time) run a calibration or
 * evaluation batch without re-reading weights.
 *
 * Batches are right-padded: every row has the same length T, and a row's real tokens never attend to
 * the padding after them (causal mask), so padding changes nothing for real positions.
 */
import * as tf from '@tensorflow/tfjs';
import { acquireLayer, lmHead, type LayerWeights, type LlamaModel } from './model.ts';
import { applyRope, inverseFrequencies, ropeTables } from './rope.ts';

/** Keys and values per layer, [B, kv_heads, S, head_dim], after RoPE. Batch 1 broadcasts to any batch. */
export interface KVCache {
  keys: tf.Tensor4D[];
  values: tf.Tensor4D[];
  /** Number of cached positions S. */
  length: number;
}

export interface ForwardOptions {
  /** Which logits to return: every position [B, T, V], one position per row [B, V], or none. Default 'all'. */
  logits?: 'all' | 'last' | 'none';
  /** With logits 'last': the position of each row to take (default T-1), e.g. the last real token. */
  lastIndex?: number[];
  /** Return Hugging Face's output_hidden_states: L+1 tensors [B, T, H], the last after the final norm. */
  hiddenStates?: boolean;
  /** Called with each block's output [B, T, H] (pre-norm residual stream), block by block; the tensor is
   * disposed after the call returns. Lets calibration consume hidden states without keeping them. */
  onBlockOutput?: (layer: number, h: tf.Tensor3D) => void;
  /** Called with each block's input, like onBlockOutput. */
  onBlockInput?: (layer: number, h: tf.Tensor3D) => void;
  /** Cached keys/values of a prefix; positions of the input start after it. Not disposed. */
  cache?: KVCache;
  /** Return the cache extended by this input. */
  returnCache?: boolean;
  /** Rows per micro-batch inside each layer (bounds attention memory). Default: the whole batch. */
  microBatch?: number;
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

function rmsNorm(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), w));
}

/** x W^T (+ b) for HF [out, in] weights, x [B, T, in] → [B, T, out]. */
function linear(x: tf.Tensor3D, w: tf.Tensor, b?: tf.Tensor): tf.Tensor3D {
  return tf.tidy(() => {
    const [B, T, n] = x.shape;
    const y = tf.matMul(x.reshape([B * T, n]), w as tf.Tensor2D, false, true); // [B*T, out]
    return (b ? tf.add(y, b) : y).reshape([B, T, w.shape[0]]) as tf.Tensor3D;
  });
}

/** Additive causal mask [g*T, S] for queries at positions offset..offset+T-1 repeated for g heads. */
function causalMask(T: number, offset: number, g: number, window: number | null): tf.Tensor2D {
  const S = offset + T;
  const m = new Float32Array(g * T * S);
  for (let r = 0; r < g * T; r++) {
    const q = offset + (r % T);
    for (let s = 0; s < S; s++) {
      const visible = s <= q && (window === null || s > q - window);
      if (!visible) m[r * S + s] = -1e9;
    }
  }
  return tf.tensor2d(m, [g * T, S]);
}

interface LayerContext {
  cos: tf.Tensor3D;
  sin: tf.Tensor3D;
  mask: tf.Tensor2D;
}

/** One decoder block on rows x [b, T, H]; returns the new hidden state and this call's keys/values. */
function decoderBlock(
  model: LlamaModel, w: LayerWeights, x: tf.Tensor3D, ctx: LayerContext,
  past: { k: tf.Tensor4D; v: tf.Tensor4D } | null,
): { h: tf.Tensor3D; k: tf.Tensor4D; v: tf.Tensor4D } {
  const c = model.config;
  const [B, T] = x.shape;
  const nH = c.num_attention_heads, nKV = c.num_key_value_heads, hd = c.head_dim, g = nH / nKV;
  const bias = (s: string) => (w.has(s) ? w.get(s) : undefined);
  return tf.tidy(() => {
    const xn = rmsNorm(x, w.get('input_layernorm.weight'), c.rms_norm_eps) as tf.Tensor3D;
    const q = applyRope(linear(xn, w.get('self_attn.q_proj.weight'), bias('self_attn.q_proj.bias'))
      .reshape([B, T, nH, hd]), ctx.cos, ctx.sin); // [B, T, nH, hd]
    const kNew = applyRope(linear(xn, w.get('self_attn.k_proj.weight'), bias('self_attn.k_proj.bias'))
      .reshape([B, T, nKV, hd]), ctx.cos, ctx.sin).transpose([0, 2, 1, 3]) as tf.Tensor4D; // [B, nKV, T, hd]
    const vNew = linear(xn, w.get('self_attn.v_proj.weight'), bias('self_attn.v_proj.bias'))
      .reshape([B, T, nKV, hd]).transpose([0, 2, 1, 3]) as tf.Tensor4D; // [B, nKV, T, hd]
    let k = kNew, v = vNew;
    if (past) {
      // a batch-1 prefix cache serves every row (concat of copies: much faster than tile on wasm)
      const pk = past.k.shape[0] === B ? past.k : tf.concat(new Array(B).fill(past.k), 0);
      const pv = past.v.shape[0] === B ? past.v : tf.concat(new Array(B).fill(past.v), 0);
      k = tf.concat([pk, kNew], 2);
      v = tf.concat([pv, vNew], 2);
    }
    // Query heads kv-major: head kv*g + j uses kv head kv, as HF's repeat_kv does.
    const qg = q.transpose([0, 2, 1, 3]).reshape([B, nKV, g * T, hd]); // [B, nKV, g*T, hd]
    const scores = tf.add(tf.mul(tf.matMul(qg, k, false, true), 1 / Math.sqrt(hd)), ctx.mask); // [B, nKV, g*T, S]
    const att = tf.matMul(tf.softmax(scores), v) // [B, nKV, g*T, hd]
      .reshape([B, nH, T, hd]).transpose([0, 2, 1, 3]).reshape([B, T, nH * hd]) as tf.Tensor3D; // [B, T, nH*hd]
    const h1 = tf.add(x, linear(att, w.get('self_attn.o_proj.weight'), bias('self_attn.o_proj.bias'))) as tf.Tensor3D;
    const hn = rmsNorm(h1, w.get('post_attention_layernorm.weight'), c.rms_norm_eps) as tf.Tensor3D;
    const gate = linear(hn, w.get('mlp.gate_proj.weight'), bias('mlp.gate_proj.bias'));
    const up = linear(hn, w.get('mlp.up_proj.weight'), bias('mlp.up_proj.bias'));
    const act = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up) as tf.Tensor3D; // SiLU(gate) * up
    const h = tf.add(h1, linear(act, w.get('mlp.down_proj.weight'), bias('mlp.down_proj.bias'))) as tf.Tensor3D;
    return { h, k, v };
  });
}

/**
 * Runs the decoder on right-padded token ids [B][T]. The caller owns (and must dispose) every tensor
 * in the result; the model's tensors and an input cache are left as they were.
 */
export function forward(model: LlamaModel, inputIds: number[][], opts: ForwardOptions = {}): ForwardResult {
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
  const offset = cache?.length ?? 0;
  if (cache && cache.keys[0].shape[0] !== 1 && cache.keys[0].shape[0] !== B) {
    throw new Error(`forward: cache batch ${cache.keys[0].shape[0]} does not match input batch ${B}`);
  }
  const micro = Math.max(1, Math.min(opts.microBatch ?? B, B));
  model.stats.forwardCalls++;

  const inv = inverseFrequencies(c);
  const g = c.num_attention_heads / c.num_key_value_heads;
  const { cos, sin } = ropeTables(inv, offset, T);
  const mask = causalMask(T, offset, g, c.sliding_window);
  const ctx: LayerContext = { cos, sin, mask };

  const result: ForwardResult = {};
  const hidden: tf.Tensor3D[] = [];
  const newKeys: tf.Tensor4D[] = [], newValues: tf.Tensor4D[] = [];
  let x = tf.tidy(() => tf.gather(model.tensors.get('model.embed_tokens.weight')!, tf.tensor2d(inputIds, [B, T], 'int32')) as tf.Tensor3D);
  try {
    for (let i = 0; i < c.num_hidden_layers; i++) {
      if (opts.hiddenStates) hidden.push(tf.clone(x));
      opts.onBlockInput?.(i, x);
      const w = acquireLayer(model, i);
      const outs: tf.Tensor3D[] = [], ks: tf.Tensor4D[] = [], vs: tf.Tensor4D[] = [];
      try {
        for (let b0 = 0; b0 < B; b0 += micro) {
          const rows = Math.min(micro, B - b0);
          const xs = rows === B ? x : tf.slice(x, [b0, 0, 0], [rows, T, c.hidden_size]);
          let past: { k: tf.Tensor4D; v: tf.Tensor4D } | null = null;
          if (cache) {
            const pk = cache.keys[i], pv = cache.values[i];
            past = pk.shape[0] === 1 || rows === B ? { k: pk, v: pv }
              : { k: tf.slice(pk, [b0, 0, 0, 0], [rows, -1, -1, -1]), v: tf.slice(pv, [b0, 0, 0, 0], [rows, -1, -1, -1]) };
          }
          const r = decoderBlock(model, w, xs, ctx, past);
          if (xs !== x) xs.dispose();
          if (past && past.k !== cache!.keys[i]) {
            past.k.dispose();
            past.v.dispose();
          }
          outs.push(r.h);
          if (opts.returnCache) {
            ks.push(r.k);
            vs.push(r.v);
          } else {
            r.k.dispose();
            r.v.dispose();
          }
        }
      } finally {
        w.release();
      }
      const next = outs.length === 1 ? outs[0] : tf.concat(outs, 0);
      if (outs.length > 1) outs.forEach((t) => t.dispose());
      if (opts.returnCache) {
        newKeys.push(ks.length === 1 ? ks[0] : tf.concat(ks, 0));
        newValues.push(vs.length === 1 ? vs[0] : tf.concat(vs, 0));
        if (ks.length > 1) [...ks, ...vs].forEach((t) => t.dispose());
      }
      x.dispose();
      x = next;
      opts.onBlockOutput?.(i, x);
    }
    const normed = rmsNorm(x, model.tensors.get('model.norm.weight')!, c.rms_norm_eps) as tf.Tensor3D;
    if (opts.hiddenStates) {
      hidden.push(normed.clone());
      result.hiddenStates = hidden;
    }
    const mode = opts.logits ?? 'all';
    if (mode === 'all') {
      result.logits = tf.tidy(() => {
        const H = c.hidden_size;
        return tf.matMul(normed.reshape([B * T, H]), lmHead(model), false, true).reshape([B, T, c.vocab_size]); // [B, T, V]
      });
    } else if (mode === 'last') {
      const idx = opts.lastIndex ?? inputIds.map(() => T - 1);
      result.logits = tf.tidy(() => {
        const flat = normed.reshape([B * T, c.hidden_size]); // [B*T, H]
        const rows = tf.gather(flat, tf.tensor1d(idx.map((t, b) => b * T + t), 'int32')); // [B, H]
        return tf.matMul(rows, lmHead(model), false, true); // [B, V]
      });
    }
    normed.dispose();
    if (opts.returnCache) result.cache = { keys: newKeys, values: newValues, length: offset + T };
    return result;
  } catch (e) {
    hidden.forEach((t) => t.dispose());
    [...newKeys, ...newValues].forEach((t) => t.dispose());
    throw e;
  } finally {
    x.dispose();
    cos.dispose();
    sin.dispose();
    mask.dispose();
  }
}
