/**
 * AWQ (Lin, Tang, Tang, Yang, Chen, Wang, Xiao, Dang, Gan, Han, "AWQ: Activation-aware Weight
 * Quantization for LLM Compression and Acceleration", MLSys 2024, arXiv:2306.00978): the few input
 * channels with large activations matter most, so before rounding each linear's columns are scaled up
 * by s = mean|x|^α (normalised so that √(max·min) = 1) and the op before divides by s (fold.ts: RMSNorm
 * weights, v_proj's rows for o_proj, up_proj's rows for down_proj), which keeps the float model's
 * function. α is searched on a grid of 20 (0, 0.05, ..., 0.95) for each of a layer's scale sites by the
 * error of the module's output (attention for q/k/v, o_proj, the MLP for gate/up, down_proj) with the
 * site's linears rounded, as the authors' auto_scale.py; all of a layer's searches see the float layer,
 * then all scales are folded and every linear is rounded to nearest. The calibration inputs come from the
 * float model. Not done here: the authors' optional clipping search (auto_clip). o_proj is scaled only
 * without grouped-query attention (v_proj's rows must be o_proj's columns), as auto_scale.py does.
 */
import { tf } from '../../runtime/tf.ts';
import { dequantize, packedBytes, quantizeRtn, type PackedMatrix } from '../../io/packed.ts';
import { layerTensorShapes } from '../../model/config.ts';
import { disposeTensors, layerWeights, meanSquaredError, moduleOutputs, projectionInputs } from '../calibration.ts';
import { foldScales, scaleColumns, scaleSites } from '../fold.ts';
import { LINEARS, layerFloatBytes, layerPackedBytes, otherTensors, specFor, type LayerJob, type MethodMemory, type QuantMethod } from '../method.ts';
import { tidyValues } from '../../runtime/read-out.ts';

/** AWQ's scales for exponent α from mean |x| per channel: x^α clamped at 1e-4, divided by √(max·min). */
export function awqScales(meanAbs: ArrayLike<number>, alpha: number): Float64Array {
  const s = Float64Array.from(meanAbs, (x) => Math.max(1e-4, x ** alpha));
  let lo = Infinity, hi = -Infinity;
  for (const v of s) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const norm = Math.sqrt(lo * hi);
  return s.map((v) => v / norm);
}

/** Mean |x| per channel over the real tokens of inputs [b, T, C] (padding masked out). */
function channelMeanAbs(inputs: readonly tf.Tensor3D[], masks: readonly tf.Tensor3D[], tokens: number): Float32Array {
  const sum = tidyValues(() => tf.addN(inputs.map((x, i) => tf.sum(tf.abs(tf.mul(x, masks[i])), [0, 1]))));
  return sum.map((v) => v / tokens);
}

/** A copy of the layer's weights with the site's linears scaled by s, rounded on the job's grid and unscaled (AWQ's candidate). */
function candidate(job: LayerJob, linears: string[], s: Float64Array): Map<string, Float32Array> {
  const out = new Map(job.weights);
  for (const l of linears) {
    const [rows, cols] = job.shapes.get(l)!;
    const w = Float32Array.from(job.weights.get(l)!);
    scaleColumns(w, cols, s);
    const q = dequantize(quantizeRtn(w, rows, cols, job.spec(l)));
    scaleColumns(q, cols, s.map((v) => 1 / v));
    out.set(l, q);
  }
  return out;
}

