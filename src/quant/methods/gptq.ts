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
import { HESSIAN_SCRATCH_BYTES, hessianBytes, layerWeights, spreadHessians, sumInputHessians, type CalibrationSet, type HessianSums } from '../calibration.ts';
import { collectGarbage } from '../../runtime/collect.ts';
import { gptqQuantize, layerObjective, OBJECTIVE_SCRATCH_BYTES, solveBytes } from '../gptq-solve.ts';
import { factorScratchBytes } from '../linalg.ts';
import { dequantize, packedBytes, quantizeRtn } from '../../io/packed.ts';
import { layerFloatBytes, linearShapes, otherTensors, specFor, type LayerJob, type MethodMemory, type QuantMethod } from '../method.ts';

/** Projections quantized together (they share an input), in the order true-sequential GPTQ takes them. */
const SEQUENTIAL_GROUPS = [
  ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'], ['self_attn.o_proj'], ['mlp.gate_proj', 'mlp.up_proj'], ['mlp.down_proj'],
];

/** The projection whose input `p` shares (the first of its group): its Hessian's name. */
const inputOf = (p: string) => SEQUENTIAL_GROUPS.find((g) => g.includes(p))![0];

/**
 * The sums of X·Xᵀ of `inputs` over the calibration prompts, from one pass of the layer with the linears
 * done so far quantized (their values dequantized again, only while the passes run). A function of its
 * own so that those values (0.64 GB at Llama-3-8B's down_proj) die with its frame: V8 keeps a frame's
 * temporaries while the frame runs, so in quantizeLayer's they would outlive the solves.
 */
function groupSums(job: LayerJob, cal: CalibrationSet, packed: ReadonlyMap<string, PackedMatrix>, inputs: readonly string[]): HessianSums {
  const w = layerWeights(new Map([...job.shapes.keys()].map((s) => [s, packed.has(s) ? dequantize(packed.get(s)!) : job.weights.get(s)!])), job.shapes);
  try {
    return sumInputHessians(job.config, cal, w, inputs);
  } finally {
    w.release();
  }
}

/**
 * GPTQ of projection `p` with its input's Hessian `h` (H again when this returns), and its layer
 * objectives beside round to nearest's. A function of its own so that the solve's values and round to
 * nearest's (4·rows·cols bytes each) die with its frame, not in quantizeLayer's while later linears solve.
 */
function quantizeLinear(job: LayerJob, p: string, h: Float64Array, blockSize: number): { packed: PackedMatrix; stats: Record<string, number> } {
  const suffix = `${p}.weight`;
  const [rows, cols] = job.shapes.get(suffix)!;
  const original = job.weights.get(suffix)!;
  const spec = job.spec(suffix);
  const r = gptqQuantize(original, rows, cols, h, spec, {
    dampening: job.params.dampening as number, blockSize, actOrder: job.params['act-order'] as boolean, what: `layer ${job.layer} ${p}`,
  });
  // the solve's float64 columns (8·rows·cols bytes) are dropped: collected before the objectives' arrays are made, as the
  // estimate counts the two phases apart
  collectGarbage();
  const rtn = dequantize(quantizeRtn(original, rows, cols, spec));
  return {
    packed: r.packed,
    stats: { loss: r.loss, objective: layerObjective(original, r.dequantized, rows, cols, h), objective_rtn: layerObjective(original, rtn, rows, cols, h), damp: r.damp, dampening: r.dampening, dead_inputs: r.dead },
  };
}

/**
 * GPTQ of one group of projections (those quantized together, true-sequential: q/k/v, o, gate/up, down):
 * their inputs' Hessians from the layer's passes with the linears done so far quantized, then each
 * linear's solve; its packed result and stats go into `packed` and `stats`. A function of its own so
 * that the group's Hessians (1.6 GB at Llama-3-8B's down_proj) die with its frame.
 */
