/**
 * Round to nearest: every weight to the nearest point of its group's grid (src/io/packed.ts), each
 * group's scale (and min) from its own values, no calibration. The baseline every other method is
 * measured against; with a symmetric group of 32 it is llama.cpp's Q8_0 / Q4_0.
 */
import { quantizeRtn } from '../../io/packed.ts';
import type { PackedMatrix } from '../../io/packed.ts';
import { LINEARS, layerPackedBytes, otherTensors, type QuantMethod } from '../method.ts';

export const rtn: QuantMethod = {
  name: 'rtn',
  description: 'round to nearest per group or per output channel, no calibration',
  reference: 'round-to-nearest (the baseline of GPTQ, AWQ and SmoothQuant; ggml Q8_0/Q4_0/Q4_1 grids)',
  params: [],
  calibration: 'none',
  checkGrid: () => {},
  quantizeLayer(job) {
    const packed = new Map<string, PackedMatrix>();
    for (const p of LINEARS) {
      const suffix = `${p}.weight`;
      const w = job.weights.get(suffix)!;
      const spec = job.spec(suffix);
      const [rows, cols] = job.shapes.get(suffix)!;
      packed.set(suffix, quantizeRtn(w, rows, cols, spec));
    }
    return { packed, floats: otherTensors(job.weights), stats: {} };
  },
  /** The layer's packed linears (each rounded from the job's float32 values in place: no copy). */
  memory: (s) => ({ bytes: layerPackedBytes(s.config, s.grid), tensors: 0, what: 'rtn\'s packed layer' }),
};