export const awq: QuantMethod = {
  name: 'awq',
  description: 'AWQ: per-input-channel scales from activation magnitudes (exponent searched on the module output error), folded into the previous op, then round to nearest',
  reference: 'Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and Acceleration", MLSys 2024 (arXiv:2306.00978)',
  params: [{ name: 'grid', type: 'number', default: 20, min: 1, max: 1000, describe: 'exponents tried: 0, 1/grid, ..., (grid-1)/grid' }],
  calibration: 'float',
  checkGrid: () => {},
  quantizeLayer(job) {
    const cal = job.calibration;
    if (!cal) throw new Error('awq needs calibration inputs');
    const sites = scaleSites(job.shapes);
    const grid = job.params.grid as number;
    const stats: Record<string, Record<string, number>> = {};
    const original = layerWeights(job.weights, job.shapes);
    const chosen: { site: (typeof sites)[number]; s: Float64Array }[] = [];
    try {
      for (const site of sites) {
        // the module's input, from the float layer, is the same for every candidate: computed once
        const inputs = projectionInputs(job.config, cal, original, site.input);
        const reference = moduleOutputs(job.config, cal, original, site.module, inputs);
        try {
          const meanAbs = channelMeanAbs(inputs, cal.batches.map((b) => b.mask), cal.tokens);
          let best: { loss: number; alpha: number; s: Float64Array } = { loss: Infinity, alpha: 0, s: new Float64Array(0) };
          let lossAtZero = Infinity;
          for (let k = 0; k < grid; k++) {
            const alpha = k / grid;
            const s = awqScales(meanAbs, alpha);
            const w = layerWeights(candidate(job, site.site.linears, s), job.shapes);
            let loss: number;
            try {
              const outs = moduleOutputs(job.config, cal, w, site.module, inputs);
              loss = meanSquaredError(reference, outs, cal.tokens);
              disposeTensors(outs);
            } finally {
              w.release();
            }
            if (k === 0) lossAtZero = loss;
            if (loss < best.loss) best = { loss, alpha, s };
          }
          chosen.push({ site, s: best.s });
          stats[site.site.linears.map((l) => l.replace(/\.weight$/, '')).join('+')] = { alpha: best.alpha, error: best.loss, error_rtn: lossAtZero };
        } finally {
          disposeTensors(reference);
          disposeTensors(inputs);
        }
      }
    } finally {
      original.release();
    }
    const weights = new Map([...job.weights].map(([k, v]) => [k, Float32Array.from(v)]));
    for (const { site, s } of chosen) foldScales(weights, job.shapes, site.site, s);
    const packed = new Map<string, PackedMatrix>();
    for (const p of LINEARS) {
      const suffix = `${p}.weight`;
      const [rows, cols] = job.shapes.get(suffix)!;
      packed.set(suffix, quantizeRtn(weights.get(suffix)!, rows, cols, job.spec(suffix)));
    }
    const notes: Record<string, number> = sites.length < 4 ? { 'layers whose o_proj is not scaled (grouped-query attention: v_proj\'s rows are not o_proj\'s inputs; the authors\' code skips it too)': 1 } : {};
    return { packed, floats: otherTensors(weights), stats, notes };
  },
  /**
   * The largest of: a scale site's search (the site's inputs on every calibration row, float32: tokens ×
   * 14,336 for Llama-3-8B's down_proj; the float module's outputs and one candidate's, tokens × hidden
   * each; the candidate's scaled copy and rounded values of the site's linears, and their packed form;
   * the module's forward pass on a micro-batch; where tensors are copies, the float layer's and the
   * candidate's tensors too), and the scaled copy of the layer beside its packed linears after them.
   */
  memory(s) {
    const shapes = layerTensorShapes(s.config);
    const copy = s.copies ? layerFloatBytes(s.config) : 0;
    let peak: MethodMemory = { bytes: layerFloatBytes(s.config) + layerPackedBytes(s.config, s.grid), tensors: 0, what: 'awq\'s scaled and packed layer' };
    for (const site of scaleSites(shapes)) {
      const inputs = shapes.get(`${site.input}.weight`)![1];
      const tensors = 4 * s.tokens * (inputs + 2 * s.config.hidden_size) + s.forward + 2 * copy;
      let candidate = 0;
      for (const l of site.site.linears) {
        const [rows, cols] = shapes.get(l)!;
        candidate += 2 * 4 * rows * cols + packedBytes(rows, cols, specFor(s.grid, cols));
      }
      if (tensors + candidate > peak.bytes) peak = { bytes: tensors + candidate, tensors, what: `awq's search at ${site.input} (its ${inputs} inputs on ${s.tokens} calibration rows)` };
    }
    return peak;
  },
};
