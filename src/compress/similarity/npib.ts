/**
 * MKA's NPIB similarity between layers, from the ranks R_l (n × d) of their embeddings (rank.ts):
 * NPIB(i, j) = mean over j's columns c of the mean over i's columns f of MI(R_i[:, f], R_j[:, c]),
 * divided by √(H_i·H_j), with KSG mutual information and k-NN entropies H of the rank-normalised
 * coordinates R/n. Ranks are exact, so distance ties are resolved exactly (strict inequalities), and a
 * reflected embedding column (an eigenvector's arbitrary sign) changes no bit of the result.
 *
 * NPIB is not bounded by 1: the k-NN entropy of rank data on the unit square is close to 0, so dividing
 * by √(H_i·H_j) inflates it (2 to 5 on the demo model, up to 17 on stories260K's diagonal). It is a
 * relative score for ranking layer pairs, not a similarity in [0, 1].
 *
 * The normalisation is undefined unless H_i·H_j > 0 (k-NN entropies of rank data are usually
 * negative: n·r_k² < k; opposite signs or a zero make the product ≤ 0). Such entries are null in
 * the matrix (JSON null), never NaN, and each is listed in `undefinedPairs` with its reason.
 */
import { digammaTable, knnEntropy, ksgMutualInformation, sortColumn, type SortedColumn } from './knn-mi.ts';

export interface NpibOptions {
  /** Neighbours of the KSG estimator (default 5). */
  kMi: number;
  /** Neighbours of the entropy estimate, clamped to n − 1 (default 50). */
  kEntropy: number;
}

export interface UndefinedPair {
  i: number;
  j: number;
  reason: string;
}

export interface NpibResult {
  /** L×L symmetric; null where the score is undefined (see undefinedPairs). */
  npib: (number | null)[][];
  /** Raw mean MI, before normalisation by √(H_i·H_j). */
  mutualInformation: number[][];
  entropy: number[];
  undefinedPairs: UndefinedPair[];
}

function fmt(x: number): string {
  return Number.isFinite(x) ? x.toPrecision(4) : String(x);
}

/** Why NPIB(i, j) is undefined, or null when it is defined. */
function undefinedReason(i: number, j: number, H: number[]): string | null {
  const hi = H[i], hj = H[j];
  const bad = (i === j ? [i] : [i, j]).filter((l) => !Number.isFinite(H[l]));
  if (bad.length) {
    return bad.map((l) => `entropy of layer ${l} is ${fmt(H[l])} (duplicate embedded samples: a k-th neighbour at distance 0)`).join('; ');
  }
  const product = hi * hj;
  if (product > 0) return null;
  if (i === j) return `entropy of layer ${i} is ${fmt(hi)}: H·H = 0, so √(H_i·H_j) is 0`;
  return `entropy of layer ${i} is ${fmt(hi)} and of layer ${j} is ${fmt(hj)}: H_i·H_j = ${fmt(product)} <= 0, so √(H_i·H_j) is undefined`;
}

/**
 * NPIB matrix of L layers from the ranks of their embeddings (ranks[l][sample][coord], values 0..n−1,
 * mid-ranks on ties: see midRanks). `onPair` is called after each of the L(L+1)/2 pairs.
 */
export function npibMatrix(ranks: number[][][], opts: NpibOptions, onPair?: () => void): NpibResult {
  const L = ranks.length;
  const n = L ? ranks[0].length : 0;
  if (ranks.some((e) => e.length !== n)) throw new Error('npibMatrix: layers differ in sample count');
  if (L && n <= opts.kMi) throw new Error(`npibMatrix: ${n} samples are too few for kMi = ${opts.kMi} (need more than kMi)`);
  const psi = digammaTable(n + 1);
  const columns: SortedColumn[][] = ranks.map((e) => {
    const dims = e[0].length;
    return Array.from({ length: dims }, (_, c) => sortColumn(Float64Array.from(e, (row) => row[c])));
  });
  const entropy = ranks.map((e) => knnEntropy(e, opts.kEntropy, n).entropy);
  const npib: (number | null)[][] = Array.from({ length: L }, () => new Array<number | null>(L).fill(null));
  const mutualInformation = Array.from({ length: L }, () => new Array<number>(L).fill(0));
  const undefinedPairs: UndefinedPair[] = [];
  for (let i = 0; i < L; i++) {
    for (let j = i; j < L; j++) {
      let outer = 0;
      for (const y of columns[j]) {
        let inner = 0;
        for (const x of columns[i]) inner += ksgMutualInformation(x, y, opts.kMi, psi);
        outer += inner / columns[i].length;
      }
      const mi = outer / columns[j].length;
      mutualInformation[i][j] = mutualInformation[j][i] = mi;
      const reason = undefinedReason(i, j, entropy);
      if (reason) undefinedPairs.push({ i, j, reason });
      else npib[i][j] = npib[j][i] = mi / Math.sqrt(entropy[i] * entropy[j]);
      onPair?.();
    }
  }
  return { npib, mutualInformation, entropy, undefinedPairs };
}