function quantizeGroup(job: LayerJob, cal: CalibrationSet, group: readonly string[], blockSize: number, packed: Map<string, PackedMatrix>, stats: Record<string, Record<string, number>>, note: (what: string, n: number) => void): void {
  const inputs = [...new Set(group.map(inputOf))]; // one Hessian per shared input
  // what the previous group's solves dropped (float64 columns, values and errors: 1.2 GB per linear at Llama-3-8B's gate and up) is collected
  // before this group's passes, which V8 would not do while they run in native products
  collectGarbage();
  const sums = groupSums(job, cal, packed, inputs);
  // the passes' intermediates and the dequantized values are collected before the Hessians' other halves are written:
  // V8 counted those pages when the arrays were made, so writing them would not make it collect
  collectGarbage();
  const hessians = spreadHessians(sums);
  for (const p of group) {
    // the Hessian is the factorisation's workspace: H again when quantizeLinear returns
    const r = quantizeLinear(job, p, hessians.get(inputOf(p))!, blockSize);
    packed.set(`${p}.weight`, r.packed);
    stats[p] = r.stats;
    note(`linears whose calibration Hessian needed more dampening than ${job.params.dampening} (up to ${r.stats.dampening}) to be positive definite`, r.stats.dampening > (job.params.dampening as number) ? 1 : 0);
    note('inputs of linears that never vary on the calibration prompts (their weights set to zero, as GPTQ does)', r.stats.dead_inputs);
    if (!group.slice(group.indexOf(p) + 1).some((q) => inputOf(q) === inputOf(p))) hessians.delete(inputOf(p)); // p was its last user
    job.release?.(`${p}.weight`);
  }
}

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
    const packed = new Map<string, PackedMatrix>();
    const stats: Record<string, Record<string, number>> = {};
    const notes: Record<string, number> = {};
    const note = (what: string, n: number) => {
      if (n > 0) notes[what] = (notes[what] ?? 0) + n;
    };
    const groups = job.params['true-sequential'] ? SEQUENTIAL_GROUPS : [SEQUENTIAL_GROUPS.flat()];
    for (const group of groups) quantizeGroup(job, cal, group, blockSize, packed, stats, note);
    return { packed, floats: otherTensors(job.weights), stats, notes };
  },
  /**
   * Per group of projections, in quantizeLayer's order, beside the packed linears already done: while
   * the group's Hessians accumulate, the layer's float32 values (the linears done dequantized again),
   * its tensors where they are copies, the forward pass, each Hessian's lower triangle in float64 (4n(n+1),
   * n its inputs: calibration.ts hessianBytes) and a product's tiles; then, the passes done, the layer's
   * values released and collected, and each Hessian whole (8n²), for each linear [rows, n], beside its Hessian, the largest
   * phase of its solve: the factorisation's scratch (the Hessian is factorised in place, linalg.ts), the
   * column loop (gptq-solve.ts solveBytes) and the result's values (4·rows·n), or GPTQ's and round to
   * nearest's values, the latter's packed form, and the layer objective's error and tiles. A linear's
   * float32 weights are released once it is done (LayerJob.release). At Llama-3-8B's down_proj
   * (n = 14,336) the Hessian is 0.82 GB while the passes run, 1.6 GB in the solve.
   */
  memory(s) {
    const lin = new Map(linearShapes(s.config).map((l) => [l.suffix.replace(/\.weight$/, ''), l]));
    const groups = s.params['true-sequential'] ? SEQUENTIAL_GROUPS : [SEQUENTIAL_GROUPS.flat()];
    const blockSize = s.params['block-size'] as number;
    const layer = layerFloatBytes(s.config);
    const copy = s.copies ? layer : 0;
    let done = 0; // packed bytes of the linears done
    let released = 0; // their float32 bytes, gone from LayerJob.weights
    let peak: MethodMemory = { bytes: 0, tensors: 0, what: '' };
    const consider = (bytes: number, tensors: number, what: string) => {
      if (bytes > peak.bytes) peak = { bytes, tensors, what, weights: layer - released };
    };
    for (const group of groups) {
      const inputs = [...new Set(group.map(inputOf))];
      const widest = Math.max(...inputs.map((i) => lin.get(i)!.cols));
      const tensors = copy + s.forward + HESSIAN_SCRATCH_BYTES;
      const summing = inputs.reduce((a, i) => a + hessianBytes(lin.get(i)!.cols, 'summing'), 0);
      consider(done + released + summing + tensors, tensors, `gptq's Hessians of ${group.join(', ')} (${widest} inputs)`);
      let hessians = inputs.reduce((a, i) => a + hessianBytes(lin.get(i)!.cols, 'done'), 0);
      for (const p of group) {
        const { rows, cols: n } = lin.get(p)!;
        const spec = specFor(s.grid, n);
        const pm = packedBytes(rows, n, spec);
        const values = 4 * rows * n;
        const solve = Math.max(factorScratchBytes(n), solveBytes(rows, n, spec, blockSize) + values, 3 * values + pm + (s.copies ? values : 0) + OBJECTIVE_SCRATCH_BYTES);
        consider(done + hessians + solve, 0, `gptq's Hessian and solver of ${p} (${n} inputs)`);
        done += pm;
        released += values;
        if (!group.slice(group.indexOf(p) + 1).some((q) => inputOf(q) === inputOf(p))) hessians -= hessianBytes(n, 'done');
      }
    }
    return peak;
  },
};
