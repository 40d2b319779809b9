/**
 * SmoothQuant (Xiao, Lin, Seznec, Wu, Demouth, Han, "SmoothQuant: Accurate and Efficient Post-Training
 * Quantization for Large Language Models", ICML 2023, arXiv:2211.10438): W8A8. Activation outliers
 * make per-token int8 activations lossy, so part of their range migrates into the weights: per input
 * channel j of the linears after an RMSNorm, s_j = max|X_j|^α / max|W_j|^(1−α) (α = 0.5 by default;
 * both maxima clamped at 1e-5, as the authors' smooth.py), X ÷ s folded into the norm's weight and W × s
 * into the linears (fold.ts), for q/k/v after input_layernorm and gate/up after post_attention_layernorm.
 * Then every linear is int8 per output channel (symmetric) and, at run time, its input is rounded to
 * int8 per token (ops.ts quantizeActivations; act_bits 8 in quantization_config). The activation maxima
 * come from the float model on the calibration prompts.
 */
import { quantizeRtn, type PackedMatrix } from '../../io/packed.ts';
import { UserError } from '../../runtime/errors.ts';
import { flag } from '../../runtime/options.ts';
import { ASYM, BITS, GROUP_SIZE } from '../options.ts';
import { inputMagnitudes, layerWeights } from '../calibration.ts';
import { foldScales, type ScaleSite } from '../fold.ts';
import { collectGarbage } from '../../runtime/collect.ts';
import { LINEARS, layerFloatBytes, layerPackedBytes, otherTensors, type QuantMethod } from '../method.ts';

/** SmoothQuant's sites: the linears after each RMSNorm, by the projection whose input is measured. */
export const SMOOTH_SITES: { site: ScaleSite; input: string }[] = [
  { site: { prev: 'input_layernorm.weight', linears: ['self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'self_attn.v_proj.weight'] }, input: 'self_attn.q_proj' },
  { site: { prev: 'post_attention_layernorm.weight', linears: ['mlp.gate_proj.weight', 'mlp.up_proj.weight'] }, input: 'mlp.gate_proj' },
];

/** s_j = max|X_j|^α / max_over_linears_and_rows |W_ij|^(1−α), both clamped at 1e-5 (s too). */
export function smoothScales(actMax: ArrayLike<number>, linears: { w: Float32Array; cols: number }[], alpha: number): Float64Array {
  const cols = actMax.length;
  const wMax = new Float64Array(cols);
  for (const { w, cols: c } of linears) {
    if (c !== cols) throw new Error(`smoothScales: a linear of ${c} inputs after ${cols} channels`);
    for (let i = 0; i < w.length; i++) wMax[i % cols] = Math.max(wMax[i % cols], Math.abs(w[i]));
  }
  return Float64Array.from(actMax, (a, j) => Math.max(1e-5, Math.max(a, 1e-5) ** alpha / Math.max(wMax[j], 1e-5) ** (1 - alpha)));
}

export const smoothquant: QuantMethod = {
  name: 'smoothquant',
  description: 'SmoothQuant W8A8: activation outliers migrated into the weights (strength alpha) through the RMSNorm weights, int8 per-channel weights, int8 per-token activations',
  reference: 'Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training Quantization for Large Language Models", ICML 2023 (arXiv:2211.10438)',
  params: [{ name: 'alpha', type: 'number', default: 0.5, min: 0, max: 1, describe: 'migration strength α: the share of the activations\' range moved into the weights' }],
  calibration: 'float',
  actBits: 8,
  checkGrid: (grid) => {
    if (grid.bits !== 8 || grid.group !== 'channel' || !grid.symmetric) {
      throw new UserError(`smoothquant is W8A8: 8-bit symmetric weights, one scale per output channel (${flag(BITS)} 8 ${flag(GROUP_SIZE)} 0, no ${flag(ASYM)})`);
    }
  },
  quantizeLayer(job) {
    const cal = job.calibration;
    if (!cal) throw new Error('smoothquant needs calibration inputs');
    const alpha = job.params.alpha as number;
    const w = layerWeights(job.weights, job.shapes);
    let mags: Map<string, { mean: Float32Array; max: Float32Array }>;
    try {
      mags = inputMagnitudes(job.config, cal, w, SMOOTH_SITES.map((s) => s.input));
    } finally {
      w.release();
    }
    // the measuring pass's intermediates (0.9 GB at Llama-3-8B's cap) are collected before the layer is copied to be scaled
    collectGarbage();
    const weights = new Map([...job.weights].map(([k, v]) => [k, Float32Array.from(v)]));
    const stats: Record<string, Record<string, number>> = {};
    for (const { site, input } of SMOOTH_SITES) {
      const s = smoothScales(mags.get(input)!.max, site.linears.map((l) => ({ w: weights.get(l)!, cols: job.shapes.get(l)![1] })), alpha);
      foldScales(weights, job.shapes, site, s);
      stats[input] = { act_max: Math.max(...mags.get(input)!.max), scale_min: Math.min(...s), scale_max: Math.max(...s) };
    }
    const packed = new Map<string, PackedMatrix>();
    for (const p of LINEARS) {
      const suffix = `${p}.weight`;
      const [rows, cols] = job.shapes.get(suffix)!;
      packed.set(suffix, quantizeRtn(weights.get(suffix)!, rows, cols, job.spec(suffix)));
    }
    return { packed, floats: otherTensors(weights), stats };
  },
  /**
   * The larger of: the layer's forward pass measuring the maxima (a micro-batch's forward pass and one
   * measured input's masked |x| beside it; the layer's tensors copied into the heap where tensors are
   * copies), and the scaled copy of the layer's weights beside its packed linears.
   */
  memory(s) {
    const copy = s.copies ? layerFloatBytes(s.config) : 0;
    const measuring = s.forward + copy + 2 * 4 * s.batchRows * s.config.hidden_size; // q_proj's and gate_proj's inputs are hidden-wide
    const folding = layerFloatBytes(s.config) + layerPackedBytes(s.config, s.grid);
    return measuring > folding
      ? { bytes: measuring, tensors: measuring, what: 'smoothquant\'s forward pass' }
      : { bytes: folding, tensors: 0, what: 'smoothquant\'s scaled and packed layer' };
  },
};
