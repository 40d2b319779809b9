/**
 * The library side of `mka eval mmlu`: load the model (optionally with its weights rounded as an
 * export would store them), its tokenizer, the reference model and the data, then evaluate or plan.
 */
import { basename, join, resolve } from 'node:path';
import { disposeModel, loadModel, type LlamaModel } from '../../model/model.ts';
import { QUANT_SCHEMES, quantizeModelWeights, type QuantScheme } from '../../weights/quantize.ts';
import { UserError } from '../../runtime/errors.ts';
import { checkModelFits } from '../../model/memory-estimate.ts';
import { loadTokenizer } from '../../tokenizer/tokenizer.ts';
import { estimateMmluCost, type CostEstimate } from './cost.ts';
import { loadMmlu } from './data.ts';
import { evaluateMmlu, mmluWorkload, type MmluProgress } from './evaluate.ts';
import type { QuestionRecord } from './record.ts';
import { scoringTokenizer, type AnswerTokens, type PlanStats } from './question-plan.ts';
import type { MmluSummary } from './results.ts';
import { mmluSamplesText } from './samples.ts';
import { atomicWriteText } from '../../io/atomic.ts';
import { checkOption, keyFields } from '../../runtime/options.ts';
import { ANSWER_TOKENS, BATCH_SIZE, EVAL_QUANTIZE, MMLU_EVAL_KEY } from './options.ts';

export interface RunMmluOptions {
  model: string;
  data: string;
  ntrain: number;
  subjects?: string[];
  limit?: number;
  /** Results directory (default results/mmlu/<model name>[-<quantize>]). */
  out?: string;
  batchSize?: number;
  naive?: boolean;
  referenceModel?: string;
  answerTokens?: AnswerTokens;
  /**
   * Prompts begin with BOS as the tokenizer adds it (default, as Hendrycks' evaluate.py), or never
   * (false: the paper's released code, `add_bos_token=False`). Recorded in the run key and summary.
   */
  bos?: boolean;
  quantize?: QuantScheme;
  dumpPrompts?: string;
  /** Also write samples_mmlu_<subject>.jsonl (lm-eval's --log_samples layout) into the results directory. */
  logSamples?: boolean;
  dryRun?: boolean;
  fresh?: boolean;
  /** Keep one decoder layer in memory at a time (each forward pass reads the layers from disk). */
  streaming?: boolean;
  onProgress?: (p: MmluProgress) => void;
  signal?: AbortSignal;
}

export interface RunMmluResult {
  out: string | null;
  summary: MmluSummary | null;
  /** Every evaluated question's record (resumed subjects' too; empty on a dry run). */
  records: QuestionRecord[];
  stats: PlanStats;
  /** Dry run only. */
  estimate?: CostEstimate;
  resumedSubjects: string[];
  seconds: number;
  planSeconds: number;
  computedQuestions: number;
}

/** The default results directory of a model: results/mmlu/<model name>[-<quantize>][-nobos]. */
export function defaultMmluOut(modelDir: string, quantize: QuantScheme = 'none', bos = true): string {
  return join('results', 'mmlu', basename(resolve(modelDir)) + (quantize === 'none' ? '' : `-${quantize}`) + (bos ? '' : '-nobos'));
}

/** Runs (or with dryRun, plans and times) the MMLU evaluation of a model directory. */
export async function runMmluEval(opts: RunMmluOptions): Promise<RunMmluResult> {
  const quantize = opts.quantize ?? EVAL_QUANTIZE.default;
  checkOption(EVAL_QUANTIZE, quantize);
  const bos = opts.bos ?? true;
  const tokenizer = scoringTokenizer(await loadTokenizer(opts.model), bos);
  const data = loadMmlu(opts.data, { subjects: opts.subjects });
  // Both models stay loaded (each subject runs on the model, then on the reference): both are counted.
  checkModelFits('eval mmlu', opts.model, mmluWorkload(opts), { reference: opts.referenceModel });
  const loaded = loadModel(opts.model, { streaming: opts.streaming });
  let model: LlamaModel = loaded;
  if (quantize !== 'none') {
    model = quantizeModelWeights(loaded, quantize);
    // A streamed copy reads through the original's checkpoint, which must stay open.
    if (!opts.streaming) disposeModel(loaded);
  }
  const reference = opts.referenceModel ? loadModel(opts.referenceModel, { streaming: opts.streaming }) : undefined;
  const out = opts.dryRun ? null : opts.out ?? defaultMmluOut(opts.model, quantize, bos);
  try {
    const r = await evaluateMmlu({
      model, tokenizer, data, ntrain: opts.ntrain, limit: opts.limit, answerTokens: opts.answerTokens,
      batchSize: opts.batchSize, cached: !opts.naive, referenceModel: reference, out: out ?? undefined, fresh: opts.fresh,
      keyExtra: keyFields(MMLU_EVAL_KEY, { quantize, bos }), dumpPrompts: opts.dumpPrompts, dryRun: opts.dryRun, onProgress: opts.onProgress, signal: opts.signal,
    });
    const estimate = opts.dryRun ? estimateMmluCost(model, r.stats, opts.batchSize ?? BATCH_SIZE.default) : undefined;
    if (opts.logSamples && out && r.summary) {
      for (const subject of r.summary.subjects.map((x) => x.name)) {
        atomicWriteText(join(out, `samples_mmlu_${subject}.jsonl`), mmluSamplesText(data, r.records.filter((q) => q.subject === subject), opts.answerTokens ?? ANSWER_TOKENS.default));
      }
    }
    return { out, summary: r.summary, records: r.records, stats: r.stats, estimate, resumedSubjects: r.resumedSubjects, seconds: r.seconds, planSeconds: r.planSeconds, computedQuestions: r.computedQuestions };
  } finally {
    disposeModel(model);
    if (model !== loaded && opts.streaming) disposeModel(loaded);
    if (reference) disposeModel(reference);
  }
}
