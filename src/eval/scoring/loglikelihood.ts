/**
 * Loglikelihood requests (context, continuation) with lm-evaluation-harness's semantics for a Hugging
 * Face causal model (0.4.x: `TemplateLM._encode_pair`, `HFLM.tok_encode`, `HFLM._loglikelihood_tokens`):
 *
 * - whitespace at the end of the context moves to the start of the continuation (Python's rstrip);
 * - the whole string context + continuation is encoded and split at the length of the context's own
 *   encoding, so a token the two halves merge into counts for the context;
 * - both encodings add special tokens as the tokenizer does by default (BOS for Llama), unless the
 *   string already begins with the prefix token's text;
 * - an empty context is the prefix token (BOS, else EOS) alone, the continuation encoded without
 *   special tokens (if it begins with the prefix token itself, that token becomes the context);
 * - the model is fed (context + continuation)[-(max_length + 1):][:-1], so an input longer than the
 *   model's context loses its first tokens, and the continuation's tokens are scored at its last
 *   positions: their log-probabilities summed, and is_greedy when each is the arg-max of its position.
 *
 * Requests whose model input is identical (a context's one-token continuations, as lm-eval's "contexts"
 * grouping) share one row; requests with the same `prefix` hint share a cached prefix (plan.ts).
 */
import type { Tokenizer } from '../../tokenizer/tokenizer.ts';
import { UserError } from '../../runtime/errors.ts';
import { pyRstrip } from '../../runtime/python.ts';
import { planRows, type PrefixCandidate } from './plan.ts';
import type { ScorePlan, ScoreRow } from './rows.ts';

/** One loglikelihood request: log p(continuation | context). */
export interface LoglikelihoodRequest {
  context: string;
  continuation: string;
}

/** A request's token ids as lm-eval splits them (context_enc, continuation_enc). */
export interface EncodedRequest {
  context: number[];
  continuation: number[];
}

/** What lm-eval's HF model needs of the tokenizer: encode with its default special tokens or without, and the prefix token. */
export interface RequestEncoder {
  encode(text: string): number[];
  /** The prefix token (BOS, else EOS) and its text. */
  prefixId: number;
  prefixText: string;
  tokenizer: Tokenizer;
}

/** The encoder of a tokenizer: lm-eval's prefix_token_id is BOS, else EOS. */
export function requestEncoder(tokenizer: Tokenizer): RequestEncoder {
  const prefixId = tokenizer.bos ?? tokenizer.eos[0];
  if (prefixId === undefined) throw new UserError('tokenizer has neither a BOS nor an EOS token; lm-eval-style scoring needs one as the prefix of empty contexts');
  const prefixText = tokenizer.decode([prefixId]);
  const cache = new Map<string, number[]>();
  return {
    prefixId, prefixText, tokenizer,
    encode(text) {
      let ids = cache.get(text);
      if (!ids) {
        // HFLM.tok_encode: no special tokens when the string already begins with the prefix token's text
        ids = prefixText !== '' && text.startsWith(prefixText) ? tokenizer.encode(text, { addBos: false }) : tokenizer.encode(text);
        if (cache.size > 4096) cache.clear();
        cache.set(text, ids);
      }
      return ids;
    },
  };
}

/** Splits a request into context and continuation ids as lm-eval does. */
export function encodeRequest(enc: RequestEncoder, req: LoglikelihoodRequest): EncodedRequest {
  let { context, continuation } = req;
  if (context === '') {
    const cont = enc.tokenizer.encode(continuation, { addBos: false });
    if (cont.length === 0) throw new UserError(`loglikelihood request with an empty context and an empty continuation; nothing to score`);
    return cont[0] !== enc.prefixId ? { context: [enc.prefixId], continuation: cont } : { context: cont.slice(0, 1), continuation: cont.slice(1) };
  }
  const stripped = pyRstrip(context);
  if (stripped.length < context.length) {
    continuation = context.slice(stripped.length) + continuation;
    context = stripped;
  }
  const whole = enc.encode(context + continuation);
  const ctx = enc.encode(context);
  return { context: ctx, continuation: whole.slice(ctx.length) };
}

/** The model input of an encoded request, its scored tokens, and how many tokens were cut from the left. */
export function requestRow(e: EncodedRequest, maxLength: number, what = 'a loglikelihood request'): { row: ScoreRow; truncated: number } {
  const n = e.continuation.length;
  if (n === 0) throw new UserError(`${what}: the continuation encodes to no tokens after the context (lm-eval refuses it too); check the task's choices`);
  if (n > maxLength) throw new UserError(`${what}: its continuation is ${n} tokens, longer than the model's context of ${maxLength}`);
  const all = [...e.context, ...e.continuation];
  const window = all.length > maxLength + 1 ? all.slice(all.length - (maxLength + 1)) : all;
  const ids = window.slice(0, -1);
  return { row: { ids, targets: [{ start: ids.length - n, tokens: e.continuation }] }, truncated: all.length - window.length };
}

/** A request as planned: its tokens, and where its score is read (row, target span). */
export interface PlannedRequest {
  encoded: EncodedRequest;
  row: number;
  span: number;
  /** Tokens cut from the left to fit the model's context. */
  truncated: number;
}

/** Requests with an optional prefix hint: requests with the same hint are expected to share a cached prefix of that text. */
export interface HintedRequest extends LoglikelihoodRequest {
  prefix?: string;
}

/**
 * Encodes requests and plans their rows: identical inputs share a row, requests with the same prefix hint
 * (default: their context) form a candidate group when there are two rows or more, in first-seen order.
 */
export function planRequests(
  enc: RequestEncoder, requests: readonly HintedRequest[], maxLength: number, cached = true, label: (i: number) => string = (i) => `request ${i}`,
): { plan: ScorePlan; requests: PlannedRequest[] } {
  const rows: ScoreRow[] = [];
  const byIds = new Map<string, number>();
  const planned: PlannedRequest[] = [];
  const hints = new Map<string, Set<number>>();
  requests.forEach((req, i) => {
    const encoded = encodeRequest(enc, req);
    const { row, truncated } = requestRow(encoded, maxLength, label(i));
    const key = row.ids.join(',');
    let r = byIds.get(key);
    if (r === undefined) {
      r = rows.push({ ids: row.ids, targets: [] }) - 1;
      byIds.set(key, r);
    }
    const span = (rows[r].targets as ScoreRow['targets'][number][]).push(row.targets[0]) - 1;
    planned.push({ encoded, row: r, span, truncated });
    const hint = req.prefix ?? req.context;
    hints.set(hint, (hints.get(hint) ?? new Set()).add(r));
  });
  const candidates: PrefixCandidate[] = [];
  for (const [text, members] of hints) {
    if (members.size < 2 || text === '') continue;
    candidates.push({ prefix: enc.encode(text), rows: [...members] });
  }
  return { plan: planRows(rows, candidates, cached), requests: planned };
}
