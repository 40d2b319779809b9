/**
 * Gram matrices G = X Xᵀ (n × n, float64, row-major) of per-sample representations: the similarity stage
 * needs only pairwise distances, which G gives without keeping the activations.
 */
import { tf } from '../../runtime/tf.ts';

/**
 * G = X Xᵀ for rows X[i] (any number of features), computed in float64 JavaScript. Chosen over a tfjs
 * float32 matMul because the diffusion embedding takes differences G_ii + G_jj − 2G_ij, which cancel:
 * a float32 Gram moves distances by ~1e-7 relative and can swap nearly tied ranks downstream, while
 * float64 sums of float32-valued products reproduce the reference (numpy float64 X @ Xᵀ) to ~1e-15.
 */
export function gramFromActivations(X: ArrayLike<number>[]): Float64Array {
  const n = X.length;
  const f = n ? X[0].length : 0;
  const rows = X.map((r, i) => {
    if (r.length !== f) throw new Error(`gramFromActivations: row ${i} has ${r.length} features, row 0 has ${f}`);
    return Float64Array.from(r);
  });
  const G = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const a = rows[i];
    for (let j = i; j < n; j++) {
      const b = rows[j];
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      let k = 0;
      for (; k + 3 < f; k += 4) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
      }
      for (; k < f; k++) s0 += a[k] * b[k];
      const s = (s0 + s1) + (s2 + s3);
      G[i * n + j] = s;
      G[j * n + i] = s;
    }
  }
  return G;
}

/**
 * Adds x xᵀ to G for one chunk x of shape [n, features] (features: any slice of the representation,
 * e.g. one position's hidden state). The product runs on the tfjs backend in float32 and is accumulated
 * in float64, so each chunk contributes a relative error of about 1e-7·√features; use
 * gramFromActivations when exact float64 products matter. Leaves tf.memory().numTensors unchanged.
 */
export function accumulateGram(G: Float64Array, x: tf.Tensor2D): void {
  const [n] = x.shape;
  if (G.length !== n * n) throw new Error(`accumulateGram: Gram has ${G.length} entries, chunk has ${n} samples (${n * n} expected)`);
  const product = tf.tidy(() => {
    const x32 = x.dtype === 'float32' ? x : tf.cast(x, 'float32');
    return tf.matMul(x32, x32, false, true); // [n, n]
  });
  try {
    const data = product.dataSync();
    for (let t = 0; t < n * n; t++) G[t] += data[t];
  } finally {
    product.dispose();
  }
}
