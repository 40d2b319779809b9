/**
 * MKA's fusion ratio for merging layer i with layer j: s = mean of a row of the similarity matrix,
 * r = s_i / (s_i + s_j), λ = e^{βr} / (1 + e^{βr}) (the weight of layer i).
 */
import { UserError } from '../../runtime/errors.ts';

/** λ for merging layer i with j; throws a UserError naming the undefined entries if row i or j has any. */
export function fusionRatio(npib: (number | null)[][], i: number, j: number, beta = 1): number {
  const rowMean = (l: number): number => {
    const row = npib[l];
    if (!row) throw new UserError(`fusion ratio: layer ${l} is outside the ${npib.length}-layer similarity matrix; pick layers 0..${npib.length - 1}`);
    const missing = row.flatMap((v, c) => (v === null || !Number.isFinite(v) ? [c] : []));
    if (missing.length) {
      throw new UserError(`fusion ratio: similarity of layer ${l} with layer(s) ${missing.join(', ')} is undefined (see undefinedPairs); choose another metric or more samples`);
    }
    return (row as number[]).reduce((a, b) => a + b, 0) / row.length;
  };
  const si = rowMean(i), sj = rowMean(j);
  const r = si / (si + sj);
  const e = Math.exp(beta * r);
  return e / (1 + e);
}
