/**
 * The outputs of a perplexity run and how it resumes, as MMLU's (../mmlu/results.ts):
 *   run-key.json        what the results depend on (model and corpus fingerprints, seq_len, stride, ...)
 *   windows/<i>.json    one finished window: its span, NLL sum and scored tokens, written atomically
 *   ppl.json            the summary, computed from the window files only (no timestamps)
 *   run.json            timings and how the run went
 *   .mka-output.json    marks the directory as mka's perplexity results (src/io/output-dir.ts)
 * A rerun with the same key loads finished windows; a different key is refused (another --out, or --fresh).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { readRegularFile } from '../../io/read.ts';
import { join } from 'node:path';
import { atomicWriteText } from '../../io/atomic.ts';
import { isOwnOutput, writeMarker } from '../../io/output-dir.ts';
import { computeKey, type LlamaModel } from '../../model/model.ts';
import { UserError } from '../../runtime/errors.ts';
import { modelFingerprint } from '../fingerprint.ts';
import { flag } from '../../runtime/options.ts';
import { OUT } from '../../io/output-options.ts';
import { FRESH } from '../mmlu/options.ts';
import { integer, number, object, readChecked } from '../../io/schema.ts';

/** One window as stored in windows/<i>.json: token range, first scored token, and the sum over the scored tokens of −log p(token | window context), nats. */
const WINDOW_RESULT = object({ begin: integer, end: integer, scored_from: integer, nll: number, tokens: integer });
export type WindowResult = { begin: number; end: number; scored_from: number; nll: number; tokens: number };

/** ppl.json. */
export interface PplSummary {
  /** exp(nll_sum / tokens_scored). */
  ppl: number;
  mean_nll: number;
  nll_sum: number;
  tokens_scored: number;
  corpus_tokens: number;
  windows: number;
  seq_len: number;
  stride: number;
}

export interface PplResults {
  /** Window `index`'s stored result; `expect` (the window's bounds) refuses one stored for other bounds. */
  load(index: number, expect?: Pick<WindowResult, 'begin' | 'end' | 'scored_from'>): WindowResult | null;
  save(index: number, r: WindowResult): void;
  finish(summary: PplSummary, run: Record<string, unknown>): void;
}

/** sha256 of the token ids: the corpus as the model sees it (text and tokenizer together). */
export function idsFingerprint(ids: readonly number[]): string {
  return createHash('sha256').update(Int32Array.from(ids)).digest('hex').slice(0, 32);
}

/** Opens (creating) a perplexity results directory; refuses one of a different run unless `fresh`. */
export function openPplResults(dir: string, model: LlamaModel, ids: readonly number[], settings: Readonly<Record<string, unknown>>, fresh: boolean): PplResults {
  // bf16 products, and packed weights on the integer kernels or as float32 rows, give other perplexities: their runs are keyed apart
  const key = { model: modelFingerprint(model), corpus: idsFingerprint(ids), corpus_tokens: ids.length, ...computeKey(model), ...settings };
  const keyFile = join(dir, 'run-key.json');
  const windowsDir = join(dir, 'windows');
  const text = JSON.stringify(key, null, 2) + '\n';
  const stored = existsSync(windowsDir) ? readdirSync(windowsDir).filter((f) => /^\d+\.json$/.test(f)) : [];
  if (fresh && isOwnOutput(dir, 'ppl-results')) {
    // only what an earlier run wrote: a directory mka did not write (given with --force) keeps its files
    for (const f of stored) rmSync(join(windowsDir, f));
    for (const f of ['ppl.json', 'run.json', 'run-key.json']) rmSync(join(dir, f), { force: true });
  } else if (existsSync(keyFile)) {
    const old = readRegularFile(keyFile, 'run key file').toString('utf8');
    if (old !== text) {
      let differs = 'its run-key.json is unreadable';
      try {
        const o = JSON.parse(old) as Record<string, unknown>;
        differs = Object.keys({ ...o, ...key }).filter((k) => o[k] !== (key as Record<string, unknown>)[k]).join(', ') + ' differ';
      } catch {
        // keep the message above
      }
      throw new UserError(`${keyFile}: ${dir} holds perplexity results of a different run (${differs}); choose another ${flag(OUT)}, or add ${flag(FRESH)} to discard them`);
    }
  } else if (stored.length > 0) {
    throw new UserError(`${windowsDir}: holds results but no run-key.json, so they cannot be matched to this run; choose another ${flag(OUT)}, or add ${flag(FRESH)} to discard them`);
  }
  mkdirSync(windowsDir, { recursive: true });
  writeMarker(dir, 'ppl-results');
  if (!existsSync(keyFile)) atomicWriteText(keyFile, text);
  const fileOf = (i: number) => join(windowsDir, `${i}.json`);
  return {
    load(i, expect) {
      const f = fileOf(i);
      if (!existsSync(f)) return null;
      const r = readChecked(f, WINDOW_RESULT, 'window result', 'delete the file to recompute the window');
      // an edited or misplaced file would otherwise count other tokens, or the same ones twice, in the perplexity
      const wrong = expect && (r.begin !== expect.begin || r.end !== expect.end || r.scored_from !== expect.scored_from);
      if (wrong || r.tokens < 0 || r.tokens > r.end - r.scored_from || !(r.nll >= 0)) {
        throw new UserError(`${f}: not the result of window ${i}${expect ? ` (tokens ${expect.begin}-${expect.end}, scored from ${expect.scored_from})` : ''}: it holds tokens ${r.begin}-${r.end}, scored from ${r.scored_from}, ${r.tokens} scored, nll ${r.nll}; delete the file to recompute the window`);
      }
      return r;
    },
    save(i, r) {
      atomicWriteText(fileOf(i), JSON.stringify(r) + '\n');
    },
    finish(summary, run) {
      atomicWriteText(join(dir, 'ppl.json'), JSON.stringify(summary, null, 2) + '\n');
      atomicWriteText(join(dir, 'run.json'), JSON.stringify({ finished: new Date().toISOString(), ...run }, null, 2) + '\n');
    },
  };
}
