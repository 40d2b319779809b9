/**
 * Per-input-channel scales folded into a decoder layer without changing what it computes (before any
 * rounding): the linears that read an input get their columns multiplied by s, and the op that writes
 * it divides by s, an RMSNorm's weight (x / rms · (w / s) · s = x / rms · w) or the rows of the linear
 * before it (v_proj before o_proj, up_proj before down_proj: both enter the next product linearly).
 * AWQ and SmoothQuant both fold their scales this way.
 */

import type { LayerModule } from './calibration.ts';

/** Shapes of a decoder layer's tensors by suffix (config.ts layerTensorShapes). */
export type LayerShapes = ReadonlyMap<string, number[]>;

/** Where a set of scales goes: the op before (a norm, or a linear whose output rows it divides) and the linears after. */
export interface ScaleSite {
  /** The tensor that produces the input: an RMSNorm weight or a linear's weight (suffixes). */
  prev: string;
  /** The linears that read it (weight suffixes). */
  linears: string[];
}

/**
 * The scale sites of a Llama layer as AWQ takes them, each with the projection whose input is measured
 * and the module whose output judges a scale (attention, o_proj, the MLP, down_proj); v_proj → o_proj
 * only without grouped-query attention (v's rows must be o's columns).
 */
export function scaleSites(shapes: LayerShapes): { site: ScaleSite; input: string; module: LayerModule }[] {
  const sites: { site: ScaleSite; input: string; module: LayerModule }[] = [
    { site: { prev: 'input_layernorm.weight', linears: ['self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'self_attn.v_proj.weight'] }, input: 'self_attn.q_proj', module: { part: 'attention' } },
    { site: { prev: 'self_attn.v_proj.weight', linears: ['self_attn.o_proj.weight'] }, input: 'self_attn.o_proj', module: { projection: 'self_attn.o_proj' } },
    { site: { prev: 'post_attention_layernorm.weight', linears: ['mlp.gate_proj.weight', 'mlp.up_proj.weight'] }, input: 'mlp.gate_proj', module: { part: 'mlp' } },
    { site: { prev: 'mlp.up_proj.weight', linears: ['mlp.down_proj.weight'] }, input: 'mlp.down_proj', module: { projection: 'mlp.down_proj' } },
  ];
  const v = shapes.get('self_attn.v_proj.weight')!, o = shapes.get('self_attn.o_proj.weight')!;
  return v[0] === o[1] ? sites : sites.filter((s) => s.site.prev !== 'self_attn.v_proj.weight');
}

/** Multiplies the columns of w [rows, cols] by s (in place). */
export function scaleColumns(w: Float32Array, cols: number, s: ArrayLike<number>): void {
  for (let i = 0; i < w.length; i++) w[i] *= s[i % cols];
}

/**
 * Folds scales s into `weights` (suffix → values, changed in place): the site's linears' columns ×s,
 * its previous op ÷s (a norm weight, or a linear's rows and bias).
 */
export function foldScales(weights: Map<string, Float32Array>, shapes: LayerShapes, site: ScaleSite, s: ArrayLike<number>): void {
  for (const l of site.linears) scaleColumns(weights.get(l)!, shapes.get(l)![1], s);
  const prev = weights.get(site.prev)!;
  if (site.prev.endsWith('norm.weight')) {
    for (let i = 0; i < prev.length; i++) prev[i] /= s[i];
    return;
  }
  const cols = shapes.get(site.prev)![1];
  for (let r = 0; r < prev.length / cols; r++) for (let c = 0; c < cols; c++) prev[r * cols + c] /= s[r];
  const bias = weights.get(site.prev.replace(/\.weight$/, '.bias'));
  if (bias) for (let r = 0; r < bias.length; r++) bias[r] /= s[r];
}
