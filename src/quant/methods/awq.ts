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
import { groupParams, quantCode, quantizeRtn, type PackedMatrix, type PackedSpec } from '../../io/packed.ts';
import { layerTensorShapes } from '../../model/config.ts';
import { inputMagnitudes, layerWeights, moduleOutput, projectionInput, squaredError, type CalibrationSet } from '../calibration.ts';
import type { LlamaConfig } from '../../model/config.ts';
import type { LayerWeights } from '../../model/model.ts';
import { foldScales, scaleSites } from '../fold.ts';
import { collectGarbage } from '../../runtime/collect.ts';
import { LINEARS, layerFloatBytes, layerPackedBytes, otherTensors, type LayerJob, type MethodMemory, type QuantMethod } from '../method.ts';

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

/**
 * AWQ's candidate for a linear w [rows, cols]: its columns scaled by s, rounded to nearest on `spec` and
 * unscaled, written to out: to the bit the values of dequantize(quantizeRtn(w·s)) / s, without packing.
 */
export function roundScaled(w: Float32Array, rows: number, cols: number, spec: PackedSpec, s: Float64Array, out: Float32Array): Float32Array {
  const inverse = s.map((v) => 1 / v);
  const scaled = new Float32Array(spec.group); // a group's scaled values, float32 as the packing reads them
  const off = spec.bits === 4 && spec.symmetric ? -8 : 0;
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let c0 = 0; c0 < cols; c0 += spec.group) {
      const n = Math.min(spec.group, cols - c0);
      for (let j = 0; j < n; j++) scaled[j] = w[row + c0 + j] * s[c0 + j];
      const p = groupParams(scaled, 0, n, spec);
      for (let j = 0; j < n; j++) {
        const q = quantCode(scaled[j], p, spec) | 0; // as stored in a byte: an integer, never -0
        // the value as packed.ts dequantizeRows computes it (float32), then unscaled
        const v = Math.fround(spec.bits === 8 && spec.symmetric ? p.scale * q : p.scale * (q + off) + p.min);
        out[row + c0 + j] = v * inverse[c0 + j];
      }
    }
  }
  return out;
}

/**
 * The layer's weights with the site's linears replaced by their candidates for scales s (the rest are
 * `original`'s tensors); `buffers` hold the candidates' values, reused from one candidate to the next.
 * release() frees only the candidates' tensors.
 */
function candidateWeights(job: LayerJob, original: LayerWeights, linears: readonly string[], s: Float64Array, buffers: Map<string, Float32Array>): LayerWeights {
  const own = new Map<string, tf.Tensor>();
  try {
    for (const l of linears) {
      const [rows, cols] = job.shapes.get(l)!;
      if (!buffers.has(l)) buffers.set(l, new Float32Array(rows * cols));
      own.set(l, tf.tensor2d(roundScaled(job.weights.get(l)!, rows, cols, job.spec(l), s, buffers.get(l)!), [rows, cols]));
    }
  } catch (e) {
    for (const t of own.values()) t.dispose();
    throw e;
  }
  return {
    weight: (suffix) => (own.has(suffix) ? { tensor: own.get(suffix)!, dtype: 'float32' } : original.weight(suffix)),
    get: (suffix) => own.get(suffix) ?? original.get(suffix),
    has: (suffix) => own.has(suffix) || original.has(suffix),
    release: () => {
      for (const t of own.values()) t.dispose();
      own.clear();
    },
  };
}

/**
 * The module error of each exponent k/grid at one scale site: Σ over the real tokens of the squared
 * difference between the float module's output and its output with the site's linears as the
 * candidate, divided by tokens × outputs. Batch by batch: the site's input and the float output of one
 * micro-batch are held at a time (recomputed from the batch's states), every candidate made for each.
 */
