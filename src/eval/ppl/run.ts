/**
 * The library side of `mka eval ppl`: load the model and its tokenizer, tokenize the corpus as
 * transformers' `tokenizer(text)` does (BOS first for Llama), and evaluate the perplexity.
 */
import { existsSync } from 'node:fs';
import { readRegularFile } from '../../io/read.ts';
import { basename, join, resolve } from 'node:path';
import { disposeModel, loadModel } from '../../model/model.ts';
import { readConfig, type LlamaConfig } from '../../model/config.ts';
import { checkModelFits } from '../../model/memory-estimate.ts';
import type { Tokenizer } from '../../tokenizer/tokenizer.ts';
import { UserError } from '../../runtime/errors.ts';
import { loadTokenizer } from '../../tokenizer/tokenizer.ts';
import { evaluatePerplexity, pplWorkload, type PplProgress } from './evaluate.ts';
import type { PplSummary } from './results.ts';
import { flag } from '../../runtime/options.ts';
import { DEFAULT_SEQ_LEN, PPL_TEXT, SEQ_LEN } from './options.ts';

export interface RunPplOptions {
  model: string;
  /** UTF-8 text file: the whole file is one corpus. */
  text: string;
  /** Default min(DEFAULT_SEQ_LEN, max_position_embeddings). */
  seqLen?: number;
  /** Default seqLen (disjoint windows). */
  stride?: number;
  /** Results directory (default results/ppl/<model name>-<text name>). */
  out?: string;
  fresh?: boolean;
  streaming?: boolean;
  onProgress?: (p: PplProgress) => void;
  signal?: AbortSignal;
}

/** Reads a corpus file, with one-line errors for a missing, empty or binary file. */
export function readCorpus(file: string): string {
  const hint = 'give a UTF-8 text file, e.g. WikiText-2\'s test split joined with blank lines';
  if (!existsSync(file)) throw new UserError(`${file}: ${flag(PPL_TEXT)} file not found (${hint})`);
  let text: string;
  try {
    text = readRegularFile(file, `${flag(PPL_TEXT)} file`).toString('utf8');
  } catch (e) {
    throw new UserError(`${(e as Error).message} (${hint})`);
  }
  if (text.includes('\u0000') || text.includes('\uFFFD')) throw new UserError(`${file}: not UTF-8 text (NUL bytes or invalid UTF-8); ${flag(PPL_TEXT)} needs a plain text file`);
  if (!text.trim()) throw new UserError(`${file}: the ${flag(PPL_TEXT)} file is empty`);
  return text;
}

/** A corpus ready to evaluate: its token ids and the window settings, defaults applied and checked. */
export interface PplCorpus {
  ids: number[];
  seqLen: number;
  stride: number;
}

/** Reads and tokenizes `text` for a model (seq-len defaults to min(2048, its context); stride to seq-len). */
export function prepareCorpus(text: string, tokenizer: Tokenizer, config: LlamaConfig, seqLen?: number, stride?: number): PplCorpus {
  const contents = readCorpus(text);
  const L = seqLen ?? Math.min(DEFAULT_SEQ_LEN, config.max_position_embeddings);
  checkSeqLen(L, config);
  return { ids: tokenizer.encode(contents), seqLen: L, stride: stride ?? L };
}

/** Refuses a --seq-len longer than the model's context. */
function checkSeqLen(seqLen: number | undefined, config: LlamaConfig): void {
  if (seqLen !== undefined && seqLen > config.max_position_embeddings) {
    throw new UserError(`${flag(SEQ_LEN)} ${seqLen}: longer than the model's context (max_position_embeddings ${config.max_position_embeddings}); use at most that`);
  }
}

/** The default results directory of a model and corpus. */
export function defaultPplOut(modelDir: string, textFile: string): string {
  return join('results', 'ppl', `${basename(resolve(modelDir))}-${basename(textFile).replace(/\.[^.]*$/, '')}`);
}

/** Evaluates (or resumes) the perplexity of a model directory on a text file. */
export async function runPerplexityEval(opts: RunPplOptions): Promise<{ out: string; summary: PplSummary; resumedWindows: number; seconds: number }> {
  readCorpus(opts.text); // a missing file is reported before the model is loaded
  const config = readConfig(opts.model);
  checkSeqLen(opts.seqLen, config); // before the memory check, which would otherwise blame the machine for an impossible --seq-len
  checkModelFits('eval ppl', opts.model, pplWorkload(opts.seqLen ?? Math.min(DEFAULT_SEQ_LEN, config.max_position_embeddings), !!opts.streaming));
  const tokenizer = await loadTokenizer(opts.model);
  const model = loadModel(opts.model, { streaming: opts.streaming });
  try {
    const corpus = prepareCorpus(opts.text, tokenizer, model.config, opts.seqLen, opts.stride);
    const out = opts.out ?? defaultPplOut(opts.model, opts.text);
    const r = await evaluatePerplexity({ model, ...corpus, out, fresh: opts.fresh, onProgress: opts.onProgress, signal: opts.signal });
    return { out, ...r };
  } finally {
    disposeModel(model);
  }
}
