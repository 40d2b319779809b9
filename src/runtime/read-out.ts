/**
 * Reading a tidy computation's values. tf.tidy walks whatever its function returns looking for tensors
 * to keep, a typed array element by element (a key and a set entry each), so `tidy(() => t.dataSync())`
 * costs more than the computation on large results; these return the tensor from tidy and read it after.
 */
import { tf } from './tf.ts';

/** The values of the tensor `fn` computes inside tf.tidy, read after tidy returns; the tensor is disposed. */
export function tidyValues(fn: () => tf.Tensor): Float32Array {
  const t = tf.tidy(fn);
  try {
    return t.dataSync() as Float32Array;
  } finally {
    t.dispose();
  }
}
