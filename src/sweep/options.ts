/**
 * The options of `mka sweep` beyond calibration's, the methods' and the evaluations' (which it takes
 * too), declared once (contract 5, src/runtime/options.ts).
 */
import { SWEEP_NUM_FEWSHOT, SWEEP_TASKS } from '../eval/tasks/options.ts';
import { option } from '../runtime/options.ts';
import { UserError } from '../runtime/errors.ts';
import { isPlainObject } from '../io/read.ts';
import { METHODS, checkParameters } from '../compress/methods/registry.ts';
import { OUT } from '../io/output-options.ts';
import { FIT_LAMBDA, METHOD_NAMES } from '../pipeline/options.ts';
import { CALIBRATION_DATA, CALIBRATION_FILE, CALIBRATION_SETTINGS } from '../compress/options.ts';
import { MODEL } from '../model/options.ts';
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
  help: 'comma-separated quantizations crossed with every method and count: none (16-bit), or METHOD:wBITS[gGROUP][eBITS][a8][-asym] as compress --quantize takes, e.g. none,gptq:w4g32,smoothquant:w8a8',
});
export const SWEEP_EVAL_SUBJECTS = option({ name: 'evalSubjects', option: 'eval-subjects', type: 'string', list: true, help: 'comma-separated MMLU subjects to evaluate (default all)' });
export const SWEEP_BATCH_SIZE = option({ name: 'batchSize', option: 'batch-size', type: 'integer', min: 1, default: 16, help: 'questions per forward pass' });
export const CHOSEN = option({ name: 'chosen', option: 'chosen', type: 'string', help: 'point for categories.png, e.g. mka:2 (default: largest mka count)' });
export const KEEP_MODELS = option({ name: 'keepModels', option: 'keep-models', type: 'boolean', default: false, help: 'also write every compressed model to OUT/models/NAME (a quantized point as the packed model directory mka quantize writes)' });
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
  SWEEP_METHODS, SWEEP_REMOVE, SWEEP_QUANTIZE, ...CALIBRATION_SETTINGS, METRIC, FIT_LAMBDA, NTRAIN, LIMIT, SWEEP_EVAL_SUBJECTS, SWEEP_BATCH_SIZE, CHOSEN, KEEP_MODELS,
  SWEEP_TASKS, SWEEP_NUM_FEWSHOT,
] as const;
/** The sweep options of a job that name paths (what it reads and writes), keyed by spec name. */
export const SWEEP_JOB_PATHS = [SWEEP_OUT, MODEL, CALIBRATION_DATA, CALIBRATION_FILE] as const;
/** The options every job carries. */
export const SWEEP_JOB_REQUIRED: readonly string[] = [SWEEP_OUT.name, MODEL.name, SWEEP_METHODS.name, SWEEP_REMOVE.name];
export const SWEEP_JOB_NESTED_OPTIONS = { similarity: SIMILARITY_OPTIONS, ppl: [SEQ_LEN, STRIDE] } as const;

/**
 * Why a job's method parameters (`params`: method → parameter → value) do not fit the methods' own
 * declarations, as the command line checks them (null when they fit).
 */
export function methodParamsProblem(params: unknown): string | null {
  if (params === undefined) return null;
  if (!isPlainObject(params)) return 'sweep.params must map method names to their parameters';
  for (const [name, given] of Object.entries(params)) {
    const method = METHODS.find((m) => m.name === name);
    if (!method) return `sweep.params.${name}: no method ${name} (methods: ${METHOD_NAMES.join(', ')})`;
    if (!isPlainObject(given)) return `sweep.params.${name} must map parameter names to values`;
    try {
      checkParameters(method, given);
    } catch (e) {
      if (e instanceof UserError) return `sweep.params.${name}: ${e.message}`;
      throw e;
    }
  }
  return null;
}
