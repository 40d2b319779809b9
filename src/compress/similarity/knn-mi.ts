/**
 * k-nearest-neighbour estimators in float64: Kraskov–Stögbauer–Grassberger mutual information
 * (estimator 1, max norm, strict inequalities, no added noise) and the k-NN differential entropy
 * H = −mean log(k / (n r_k^d)).
 *
 * NPIB feeds them ranks (rank.ts): on rank data distance ties are the rule, and the estimators count
 * neighbours strictly closer than a distance that ties with others. Ranks are exact (integers or halves),
 * so every difference and every tie is exact: the counts are those of exact arithmetic, never an
 * artefact of rounding (reference/npib_exact.py is the spec). The KSG estimate is invariant to a common
 * scale of x and y, so ranks r and the paper's scaled r/n give the same neighbour structure.
 * Neighbours are found from the points sorted by x, so one estimate costs O(n log n + n·w) for a window
 * w of points instead of O(n²).
 */

const EULER_GAMMA = 0.5772156649015329;

/** Digamma ψ(x) in float64 (recurrence up to x ≥ 10, then the asymptotic series; reflection below 0). */
export function digamma(x: number): number {
  if (Number.isNaN(x) || x === -Infinity) return NaN;
  if (x <= 0) {
    if (Number.isInteger(x)) return NaN;
    return digamma(1 - x) - Math.PI / Math.tan(Math.PI * x);
  }
  if (Number.isInteger(x) && x <= 20) {
    let s = -EULER_GAMMA;
    for (let k = 1; k < x; k++) s += 1 / k;
    return s;
  }
  let shift = 0;
  while (x < 10) {
    shift -= 1 / x;
    x += 1;
  }
  const f = 1 / (x * x);
  // ψ(x) ~ ln x − 1/(2x) − Σ B_2k / (2k x^2k); terms up to x^-14 leave < 1e-15 at x ≥ 10
  const series = f * (1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f * (1 / 132 - f * (691 / 32760 - f * (1 / 12)))))));
  return shift + Math.log(x) - 0.5 / x - series;
}

/** ψ(0), ψ(1), …, ψ(max) (ψ(0) is NaN): the estimator only needs integer arguments. */
export function digammaTable(max: number): Float64Array {
  const t = new Float64Array(max + 1);
  t[0] = NaN;
  for (let m = 1; m <= max; m++) t[m] = digamma(m);
  return t;
}

/** One variable ready for KSG: values, the sample order sorted by value, and each sample's position in it. */
export interface SortedColumn {
  values: Float64Array;
  order: Int32Array;
  position: Int32Array;
}

/** Sorts a column for neighbour searches. */
export function sortColumn(values: Float64Array): SortedColumn {
  const n = values.length;
  const idx = Array.from({ length: n }, (_, i) => i);
  idx.sort((a, b) => values[a] - values[b] || a - b);
  const order = Int32Array.from(idx);
  const position = new Int32Array(n);
  for (let p = 0; p < n; p++) position[order[p]] = p;
  return { values, order, position };
}

/** Number of samples j ≠ i with |v_i − v_j| < eps. */
function countWithin(col: SortedColumn, i: number, eps: number): number {
  const { values: v, order, position } = col;
  const n = v.length;
  const p = position[i];
  const vi = v[i];
  // right of p the differences v_j − v_i grow with the position: first position with difference ≥ eps
  let lo = p + 1, hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (v[order[mid]] - vi < eps) lo = mid + 1;
    else hi = mid;
  }
  let count = lo - (p + 1);
  // left of p the differences v_i − v_j shrink toward p: last position with difference ≥ eps
  lo = 0;
  hi = p;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (vi - v[order[mid]] < eps) hi = mid;
    else lo = mid + 1;
  }
  count += p - lo;
  return count;
}

/** Inserts dz into the ascending list best[0..filled) capped at best.length; returns the new fill. */
function offer(best: Float64Array, filled: number, dz: number): number {
  const k = best.length;
  let t: number;
  if (filled < k) t = filled++;
  else if (dz < best[k - 1]) t = k - 1;
  else return filled;
  while (t > 0 && best[t - 1] > dz) {
    best[t] = best[t - 1];
    t--;
  }
  best[t] = dz;
  return filled;
}

