/**
 * GPTQ (Frantar, Ashkboos, Hoefler, Alistarh, "GPTQ: Accurate Post-Training Quantization for
 * Generative Pre-trained Transformers", ICLR 2023, arXiv:2210.17323): each linear is quantized column
 * by column with its rounding error fed back through the inverse Hessian of its layer objective
 * ‖W·X − Q·X‖² (the solver is gptq-solve.ts). Sequential, as the authors' llama.py: the calibration
 * inputs of each layer come from the layers already quantized, and inside a layer (true-sequential)
 * q/k/v, then o_proj, then gate/up, then down_proj are quantized in turn, each group's inputs computed
 * with the groups before it already quantized.
 */
import type { PackedMatrix } from '../../io/packed.ts';
import { UserError } from '../../runtime/errors.ts';
import { inputHessians, layerWeights } from '../calibration.ts';
import { gptqQuantize, layerObjective } from '../gptq-solve.ts';
import { dequantize, packedBytes, quantizeRtn } from '../../io/packed.ts';
import { layerFloatBytes, linearShapes, otherTensors, specFor, type MethodMemory, type QuantMethod } from '../method.ts';

/** Projections quantized together (they share an input), in the order true-sequential GPTQ takes them. */
const SEQUENTIAL_GROUPS = [
  ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'], ['self_attn.o_proj'], ['mlp.gate_proj', 'mlp.up_proj'], ['mlp.down_proj'],
];

export const gptq: QuantMethod = {
  name: 'gptq',
  description: 'GPTQ: column-by-column rounding with error feedback through the inverse Hessian of each linear, layer by layer on quantized inputs',
  reference: 'Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers", ICLR 2023 (arXiv:2210.17323)',
  params: [
    { name: 'dampening', type: 'number', default: 0.01, min: 0, max: 1, describe: 'fraction of the mean Hessian diagonal added to it (percdamp)' },
    { name: 'block-size', type: 'number', default: 128, min: 1, describe: 'columns whose error updates are applied together (lazy batch updates)' },
    { name: 'act-order', type: 'boolean', default: false, describe: 'quantize columns by decreasing Hessian diagonal (with groups: static groups)' },
    { name: 'true-sequential', type: 'boolean', default: true, describe: 'inside a layer, quantize q/k/v, o, gate/up, down in turn on inputs through the already quantized ones' },
  ],
  calibration: 'quantized',
  checkGrid: () => {},
  quantizeLayer(job) {
    const cal = job.calibration;
    if (!cal) throw new Error('gptq needs calibration inputs');
    const blockSize = job.params['block-size'] as number;
    if (!Number.isInteger(blockSize)) throw new UserError(`gptq's block size ${blockSize}: must be a whole number of columns`);
    const current = new Map(job.weights); // quantized linears replace their float values as they are done
    const packed = new Map<string, PackedMatrix>();
    const stats: Record<string, Record<string, number>> = {};
    const notes: Record<string, number> = {};
    const note = (what: string, n: number) => {
      if (n > 0) notes[what] = (notes[what] ?? 0) + n;
    };
    const groups = job.params['true-sequential'] ? SEQUENTIAL_GROUPS : [SEQUENTIAL_GROUPS.flat()];
    for (const group of groups) {
      const inputs = [...new Set(group.map((p) => SEQUENTIAL_GROUPS.find((g) => g.includes(p))![0]))]; // one Hessian per shared input
      const w = layerWeights(current, job.shapes);
      let hessians: Map<string, Float32Array>;
      try {
        hessians = inputHessians(job.config, cal, w, inputs);
      } finally {
        w.release();
      }
      for (const p of group) {
        const suffix = `${p}.weight`;
        const [rows, cols] = job.shapes.get(suffix)!;
        const h = hessians.get(SEQUENTIAL_GROUPS.find((g) => g.includes(p))![0])!;
        const original = job.weights.get(suffix)!;
        const spec = job.spec(suffix);
        const r = gptqQuantize(original, rows, cols, h, spec, {
          dampening: job.params.dampening as number, blockSize, actOrder: job.params['act-order'] as boolean, what: `layer ${job.layer} ${p}`,
        });
        const rtn = dequantize(quantizeRtn(original, rows, cols, spec));
        packed.set(suffix, r.packed);
        current.set(suffix, r.dequantized);
        stats[p] = { loss: r.loss, objective: layerObjective(original, r.dequantized, rows, cols, h), objective_rtn: layerObjective(original, rtn, rows, cols, h), damp: r.damp, dampening: r.dampening, dead_inputs: r.dead };
        note(`linears whose calibration Hessian needed more dampening than ${job.params.dampening} (up to ${r.dampening}) to be positive definite`, r.dampening > (job.params.dampening as number) ? 1 : 0);
        note('inputs of linears that never vary on the calibration prompts (their weights set to zero, as GPTQ does)', r.dead);
      }
    }
    return { packed, floats: otherTensors(job.weights), stats, notes };
  },
  /**
   * Per group of projections, in quantizeLayer's order, beside the linears already done (their
   * dequantized float32 values and packed form): while the group's Hessians accumulate, the layer's
   * forward pass, each Hessian's n×n float32 sum (n its inputs) and, for one of them, a batch's XᵀX and
   * the new sum (where tensors are copies, also the layer's tensors); then the Hessians (n² float32 each),
   * and for each linear [rows, n] the largest phase of its solve (gptq-solve.ts, linalg.ts): the float64
   * copy of H factorised in place (8n²) beside the blocked inversion's lower halves and their product
   * (6n²) and one float32 product of the halves (3n²); the factor beside W's columns in float64, the
   * packed result and its values (8n² + 12·rows·n); the layer objective's float32 H and four [rows, n]
   * float32 arrays (4n² + 16·rows·n). At Llama-3-8B's down_proj (n = 14,336) the solve alone is 4.3 GB.
   */
  memory(s) {
    const lin = new Map(linearShapes(s.config).map((l) => [l.suffix.replace(/\.weight$/, ''), l]));
    const groups = s.params['true-sequential'] ? SEQUENTIAL_GROUPS : [SEQUENTIAL_GROUPS.flat()];
    const copy = s.copies ? layerFloatBytes(s.config) : 0;
    let done = 0;
    let peak: MethodMemory = { bytes: 0, tensors: 0, what: '' };
    const consider = (bytes: number, tensors: number, what: string) => {
      if (bytes > peak.bytes) peak = { bytes, tensors, what };
    };
    for (const group of groups) {
      const widths = [...new Set(group.map((p) => SEQUENTIAL_GROUPS.find((g) => g.includes(p))![0]))].map((i) => lin.get(i)!.cols);
      const sums = widths.reduce((a, n) => a + 4 * n * n, 0);
      const widest = Math.max(...widths);
      const accumulating = s.forward + copy + sums + 2 * 4 * widest * widest;
      // then each sum is read out and scaled into a new array before the tensors are freed
      consider(done + Math.max(accumulating, 2 * sums), accumulating, `gptq's Hessians of ${group.join(', ')} (${widest} inputs)`);
      for (const p of group) {
        const { rows, cols: n } = lin.get(p)!;
        const pm = packedBytes(rows, n, specFor(s.grid, n));
        const solve = Math.max(17 * n * n, 8 * n * n + 12 * rows * n + pm, 4 * n * n + 16 * rows * n);
        consider(done + sums + solve, 0, `gptq's Hessian and solver of ${p} (${n} inputs)`);
        done += 4 * rows * n + pm;
      }
    }
    return peak;
  },
};
