/**
 * Rank normalisation of embedding columns, as numpy's
 * `argsort(argsort(Y, axis=0, kind="stable"), axis=0, kind="stable") / n`: each value becomes its position
 * in a stable ascending sort of its column (ties keep sample order), divided by n.
 */

/** Rank-normalises one column: out[i] = (position of sample i in the stable sort) / n. */
export function rankNormalizeColumn(values: ArrayLike<number>): Float64Array {
  const n = values.length;
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => compareNumpy(values[a], values[b]) || a - b);
  const out = new Float64Array(n);
  for (let pos = 0; pos < n; pos++) out[order[pos]] = pos / n;
  return out;
}

/** numpy's sort order for floats: NaN after everything else. */
function compareNumpy(a: number, b: number): number {
  if (Number.isNaN(a)) return Number.isNaN(b) ? 0 : 1;
  if (Number.isNaN(b)) return -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Rank-normalises every column of rows[i][c]; returns rows in the same layout. */
export function rankNormalize(rows: number[][]): number[][] {
  const n = rows.length;
  const dims = n ? rows[0].length : 0;
  const cols = Array.from({ length: dims }, (_, c) => rankNormalizeColumn(rows.map((r) => r[c])));
  return Array.from({ length: n }, (_, i) => cols.map((col) => col[i]));
}