/**
 * KSG mutual information (Kraskov estimator 1, max norm) between two variables of n samples, with k
 * neighbours, clamped at 0. `psi` is digammaTable(n) or larger. Exact on exact inputs such as ranks.
 */
export function ksgMutualInformation(x: SortedColumn, y: SortedColumn, k: number, psi: Float64Array): number {
  const n = x.values.length;
  if (y.values.length !== n) throw new Error('ksgMutualInformation: variables differ in length');
  if (!(k >= 1 && k < n)) throw new Error(`ksgMutualInformation: k = ${k} needs 1 <= k < n = ${n}`);
  const xv = x.values, yv = y.values, xo = x.order;
  const best = new Float64Array(k); // k smallest max-norm distances, ascending
  let sumX = 0, sumY = 0;
  for (let i = 0; i < n; i++) {
    const p = x.position[i];
    const xi = xv[i], yi = yv[i];
    let filled = 0;
    // Walk outward in x order; once |dx| reaches the current k-th distance nothing farther can beat it.
    for (let q = p + 1; q < n; q++) {
      const j = xo[q];
      const dx = xv[j] - xi;
      if (filled === k && dx >= best[k - 1]) break;
      filled = offer(best, filled, Math.max(dx, Math.abs(yi - yv[j])));
    }
    for (let q = p - 1; q >= 0; q--) {
      const j = xo[q];
      const dx = xi - xv[j];
      if (filled === k && dx >= best[k - 1]) break;
      filled = offer(best, filled, Math.max(dx, Math.abs(yi - yv[j])));
    }
    const eps = best[k - 1];
    sumX += psi[countWithin(x, i, eps) + 1];
    sumY += psi[countWithin(y, i, eps) + 1];
  }
  const mi = psi[n] + psi[k] - sumX / n - sumY / n;
  return Math.max(0, mi);
}

/**
 * k-NN entropy of n points in d dimensions (rows[i][c]): H = −mean_i log(k / (n r_i^d)), r_i the Euclidean
 * distance from point i to its k-th nearest other point, divided by `scale`; k is clamped to n − 1.
 * On ranks with scale = n the squared distances are exact, so the k-th one is found without rounding and
 * r is that of the paper's rank/n coordinates. Duplicate points give r = 0 and H = −∞.
 */
export function knnEntropy(rows: ArrayLike<number>[], kWanted: number, scale = 1): { entropy: number; k: number } {
  const n = rows.length;
  if (n < 2) throw new Error(`knnEntropy: needs at least 2 points, got ${n}`);
  const d = rows[0].length;
  const k = Math.min(kWanted, n - 1);
  const flat = new Float64Array(n * d);
  rows.forEach((r, i) => { for (let c = 0; c < d; c++) flat[i * d + c] = r[c]; });
  const dist2 = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let c = 0; c < d; c++) {
        const t = flat[i * d + c] - flat[j * d + c];
        s += t * t;
      }
      dist2[j] = s;
    }
    // the point itself is at distance 0, so the k-th other neighbour is the (k+1)-th smallest overall
    const r = Math.sqrt(select(dist2, k)) / scale;
    sum += Math.log(k / (n * r ** d));
  }
  return { entropy: -sum / n, k };
}

/** The value of rank `t` (0-based) in a, reordering a in place (Hoare quickselect, median of three). */
function select(a: Float64Array, t: number): number {
  let lo = 0, hi = a.length - 1;
  while (hi > lo) {
    const mid = (lo + hi) >> 1;
    if (a[mid] < a[lo]) swap(a, mid, lo);
    if (a[hi] < a[lo]) swap(a, hi, lo);
    if (a[hi] < a[mid]) swap(a, hi, mid);
    const pivot = a[mid];
    let i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) { swap(a, i, j); i++; j--; }
    }
    if (t <= j) hi = j;
    else if (t >= i) lo = i;
    else return a[t];
  }
  return a[t];
}

function swap(a: Float64Array, i: number, j: number): void {
  const t = a[i]; a[i] = a[j]; a[j] = t;
}
