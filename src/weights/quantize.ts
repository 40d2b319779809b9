/**
 * Weight quantization in TensorFlow.js's own manifest schemes, so stock tfjs dequantizes at load:
 * `float16` (IEEE half, round to nearest even) and `uint8`/`uint16` affine per tensor, value =
 * q * scale + min. The affine range follows tfjs-converter's quantization: scale = (max - min) /
 * (2^bits - 1), and when the range covers zero, min is nudged so that zero is exactly representable
 * (min = -round(-min / scale) * scale); values are clipped to the nudged range and rounded half to
 * even. Evaluation rounds a model's weights through the same functions, so the accuracy quoted is
 * the accuracy of what is shipped.
 */
import { tf } from '../runtime/tf.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { fromFloat32, toFloat32 } from '../io/safetensors.ts';
import { layOutForBackend, readHfWeight, type LlamaModel } from '../model/model.ts';
import { expectedTensors } from '../model/config.ts';

import { UserError } from '../runtime/errors.ts';

export { QUANT_SCHEMES, type QuantScheme } from './options.ts';
import { QUANT_SCHEMES, type QuantScheme } from './options.ts';

/** A weight's `quantization` entry in a tfjs weights manifest. */
export interface Quantization {
  dtype: 'float16' | 'uint8' | 'uint16';
  min?: number;
  scale?: number;
}

export interface QuantizedTensor {
  /** The stored bytes (little-endian). */
  bytes: Uint8Array;
  /** Absent for scheme 'none' (plain float32). */
  quantization?: Quantization;
}

/** Bytes per stored value under a scheme. */
export function bytesPerValue(scheme: QuantScheme): number {
  return scheme === 'none' ? 4 : scheme === 'uint8' ? 1 : 2;
}

/** numpy's round: halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Scale and (nudged) range of the affine uint8/uint16 scheme for values in [lo, hi]. */
export function affineRange(lo: number, hi: number, bits: 8 | 16): { scale: number; min: number; max: number } {
  const qmax = 2 ** bits - 1;
  if (lo === hi) return { scale: 1, min: lo, max: hi };
  const scale = (hi - lo) / qmax;
  if (lo <= 0 && 0 <= hi) {
    const min = -roundHalfEven(-lo / scale) * scale;
    return { scale, min, max: qmax * scale + min };
  }
  return { scale, min: lo, max: hi };
}

/** Encodes float32 values in a scheme; `name` labels errors, which count indices from `offset` (data is a slice of the tensor there). */
export function quantize(data: Float32Array, scheme: QuantScheme, name = 'tensor', offset = 0): QuantizedTensor {
  if (scheme === 'none') return { bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  if (scheme === 'float16') {
    const bytes = fromFloat32(data, 'F16', (i, v) => {
      throw new UserError(`${name}: holds ${v} at index ${offset + i}, beyond float16's range (±65504: it would be stored as Infinity); store it as none, uint8 or uint16 instead, or re-download or re-convert the checkpoint if it is corrupt`);
    });
    return { bytes, quantization: { dtype: 'float16' } };
  }
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isFinite(v)) throw new UserError(`${name}: holds ${v}; ${scheme} quantization needs finite weights (store them as none or float16 instead)`);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (data.length === 0) lo = hi = 0;
  if (!Number.isFinite(Math.fround(hi - lo))) throw new UserError(`${name}: spans ${lo} to ${hi}, wider than float32 holds: ${scheme} quantization's scale would be Infinity; store it as none instead, or re-download or re-convert the checkpoint if it is corrupt`);
  const bits = scheme === 'uint8' ? 8 : 16;
  const { scale, min, max } = affineRange(lo, hi, bits);
  const q = bits === 8 ? new Uint8Array(data.length) : new Uint16Array(data.length);
  if (lo !== hi) {
    const qmax = 2 ** bits - 1;
    for (let i = 0; i < data.length; i++) {
      const v = Math.min(Math.max(data[i], min), max);
      q[i] = Math.min(qmax, Math.max(0, roundHalfEven((v - min) / scale)));
    }
  }
  return { bytes: new Uint8Array(q.buffer), quantization: { dtype: scheme, min, scale } };
}

/** Decodes `n` values exactly as tfjs-core's weight loader does. */
export function dequantize(bytes: Uint8Array, quantization: Quantization | undefined, n: number): Float32Array {
  if (!quantization) return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 4 * n));
  if (quantization.dtype === 'float16') return toFloat32(Buffer.from(bytes.buffer, bytes.byteOffset, 2 * n), 'F16');
  const q = quantization.dtype === 'uint8'
    ? bytes.subarray(0, n)
    : new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 2 * n));
  const out = new Float32Array(n);
  const { scale, min } = quantization as Required<Quantization>;
  for (let i = 0; i < n; i++) out[i] = q[i] * scale + min;
  return out;
}

/** The values a tfjs model exported with `scheme` computes with. */
export function roundWeights(data: Float32Array, scheme: QuantScheme, name = 'tensor'): Float32Array {
  if (scheme === 'none') return Float32Array.from(data);
  const { bytes, quantization } = quantize(data, scheme, name);
  return dequantize(bytes, quantization, data.length);
}

/**
 * A copy of `model` whose weights are rounded as `export tfjs --quantize scheme` stores them. The
 * copy owns new resident tensors (dispose it with disposeModel as usual); a streamed model's layers
 * are rounded as they are read from the original's checkpoint, which stays owned by the original
 * (dispose the copy first).
 */
export function quantizeModelWeights(model: LlamaModel, scheme: QuantScheme): LlamaModel {
  const tensors = new Map<string, tf.Tensor>();
  const label = (name: string) => `${model.dir ?? 'the model'}: tensor "${name}"`;
  for (const [name, t] of model.tensors) {
    tensors.set(name, tf.tensor(roundWeights(t.dataSync() as Float32Array, scheme, label(name)), t.shape, 'float32'));
  }
  const shapes = expectedTensors(model.config);
  for (const [name, w] of model.packed ?? []) {
    if (w.transposed || w.quant) tensors.set(name, tf.tensor(roundWeights(readHfWeight(model, name), scheme, label(name)), shapes.get(name)!, 'float32'));
  }
  let checkpoint: Checkpoint | null = null;
  const src = model.checkpoint;
  if (src) {
    checkpoint = {
      dir: src.dir,
      names: () => src.names(),
      info: (name) => src.info(name),
      read: (name) => roundWeights(src.read(name), scheme, label(name)),
      bytesOnDisk: () => src.bytesOnDisk(),
      close: () => {},
    };
  }
  return layOutForBackend({ config: model.config, dir: model.dir, tensors, checkpoint, stats: { forwardCalls: 0, layerLoads: 0 }, compute: model.compute }, model.compute);
}
