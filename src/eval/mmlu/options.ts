/**
 * The options of an MMLU evaluation (`mka eval mmlu`, and the evaluation part of `mka sweep`),
 * declared once (contract 5, src/runtime/options.ts). No tfjs here.
 */
import { option } from '../../runtime/options.ts';
import { QUANT_SCHEMES } from '../../weights/options.ts';

/** The token scored for an answer letter: the last token of "A" (as the paper) or of " A". */
export const ANSWER_TOKEN_CHOICES = ['letter', 'space'] as const;

export const MMLU_DATA = option({
  name: 'data', option: 'data', type: 'string', required: true, path: 'directory', hub: 'mmlu',
  help: 'MMLU directory (dev/ and test/ CSV files), or a hub dataset in cais/mmlu\'s layout',
});
export const NTRAIN = option({
  name: 'ntrain', option: 'ntrain', type: 'integer', min: 0, default: 5,
  help: 'few-shot examples per prompt (dropped from the end when a prompt is too long)',
});
export const EVAL_SUBJECTS = option({ name: 'subjects', option: 'subjects', type: 'string', list: true, help: 'comma-separated subjects (default: all)' });
export const LIMIT = option({ name: 'limit', option: 'limit', type: 'integer', min: 1, help: 'first N test questions per subject (quick runs)' });
export const BATCH_SIZE = option({ name: 'batchSize', option: 'batch-size', type: 'integer', min: 1, default: 16, help: 'questions per forward pass on a cached prefix' });
export const NAIVE = option({ name: 'naive', option: 'naive', type: 'boolean', default: false, help: 'no prefix cache or batching: each full prompt alone (reference path)' });
export const REFERENCE_MODEL = option({
  name: 'referenceModel', option: 'reference-model', type: 'string', path: 'model', hub: 'model',
  help: 'uncompressed model (directory or hub id): adds top-1 agreement and KL of the answer distribution',
});
export const ANSWER_TOKENS = option({
  name: 'answerTokens', option: 'answer-tokens', type: 'choice', choices: ANSWER_TOKEN_CHOICES, default: 'letter',
  help: 'answer token of a letter: last token of "A" (as the paper) or of " A"',
});
export const BOS = option({
  name: 'bos', option: 'bos', type: 'boolean',
  help: 'prompts begin with BOS as the tokenizer adds it (default, as Hendrycks); --no-bos: never (add_bos_token=False, the paper\'s released code)',
});
export const EVAL_QUANTIZE = option({
  name: 'quantize', option: 'quantize', type: 'choice', choices: QUANT_SCHEMES, default: 'none',
  help: 'evaluate with the weights rounded as `export tfjs --quantize` stores them',
});
export const DUMP_PROMPTS = option({ name: 'dumpPrompts', option: 'dump-prompts', type: 'string', path: 'output-file', help: 'write every prompt as fed to the model to this JSONL file' });
export const DRY_RUN = option({ name: 'dryRun', option: 'dry-run', type: 'boolean', default: false, help: 'build and tokenize the prompts, report counts and a time estimate; run no evaluation' });
export const FRESH = option({ name: 'fresh', option: 'fresh', type: 'boolean', default: false, help: 'discard earlier results in the results directory' });

/** What an MMLU run key records of its options, in the key's order (evaluate.ts; results.ts compares keys). */
export const MMLU_KEY = [NTRAIN, LIMIT, ANSWER_TOKENS] as const;
/** What `eval mmlu` adds to the key (the weights' rounding, BOS), as sweeps and `eval tasks` key their MMLU runs too. */
export const MMLU_EVAL_KEY = [EVAL_QUANTIZE, BOS] as const;
