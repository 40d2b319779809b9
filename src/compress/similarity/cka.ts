/**
 * Linear CKA between layers from their Gram matrices (Kornblith et al. 2019):
 * CKA(i, j) = ⟨HG_iH, HG_jH⟩_F / (‖HG_iH‖_F ‖HG_jH‖_F), H the centring matrix. 1 means the layers'
 * representations agree up to rotation and scale. Null where a layer's centred Gram is zero
 * (all samples identical).
 */

/** H G H for H = I − 11ᵀ/n (row and column means removed). */
function centreGram(G: Float64Array, n: number): Float64Array {
  const rowMean = new Float64Array(n);
  let all = 0;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += G[i * n + j];
    rowMean[i] = s / n;
    all += s;
  }
  all /= n * n;
  const C = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) C[i * n + j] = G[i * n + j] - rowMean[i] - rowMean[j] + all;
  }
  return C;
}

/** L×L linear CKA matrix. */
export function linearCka(grams: Float64Array[], n: number): (number | null)[][] {
  const centred = grams.map((g) => centreGram(g, n));
  const inner = (a: Float64Array, b: Float64Array) => {
    let s = 0;
    for (let t = 0; t < a.length; t++) s += a[t] * b[t];
    return s;
  };
  const norms = centred.map((c) => Math.sqrt(inner(c, c)));
  const L = grams.length;
  const out: (number | null)[][] = Array.from({ length: L }, () => new Array<number | null>(L).fill(null));
  for (let i = 0; i < L; i++) {
    for (let j = i; j < L; j++) {
      const denom = norms[i] * norms[j];
      out[i][j] = out[j][i] = denom > 0 ? inner(centred[i], centred[j]) / denom : null;
    }
  }
  return out;
}
