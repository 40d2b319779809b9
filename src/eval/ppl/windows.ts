/**
 * The windows of transformers' strided sliding-window perplexity ("Perplexity of fixed-length
 * models" in the transformers docs): windows of at most `seqLen` tokens start every `stride` tokens
 * (0, stride, 2·stride, ...) and stop at the first window that reaches the end. A window scores the
 * tokens after the previous window's end (its context is the rest of the window); the first scores
 * every token but its first, which has nothing to be predicted from. So every token but the first of
 * the corpus is scored exactly once, with between seqLen − stride and seqLen − 1 tokens of context
 * (when stride < seqLen; with stride = seqLen the windows are disjoint and each window's first token
 * is not scored, as the recipe's label shift does).
 */
import { UserError } from '../../runtime/errors.ts';
import { checkOption, flag } from '../../runtime/options.ts';
import { SEQ_LEN, STRIDE } from './options.ts';

export interface PplWindow {
  /** First token of the window (absolute position in the corpus). */
  begin: number;
  /** One past the window's last token. */
  end: number;
  /** First scored token: positions [scoredFrom, end) are predicted from the logits one position earlier. */
  scoredFrom: number;
}

/** The windows over `n` tokens, as the transformers recipe iterates them. */
export function slidingWindows(n: number, seqLen: number, stride: number): PplWindow[] {
  checkOption(SEQ_LEN, seqLen);
  if (!Number.isInteger(stride) || stride < 1 || stride > seqLen) throw new UserError(`${flag(STRIDE)} ${stride}: must be an integer in 1..${flag(SEQ_LEN)} (${seqLen})`);
  if (n < 2) throw new UserError(`the text has ${n} token${n === 1 ? '' : 's'}: perplexity needs at least 2`);
  const windows: PplWindow[] = [];
  let prevEnd = 0;
  for (let begin = 0; begin < n; begin += stride) {
    const end = Math.min(begin + seqLen, n);
    windows.push({ begin, end, scoredFrom: Math.max(begin + 1, prevEnd) });
    prevEnd = end;
    if (end === n) break;
  }
  return windows;
}