function searchSite(job: LayerJob, cal: CalibrationSet, original: LayerWeights, site: AwqSite, meanAbs: Float32Array, grid: number): Float64Array {
  // the previous site's candidates (gate/up's: 0.47 GB at Llama-3-8B) and passes are collected before this site's are made
  collectGarbage();
  const sums = new Float64Array(grid);
  const scales = Array.from({ length: grid }, (_, k) => awqScales(meanAbs, k / grid));
  const buffers = new Map<string, Float32Array>();
  let width = 1;
  for (const b of cal.batches) {
    const input = projectionInput(job.config, b, original, site.input);
    let reference: tf.Tensor2D | null = null;
    try {
      reference = moduleOutput(job.config, b, original, site.module, input);
      width = reference.shape[1];
      for (let k = 0; k < grid; k++) {
        const w = candidateWeights(job, original, site.site.linears, scales[k], buffers);
        try {
          const out = moduleOutput(job.config, b, w, site.module, input);
          sums[k] += squaredError(reference, out);
          out.dispose();
        } finally {
          w.release();
        }
      }
    } finally {
      reference?.dispose();
      input.dispose();
    }
  }
  return sums.map((v) => v / (cal.tokens * width));
}

type AwqSite = ReturnType<typeof scaleSites>[number];

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
    const chosen: { site: AwqSite; s: Float64Array }[] = [];
    try {
      const magnitudes = inputMagnitudes(job.config, cal, original, sites.map((s) => s.input));
      for (const site of sites) {
        const meanAbs = magnitudes.get(site.input)!.mean;
        const losses = searchSite(job, cal, original, site, meanAbs, grid);
        let best = 0;
        for (let k = 1; k < grid; k++) if (losses[k] < losses[best] || Number.isNaN(losses[best])) best = k;
        chosen.push({ site, s: awqScales(meanAbs, best / grid) });
        stats[site.site.linears.map((l) => l.replace(/\.weight$/, '')).join('+')] = { alpha: best / grid, error: losses[best], error_rtn: losses[0] };
      }
    } finally {
      original.release();
    }
    // the last site's candidates and passes are collected before the layer is copied to be scaled
    collectGarbage();
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
   * The largest of: the pass measuring every site's input magnitudes (a micro-batch's forward pass and
   * one projection's masked |x| beside it); a scale site's search, which holds for one micro-batch the
   * site's inputs (float32: its largest micro-batch's rows × 14,336 at Llama-3-8B's down_proj), the float
   * module's output and a candidate's (rows × hidden each) beside the module's forward pass, the
   * candidate values of the site's linears (float32; where tensors are copies, also their tensors and the
   * float layer's) and every exponent's scales; and after them the scaled copy of the layer beside its
   * packed linears.
   */
  memory(s) {
    const shapes = layerTensorShapes(s.config);
    const copy = s.copies ? layerFloatBytes(s.config) : 0;
    const sites = scaleSites(shapes);
    const width = (input: string) => shapes.get(`${input}.weight`)![1];
    const measuring = s.forward + copy + 2 * 4 * s.batchRows * Math.max(...sites.map((site) => width(site.input)));
    let peak: MethodMemory = { bytes: measuring, tensors: measuring, what: 'awq\'s pass measuring its sites\' inputs' };
    const folding = layerFloatBytes(s.config) + layerPackedBytes(s.config, s.grid);
    if (folding > peak.bytes) peak = { bytes: folding, tensors: 0, what: 'awq\'s scaled and packed layer' };
    for (const site of sites) {
      const inputs = width(site.input);
      const candidates = site.site.linears.reduce((a, l) => a + 4 * shapes.get(l)!.reduce((x, d) => x * d, 1), 0);
      const scales = 8 * (s.params.grid as number) * inputs; // every exponent's scales, float64
      const tensors = 4 * s.batchRows * (inputs + 2 * s.config.hidden_size) + s.forward + (s.copies ? copy + candidates : 0);
      if (tensors + candidates + scales > peak.bytes) {
        peak = { bytes: tensors + candidates + scales, tensors, what: `awq's search at ${site.input} (its ${inputs} inputs on a micro-batch of ${s.batchRows} rows)` };
      }
    }
    return peak;
  },
};
