/**
 * Which rows share a cached prefix. The caller proposes candidate groups (rows it expects to begin with
 * the same text: an MMLU subject's few-shot prefix, the context the choices of a document share) with
 * that text's token ids; a row joins when its own ids extend all but the last few of them (a tokenizer
 * may merge the prefix's last token with what follows, so a full tokenization need not extend the
 * prefix's), and the cache holds only the positions every member shares with the prefix and reads no
 * logits at. The rest run alone. Every row is still fed exactly its own ids.
 */
import { firstRead, type RowGroup, type ScorePlan, type ScoreRow } from './rows.ts';

/**
 * A row joins its candidate group when its ids share all but at most this many of the prefix's last
 * ids (the tokenizer may merge across the boundary).
 */
export const BOUNDARY_TOKENS = 4;

/** How many leading ids two sequences share. */
export function commonLength(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** Rows expected to begin with `prefix`. */
export interface PrefixCandidate {
  prefix: readonly number[];
  rows: readonly number[];
}

/**
 * The plan of `rows`: each candidate group (in the order given) with the rows that can use its prefix
 * (and are in no earlier group), members longest first (then in row order); every other row alone, in
 * row order. Without `cached`,
 * every row runs alone.
 */
export function planRows(rows: readonly ScoreRow[], candidates: readonly PrefixCandidate[], cached = true): ScorePlan {
  if (!cached) return { rows, groups: [], alone: rows.map((_, i) => i) };
  const grouped = new Set<number>();
  const groups: RowGroup[] = [];
  for (const [candidate, c] of candidates.entries()) {
    const L = c.prefix.length;
    const cacheable = (r: number) => Math.min(commonLength(rows[r].ids, c.prefix), firstRead(rows[r]));
    const members: number[] = [];
    for (const r of c.rows) {
      if (grouped.has(r)) continue; // already in an earlier group
      const ids = rows[r].ids;
      if (ids.length > L - BOUNDARY_TOKENS && commonLength(ids, c.prefix) >= L - BOUNDARY_TOKENS && cacheable(r) > 0) members.push(r);
    }
    if (members.length === 0) continue;
    members.forEach((r) => grouped.add(r));
    const start = Math.min(...members.map(cacheable));
    members.sort((a, b) => rows[b].ids.length - rows[a].ids.length || a - b);
    groups.push({ start, candidate, rows: members });
  }
  return { rows, groups, alone: rows.map((_, i) => i).filter((r) => !grouped.has(r)) };
}
