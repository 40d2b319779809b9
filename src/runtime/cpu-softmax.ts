/**
 * tfjs's cpu `Softmax` over the last axis, computed a row at a time with the same float32 results. The
 * cpu kernel subtracts each row's maximum and divides by the row's sum with broadcasting Sub and RealDiv,
 * and tfjs's cpu binary ops compute (and allocate) every element's coordinates when one operand is
 * broadcast: most of the attention time of a forward pass on the plain-JS cpu backend. This kernel takes
 * the same steps in the same order (the maximum as tfjs's Max, x - max, exp and the quotient each
 * rounded to float32, the sum in float64 from the first element on, then rounded), so every bit is the
 * cpu kernel's.
 */
import { tf } from './tf.ts';

/** Marks the kernel function installSoftmaxRows registered, so that a second call leaves it. */
const ROWS = Symbol('mka softmax rows');

/** Softmax of each row of `n` values of `x` (length a multiple of n), as tfjs's cpu kernel computes it. */
export function softmaxRows(x: Float32Array, n: number): Float32Array {
  const out = new Float32Array(x.length);
  if (n === 0) return out;
  for (let o = 0; o < x.length; o += n) {
    let max = x[o];
    for (let j = 0; j < n; j++) {
      const v = x[o + j];
      if (Number.isNaN(v) || v > max) max = v;
    }
    let sum = 0;
    for (let j = 0; j < n; j++) {
      const e = Math.fround(Math.exp(Math.fround(x[o + j] - max)));
      out[o + j] = e;
      sum += e;
    }
    const s = Math.fround(sum);
    for (let j = 0; j < n; j++) out[o + j] /= s;
  }
  return out;
}

/**
 * Registers softmaxRows as the cpu backend's Softmax for float32 logits over the last axis (tfjs's own
 * kernel for anything else). The native backend copies the cpu kernels when it registers, so it takes it
 * too when this runs first. Idempotent.
 */
export function installSoftmaxRows(): void {
  const original = tf.getKernel('Softmax', 'cpu');
  if (!original || (original.kernelFunc as { [ROWS]?: boolean })[ROWS]) return;
  const fallback = original.kernelFunc;
  const kernelFunc: tf.KernelFunc = (args) => {
    const logits = args.inputs.logits as tf.TensorInfo;
    const dim = (args.attrs as { dim: number }).dim;
    const last = logits.shape.length - 1;
    if (logits.dtype !== 'float32' || (dim !== -1 && dim !== last) || last < 0) return fallback(args);
    const backend = args.backend as tf.MathBackendCPU;
    const x = backend.data.get(logits.dataId)!.values as Float32Array;
    return backend.makeTensorInfo(logits.shape, 'float32', softmaxRows(x, logits.shape[last]));
  };
  (kernelFunc as { [ROWS]?: boolean })[ROWS] = true;
  tf.unregisterKernel('Softmax', 'cpu');
  tf.registerKernel({ ...original, kernelFunc });
}
