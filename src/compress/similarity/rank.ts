/**
 * Ranks of embedding columns, the input of NPIB. Each value becomes its 0-based position in an ascending
 * sort of its column; tied values share the mean of their positions (a mid-rank, an integer or a half).
 * Ranks are exact numbers, so every distance between them is exact and distance ties are resolved exactly
 * downstream. Reflecting a column (v → −v, an eigenvector's arbitrary sign) maps every rank r to n − 1 − r,
 * ties included, which preserves every distance: NPIB does not depend on the signs.
 * Without ties these are the spec's ranks (numpy's stable argsort of argsort, reference/npib_exact.py).
 */

/** Mid-ranks of one column: out[i] = mean position of the value of sample i in the ascending sort. */
export function midRanksColumn(values: ArrayLike<number>): Float64Array {
  const n = values.length;
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => compareNumpy(values[a], values[b]) || a - b);
  const out = new Float64Array(n);
  for (let start = 0; start < n;) {
    let end = start + 1;
    while (end < n && compareNumpy(values[order[start]], values[order[end]]) === 0) end++;
    const mid = (start + end - 1) / 2;
    for (let p = start; p < end; p++) out[order[p]] = mid;
    start = end;
  }
  return out;
}

/** numpy's sort order for floats: NaN after everything else (NaNs tie with each other). */
function compareNumpy(a: number, b: number): number {
  if (Number.isNaN(a)) return Number.isNaN(b) ? 0 : 1;
  if (Number.isNaN(b)) return -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Mid-ranks of every column of rows[i][c]; returns rows in the same layout. */
export function midRanks(rows: number[][]): number[][] {
  const n = rows.length;
  const dims = n ? rows[0].length : 0;
  const cols = Array.from({ length: dims }, (_, c) => midRanksColumn(rows.map((r) => r[c])));
  return Array.from({ length: n }, (_, i) => cols.map((col) => col[i]));
}

