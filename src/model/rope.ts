/**
 * Rotary position embeddings, Hugging Face's rotate-half convention: the pairs rotated together are
 * (i, i + head_dim/2). Frequencies follow HF's `rope_init_fn`s for the default, `linear` and `llama3` types.
 */
import { tf } from '../runtime/tf.ts';
import type { LlamaConfig } from './config.ts';

/** Inverse frequencies (head_dim/2 of them), with rope_scaling applied, in float32 like transformers. */
export function inverseFrequencies(c: LlamaConfig): Float32Array {
  const half = c.head_dim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(c.rope_theta, Math.fround((2 * i) / c.head_dim));
  const s = c.rope_scaling;
  if (!s) return inv;
  if (s.rope_type === 'linear') return inv.map((f) => f / s.factor);
  // llama3: keep high frequencies, divide low ones by `factor`, interpolate smoothly in between.
  const old = s.original_max_position_embeddings!, lo = s.low_freq_factor!, hi = s.high_freq_factor!;
  const lowWavelen = old / lo, highWavelen = old / hi;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth = (old / wavelen - lo) / (hi - lo);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

/** cos and sin tables [T, head_dim] (row-major) for positions offset..offset+T-1, as plain arrays. */
export function ropeTableData(inv: Float32Array, offset: number, T: number): { cos: Float32Array; sin: Float32Array } {
  const half = inv.length, hd = 2 * half;
  const cos = new Float32Array(T * hd), sin = new Float32Array(T * hd);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround((offset + t) * inv[i]);
      const c = Math.cos(angle), s = Math.sin(angle);
      cos[t * hd + i] = cos[t * hd + half + i] = c;
      sin[t * hd + i] = sin[t * hd + half + i] = s;
    }
  }
  return { cos, sin };
}

/** cos and sin tables [T, head_dim] for positions offset..offset+T-1 (ops.rope applies them). */
export function ropeTables(inv: Float32Array, offset: number, T: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const { cos, sin } = ropeTableData(inv, offset, T);
  const hd = 2 * inv.length;
  return { cos: tf.tensor2d(cos, [T, hd]), sin: tf.tensor2d(sin, [T, hd]) };
}
