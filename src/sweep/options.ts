/**
 * The options of `mka sweep` beyond calibration's, the methods' and the evaluations' (which it takes
 * too), declared once (contract 5, src/runtime/options.ts).
 */
import { SWEEP_NUM_FEWSHOT, SWEEP_TASKS } from '../eval/tasks/options.ts';
import { option } from '../runtime/options.ts';
import { OUT } from '../io/output-options.ts';
import { METHOD_NAMES } from '../pipeline/options.ts';
import { CALIBRATION_SETTINGS } from '../compress/options.ts';
import { SIMILARITY_OPTIONS } from '../compress/similarity/options.ts';
import { METRIC } from '../compress/similarity/registry.ts';
import { LIMIT, NTRAIN } from '../eval/mmlu/options.ts';
import { SEQ_LEN, STRIDE } from '../eval/ppl/options.ts';

export const SWEEP_METHODS = option({
  name: 'methods', option: 'methods', type: 'choice', list: true, choices: METHOD_NAMES, default: 'mka,reverse,shortgpt,angular',
  help: 'comma-separated methods',
});
export const SWEEP_REMOVE = option({ name: 'remove', option: 'remove', type: 'integer', min: 0, list: true, default: '0,1,2', help: 'comma-separated numbers of layers to remove' });
export const SWEEP_QUANTIZE = option({
  name: 'quantize', option: 'quantize', type: 'string', list: true, default: 'none',
  help: 'comma-separated quantizations crossed with every method and count: none (16-bit), or METHOD:wBITS[gGROUP][a8][-asym] as compress --quantize takes, e.g. none,gptq:w4g32,smoothquant:w8a8',
});
export const SWEEP_EVAL_SUBJECTS = option({ name: 'evalSubjects', option: 'eval-subjects', type: 'string', list: true, help: 'comma-separated MMLU subjects to evaluate (default all)' });
export const SWEEP_BATCH_SIZE = option({ name: 'batchSize', option: 'batch-size', type: 'integer', min: 1, default: 16, help: 'questions per forward pass' });
export const CHOSEN = option({ name: 'chosen', option: 'chosen', type: 'string', help: 'point for categories.png, e.g. mka:2 (default: largest mka count)' });
export const KEEP_MODELS = option({ name: 'keepModels', option: 'keep-models', type: 'boolean', default: false, help: 'also write every compressed model to OUT/models/' });
export const SWEEP_OUT = option({ ...OUT, default: 'results/sweep', help: 'results directory (rerun to resume)' });
export const SWEEP_TEXT = option({ name: 'text', option: 'text', type: 'string', path: 'file', help: 'text corpus: adds each point\'s perplexity on it (`ppl` column, as `mka eval ppl`)' });

const ONE = 'One point at a time:';
export const LIST_POINTS = option({ name: 'listPoints', option: 'list-points', type: 'boolean', group: ONE, help: 'print the points of the sweep, one a line, and exit' });
export const POINT = option({ name: 'point', option: 'point', type: 'string', group: ONE, help: 'compute exactly one point (original, METHOD:K, or calibration) into --out' });
export const REPORT = option({ name: 'report', option: 'report', type: 'boolean', group: ONE, help: 'write the report from the points finished in --out' });

/**
 * The sweep's options a queue job carries (SweepOptions fields, keyed by spec name; `similarity` and
 * `ppl` nest theirs), which a worker checks with the same specs the command line does.
 */
export const SWEEP_JOB_OPTIONS = [
  SWEEP_METHODS, SWEEP_REMOVE, SWEEP_QUANTIZE, ...CALIBRATION_SETTINGS, METRIC, NTRAIN, LIMIT, SWEEP_EVAL_SUBJECTS, SWEEP_BATCH_SIZE, CHOSEN, KEEP_MODELS,
  SWEEP_TASKS, SWEEP_NUM_FEWSHOT,
] as const;
export const SWEEP_JOB_NESTED_OPTIONS = { similarity: SIMILARITY_OPTIONS, ppl: [SEQ_LEN, STRIDE] } as const;
